"""Architectures: exact parameter counts of the authors' networks, shapes, modes, errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pix2pix_jax import config_check, models


def _init_shapes(module, shape):
  return jax.eval_shape(functools.partial(module.init, train=False),
                        {"params": jax.random.key(0), "dropout": jax.random.key(1)},
                        jnp.zeros(shape))


def test_unet_256_has_the_authors_parameter_count():
  variables = _init_shapes(models.unet_256(output_nc=3), (1, 256, 256, 3))
  assert models.count_params(variables["params"]) == 54_413_955


def test_basic_patchgan_has_the_authors_parameter_count():
  d = models.DISCRIMINATORS["basic"]()
  variables = _init_shapes(d, (1, 256, 256, 6))
  assert models.count_params(variables["params"]) == 2_768_705


@pytest.mark.parametrize("n_layers", [0, 1])
def test_patchgan_keeps_its_stride_1_level_for_any_n_layers(n_layers):
  # The authors' NLayerDiscriminator always ends [conv(stride 1) + norm, conv → 1]: with
  # n_layers 0 and 1 that is conv 6→64 (s2, bias), conv 64→64·2^n (s1) + BN, conv → 1 (bias).
  d = models.PatchDiscriminator(n_layers=n_layers)
  variables = _init_shapes(d, (1, 64, 64, 6))
  width = 64 * 2**n_layers
  assert models.count_params(variables["params"]) == (
      16 * 6 * 64 + 64 + 16 * 64 * width + 2 * width + 16 * width + 1)
  assert sorted(variables["params"]) == ["conv_0", "conv_1", "conv_2", "norm_1"]
  # One stride-2 conv (64 → 32), then two stride-1 4×4 convs with padding 1 (→ 31 → 30).
  assert jax.eval_shape(functools.partial(d.apply, train=False), variables,
                        jnp.zeros((1, 64, 64, 6))).shape == (1, 30, 30)


def test_unet_128_parameter_count():
  # unet_128 is unet_256 without one 512→512 level: 4·4·512·512 (down) + 4·4·1024·512 (up)
  # + 2·2·512 (down and up BatchNorm scale and shift) fewer parameters.
  variables = _init_shapes(models.unet_128(), (1, 128, 128, 3))
  removed = 16 * 512 * 512 + 16 * 1024 * 512 + 4 * 512
  assert models.count_params(variables["params"]) == 54_413_955 - removed


def test_instance_norm_changes_bias_and_norm_parameters():
  batch = _init_shapes(models.UNetGenerator(num_downs=5, ngf=8), (1, 32, 32, 3))
  inst = _init_shapes(models.UNetGenerator(num_downs=5, ngf=8, norm="instance"), (1, 32, 32, 3))
  assert "batch_stats" not in inst
  # Instance norm: conv biases instead of BatchNorm scale+shift.
  assert "bias" in inst["params"]["down_1"] and "bias" not in batch["params"]["down_1"]
  assert "up_1_norm" not in inst["params"] and "up_1_norm" in batch["params"]


@pytest.mark.parametrize("num_downs,size,nc", [(5, 32, 3), (6, 64, 1), (5, 64, 3)])
def test_unet_output_shape_and_range(num_downs, size, nc):
  # Eager tests run XLA's convolutions: each CPU form would compile its many ops one by one.
  g = models.UNetGenerator(output_nc=nc, num_downs=num_downs, ngf=4, conv_impl="xla")
  x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
  variables = g.init({"params": jax.random.key(1)}, x, train=False)
  y = g.apply(variables, x, train=False)
  assert y.shape == (2, size, size, nc)
  assert float(jnp.max(jnp.abs(y))) <= 1.0


def test_unet_non_square_input():
  g = models.UNetGenerator(num_downs=5, ngf=4)
  x = jnp.zeros((1, 32, 64, 3))
  variables = jax.eval_shape(functools.partial(g.init, train=False),
                             {"params": jax.random.key(1)}, x)
  out = jax.eval_shape(functools.partial(g.apply, train=False), variables, x)
  assert out.shape == (1, 32, 64, 3)


def test_unet_rejects_sizes_not_divisible():
  g = models.UNetGenerator(num_downs=5, ngf=4)
  with pytest.raises(ValueError, match="divisible by 32"):
    g.init({"params": jax.random.key(1)}, jnp.zeros((1, 48, 48, 3)), train=False)


@pytest.mark.parametrize("size,expected", [(256, 30), (64, 6), (128, 14)])
def test_patchgan_output_grid(size, expected):
  d = models.PatchDiscriminator(ndf=4)
  shapes = jax.eval_shape(
      lambda: d.apply(d.init(jax.random.key(0), jnp.zeros((1, size, size, 6)), train=False),
                      jnp.zeros((1, size, size, 6)), train=False))
  assert shapes.shape == (1, expected, expected)


def test_pixel_discriminator_shape_and_count():
  d = models.PixelDiscriminator(ndf=64)
  variables = d.init(jax.random.key(0), jnp.zeros((1, 16, 16, 6)), train=False)
  # conv 6→64 (+bias), conv 64→128 (no bias), BN(128), conv 128→1 (no bias)
  assert models.count_params(variables["params"]) == 6 * 64 + 64 + 64 * 128 + 2 * 128 + 128
  assert d.apply(variables, jnp.zeros((2, 16, 16, 6)), train=False).shape == (2, 16, 16)


def test_dropout_only_in_train_mode():
  g = models.UNetGenerator(num_downs=6, ngf=4, conv_impl="xla")  # level 4 of 6 has dropout
  x = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
  variables = g.init({"params": jax.random.key(1)}, x, train=False)
  run = lambda key: g.apply(variables, x, train=True, rngs={"dropout": key},
                            mutable=["batch_stats"])[0]
  assert not np.allclose(run(jax.random.key(2)), run(jax.random.key(3)))
  np.testing.assert_array_equal(run(jax.random.key(2)), run(jax.random.key(2)))
  a = g.apply(variables, x, train=False)
  np.testing.assert_array_equal(a, g.apply(variables, x, train=False))


def test_weight_init_follows_authors():
  variables = models.UNetGenerator(num_downs=5, ngf=16, conv_impl="xla").init(
      {"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)), train=False)
  k = np.asarray(variables["params"]["down_3"]["kernel"])
  assert abs(k.std() - 0.02) < 0.002 and abs(k.mean()) < 0.002
  assert not np.any(variables["params"]["up_0"]["bias"])


def test_flat_conv_init_draws_the_same_values_as_flax_normal():
  # layers.conv_init draws flat for compile speed; it must not change a single initial weight.
  from pix2pix_jax import layers
  import flax.linen as nn
  key = jax.random.key(7)
  for shape in [(4, 4, 3, 64), (4, 4, 512, 512), (1, 1, 6, 64), (3, 3, 64, 64)]:
    np.testing.assert_array_equal(layers.conv_init(key, shape),
                                  nn.initializers.normal(stddev=0.02)(key, shape))
    # kaiming and xavier draw the same normals, scaled by Flax's own fan computation: a conv's
    # fan-in is over (kh, kw, Cin), a transposed conv's over (kh, kw, Cout) as in PyTorch.
    for transposed, axes in [(False, dict(in_axis=-2, out_axis=-1)),
                             (True, dict(in_axis=-1, out_axis=-2))]:
      np.testing.assert_allclose(
          layers.kernel_init("kaiming", transposed=transposed)(key, shape),
          nn.initializers.variance_scaling(2.0, "fan_in", "normal", **axes)(key, shape),
          rtol=1e-6)
      np.testing.assert_allclose(
          layers.kernel_init("xavier", 0.5, transposed=transposed)(key, shape),
          nn.initializers.variance_scaling(0.25, "fan_avg", "normal", **axes)(key, shape),
          rtol=1e-6)


def test_unknown_generator_is_a_clear_error():
  from helpers import tiny_config
  config = tiny_config(**{"model.generator": "unet_512"})
  with pytest.raises(ValueError, match="--config.model.generator=unet_512: must be one of "
                                       "unet_128, unet_256, unet, resnet_9blocks"):
    config_check.check(config)
