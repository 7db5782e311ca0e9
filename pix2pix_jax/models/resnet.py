"""The ResNet generator (Johnson et al. 2016; the authors' `resnet_9blocks`, `resnet_6blocks`)."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pix_jax import errors, layers
from pix2pix_jax.models import layout

Dtype = Any


class ResnetBlock(nn.Module):
  """x + [pad, conv3×3, norm, ReLU, (dropout), pad, conv3×3, norm](x), as the authors'."""
  features: int
  norm: str = "batch"
  use_dropout: bool = False
  dropout_rate: float = 0.5
  padding_type: str = "reflect"
  dtype: Dtype = jnp.float32
  init_type: str = "normal"
  init_gain: float = 0.02
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    use_bias = layers.conv_bias(self.norm)
    h = x
    for i in range(2):
      h = layers.pad2d(h, 1, self.padding_type)
      h = layers.Conv(self.features, 3, use_bias=use_bias, dtype=self.dtype,
                      init_type=self.init_type, init_gain=self.init_gain,
                      conv_impl=self.conv_impl, name=f"conv_{i}")(h)
      h = layers.norm_layer(self.norm, self.dtype, name=f"norm_{i}", init_gain=self.init_gain)(
          h, use_running_average=not train)
      if i == 0:
        h = nn.relu(h)
        if self.use_dropout:
          h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return x + h


class ResnetGenerator(nn.Module):
  """7×7 stem, two stride-2 downsamplings, `n_blocks` residual blocks at 1/4 resolution, two
  transposed-conv upsamplings, 7×7 output conv, tanh.

  Convs followed by a norm have a bias only for instance norm; the output conv always has one.
  Input H and W must be multiples of 4.
  """
  output_nc: int = 3
  ngf: int = 64
  norm: str = "batch"
  use_dropout: bool = False
  dropout_rate: float = 0.5
  n_blocks: int = 9
  padding_type: str = "reflect"
  dtype: Dtype = jnp.float32
  init_type: str = "normal"
  init_gain: float = 0.02
  conv_impl: str = "auto"

  @classmethod
  def from_config(cls, m, **common) -> "ResnetGenerator":
    """The generator `config.model` (`m`) describes; `common`: the fields every network takes."""
    return cls(ngf=m.ngf, output_nc=m.output_nc, use_dropout=m.use_dropout,
               dropout_rate=m.dropout_rate, **common)

  size_multiple = 4  # input sides: two stride-2 levels
  min_side = 8  # reflection padding at a quarter of the size needs two pixels there
  title = "the ResNet generator"

  @property
  def authors_name(self) -> str | None:
    return f"resnet_{self.n_blocks}blocks" if self.n_blocks in (6, 9) else None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.n_blocks < 0:
      raise errors.UsageError(f"n_blocks must be non-negative, got {self.n_blocks}")
    if x.shape[1] % 4 or x.shape[2] % 4:
      raise errors.InputError(f"the ResNet generator needs H and W divisible by 4; got "
                              f"{x.shape[1]}×{x.shape[2]}")
    use_bias = layers.conv_bias(self.norm)
    init = dict(init_type=self.init_type, init_gain=self.init_gain, conv_impl=self.conv_impl)
    norm = functools.partial(layers.norm_layer, self.norm, self.dtype, init_gain=self.init_gain)
    conv = functools.partial(layers.Conv, dtype=self.dtype, **init)

    h = layers.pad2d(x.astype(self.dtype), 3, "reflect")
    h = conv(self.ngf, 7, use_bias=use_bias, name="stem")(h)
    h = nn.relu(norm(name="stem_norm")(h, use_running_average=not train))
    for i in (1, 2):
      h = conv(self.ngf * 2**i, 3, strides=2, padding=1, use_bias=use_bias, name=f"down_{i}")(h)
      h = nn.relu(norm(name=f"down_{i}_norm")(h, use_running_average=not train))
    for i in range(self.n_blocks):
      h = ResnetBlock(self.ngf * 4, self.norm, self.use_dropout, self.dropout_rate,
                      self.padding_type, self.dtype, **init, name=f"block_{i}")(h, train)
    for i in (1, 2):
      h = layers.ConvTranspose3x3(self.ngf * 2**(2 - i), use_bias=use_bias, dtype=self.dtype,
                                  **init, name=f"up_{i}")(h)
      h = nn.relu(norm(name=f"up_{i}_norm")(h, use_running_average=not train))
    h = layers.pad2d(h, 3, "reflect")
    h = conv(self.output_nc, 7, use_bias=True, name="out")(h)
    return jnp.tanh(h.astype(jnp.float32))

  def torch_layout(self) -> list[layout.LayerMap]:
    """The authors' flat `ResnetGenerator.model` Sequential, in state-dict order.

    [pad, conv7, norm, ReLU] [conv3 s2, norm, ReLU]×2 [ResnetBlock]×n [convT, norm, ReLU]×2
    [pad, conv7, Tanh]; inside a block: [(pad), conv, norm, ReLU, (Dropout), (pad), conv, norm],
    the pads present unless padding_type is 'zero'.
    """
    norm = self.norm
    out = [layout.LayerMap("model.1", ("stem",), "conv"),
           *layout.norm(norm, "model.2", ("stem_norm",))]
    for i, idx in ((1, 4), (2, 7)):
      out += [layout.LayerMap(f"model.{idx}", (f"down_{i}",), "conv"),
              *layout.norm(norm, f"model.{idx + 1}", (f"down_{i}_norm",))]
    pad = 0 if self.padding_type == "zero" else 1
    second = pad + 3 + int(self.use_dropout) + pad  # index of the block's second conv
    for b in range(self.n_blocks):
      p = f"model.{10 + b}.conv_block"
      for j, idx in enumerate((pad, second)):
        out += [layout.LayerMap(f"{p}.{idx}", (f"block_{b}", f"conv_{j}"), "conv"),
                *layout.norm(norm, f"{p}.{idx + 1}", (f"block_{b}", f"norm_{j}"))]
    base = 10 + self.n_blocks
    for i, idx in ((1, base), (2, base + 3)):
      out += [layout.LayerMap(f"model.{idx}", (f"up_{i}",), "conv_transpose"),
              *layout.norm(norm, f"model.{idx + 1}", (f"up_{i}_norm",))]
    out.append(layout.LayerMap(f"model.{base + 7}", ("out",), "conv"))
    return out

  def describe(self) -> str:
    return (f"ResnetGenerator(n_blocks={self.n_blocks}, ngf={self.ngf}, norm={self.norm!r}, "
            f"use_dropout={self.use_dropout}, padding_type={self.padding_type!r})")


resnet_9blocks = functools.partial(ResnetGenerator, n_blocks=9)
resnet_6blocks = functools.partial(ResnetGenerator, n_blocks=6)
