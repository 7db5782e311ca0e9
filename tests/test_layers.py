"""Each reformulated layer must equal the plain XLA convolution it replaces, values and grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pix2pix_jax import layers

jax.config.update("jax_default_matmul_precision", "highest")


def _plain_conv(x, kernel, stride):
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), ((1, 1), (1, 1)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest")


def _plain_conv_transpose(x, kernel):
  # PyTorch ConvTranspose2d(k=4, s=2, p=1) = convolution of the 2-dilated input with the spatially
  # flipped kernel and padding k-1-p = 2 on each side.
  return jax.lax.conv_general_dilated(
      x, kernel[::-1, ::-1], (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest")


def _torch_semantics_conv_transpose(x, kernel):
  """Direct definition: out[2i + k - 1] += x[i] * w[k] (numpy, loops over taps)."""
  x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
  n, h, w, _ = x.shape
  out = np.zeros((n, 2 * h + 2, 2 * w + 2, kernel.shape[-1]))
  for kh in range(4):
    for kw in range(4):
      out[:, kh:kh + 2 * h:2, kw:kw + 2 * w:2] += x @ kernel[kh, kw]
  return out[:, 1:-1, 1:-1]


def _assert_same_values_and_grads(ours, plain, x, kernel, rtol=1e-4, atol=1e-4):
  np.testing.assert_allclose(ours(x, kernel), plain(x, kernel), rtol=1e-5, atol=1e-5)
  loss = lambda f: (lambda x, k: jnp.sum(jnp.sin(f(x, k))))
  g_ours = jax.grad(loss(ours), argnums=(0, 1))(x, kernel)
  g_plain = jax.grad(loss(plain), argnums=(0, 1))(x, kernel)
  for a, b in zip(g_ours, g_plain):
    # A gradient entry sums hundreds of terms: its rounding error scales with the largest
    # entries, not with its own value (a Winograd form adds transforms' roundings to each term).
    np.testing.assert_allclose(a, b, rtol=rtol, atol=max(atol, 1e-5 * float(jnp.max(jnp.abs(b)))))


CONV_FORMS = {
    "lax": layers.conv4x4_lax,
    "im2col": layers.conv4x4_im2col,
    "shifts": layers.conv4x4_shifts,
    "winograd": lambda x, k, stride: layers.conv4x4_winograd(x, k),
    "winograd_s1": lambda x, k, stride: layers.conv4x4_s1_winograd(x, k),
    "dispatch": layers.conv4x4,
}


CONV_CASES = [(2, 8, 3, 5), (2, 16, 4, 8), (1, 8, 6, 3), (1, 5, 2, 1), (2, 2, 8, 8), (2, 7, 3, 2)]


@pytest.mark.parametrize("form,stride,hw,cin,cout", [
    (form, *case) for form in sorted(CONV_FORMS) for case in CONV_CASES
    # Winograd takes only stride 2 with H, W divisible by 4 (conv4x4 falls back otherwise);
    # the stride-1 Winograd only stride 1.
    if (form != "winograd" or (case[0] == 2 and case[1] % 4 == 0))
    and (form != "winograd_s1" or case[0] == 1)])
def test_conv4x4_forms_equal_plain_conv(form, stride, hw, cin, cout):
  key_x, key_k = jax.random.split(jax.random.key(0))
  x = jax.random.normal(key_x, (2, hw, hw, cin))
  kernel = 0.3 * jax.random.normal(key_k, (4, 4, cin, cout))
  _assert_same_values_and_grads(lambda x, k: CONV_FORMS[form](x, k, stride),
                                lambda x, k: _plain_conv(x, k, stride), x, kernel)


WINOGRAD_FORMS = {2: layers.conv4x4_winograd, 1: layers.conv4x4_s1_winograd}


@pytest.mark.parametrize("stride,n,h,w,cin,cout", [
    (2, 1, 4, 4, 2, 3), (2, 1, 12, 8, 5, 7), (2, 3, 8, 20, 16, 4), (2, 2, 16, 16, 32, 1),
    (1, 1, 2, 2, 3, 2), (1, 1, 4, 4, 2, 3), (1, 1, 9, 6, 5, 7), (1, 3, 7, 12, 16, 4),
    (1, 2, 16, 16, 32, 8), (1, 1, 33, 31, 8, 1)])
def test_winograd_batch_one_odd_and_non_square(stride, n, h, w, cin, cout):
  key_x, key_k = jax.random.split(jax.random.key(4 + stride))
  x = jax.random.normal(key_x, (n, h, w, cin))
  kernel = 0.3 * jax.random.normal(key_k, (4, 4, cin, cout))
  _assert_same_values_and_grads(WINOGRAD_FORMS[stride], lambda x, k: _plain_conv(x, k, stride),
                                x, kernel)


# Model-scale shapes, Winograd vs lax: (form, plain, input shape, kernel shape).
MODEL_SCALE_WINOGRAD = {
    "stride 2, a middle encoder level": (
        layers.conv4x4_winograd, lambda x, k: _plain_conv(x, k, 2), (1, 32, 32, 128),
        (4, 4, 128, 256)),
    "stride 1, the PatchGAN's conv_3 at 256 px": (
        layers.conv4x4_s1_winograd, lambda x, k: _plain_conv(x, k, 1), (1, 32, 32, 256),
        (4, 4, 256, 512)),
    "transposed, G's up_1 at 256 px": (
        layers.conv_transpose4x4_winograd, _plain_conv_transpose, (1, 64, 64, 256),
        (4, 4, 256, 64)),
}


@pytest.mark.parametrize("name", sorted(MODEL_SCALE_WINOGRAD))
def test_winograd_rounding_is_small_at_model_scale(name):
  # Values and both gradients within 1e-5 of the largest entry: float32 rounding, not an error.
  ours, plain, x_shape, kernel_shape = MODEL_SCALE_WINOGRAD[name]
  key_x, key_k, key_dy = jax.random.split(jax.random.key(7), 3)
  x = jax.random.normal(key_x, x_shape)
  kernel = 0.02 * jax.random.normal(key_k, kernel_shape)
  expected, vjp_plain = jax.vjp(plain, x, kernel)
  dy = jax.random.normal(key_dy, expected.shape)
  rel = lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
  got, vjp_ours = jax.vjp(ours, x, kernel)
  assert rel(got, expected) < 1e-5
  for a, b in zip(vjp_ours(dy), vjp_plain(dy)):
    assert rel(a, b) < 1e-5


@pytest.mark.parametrize("shape,kernel_shape,stride,dtype,expected", [
    ((4, 128, 128, 64), (4, 4, 64, 128), 2, jnp.float32, True),      # D conv_1 / G down_1
    ((1, 32, 32, 256), (4, 4, 256, 512), 2, jnp.float32, True),      # G down_3 at batch 1
    ((4, 256, 256, 3), (4, 4, 3, 64), 2, jnp.float32, False),        # too few input channels
    ((1, 16, 16, 512), (4, 4, 512, 512), 2, jnp.float32, False),     # fewer pixels than channels
    ((1, 32, 32, 256), (4, 4, 256, 512), 1, jnp.float32, True),      # D conv_3 (stride 1)
    ((1, 31, 31, 512), (4, 4, 512, 1), 1, jnp.float32, False),       # D conv_4: one channel
    ((1, 33, 33, 2), (4, 4, 2, 5), 1, jnp.float32, False),           # stride 1, few channels
    ((1, 32, 32, 256), (4, 4, 256, 512), 1, jnp.bfloat16, False),    # stride 1, float32 only
    ((1, 30, 32, 256), (4, 4, 256, 512), 2, jnp.float32, False),     # H not divisible by 4
    ((4, 128, 128, 64), (4, 4, 64, 128), 2, jnp.bfloat16, False),    # float32 only
])
def test_winograd_dispatch(shape, kernel_shape, stride, dtype, expected):
  assert layers.use_winograd(shape, kernel_shape, stride, dtype) == expected


@pytest.mark.parametrize("shape,kernel_shape,dtype,expected", [
    ((1, 64, 64, 256), (4, 4, 256, 64), jnp.float32, True),          # G up_1
    ((4, 16, 16, 1024), (4, 4, 1024, 256), jnp.float32, True),       # G up_3 at batch 4
    ((1, 16, 16, 1024), (4, 4, 1024, 256), jnp.float32, False),      # fewer pixels than channels
    ((1, 128, 128, 128), (4, 4, 128, 3), jnp.float32, False),        # G up_0: three channels
    ((2, 7, 8, 32), (4, 4, 32, 16), jnp.float32, False),             # H odd
    ((2, 8, 8, 8), (4, 4, 8, 16), jnp.float32, False),               # too few input channels
    ((1, 64, 64, 256), (4, 4, 256, 64), jnp.bfloat16, False),        # float32 only
])
def test_transposed_winograd_dispatch(shape, kernel_shape, dtype, expected):
  assert layers.use_winograd(shape, kernel_shape, 2, dtype, transposed=True) == expected


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
def test_conv4x4_module_equals_plain_conv(stride, n, hw, cin, cout):
  key_x, key_p = jax.random.split(jax.random.key(0))
  x = jax.random.normal(key_x, (n, hw, hw, cin))
  module = layers.Conv4x4(cout, strides=stride, use_bias=True)
  params = module.init(key_p, x)
  params = jax.tree.map(lambda p: p + 0.1, params)  # non-zero bias
  assert params["params"]["kernel"].shape == (4, 4, cin, cout)

  def ours(p, x):
    return module.apply(p, x)

  def plain(p, x):
    return _plain_conv(x, p["params"]["kernel"], stride) + p["params"]["bias"]

  np.testing.assert_allclose(ours(params, x), plain(params, x), rtol=1e-5, atol=1e-5)
  loss = lambda f: (lambda p, x: jnp.sum(jnp.sin(f(p, x))))
  g_ours = jax.grad(loss(ours), argnums=(0, 1))(params, x)
  g_plain = jax.grad(loss(plain), argnums=(0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


TRANSPOSE_FORMS = {
    "col2im": layers.conv_transpose4x4_col2im,
    "taps": layers.conv_transpose4x4_taps,
    "winograd": layers.conv_transpose4x4_winograd,
    "dispatch": layers.conv_transpose4x4,
}
TRANSPOSE_CASES = [(2, 1, 1, 8, 4), (2, 2, 2, 3, 5), (2, 4, 4, 4, 4), (2, 7, 7, 2, 3),
                   (1, 16, 16, 3, 6), (3, 2, 6, 5, 1), (1, 8, 4, 16, 7), (2, 6, 10, 32, 8)]


@pytest.mark.parametrize("form,n,h,w,cin,cout", [
    (form, *case) for form in sorted(TRANSPOSE_FORMS) for case in TRANSPOSE_CASES
    # The Winograd form takes even H and W only (conv_transpose4x4 falls back otherwise).
    if form != "winograd" or (case[1] % 2 == 0 and case[2] % 2 == 0)])
def test_conv_transpose4x4_forms_equal_plain_and_definition(form, n, h, w, cin, cout):
  key_x, key_k = jax.random.split(jax.random.key(1))
  x = jax.random.normal(key_x, (n, h, w, cin))
  kernel = 0.3 * jax.random.normal(key_k, (4, 4, cin, cout))
  ours = TRANSPOSE_FORMS[form]
  assert ours(x, kernel).shape == (n, 2 * h, 2 * w, cout)
  np.testing.assert_allclose(ours(x, kernel), _torch_semantics_conv_transpose(x, kernel),
                             rtol=1e-5, atol=1e-5)
  _assert_same_values_and_grads(ours, _plain_conv_transpose, x, kernel)


@pytest.mark.parametrize("n,hw,cin,cout", [(2, 16, 3, 5),   # 512 input pixels: col2im
                                           (1, 4, 4, 6),    # 16: tap-batched
                                           (1, 8, 16, 8),   # 16 channels, 64 pixels: Winograd
                                           (1, 4, 32, 8)])  # 16 pixels < 32 channels: taps
def test_conv_transpose4x4_module_equals_plain(n, hw, cin, cout):
  key_x, key_p = jax.random.split(jax.random.key(1))
  x = jax.random.normal(key_x, (n, hw, hw, cin))
  module = layers.ConvTranspose4x4(cout, use_bias=False)
  params = module.init(key_p, x)
  kernel = params["params"]["kernel"]
  assert kernel.shape == (4, 4, cin, cout)
  loss_ours = lambda k, x: jnp.sum(jnp.sin(module.apply({"params": {"kernel": k}}, x)))
  loss_plain = lambda k, x: jnp.sum(jnp.sin(_plain_conv_transpose(x, k)))
  np.testing.assert_allclose(module.apply(params, x), _plain_conv_transpose(x, kernel),
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


def test_unknown_norm_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown norm 'group'"):
    layers.norm_layer("group", jnp.float32, "n")
