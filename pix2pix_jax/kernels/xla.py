"""XLA's own convolutions: what `nn.Conv` / `nn.ConvTranspose` emit.

The reference every other formulation is tested against, and the form that runs on GPUs and
TPUs, where cuDNN or the TPU's matrix unit choose their own algorithms for it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def accumulation(x: jax.Array):
  """float32 accumulation for float32 inputs; lower-precision inputs keep XLA's default."""
  return jnp.float32 if x.dtype == jnp.float32 else None


def conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
  """PyTorch `Conv2d(k, stride, padding)` with zero padding; HWIO kernel."""
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), ((padding, padding), (padding, padding)),
      dimension_numbers=_DIMENSIONS, preferred_element_type=accumulation(x))


def conv_transpose(x: jax.Array, kernel: jax.Array, stride: int, padding: int,
                   output_padding: int = 0) -> jax.Array:
  """PyTorch `ConvTranspose2d(k, stride, padding, output_padding)`.

  ``kernel[kh, kw, ci, co] == torch_weight[ci, co, kh, kw]``: the gradient of a convolution with
  respect to its input, i.e. a convolution of the stride-dilated input with the spatially
  flipped kernel, padded by k - 1 - padding (plus output_padding after).
  """
  k = kernel.shape[0]
  lo, hi = k - 1 - padding, k - 1 - padding + output_padding
  return jax.lax.conv_general_dilated(
      x, jnp.flip(kernel, (0, 1)), (1, 1), ((lo, hi), (lo, hi)), lhs_dilation=(stride, stride),
      dimension_numbers=_DIMENSIONS, preferred_element_type=accumulation(x))
