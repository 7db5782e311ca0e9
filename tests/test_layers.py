"""The Flax layers: convolution modules under every conv_impl, PyTorch-exact norms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import plain_conv, plain_conv_transpose
from pix2pix_jax import kernels, layers

jax.config.update("jax_default_matmul_precision", "highest")


# Shapes on both sides of every formulation threshold, through the Flax module.
@pytest.mark.parametrize("stride,n,hw,cin,cout", [
    (2, 2, 64, 3, 8),    # 2·32·32 output pixels ≥ CONV_MIN_PIXELS: lax.conv
    (2, 1, 32, 4, 8),    # 16·16: im2col
    (1, 1, 33, 2, 5),    # 32·32 at stride 1: lax.conv
    (1, 1, 12, 4, 1),    # one output channel: output-side shifts
    (2, 2, 16, 16, 8),   # 16 channels, 2·8·8 ≥ 16 output pixels, 16 divisible by 4: Winograd
    (2, 1, 18, 16, 8),   # same, but 18 not divisible by 4: fallback (lax.conv / im2col)
    (1, 1, 9, 16, 8),    # stride 1, 16 channels, 8·8 ≥ 16 output pixels: stride-1 Winograd
])
@pytest.mark.parametrize("impl", kernels.CONV_IMPLS)
def test_conv4x4_module_equals_plain_conv(stride, n, hw, cin, cout, impl):
  key_x, key_p = jax.random.split(jax.random.key(0))
  x = jax.random.normal(key_x, (n, hw, hw, cin))
  module = layers.Conv4x4(cout, strides=stride, use_bias=True, conv_impl=impl)
  params = module.init(key_p, x)
  params = jax.tree.map(lambda p: p + 0.1, params)  # non-zero bias
  assert params["params"]["kernel"].shape == (4, 4, cin, cout)

  def ours(p, x):
    return module.apply(p, x)

  def plain(p, x):
    return plain_conv(x, p["params"]["kernel"], stride) + p["params"]["bias"]

  np.testing.assert_allclose(ours(params, x), plain(params, x), rtol=1e-5, atol=1e-5)
  loss = lambda f: (lambda p, x: jnp.sum(jnp.sin(f(p, x))))
  g_ours = jax.grad(loss(ours), argnums=(0, 1))(params, x)
  g_plain = jax.grad(loss(plain), argnums=(0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n,hw,cin,cout", [(2, 16, 3, 5),   # 512 input pixels: col2im
                                           (1, 4, 4, 6),    # 16: tap-batched
                                           (1, 8, 16, 8),   # 16 channels, 64 pixels: Winograd
                                           (1, 4, 32, 8)])  # 16 pixels < 32 channels: taps
@pytest.mark.parametrize("impl", kernels.CONV_IMPLS)
def test_conv_transpose4x4_module_equals_plain(n, hw, cin, cout, impl):
  key_x, key_p = jax.random.split(jax.random.key(1))
  x = jax.random.normal(key_x, (n, hw, hw, cin))
  module = layers.ConvTranspose4x4(cout, use_bias=False, conv_impl=impl)
  params = module.init(key_p, x)
  kernel = params["params"]["kernel"]
  assert kernel.shape == (4, 4, cin, cout)
  loss_ours = lambda k, x: jnp.sum(jnp.sin(module.apply({"params": {"kernel": k}}, x)))
  loss_plain = lambda k, x: jnp.sum(jnp.sin(plain_conv_transpose(x, k)))
  np.testing.assert_allclose(module.apply(params, x), plain_conv_transpose(x, kernel),
                             rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.grad(loss_ours, (0, 1))(kernel, x), jax.grad(loss_plain, (0, 1))(kernel, x)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_batchnorm_matches_pytorch_semantics():
  x = jax.random.normal(jax.random.key(2), (3, 4, 5, 6)) * 3 + 1
  bn = layers.BatchNorm()
  variables = bn.init(jax.random.key(3), x, use_running_average=False)
  assert variables["batch_stats"]["mean"].shape == (6,)
  y, updates = bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
  xn = np.asarray(x, np.float64)
  mean, var = xn.mean((0, 1, 2)), xn.var((0, 1, 2))
  scale = np.asarray(variables["params"]["scale"])
  np.testing.assert_allclose(y, (xn - mean) / np.sqrt(var + 1e-5) * scale, rtol=1e-4, atol=1e-4)
  n = 3 * 4 * 5
  np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(updates["batch_stats"]["var"], 0.9 + 0.1 * var * n / (n - 1),
                             rtol=1e-5)
  # Running averages in eval mode.
  y_eval = bn.apply({**variables, **updates}, x, use_running_average=True)
  rm, rv = updates["batch_stats"]["mean"], updates["batch_stats"]["var"]
  np.testing.assert_allclose(y_eval, (xn - rm) / np.sqrt(rv + 1e-5) * scale, rtol=1e-4, atol=1e-4)


def test_batchnorm_init_follows_authors():
  variables = layers.BatchNorm().init(jax.random.key(0), jnp.ones((1, 2, 2, 4096)),
                                      use_running_average=False)
  scale = np.asarray(variables["params"]["scale"])
  assert abs(scale.mean() - 1.0) < 0.005 and abs(scale.std() - 0.02) < 0.003
  assert not np.any(variables["params"]["bias"])


def test_instance_norm_has_no_parameters():
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3)) * 2 + 5
  norm = layers.InstanceNorm()
  variables = norm.init(jax.random.key(1), x)
  assert variables == {}
  y = norm.apply(variables, x)
  np.testing.assert_allclose(np.mean(y, (1, 2)), 0, atol=1e-5)
  np.testing.assert_allclose(np.var(y, (1, 2)), 1, atol=1e-3)


def test_unknown_conv_impl_is_a_clear_error():
  with pytest.raises(ValueError, match=r"unknown model.conv_impl 'cudnn'.*--config.model.conv_impl"):
    layers.Conv4x4(8, conv_impl="cudnn").init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))


def test_unknown_norm_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown norm 'group'"):
    layers.norm_layer("group", jnp.float32, "n")
