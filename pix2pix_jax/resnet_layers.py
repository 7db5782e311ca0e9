"""Layers of the ResNet generator: padding, 3×3 / 7×7 convolutions, 3×3 transposed convolution.

The ResNet generator (Johnson et al. 2016, the authors' `resnet_9blocks` / `resnet_6blocks`)
pads explicitly (reflection by default) before its stride-1 convolutions, downsamples with two
stride-2 3×3 convolutions and upsamples with two `ConvTranspose2d(k=3, s=2, p=1,
output_padding=1)`. As in `layers.py`, the strided layers avoid the dilated convolutions that
XLA:CPU generates for them (see FACTS.md): the stride-2 conv is im2col + one matrix product,
and the transposed conv is split into its four output phases, which together touch exactly the
nine kernel taps (no multiplications by inserted zeros).

Kernels keep the authors' shapes in Flax's HWIO order; the transposed kernel follows the
convention of `layers.ConvTranspose4x4`: ``kernel[kh, kw, ci, co] == torch_weight[ci, co, kh,
kw]``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pix_jax import layers

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


def _f32_if(dtype):
  return jnp.float32 if dtype == jnp.float32 else None


class Conv(nn.Module):
  """PyTorch `Conv2d(k, stride, padding)` with zero padding, stride 1 or 2.

  Stride 1 is a plain XLA convolution (fast on every backend); stride 2 is im2col + one matrix
  product with the HWIO kernel reshaped to (k·k·Cin, Cout), a free reshape.
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  padding: int = 0
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, cin = self.kernel_size, x.shape[-1]
    kernel = self.param("kernel", layers.kernel_init(self.init_type, self.init_gain),
                        (k, k, cin, self.features), jnp.float32)
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
    if self.strides == 1:
      p = self.padding
      y = jax.lax.conv_general_dilated(
          x, kernel, (1, 1), ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
          preferred_element_type=_f32_if(self.dtype))
    else:
      patches = layers.im2col(x, k, self.strides, self.padding)
      lead = patches.shape[:-1]
      y = jnp.dot(patches.reshape(-1, k * k * cin), kernel.reshape(k * k * cin, self.features),
                  preferred_element_type=_f32_if(self.dtype)).reshape(*lead, self.features)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y.astype(self.dtype)


# Output phase r (0 = even rows, 1 = odd rows) of ConvTranspose2d(k=3, s=2, p=1, output_padding=1)
# as (input offset, kernel tap) pairs: out[2m] = x[m]·w[1]; out[2m+1] = x[m]·w[2] + x[m+1]·w[0],
# where x[H] is the zero that output_padding exposes.
_PHASE_TAPS = {0: ((0, 1),), 1: ((0, 2), (1, 0))}


class ConvTranspose3x3(nn.Module):
  """PyTorch `ConvTranspose2d(k=3, s=2, p=1, output_padding=1)`: doubles H and W.

  Each of the four output phases is a small convolution with its own subset of taps (1, 2, 2 and
  4 of them), evaluated as one matrix product per phase and interleaved.
  """
  features: int
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n, h, w, cin = x.shape
    kernel = self.param("kernel", layers.kernel_init(self.init_type, self.init_gain,
                                                     transposed=True),
                        (3, 3, cin, self.features), jnp.float32)
    kernel = kernel.astype(self.dtype)
    xp = jnp.pad(x.astype(self.dtype), ((0, 0), (0, 1), (0, 1), (0, 0)))
    rows = []
    for rh in (0, 1):
      row = []
      for rw in (0, 1):
        taps = [(dh, kh, dw, kw) for dh, kh in _PHASE_TAPS[rh] for dw, kw in _PHASE_TAPS[rw]]
        inputs = jnp.concatenate([xp[:, dh:dh + h, dw:dw + w, :] for dh, _, dw, _ in taps], -1)
        kmat = jnp.concatenate([kernel[kh, kw] for _, kh, _, kw in taps], 0)
        y = jnp.dot(inputs.reshape(n * h * w, len(taps) * cin), kmat,
                    preferred_element_type=_f32_if(self.dtype))
        row.append(y.reshape(n, h, w, self.features))
      rows.append(jnp.stack(row, axis=3))                     # (n, h, w, rw, c)
    y = jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, self.features)  # (n, h, rh, w, rw, c)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y.astype(self.dtype)
