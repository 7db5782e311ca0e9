"""The discriminators: the PatchGAN (the authors' `NLayerDiscriminator`) and the 1×1 PixelGAN.

The 70×70 PatchGAN (`basic`, n_layers=3) on 6 channels has 2,768,705 parameters, exactly the
authors'.
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


class PatchDiscriminator(nn.Module):
  """Logits for overlapping patches of the (input, output) pair.

  A stride-2 conv without norm, n_layers - 1 stride-2 convs with norm, one stride-1 conv with
  norm (present for every n_layers, 0 included, as theirs) and a stride-1 conv to one logit.
  Layers are named conv_0 … conv_L+1 with L = max(n_layers, 1). With n_layers=3 each output sees
  a 70×70 input patch and a 256-px input gives 30×30 logits.
  Returns logits of shape (N, h, w) — no sigmoid (the loss applies it).
  """
  ndf: int = 64
  n_layers: int = 3
  norm: str = "batch"
  dtype: Dtype = jnp.float32
  init_type: str = "normal"
  init_gain: float = 0.02
  conv_impl: str = "auto"

  @classmethod
  def from_config(cls, m, **common) -> "PatchDiscriminator":
    """The discriminator `config.model` (`m`) describes (`n_layers_d` for `n_layers`)."""
    return cls(ndf=m.ndf, n_layers=m.get("n_layers_d", 3), **common)

  @property
  def min_side(self) -> int:
    """The smallest input side with at least one patch: max(n_layers, 1) stride-2 levels must
    leave three pixels for the two stride-1 4×4 convolutions with padding 1."""
    return 3 * 2 ** max(self.n_layers, 1)

  @property
  def title(self) -> str:
    return f"the PatchGAN with {self.n_layers} layers"

  @property
  def authors_name(self) -> str | None:
    return "basic" if self.n_layers == 3 else "n_layers"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.n_layers < 0:
      raise errors.UsageError(f"model.n_layers_d must be >= 0, got {self.n_layers}")
    use_bias = layers.conv_bias(self.norm)
    init = dict(init_type=self.init_type, init_gain=self.init_gain, conv_impl=self.conv_impl)
    norm = functools.partial(layers.norm_layer, self.norm, self.dtype, init_gain=self.init_gain)
    conv = functools.partial(layers.Conv4x4, dtype=self.dtype, **init)
    h = conv(self.ndf, strides=2, use_bias=True, name="conv_0")(x.astype(self.dtype))
    h = layers.leaky_relu(h)
    for i in range(1, self.n_layers):  # stride 2, width doubling up to 8·ndf
      h = conv(self.ndf * min(2**i, 8), strides=2, use_bias=use_bias, name=f"conv_{i}")(h)
      h = layers.leaky_relu(norm(name=f"norm_{i}")(h, use_running_average=not train))
    # The stride-1 level the authors add after their loop, for every n_layers.
    last = max(self.n_layers, 1)
    h = conv(self.ndf * min(2**self.n_layers, 8), strides=1, use_bias=use_bias,
             name=f"conv_{last}")(h)
    h = layers.leaky_relu(norm(name=f"norm_{last}")(h, use_running_average=not train))
    h = conv(1, strides=1, use_bias=True, name=f"conv_{last + 1}")(h)
    return h[..., 0].astype(jnp.float32)

  def torch_layout(self) -> list[layout.LayerMap]:
    """The authors' `NLayerDiscriminator.model`: [conv, LReLU] [conv, norm, LReLU]×L [conv]."""
    last = max(self.n_layers, 1)
    out = [layout.LayerMap("model.0", ("conv_0",), "conv")]
    for i in range(1, last + 1):
      idx = 2 + 3 * (i - 1)
      out += [layout.LayerMap(f"model.{idx}", (f"conv_{i}",), "conv"),
              *layout.norm(self.norm, f"model.{idx + 1}", (f"norm_{i}",))]
    out.append(layout.LayerMap(f"model.{2 + 3 * last}", (f"conv_{last + 1}",), "conv"))
    return out

  def describe(self) -> str:
    return f"PatchDiscriminator(n_layers={self.n_layers}, ndf={self.ndf}, norm={self.norm!r})"


class PixelDiscriminator(nn.Module):
  """The authors' `PixelDiscriminator` (1×1 PatchGAN): one logit per pixel, (N, H, W)."""
  ndf: int = 64
  norm: str = "batch"
  dtype: Dtype = jnp.float32
  init_type: str = "normal"
  init_gain: float = 0.02
  conv_impl: str = "auto"  # unused: 1×1 convolutions are one matrix product on every backend

  @classmethod
  def from_config(cls, m, **common) -> "PixelDiscriminator":
    return cls(ndf=m.ndf, **common)

  min_side = 1
  title = "the pixel discriminator"
  authors_name = "pixel"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    use_bias = layers.conv_bias(self.norm)
    conv = functools.partial(layers.Conv1x1, dtype=self.dtype, init_type=self.init_type,
                             init_gain=self.init_gain)
    h = conv(self.ndf, use_bias=True, name="conv_0")(x.astype(self.dtype))
    h = layers.leaky_relu(h)
    h = conv(2 * self.ndf, use_bias=use_bias, name="conv_1")(h)
    h = layers.norm_layer(self.norm, self.dtype, name="norm_1", init_gain=self.init_gain)(
        h, use_running_average=not train)
    h = layers.leaky_relu(h)
    h = conv(1, use_bias=use_bias, name="conv_2")(h)
    return h[..., 0].astype(jnp.float32)

  def torch_layout(self) -> list[layout.LayerMap]:
    """The authors' `PixelDiscriminator.net`: [conv, LReLU, conv, norm, LReLU, conv]."""
    return [layout.LayerMap("net.0", ("conv_0",), "conv"),
            layout.LayerMap("net.2", ("conv_1",), "conv"),
            *layout.norm(self.norm, "net.3", ("norm_1",)),
            layout.LayerMap("net.5", ("conv_2",), "conv")]

  def describe(self) -> str:
    return f"PixelDiscriminator(ndf={self.ndf}, norm={self.norm!r})"
