"""The U-Net generator (the authors' `UnetGenerator`): `unet_256`, `unet_128`, any depth.

`unet_256` on 3→3 channels has 54,413,955 parameters, exactly the authors'.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pix_jax import errors, layers
from pix2pix_jax.models import layout

Dtype = Any


class UNetGenerator(nn.Module):
  """`num_downs` levels of stride-2 4×4 conv / transposed conv with skip connections.

  Level 0 (outermost) has no norm on its down path and ends in tanh; the innermost level has no
  norm on its down path; levels 4 … num_downs-2 apply dropout after the up-path norm. Skip
  connections concatenate [encoder features, decoder features] on channels, in that order.
  Input H and W must be multiples of 2**num_downs.
  """
  output_nc: int = 3
  num_downs: int = 8
  ngf: int = 64
  norm: str = "batch"
  use_dropout: bool = True
  dropout_rate: float = 0.5
  dtype: Dtype = jnp.float32
  init_type: str = "normal"  # the authors' --init_type / --init_gain (layers.kernel_init)
  init_gain: float = 0.02
  conv_impl: str = "auto"  # how convolutions run: auto | xla | cpu_tuned (see kernels)

  @classmethod
  def from_config(cls, m, **common) -> "UNetGenerator":
    """The generator `config.model` (`m`) describes; `common`: the fields every network takes."""
    return cls(num_downs=m.get("num_downs", 8), ngf=m.ngf, output_nc=m.output_nc,
               use_dropout=m.use_dropout, dropout_rate=m.dropout_rate, **common)

  @property
  def size_multiple(self) -> int:
    """Input sides must be multiples of this (and at least this)."""
    return 2 ** self.num_downs

  @property
  def min_side(self) -> int:
    return self.size_multiple

  @property
  def title(self) -> str:
    return f"the U-Net with {self.num_downs} levels"

  @property
  def authors_name(self) -> str | None:
    """The authors' `--netG` for this generator (their define_G names two U-Net depths)."""
    return {7: "unet_128", 8: "unet_256"}.get(self.num_downs)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    n = self.num_downs
    if n < 1:
      raise errors.UsageError(f"model.num_downs must be at least 1, got {n}")
    factor = 2 ** n
    if x.shape[1] % factor or x.shape[2] % factor:
      raise errors.InputError(
          f"U-Net with num_downs={n} needs H and W divisible by {factor}; got "
          f"{x.shape[1]}×{x.shape[2]} (resize or crop the input, or lower num_downs)")
    widths = [self.ngf * min(2**i, 8) for i in range(n)]
    use_bias = layers.conv_bias(self.norm)
    init = dict(init_type=self.init_type, init_gain=self.init_gain, conv_impl=self.conv_impl)
    norm = functools.partial(layers.norm_layer, self.norm, self.dtype, init_gain=self.init_gain)

    h = x.astype(self.dtype)
    skips = []
    for i in range(n):
      if i > 0:
        h = layers.leaky_relu(h)
      h = layers.Conv4x4(widths[i], strides=2, use_bias=use_bias, dtype=self.dtype, **init,
                         name=f"down_{i}")(h)
      if 0 < i < n - 1:
        h = norm(name=f"down_{i}_norm")(h, use_running_average=not train)
      skips.append(h)

    for i in reversed(range(n)):
      h = nn.relu(h)
      if i == 0:
        h = layers.ConvTranspose4x4(self.output_nc, use_bias=True, dtype=self.dtype, **init,
                                    name="up_0")(h)
        return jnp.tanh(h.astype(jnp.float32))
      h = layers.ConvTranspose4x4(widths[i - 1], use_bias=use_bias, dtype=self.dtype, **init,
                                  name=f"up_{i}")(h)
      h = norm(name=f"up_{i}_norm")(h, use_running_average=not train)
      if self.use_dropout and 4 <= i <= n - 2:
        h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
      h = jnp.concatenate([skips[i - 1], h], axis=-1)
    raise AssertionError("unreachable")

  def torch_layout(self) -> list[layout.LayerMap]:
    """The authors' nested `UnetSkipConnectionBlock`s, in state-dict order.

    Level 0's block is `model`; level i ≥ 1 is the submodule (Sequential index 1 in level 0,
    index 3 below) of the level above. Inside a block the Sequential holds
      level 0:      [down conv, sub, ReLU, up conv, Tanh]
      innermost:    [LeakyReLU, down conv, ReLU, up conv, up norm]
      other levels: [LeakyReLU, down conv, down norm, sub, ReLU, up conv, up norm, (Dropout)]
    """
    n = self.num_downs
    if n < 5:
      raise errors.UsageError(f"the authors' U-Net has at least 5 levels; num_downs={n}")
    prefixes = ["model"] + ["model.model.1" + ".model.3" * (i - 1) for i in range(1, n)]
    down: list[layout.LayerMap] = []
    up: list[list[layout.LayerMap]] = []  # per level
    for i, p in enumerate(prefixes):
      if i == 0:
        down.append(layout.LayerMap(f"{p}.model.0", ("down_0",), "conv"))
        up.append([layout.LayerMap(f"{p}.model.3", ("up_0",), "conv_transpose")])
      elif i == n - 1:
        down.append(layout.LayerMap(f"{p}.model.1", (f"down_{i}",), "conv"))
        up.append([layout.LayerMap(f"{p}.model.3", (f"up_{i}",), "conv_transpose"),
                   *layout.norm(self.norm, f"{p}.model.4", (f"up_{i}_norm",))])
      else:
        down += [layout.LayerMap(f"{p}.model.1", (f"down_{i}",), "conv"),
                 *layout.norm(self.norm, f"{p}.model.2", (f"down_{i}_norm",))]
        up.append([layout.LayerMap(f"{p}.model.5", (f"up_{i}",), "conv_transpose"),
                   *layout.norm(self.norm, f"{p}.model.6", (f"up_{i}_norm",))])
    # Registration order: every down path (outside in), then the up paths (inside out).
    return down + [entry for level in reversed(up) for entry in level]

  def describe(self) -> str:
    return f"UNetGenerator(num_downs={self.num_downs}, ngf={self.ngf}, norm={self.norm!r})"


unet_128 = functools.partial(UNetGenerator, num_downs=7)
unet_256 = functools.partial(UNetGenerator, num_downs=8)
