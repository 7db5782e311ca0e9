"""Convolution and normalisation layers, written so XLA runs them fast on CPU.

pix2pix is built from three kinds of layer: stride-2 4×4 convolutions (every encoder and
discriminator level), stride-2 4×4 transposed convolutions (every decoder level) and a few
stride-1 4×4 convolutions (the last two discriminator layers). Each is computed by one of a few
exact formulations, picked per layer from its static shape (see `conv4x4` and
`conv_transpose4x4`; the thresholds come from per-layer measurements on a 2-core CPU, recorded
in docs/benchmarks.md):

* ``lax.conv``: XLA's own convolution, for convolutions with at least `CONV_MIN_PIXELS` output
  pixels (batch × H × W). XLA:CPU runs these, and their gradients, well; its memory stays small
  because nothing is materialised besides the input.
* im2col: patches ordered (kh, kw, c) are strided slices of the padded input, concatenated on
  channels, times the HWIO kernel reshaped to (16·Cin, Cout) — a free reshape, so no kernel is
  re-laid-out per step. Best for small feature maps with large kernels (the U-Net bottleneck),
  where the step is dominated by streaming the weights.
* output-side shifts (col2im): ``x @ W`` with W as (Cin, 16·Cout), then the 16 taps are added at
  their shifted output positions. This is the transposed convolution's natural form (each input
  pixel scatters a 4×4 stamp at stride 2), and for a convolution with very few output channels
  (the PatchGAN's last layer) it multiplies with an (N·H·W, Cin) × (Cin, 16·Cout) matrix instead
  of materialising 16·Cin-wide patches.
* tap-batched transposed convolution: for small inputs, the 16 taps are one batched matrix
  product against the kernel in its stored (4, 4, Cin, Cout) layout, so the large decoder
  kernels are never re-laid-out; the kernel gradient comes out in the stored layout too.
* Winograd (`conv4x4_winograd`), for stride-2 convolutions with H, W divisible by 4, at least
  `WINOGRAD_MIN_CHANNELS` input channels and at least as many output pixels as input channels
  (the middle encoder and discriminator levels; float32 only). Padded by 1 and
  space-to-depth'ed (2×2 blocks → 4·Cin channels) the convolution is a 2×2 stride-1 one, and
  Winograd F(2×2, 2×2) computes each 2×2 output tile with 9 matrix products instead of 16
  (0.5625× the FLOPs, forward and backward). Its transforms have only ±1 coefficients, so it
  rounds like a sum of a few more terms (relative error ~1e-6). The gradient is written by hand
  (it is Winograd-shaped too) so that each transform is one XLA fusion; the transforms still
  cost memory traffic, so it loses for tiny Cin (the first layers) and when the 2.25× larger
  transformed kernel outweighs the pixels (the bottleneck).
* transposed Winograd (`conv_transpose4x4_winograd`), for transposed convolutions with H, W
  even and at least as many input pixels as input channels (under the same channel and dtype
  conditions; the decoder's `up_1`–`up_3` at batch 4). A transposed convolution is the adjoint
  of a stride-2 one, so its forward pass is `conv4x4_winograd`'s input-gradient path and its
  gradient that conv's forward pass: the same 9 products per tile, 0.5625× the FLOPs. (Written
  instead as four sub-pixel phases of F(2×2, 2×2), each with its own input transform and an
  autodiff gradient, it was slower than col2im at every decoder shape.)
* stride-1 Winograd (`conv4x4_s1_winograd`), for stride-1 convolutions under the same channel,
  pixel and dtype conditions (`use_winograd`; the PatchGAN's conv_3): F(2×2, 4×4) straight on
  the 4×4 kernel, 25 matrix products per 2×2 output tile instead of 64 (0.41× the direct FLOPs
  at 32×32), small-integer input and output transforms (relative error a few 1e-6),
  hand-written gradient. (Before it: the four 2×2 sub-kernels as F(2×2, 2×2) problems sharing
  one input transform, 0.6×; and four stride-2 output phases, which lost to XLA's conv.)

Parameters keep the authors' shapes and counts (kernel (4, 4, Cin, Cout) in Flax's HWIO order,
bias (Cout,)), and `tests/test_layers.py` checks every formulation against `lax` convolutions,
values and gradients.

Normalisation follows PyTorch exactly: `BatchNorm` normalises with the biased batch variance and
updates its running variance with the *unbiased* one (momentum 0.1 in PyTorch's convention);
`InstanceNorm` has no affine parameters and no running statistics (the authors' setting).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pix_jax.winograd import (conv4x4_s1_winograd, conv4x4_winograd,
                                  conv_transpose4x4_winograd)

Dtype = Any

# The authors' init_weights(init_type, init_gain) (models/networks.py): conv weights drawn by
# init_type, conv biases 0, BatchNorm scale N(1, init_gain) and shift 0. Their default, and ours:
# normal with gain 0.02.
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")


def kernel_init(init_type: str = "normal", gain: float = 0.02, transposed: bool = False):
  """The authors' `init_weights` for a conv kernel stored (kh, kw, Cin, Cout).

  Fans are PyTorch's, taken on the authors' weight layout: (Cout, Cin, kh, kw) for a conv,
  (Cin, Cout, kh, kw) for a transposed conv, whose fan-in is therefore Cout·kh·kw.
  normal: N(0, gain); xavier: `xavier_normal_(gain)`, std
  gain·sqrt(2 / (fan_in + fan_out)); kaiming: `kaiming_normal_(a=0, mode='fan_in')`, std
  sqrt(2 / fan_in) (gain unused, as theirs); orthogonal: `orthogonal_(gain)` of the weight
  flattened to (its first dimension, the rest).

  The normal draws are flat and reshaped: with JAX's partitionable threefry the values equal
  `nn.initializers.normal(std)` bit for bit (tests/test_models.py checks it), but XLA:CPU
  compiles the one-dimensional draw about three times faster than the 4-D one, which is most
  of the initialisation's compile time.
  """
  if init_type not in INIT_TYPES:
    raise ValueError(f"unknown model.init_type {init_type!r}; choose one of {INIT_TYPES}")

  def init(key, shape, dtype=jnp.float32):
    if init_type == "orthogonal":
      # torch's first weight dimension is the column axis of JAX's orthogonal initialiser.
      return nn.initializers.orthogonal(gain, column_axis=2 if transposed else 3)(
          key, shape, dtype)
    *window, cin, cout = shape
    first, second = (cin, cout) if transposed else (cout, cin)  # torch's dims 0 and 1
    fan_in, fan_out = second * math.prod(window), first * math.prod(window)
    std = {"normal": gain, "xavier": gain * math.sqrt(2.0 / (fan_in + fan_out)),
           "kaiming": math.sqrt(2.0 / fan_in)}[init_type]
    return std * jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)

  return init


conv_init = kernel_init()  # the default, N(0, 0.02)


def bn_scale_init(key, shape, dtype=jnp.float32, gain: float = 0.02):
  return 1.0 + gain * jax.random.normal(key, shape, dtype)


def _dot_last(x: jax.Array, kernel_2d: jax.Array) -> jax.Array:
  """(..., K) @ (K, N) as one matmul over all leading dimensions."""
  lead = x.shape[:-1]
  y = jnp.dot(x.reshape(-1, x.shape[-1]), kernel_2d,
              preferred_element_type=jnp.float32 if x.dtype == jnp.float32 else None)
  return y.reshape(*lead, kernel_2d.shape[-1])


def im2col(x: jax.Array, kernel_size: int, stride: int, padding: int) -> jax.Array:
  """Patches of an NHWC image, ordered (kh, kw, c) on the last axis."""
  n, h, w, c = x.shape
  k, s, p = kernel_size, stride, padding
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0))) if p else x
  ho = (h + 2 * p - k) // s + 1
  wo = (w + 2 * p - k) // s + 1
  if ho < 1 or wo < 1:
    raise ValueError(f"input {h}×{w} is too small for a {k}×{k} conv with stride {s}, "
                     f"padding {p}")
  cols = [
      xp[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s, :]
      for i in range(k) for j in range(k)
  ]
  return jnp.concatenate(cols, axis=-1)


# Formulation thresholds, in pixels of one layer's whole batch (see the module docstring).
CONV_MIN_PIXELS = 1024  # 4×4 conv: lax.conv from this many output pixels, im2col below
COL2IM_MIN_PIXELS = 256  # transposed conv: col2im from this many input pixels, tap-batched below
FEW_FEATURES = 4  # 4×4 conv with at most this many output channels: output-side shifts
# Stride-2 4×4 conv with at least this many input channels and at least one output pixel per
# input channel: Winograd (below, the input transform or the 2.25× larger filter dominates).
WINOGRAD_MIN_CHANNELS = 16


def _conv_out_size(size: int, stride: int) -> int:
  out = (size + 2 - 4) // stride + 1
  if out < 1:
    raise ValueError(f"input size {size} is too small for a 4×4 conv with stride {stride}, "
                     "padding 1")
  return out


def conv4x4_lax(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), ((1, 1), (1, 1)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
      preferred_element_type=jnp.float32 if x.dtype == jnp.float32 else None)


def conv4x4_im2col(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  cin, cout = kernel.shape[2:]
  return _dot_last(im2col(x, 4, stride, 1), kernel.reshape(16 * cin, cout))


def conv4x4_shifts(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """y[i, j] = Σ_taps z[s·i + kh - 1, s·j + kw - 1, tap] with z = x @ W as (Cin, 16·Cout)."""
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  ho, wo = _conv_out_size(h, stride), _conv_out_size(w, stride)
  z = _dot_last(x, kernel.transpose(2, 0, 1, 3).reshape(cin, 16 * cout))
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
  """Whether `conv4x4` takes a Winograd formulation for these static shapes: `conv4x4_winograd`
  at stride 2 (H, W divisible by 4), `conv4x4_s1_winograd` at stride 1; with `transposed`,
  whether `conv_transpose4x4` takes `conv_transpose4x4_winograd` (H, W even). float32 only: in
  bfloat16 the transforms' sums would round once more."""
  n, h, w, cin = x_shape
  if transposed:
    shape_ok = stride == 2 and h % 2 == 0 and w % 2 == 0 and n * h * w >= cin
  elif stride == 2:
    shape_ok = h % 4 == 0 and w % 4 == 0 and n * (h // 2) * (w // 2) >= cin
  else:
    shape_ok = stride == 1 and h >= 2 and w >= 2 and n * (h - 1) * (w - 1) >= cin
  return (shape_ok and cin >= WINOGRAD_MIN_CHANNELS and kernel_shape[-1] > FEW_FEATURES
          and dtype == jnp.float32)


def conv4x4(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  """PyTorch `Conv2d(k=4, p=1, stride)` of NHWC `x` with an HWIO kernel, fastest form."""
  n, h, w, _ = x.shape
  if kernel.shape[-1] <= FEW_FEATURES:
    return conv4x4_shifts(x, kernel, stride)
  if use_winograd(x.shape, kernel.shape, stride, x.dtype):
    return conv4x4_winograd(x, kernel) if stride == 2 else conv4x4_s1_winograd(x, kernel)
  if n * _conv_out_size(h, stride) * _conv_out_size(w, stride) >= CONV_MIN_PIXELS:
    return conv4x4_lax(x, kernel, stride)
  return conv4x4_im2col(x, kernel, stride)


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
  cols = _dot_last(x, kernel.transpose(2, 0, 1, 3).reshape(cin, 16 * cout))
  return _overlap_add(cols.reshape(n, h, w, 4, 4, cout), taps_first=False)


def conv_transpose4x4_taps(x: jax.Array, kernel: jax.Array) -> jax.Array:
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  pixels = jnp.broadcast_to(x.reshape(1, n * h * w, cin), (16, n * h * w, cin))
  cols = jax.lax.dot_general(
      pixels, kernel.reshape(16, cin, cout), (((2,), (1,)), ((0,), (0,))),
      preferred_element_type=jnp.float32 if x.dtype == jnp.float32 else None)
  return _overlap_add(cols.reshape(4, 4, n, h, w, cout), taps_first=True)


def conv_transpose4x4(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch `ConvTranspose2d(k=4, s=2, p=1)`, ``kernel[kh, kw, ci, co] = weight[ci, co, kh, kw]``.

  out[2i + kh - 1, 2j + kw - 1] += x[i, j] @ kernel[kh, kw] (outputs outside the image dropped).
  """
  n, h, w, _ = x.shape
  if use_winograd(x.shape, kernel.shape, 2, x.dtype, transposed=True):
    return conv_transpose4x4_winograd(x, kernel)
  if n * h * w >= COL2IM_MIN_PIXELS or kernel.shape[-1] <= FEW_FEATURES:
    return conv_transpose4x4_col2im(x, kernel)
  return conv_transpose4x4_taps(x, kernel)


class Conv4x4(nn.Module):
  """4×4 convolution with padding 1 (PyTorch `Conv2d(k=4, p=1)`), stride 1 or 2."""
  features: int
  strides: int = 2
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    kernel = self.param("kernel", kernel_init(self.init_type, self.init_gain),
                        (4, 4, cin, self.features), jnp.float32)
    y = conv4x4(x.astype(self.dtype), kernel.astype(self.dtype), self.strides)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y.astype(self.dtype)


class ConvTranspose4x4(nn.Module):
  """PyTorch `ConvTranspose2d(k=4, s=2, p=1)`: doubles H and W.

  The kernel is stored as (4, 4, Cin, Cout) with ``kernel[kh, kw, ci, co] ==
  torch_weight[ci, co, kh, kw]``.
  """
  features: int
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    kernel = self.param("kernel", kernel_init(self.init_type, self.init_gain, transposed=True),
                        (4, 4, cin, self.features), jnp.float32)
    y = conv_transpose4x4(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y.astype(self.dtype)


class Conv1x1(nn.Module):
  """1×1 convolution (the pixel discriminator's layers)."""
  features: int
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", kernel_init(self.init_type, self.init_gain),
                        (1, 1, x.shape[-1], self.features), jnp.float32)
    y = _dot_last(x.astype(self.dtype), kernel[0, 0].astype(self.dtype))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y.astype(self.dtype)


class BatchNorm(nn.Module):
  """PyTorch-exact `BatchNorm2d` over N, H, W (affine, tracking running statistics).

  `momentum` is PyTorch's (weight of the new batch). Statistics are computed in float32 over the
  *global* batch: under `jit` with a batch sharded across devices XLA inserts the all-reduce, so
  this is SyncBatchNorm for free.
  """
  momentum: float = 0.1
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32
  init_gain: float = 0.02  # scale drawn from N(1, init_gain), as the authors' init_weights

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
    c = x.shape[-1]
    scale = self.param("scale", functools.partial(bn_scale_init, gain=self.init_gain), (c,),
                       jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    x32 = x.astype(jnp.float32)
    if use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x32, axes)
      var = jnp.mean(jnp.square(x32 - mean), axes)
      if not self.is_initializing():
        n = x.size // c
        unbiased = var * (n / max(n - 1, 1))
        ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
        ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * unbiased
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    return (x32 * mul + (bias - mean * mul)).astype(self.dtype)


class InstanceNorm(nn.Module):
  """PyTorch `InstanceNorm2d` as the authors use it: no affine parameters, no running stats."""
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool = False) -> jax.Array:
    del use_running_average  # instance statistics at train and test time alike
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, (1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), (1, 2), keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + self.epsilon)).astype(self.dtype)


class Identity(nn.Module):

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool = False) -> jax.Array:
    return x


NORMS: dict[str, Callable[..., nn.Module]] = {
    "batch": BatchNorm,
    "instance": InstanceNorm,
    "none": Identity,
}


def norm_layer(norm: str, dtype: Dtype, name: str, init_gain: float = 0.02) -> nn.Module:
  if norm not in NORMS:
    raise ValueError(f"unknown norm {norm!r}; choose one of {sorted(NORMS)}")
  if norm == "batch":
    return BatchNorm(dtype=dtype, name=name, init_gain=init_gain)
  return InstanceNorm(dtype=dtype, name=name) if norm == "instance" else Identity(name=name)


def conv_bias(norm: str) -> bool:
  """The authors' rule: a conv followed by a norm layer has a bias only for instance norm.

  (`use_bias = norm_layer == nn.InstanceNorm2d` in their networks.py; with norm 'none' they
  too end up without a bias.)
  """
  return norm == "instance"
