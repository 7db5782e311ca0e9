"""The pix2pix networks: U-Net generator and PatchGAN / pixel discriminators (Flax linen).

Architectures follow the authors' `models/networks.py` exactly (same layers, widths, bias rules
and parameter counts): `unet_256` on 3→3 channels has 54,413,955 parameters and the 70×70
PatchGAN (`basic`, n_layers=3) on 6 channels 2,768,705.

Every module takes `train: bool`. `train=True` normalises with batch statistics (updating the
running averages when `batch_stats` is mutable) and applies dropout; `train=False` uses the
running averages and no dropout. The paper evaluates *with* dropout and batch statistics
(section 3.3 / the authors' test.py without --eval): that is `train=True` with the updated
statistics discarded, see `evaluate.py`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pix_jax import kernels, layers, resnet_layers

Dtype = Any


def _leaky_relu(x):
  return nn.leaky_relu(x, negative_slope=0.2)


class UNetGenerator(nn.Module):
  """The authors' `UnetGenerator`: `num_downs` levels of stride-2 4×4 conv / transposed conv.

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

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    n = self.num_downs
    if n < 1:
      raise ValueError(f"num_downs must be at least 1, got {n}")
    factor = 2 ** n
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(
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
        h = _leaky_relu(h)
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


class PatchDiscriminator(nn.Module):
  """The authors' `NLayerDiscriminator` (PatchGAN): logits for overlapping patches.

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

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.n_layers < 0:
      raise ValueError(f"model.n_layers_d must be >= 0, got {self.n_layers}")
    use_bias = layers.conv_bias(self.norm)
    init = dict(init_type=self.init_type, init_gain=self.init_gain, conv_impl=self.conv_impl)
    norm = functools.partial(layers.norm_layer, self.norm, self.dtype, init_gain=self.init_gain)
    conv = functools.partial(layers.Conv4x4, dtype=self.dtype, **init)
    h = conv(self.ndf, strides=2, use_bias=True, name="conv_0")(x.astype(self.dtype))
    h = _leaky_relu(h)
    for i in range(1, self.n_layers):  # stride 2, width doubling up to 8·ndf
      h = conv(self.ndf * min(2**i, 8), strides=2, use_bias=use_bias, name=f"conv_{i}")(h)
      h = _leaky_relu(norm(name=f"norm_{i}")(h, use_running_average=not train))
    # The stride-1 level the authors add after their loop, for every n_layers.
    last = max(self.n_layers, 1)
    h = conv(self.ndf * min(2**self.n_layers, 8), strides=1, use_bias=use_bias,
             name=f"conv_{last}")(h)
    h = _leaky_relu(norm(name=f"norm_{last}")(h, use_running_average=not train))
    h = conv(1, strides=1, use_bias=True, name=f"conv_{last + 1}")(h)
    return h[..., 0].astype(jnp.float32)


class PixelDiscriminator(nn.Module):
  """The authors' `PixelDiscriminator` (1×1 PatchGAN): one logit per pixel, (N, H, W)."""
  ndf: int = 64
  norm: str = "batch"
  dtype: Dtype = jnp.float32
  init_type: str = "normal"
  init_gain: float = 0.02
  conv_impl: str = "auto"  # unused: 1×1 convolutions are one matrix product on every backend

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    use_bias = layers.conv_bias(self.norm)
    conv = functools.partial(layers.Conv1x1, dtype=self.dtype, init_type=self.init_type,
                             init_gain=self.init_gain)
    h = conv(self.ndf, use_bias=True, name="conv_0")(x.astype(self.dtype))
    h = _leaky_relu(h)
    h = conv(2 * self.ndf, use_bias=use_bias, name="conv_1")(h)
    h = layers.norm_layer(self.norm, self.dtype, name="norm_1", init_gain=self.init_gain)(
        h, use_running_average=not train)
    h = _leaky_relu(h)
    h = conv(1, use_bias=use_bias, name="conv_2")(h)
    return h[..., 0].astype(jnp.float32)


# Named variants, as the authors' --netG / --netD options.
unet_128 = functools.partial(UNetGenerator, num_downs=7)
unet_256 = functools.partial(UNetGenerator, num_downs=8)
GENERATORS = {"unet_128": unet_128, "unet_256": unet_256, "unet": UNetGenerator}
DISCRIMINATORS = {
    "basic": functools.partial(PatchDiscriminator, n_layers=3),
    "n_layers": PatchDiscriminator,
    "pixel": PixelDiscriminator,
}


def init_options(model_config) -> dict[str, Any]:
  """{init_type, init_gain} of the model config (the authors' defaults where a saved config
  predates them)."""
  return dict(init_type=model_config.get("init_type", "normal"),
              init_gain=float(model_config.get("init_gain", 0.02)))


def make_generator(config, dtype: Dtype = jnp.float32) -> nn.Module:
  """Builds the generator named by `config.model.generator` (checked by `config_check`)."""
  m = config.model
  kwargs = dict(output_nc=m.output_nc, ngf=m.ngf, norm=m.norm, use_dropout=m.use_dropout,
                dropout_rate=m.dropout_rate, dtype=dtype, **init_options(m),
                conv_impl=m.get("conv_impl", "auto"))
  if m.generator == "unet":
    kwargs["num_downs"] = m.num_downs
  return GENERATORS[m.generator](**kwargs)


def make_discriminator(config, dtype: Dtype = jnp.float32) -> nn.Module:
  """Builds the discriminator named by `config.model.discriminator` (checked by
  `config_check`)."""
  m = config.model
  kwargs = dict(ndf=m.ndf, norm=m.norm, dtype=dtype, **init_options(m),
                conv_impl=m.get("conv_impl", "auto"))
  if m.discriminator == "n_layers":
    kwargs["n_layers"] = m.n_layers_d
  return DISCRIMINATORS[m.discriminator](**kwargs)


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


# ---- ResNet generator (the authors' resnet_9blocks / resnet_6blocks, from Johnson et al. 2016).


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
      h = resnet_layers.pad2d(h, 1, self.padding_type)
      h = resnet_layers.Conv(self.features, 3, use_bias=use_bias, dtype=self.dtype,
                             init_type=self.init_type, init_gain=self.init_gain,
                             conv_impl=self.conv_impl,
                             name=f"conv_{i}")(h)
      h = layers.norm_layer(self.norm, self.dtype, name=f"norm_{i}", init_gain=self.init_gain)(
          h, use_running_average=not train)
      if i == 0:
        h = nn.relu(h)
        if self.use_dropout:
          h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
    return x + h


class ResnetGenerator(nn.Module):
  """The authors' `ResnetGenerator`: 7×7 stem, two stride-2 downsamplings, `n_blocks` residual
  blocks at 1/4 resolution, two transposed-conv upsamplings, 7×7 output conv, tanh.

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

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.n_blocks < 0:
      raise ValueError(f"n_blocks must be non-negative, got {self.n_blocks}")
    if x.shape[1] % 4 or x.shape[2] % 4:
      raise ValueError(f"the ResNet generator needs H and W divisible by 4; got "
                       f"{x.shape[1]}×{x.shape[2]}")
    use_bias = layers.conv_bias(self.norm)
    init = dict(init_type=self.init_type, init_gain=self.init_gain, conv_impl=self.conv_impl)
    norm = functools.partial(layers.norm_layer, self.norm, self.dtype, init_gain=self.init_gain)
    conv = functools.partial(resnet_layers.Conv, dtype=self.dtype, **init)

    h = resnet_layers.pad2d(x.astype(self.dtype), 3, "reflect")
    h = conv(self.ngf, 7, use_bias=use_bias, name="stem")(h)
    h = nn.relu(norm(name="stem_norm")(h, use_running_average=not train))
    for i in (1, 2):
      h = conv(self.ngf * 2**i, 3, strides=2, padding=1, use_bias=use_bias, name=f"down_{i}")(h)
      h = nn.relu(norm(name=f"down_{i}_norm")(h, use_running_average=not train))
    for i in range(self.n_blocks):
      h = ResnetBlock(self.ngf * 4, self.norm, self.use_dropout, self.dropout_rate,
                      self.padding_type, self.dtype, **init, name=f"block_{i}")(h, train)
    for i in (1, 2):
      h = resnet_layers.ConvTranspose3x3(self.ngf * 2**(2 - i), use_bias=use_bias,
                                         dtype=self.dtype, **init, name=f"up_{i}")(h)
      h = nn.relu(norm(name=f"up_{i}_norm")(h, use_running_average=not train))
    h = resnet_layers.pad2d(h, 3, "reflect")
    h = conv(self.output_nc, 7, use_bias=True, name="out")(h)
    return jnp.tanh(h.astype(jnp.float32))


resnet_9blocks = functools.partial(ResnetGenerator, n_blocks=9)
resnet_6blocks = functools.partial(ResnetGenerator, n_blocks=6)
GENERATORS.update(resnet_9blocks=resnet_9blocks, resnet_6blocks=resnet_6blocks)
