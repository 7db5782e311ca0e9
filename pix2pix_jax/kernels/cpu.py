"""Exact CPU formulations of the networks' convolutions, picked per layer from its static shape.

XLA:CPU lowers transposed convolutions and strided convolutions' gradients as dilated
convolutions that multiply zeros, so each layer is rewritten here as exact matrix products
(`conv4x4_form`, `conv_transpose4x4_form`); `tests/test_kernels.py` checks each against XLA's
convolutions, values and gradients.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from pix2pix_jax import errors
from pix2pix_jax.kernels import xla
from pix2pix_jax.kernels.winograd import (conv4x4_s1_winograd, conv4x4_winograd,
                                          conv_transpose4x4_winograd)

Dtype = Any

# Formulation thresholds, in pixels of one layer's whole batch, set from per-layer timings
# (docs/benchmarks.md, section "Where the time goes").
CONV_MIN_PIXELS = 1024  # 4×4 conv: lax.conv from this many output pixels, im2col below
COL2IM_MIN_PIXELS = 256  # transposed conv: col2im from this many input pixels, tap-batched below
FEW_FEATURES = 4  # 4×4 conv with at most this many output channels: output-side shifts
# Stride-2 4×4 conv with at least this many input channels and at least one output pixel per
# input channel: Winograd (below, the input transform or the 2.25× larger filter dominates).
WINOGRAD_MIN_CHANNELS = 16


def at_least(size, threshold: int) -> bool:
  """`size >= threshold`, and False where a symbolic size leaves it open.

  Sizes here are products of positive dimensions, so a comparison that holds for some values
  of a symbolic size (an exported generator's any batch, any height and width) but not all fails
  at its smallest value: symbolic sizes take the forms of their smallest values. Divisibility
  tests need no such care (`==` on a symbolic size is False unless it holds for every value),
  so every form taken is exact for every size.
  """
  try:
    return bool(size >= threshold)
  except jax.errors.InconclusiveDimensionOperation:
    return False


def dot_last(x: jax.Array, kernel_2d: jax.Array) -> jax.Array:
  """(..., K) @ (K, N) as one matmul over all leading dimensions."""
  lead = x.shape[:-1]
  y = jnp.dot(x.reshape(-1, x.shape[-1]), kernel_2d, preferred_element_type=xla.accumulation(x))
  return y.reshape(*lead, kernel_2d.shape[-1])


def im2col(x: jax.Array, kernel_size: int, stride: int, padding: int) -> jax.Array:
  """Patches of an NHWC image, ordered (kh, kw, c) on the last axis."""
  n, h, w, c = x.shape
  k, s, p = kernel_size, stride, padding
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
  ho = (h + 2 * p - k) // s + 1
  wo = (w + 2 * p - k) // s + 1
  if ho < 1 or wo < 1:
    raise errors.InputError(f"input {h}×{w} is too small for a {k}×{k} conv with stride {s}, "
                            f"padding {p}")
  cols = [
      xp[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s, :]
      for i in range(k) for j in range(k)
  ]
  return jnp.concatenate(cols, axis=-1)


def _conv_out_size(size: int, stride: int) -> int:
  out = (size + 2 - 4) // stride + 1
  if out < 1:
    raise errors.InputError(f"input size {size} is too small for a 4×4 conv with stride {stride}, "
                            "padding 1")
  return out


def conv_im2col(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
  """k×k convolution as im2col + one matrix product with the HWIO kernel as (k·k·Cin, Cout)."""
  k, _, cin, cout = kernel.shape
  return dot_last(im2col(x, k, stride, padding), kernel.reshape(k * k * cin, cout))


def conv4x4_im2col(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  return conv_im2col(x, kernel, stride, 1)


def conv4x4_shifts(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """y[i, j] = Σ_taps z[s·i + kh - 1, s·j + kw - 1, tap] with z = x @ W as (Cin, 16·Cout)."""
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  ho, wo = _conv_out_size(h, stride), _conv_out_size(w, stride)
  z = dot_last(x, kernel.transpose(2, 0, 1, 3).reshape(cin, 16 * cout))
  zp = jnp.pad(z.reshape(n, h, w, 16, cout), ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0)))
  y = None
  for kh in range(4):
    for kw in range(4):
      tap = zp[:, kh:kh + stride * (ho - 1) + 1:stride, kw:kw + stride * (wo - 1) + 1:stride,
               4 * kh + kw]
      y = tap if y is None else y + tap
  return y


def use_winograd(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], stride: int,
                 dtype: Dtype = jnp.float32, transposed: bool = False) -> bool:
  """Whether a Winograd formulation (`winograd.py`) is taken for these static shapes.

  `conv4x4_winograd` at stride 2 (H, W divisible by 4), `conv4x4_s1_winograd` at stride 1; with
  `transposed`, `conv_transpose4x4_winograd` (H, W even). Each needs `WINOGRAD_MIN_CHANNELS`
  input channels and at least as many pixels as input channels. float32 only: in bfloat16 the
  transforms' sums would round once more.
  """
  n, h, w, cin = x_shape
  if transposed:
    shape_ok = stride == 2 and h % 2 == 0 and w % 2 == 0 and at_least(n * h * w, cin)
  elif stride == 2:
    shape_ok = h % 4 == 0 and w % 4 == 0 and at_least(n * (h // 2) * (w // 2), cin)
  else:
    shape_ok = (stride == 1 and at_least(h, 2) and at_least(w, 2)
                and at_least(n * (h - 1) * (w - 1), cin))
  return (shape_ok and cin >= WINOGRAD_MIN_CHANNELS and kernel_shape[-1] > FEW_FEATURES
          and dtype == jnp.float32)


def conv4x4_form(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...], stride: int,
                 dtype: Dtype = jnp.float32) -> str:
  """The formulation `conv4x4` takes for these static shapes (a key of CONV4X4_FORMS).

  * shifts, for very few output channels (the PatchGAN's last layer): ``x @ W`` with W as
    (Cin, 16·Cout), the 16 taps then added at their shifted output positions, instead of
    16·Cin-wide patches.
  * winograd, winograd_s1: see `use_winograd`.
  * lax: XLA's own convolution, for many output pixels; nothing is materialised but the input.
  * im2col: patches ordered (kh, kw, c) times the HWIO kernel as (k·k·Cin, Cout), a free
    reshape; for small feature maps with large kernels (the U-Net bottleneck), where streaming
    the weights dominates.

  A symbolic shape takes the forms of its smallest value (`at_least`).
  """
  n, h, w, _ = x_shape
  if kernel_shape[-1] <= FEW_FEATURES:
    return "shifts"
  if use_winograd(x_shape, kernel_shape, stride, dtype):
    return "winograd" if stride == 2 else "winograd_s1"
  if at_least(n * _conv_out_size(h, stride) * _conv_out_size(w, stride), CONV_MIN_PIXELS):
    return "lax"
  return "im2col"


CONV4X4_FORMS = {
    "lax": lambda x, k, stride: xla.conv(x, k, stride, 1),
    "im2col": conv4x4_im2col,
    "shifts": conv4x4_shifts,
    "winograd": lambda x, k, stride: conv4x4_winograd(x, k),
    "winograd_s1": lambda x, k, stride: conv4x4_s1_winograd(x, k),
}


def conv4x4(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """PyTorch `Conv2d(k=4, p=1, stride)` of NHWC `x` with an HWIO kernel, as `conv4x4_form` says."""
  return CONV4X4_FORMS[conv4x4_form(x.shape, kernel.shape, stride, x.dtype)](x, kernel, stride)


def _overlap_add(cols: jax.Array, taps_first: bool) -> jax.Array:
  """Taps → (N, 2H, 2W, C): tap (kh, kw) of pixel (i, j) lands on (2i + kh - 1, 2j + kw - 1).

  `cols` is (N, H, W, 4, 4, C), or (4, 4, N, H, W, C) with `taps_first`. With kh = 2a + r the
  target row is 2(i + a) + (r - 1): taps sharing `a` tile the output at stride 2 and are
  interleaved by a reshape, so the whole scatter is four padded adds (one XLA fusion, and its
  gradient another, reading `cols` in whichever layout the matrix product wrote it).
  """
  if taps_first:
    _, _, n, h, w, c = cols.shape
    taps = cols.reshape(2, 2, 2, 2, n, h, w, c).transpose(4, 5, 6, 0, 1, 2, 3, 7)
  else:
    n, h, w, _, _, c = cols.shape
    taps = cols.reshape(n, h, w, 2, 2, 2, 2, c)                 # (n, h, w, a, r, b, s, c)
  out = None
  for a in (0, 1):
    for b in (0, 1):
      block = taps[:, :, :, a, :, b].transpose(0, 1, 3, 2, 4, 5)  # (n, h, r, w, s, c)
      block = jnp.pad(block, ((0, 0), (a, 1 - a), (0, 0), (b, 1 - b), (0, 0), (0, 0)))
      out = block if out is None else out + block
  return out.reshape(n, 2 * h + 2, 2 * w + 2, c)[:, 1:-1, 1:-1]


def conv_transpose4x4_col2im(x: jax.Array, kernel: jax.Array) -> jax.Array:
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  cols = dot_last(x, kernel.transpose(2, 0, 1, 3).reshape(cin, 16 * cout))
  return _overlap_add(cols.reshape(n, h, w, 4, 4, cout), taps_first=False)


def conv_transpose4x4_taps(x: jax.Array, kernel: jax.Array) -> jax.Array:
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  pixels = jnp.broadcast_to(x.reshape(1, n * h * w, cin), (16, n * h * w, cin))
  cols = jax.lax.dot_general(
      pixels, kernel.reshape(16, cin, cout), (((2,), (1,)), ((0,), (0,))),
      preferred_element_type=xla.accumulation(x))
  return _overlap_add(cols.reshape(4, 4, n, h, w, cout), taps_first=True)


def conv_transpose4x4_form(x_shape: tuple[int, ...], kernel_shape: tuple[int, ...],
                           dtype: Dtype = jnp.float32) -> str:
  """The formulation `conv_transpose4x4` takes (a key of CONV_TRANSPOSE4X4_FORMS).

  * winograd_t: see `use_winograd`.
  * col2im: ``x @ W`` with W as (Cin, 16·Cout), the 16 taps then overlap-added at their output
    positions: the transposed convolution's natural form.
  * taps, for small inputs: the 16 taps as one batched product against the kernel in its stored
    (4, 4, Cin, Cout) layout, never re-laid-out per step.
  """
  n, h, w, _ = x_shape
  if use_winograd(x_shape, kernel_shape, 2, dtype, transposed=True):
    return "winograd_t"
  if at_least(n * h * w, COL2IM_MIN_PIXELS) or kernel_shape[-1] <= FEW_FEATURES:
    return "col2im"
  return "taps"


CONV_TRANSPOSE4X4_FORMS = {
    "winograd_t": conv_transpose4x4_winograd,
    "col2im": conv_transpose4x4_col2im,
    "taps": conv_transpose4x4_taps,
}


def conv_transpose4x4(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch `ConvTranspose2d(k=4, s=2, p=1)`, ``kernel[kh, kw, ci, co] = weight[ci, co, kh, kw]``.

  out[2i + kh - 1, 2j + kw - 1] += x[i, j] @ kernel[kh, kw] (outputs outside the image dropped).
  """
  form = conv_transpose4x4_form(x.shape, kernel.shape, x.dtype)
  return CONV_TRANSPOSE4X4_FORMS[form](x, kernel)


def conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
  """k×k zero-padded convolution (the ResNet generators'): XLA's at stride 1, im2col at 2."""
  if stride == 1:
    return xla.conv(x, kernel, 1, padding)
  return conv_im2col(x, kernel, stride, padding)


# Output phase r (0 = even rows, 1 = odd rows) of ConvTranspose2d(k=3, s=2, p=1, output_padding=1)
# as (input offset, kernel tap) pairs: out[2m] = x[m]·w[1]; out[2m+1] = x[m]·w[2] + x[m+1]·w[0],
# where x[H] is the zero that output_padding exposes.
_PHASE_TAPS = {0: ((0, 1),), 1: ((0, 2), (1, 0))}


def conv_transpose3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch `ConvTranspose2d(k=3, s=2, p=1, output_padding=1)` as its four output phases."""
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  xp = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
  rows = []
  for rh in (0, 1):
    row = []
    for rw in (0, 1):
      taps = [(dh, kh, dw, kw) for dh, kh in _PHASE_TAPS[rh] for dw, kw in _PHASE_TAPS[rw]]
      inputs = jnp.concatenate([xp[:, dh:dh + h, dw:dw + w, :] for dh, _, dw, _ in taps], -1)
      kmat = jnp.concatenate([kernel[kh, kw] for _, kh, _, kw in taps], 0)
      y = jnp.dot(inputs.reshape(n * h * w, len(taps) * cin), kmat,
                  preferred_element_type=xla.accumulation(x))
      row.append(y.reshape(n, h, w, cout))
    rows.append(jnp.stack(row, axis=3))                     # (n, h, w, rw, c)
  return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, cout)  # (n, h, rh, w, rw, c)
