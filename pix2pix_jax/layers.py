"""Convolution and normalisation layers, written so XLA runs them fast on CPU.

pix2pix is built from three kinds of layer: stride-2 4×4 convolutions (every encoder and
discriminator level), stride-2 4×4 transposed convolutions (every decoder level) and a few
stride-1 4×4 convolutions (the last two discriminator layers). XLA:CPU lowers strided and
transposed convolutions, and their gradients, as dilated convolutions that mostly multiply zeros,
which made a plain `nn.Conv`/`nn.ConvTranspose` step ~3-5× slower than PyTorch on CPU.

Here every 4×4 layer is an exact reformulation as im2col + one matrix product:

* ``Conv4x4``: patches ordered (kh, kw, c) are strided slices of the padded input, concatenated
  on channels; the HWIO kernel reshaped to (16·Cin, Cout) is a free reshape, so no kernel
  re-layout happens per step.
* ``ConvTranspose4x4``: the stride-2 transposed convolution splits into four output phases
  (sub-pixel convolution); phase (rh, rw) is a 2×2 convolution of the input with a fixed subset of
  the kernel taps, evaluated as one batched matrix product over the four phases.

Parameters keep the authors' shapes and counts (kernel (4, 4, Cin, Cout) in Flax's HWIO order,
bias (Cout,)), and `tests/test_layers.py` checks both layers against `lax` convolutions.

Normalisation follows PyTorch exactly: `BatchNorm` normalises with the biased batch variance and
updates its running variance with the *unbiased* one (momentum 0.1 in PyTorch's convention);
`InstanceNorm` has no affine parameters and no running statistics (the authors' setting).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

# The authors' init_weights('normal', 0.02): conv weights N(0, 0.02), biases 0, BatchNorm scale
# N(1, 0.02) and shift 0.
conv_init = nn.initializers.normal(stddev=0.02)


def bn_scale_init(key, shape, dtype=jnp.float32):
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


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


class Conv4x4(nn.Module):
  """4×4 convolution with padding 1 (PyTorch `Conv2d(k=4, p=1)`), stride 1 or 2, as im2col."""
  features: int
  strides: int = 2
  use_bias: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    kernel = self.param("kernel", conv_init, (4, 4, cin, self.features), jnp.float32)
    patches = im2col(x.astype(self.dtype), 4, self.strides, 1)
    y = _dot_last(patches, kernel.astype(self.dtype).reshape(16 * cin, self.features))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y.astype(self.dtype)


def _transpose_phase_kernels(kernel: jax.Array) -> jax.Array:
  """(4, 4, Cin, Cout) kernel → (4 phases, 4·Cin, Cout) matrices of the sub-pixel form.

  For PyTorch's ConvTranspose2d(k=4, s=2, p=1), output row 2m+r takes input rows m-1+r+t
  (t = 0, 1) with kernel row 3-r-2t. Flipping the kernel makes that row r+2t, so the kernel's
  row axis splits as (t, r); the same holds for columns.
  """
  kh, kw, cin, cout = kernel.shape
  k = kernel[::-1, ::-1].reshape(2, 2, 2, 2, cin, cout)  # (th, rh, tw, rw, ci, co)
  k = k.transpose(1, 3, 0, 2, 4, 5)                      # (rh, rw, th, tw, ci, co)
  return k.reshape(4, 4 * cin, cout)


class ConvTranspose4x4(nn.Module):
  """PyTorch `ConvTranspose2d(k=4, s=2, p=1)`: doubles H and W, as a sub-pixel convolution.

  The kernel is stored as (4, 4, Cin, Cout) with ``kernel[kh, kw, ci, co] ==
  torch_weight[ci, co, kh, kw]``.
  """
  features: int
  use_bias: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n, h, w, cin = x.shape
    kernel = self.param("kernel", conv_init, (4, 4, cin, self.features), jnp.float32)
    xp = jnp.pad(x.astype(self.dtype), ((0, 0), (1, 1), (1, 1), (0, 0)))
    # Phase (rh, rw) reads the 2×2 input window at offset (rh, rw) of the padded input.
    phases = []
    for rh in (0, 1):
      for rw in (0, 1):
        taps = [xp[:, rh + th:rh + th + h, rw + tw:rw + tw + w, :]
                for th in (0, 1) for tw in (0, 1)]
        phases.append(jnp.concatenate(taps, axis=-1).reshape(n * h * w, 4 * cin))
    patches = jnp.stack(phases)                               # (4, NHW, 4Cin)
    kmat = _transpose_phase_kernels(kernel.astype(self.dtype))  # (4, 4Cin, Cout)
    y = jax.lax.dot_general(
        patches, kmat, (((2,), (1,)), ((0,), (0,))),
        preferred_element_type=jnp.float32 if self.dtype == jnp.float32 else None)
    y = y.reshape(2, 2, n, h, w, self.features).transpose(2, 3, 0, 4, 1, 5)
    y = y.reshape(n, 2 * h, 2 * w, self.features)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y.astype(self.dtype)


class Conv1x1(nn.Module):
  """1×1 convolution (the pixel discriminator's layers)."""
  features: int
  use_bias: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", conv_init, (1, 1, x.shape[-1], self.features), jnp.float32)
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

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool) -> jax.Array:
    c = x.shape[-1]
    scale = self.param("scale", bn_scale_init, (c,), jnp.float32)
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


def norm_layer(norm: str, dtype: Dtype, name: str) -> nn.Module:
  if norm not in NORMS:
    raise ValueError(f"unknown norm {norm!r}; choose one of {sorted(NORMS)}")
  return NORMS[norm](dtype=dtype, name=name) if norm != "none" else Identity(name=name)


def conv_bias(norm: str) -> bool:
  """The authors' rule: a conv followed by a norm layer has a bias only for instance norm.

  (`use_bias = norm_layer == nn.InstanceNorm2d` in their networks.py; with norm 'none' they
  too end up without a bias.)
  """
  return norm == "instance"
