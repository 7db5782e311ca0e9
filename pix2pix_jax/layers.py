"""The networks' building blocks in plain Flax: convolutions, PyTorch-exact norms, initialisers.

The modules hold the parameters in the authors' shapes and counts (kernel (kh, kw, Cin, Cout) in
Flax's HWIO order, bias (Cout,)); the arithmetic is one call into `kernels`, which picks each
convolution's form per backend (`model.conv_impl`). Norms match PyTorch's, initialisers the
authors' `init_weights`.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pix_jax import errors, kernels

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
  `nn.initializers.normal(std)` bit for bit (tests/test_models.py checks it), and XLA:CPU
  compiles the one-dimensional draw much faster, shortening the initialisation's compilation
  (docs/benchmarks.md, section "Levers tried on the training step").
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


class Conv4x4(nn.Module):
  """4×4 convolution with padding 1 (PyTorch `Conv2d(k=4, p=1)`), stride 1 or 2."""
  features: int
  strides: int = 2
  use_bias: bool = True
  dtype: Dtype = jnp.float32
  conv_impl: str = "auto"  # see kernels: auto | xla | cpu_tuned
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    kernel = self.param("kernel", kernel_init(self.init_type, self.init_gain),
                        (4, 4, cin, self.features), jnp.float32)
    y = kernels.conv4x4(x.astype(self.dtype), kernel.astype(self.dtype), self.strides,
                        self.conv_impl)
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
  conv_impl: str = "auto"
  init_type: str = "normal"
  init_gain: float = 0.02

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    kernel = self.param("kernel", kernel_init(self.init_type, self.init_gain, transposed=True),
                        (4, 4, cin, self.features), jnp.float32)
    y = kernels.conv_transpose4x4(x.astype(self.dtype), kernel.astype(self.dtype),
                                  self.conv_impl)
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
    y = kernels.dense(x.astype(self.dtype), kernel[0, 0].astype(self.dtype))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y.astype(self.dtype)


class BatchNorm(nn.Module):
  """PyTorch-exact `BatchNorm2d` over N, H, W (affine, tracking running statistics).

  Normalises with the biased batch variance and updates the running variance with the
  *unbiased* one, as PyTorch does; `momentum` is PyTorch's (weight of the new batch).
  Statistics are computed in float32 over the *global* batch: under `jit` with a batch sharded
  across devices XLA inserts the all-reduce, so this is SyncBatchNorm for free.
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


def leaky_relu(x: jax.Array) -> jax.Array:
  """LeakyReLU(0.2), the authors' slope everywhere."""
  return nn.leaky_relu(x, negative_slope=0.2)


# ---- The ResNet generator's layers: explicit padding, 3×3 / 7×7 convolutions, 3×3 transposed.

PADDING_TYPES = ("reflect", "replicate", "zero")
_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "zero": "constant"}


def pad2d(x: jax.Array, pad: int, padding_type: str = "reflect") -> jax.Array:
  """Pads H and W of an NHWC array like PyTorch's ReflectionPad2d / ReplicationPad2d / zeros."""
  if padding_type not in _PAD_MODES:
    raise ValueError(f"unknown padding_type {padding_type!r}; choose one of {PADDING_TYPES}")
  if padding_type == "reflect" and (x.shape[1] <= pad or x.shape[2] <= pad):
    raise errors.InputError(f"reflection padding {pad} needs H and W above {pad}; got "
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
    kernel = self.param("kernel", kernel_init(self.init_type, self.init_gain),
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
    kernel = self.param("kernel", kernel_init(self.init_type, self.init_gain,
                                                     transposed=True),
                        (3, 3, x.shape[-1], self.features), jnp.float32)
    y = kernels.conv_transpose3x3(x.astype(self.dtype), kernel.astype(self.dtype),
                                  self.conv_impl)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return y.astype(self.dtype)
