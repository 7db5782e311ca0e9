"""Layers of the ResNet generator: padding, 3×3 / 7×7 convolutions, 3×3 transposed convolution.

The ResNet generator (Johnson et al. 2016, the authors' `resnet_9blocks` / `resnet_6blocks`)
pads explicitly (reflection by default) before its stride-1 convolutions, downsamples with two
stride-2 3×3 convolutions and upsamples with two `ConvTranspose2d(k=3, s=2, p=1,
output_padding=1)`. As in `layers.py`, the arithmetic is one call into `kernels` (XLA's
convolutions on accelerators, exact CPU formulations on CPU).

Kernels keep the authors' shapes in Flax's HWIO order; the transposed kernel follows the
convention of `layers.ConvTranspose4x4`: ``kernel[kh, kw, ci, co] == torch_weight[ci, co, kh,
kw]``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pix_jax import kernels, layers

Dtype = Any

PADDING_TYPES = ("reflect", "replicate", "zero")
_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "zero": "constant"}


def pad2d(x: jax.Array, pad: int, padding_type: str = "reflect") -> jax.Array:
  """Pads H and W of an NHWC array like PyTorch's ReflectionPad2d / ReplicationPad2d / zeros."""
  if padding_type not in _PAD_MODES:
    raise ValueError(f"unknown padding_type {padding_type!r}; choose one of {PADDING_TYPES}")
  if padding_type == "reflect" and (x.shape[1] <= pad or x.shape[2] <= pad):
    raise ValueError(f"reflection padding {pad} needs H and W above {pad}; got "
                     f"{x.shape[1]}×{x.shape[2]} (the input is too small for this network)")
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=_PAD_MODES[padding_type])


class Conv(nn.Module):
  """PyTorch `Conv2d(k, stride, padding)` with zero padding, stride 1 or 2."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  padding: int = 0
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  init_type: str = "normal"
  init_gain: float = 0.02
  conv_impl: str = "auto"  # see kernels: auto | xla | cpu_tuned

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, cin = self.kernel_size, x.shape[-1]
    kernel = self.param("kernel", layers.kernel_init(self.init_type, self.init_gain),
                        (k, k, cin, self.features), jnp.float32)
    y = kernels.conv(x.astype(self.dtype), kernel.astype(self.dtype), self.strides,
                     self.padding, self.conv_impl)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y.astype(self.dtype)


class ConvTranspose3x3(nn.Module):
  """PyTorch `ConvTranspose2d(k=3, s=2, p=1, output_padding=1)`: doubles H and W."""
  features: int
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  init_type: str = "normal"
  init_gain: float = 0.02
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", layers.kernel_init(self.init_type, self.init_gain,
                                                     transposed=True),
                        (3, 3, x.shape[-1], self.features), jnp.float32)
    y = kernels.conv_transpose3x3(x.astype(self.dtype), kernel.astype(self.dtype),
                                  self.conv_impl)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y.astype(self.dtype)
