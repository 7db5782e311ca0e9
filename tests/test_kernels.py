"""Every convolution form must equal XLA's plain convolution, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import plain_conv, plain_conv_transpose, torch_semantics_conv_transpose
from pix2pix_jax import kernels
from pix2pix_jax.kernels import cpu, winograd, xla

jax.config.update("jax_default_matmul_precision", "highest")


def _assert_same_values_and_grads(ours, plain, x, kernel, rtol=1e-4, atol=1e-4):
  expected = plain(x, kernel)
  # Outputs sum 16·Cin products: float32 rounding scales with the largest outputs.
  np.testing.assert_allclose(ours(x, kernel), expected, rtol=1e-5,
                             atol=max(1e-5, 2e-6 * float(jnp.max(jnp.abs(expected)))))
  loss = lambda f: (lambda x, k: jnp.sum(jnp.sin(f(x, k))))
  g_ours = jax.grad(loss(ours), argnums=(0, 1))(x, kernel)
  g_plain = jax.grad(loss(plain), argnums=(0, 1))(x, kernel)
  for a, b in zip(g_ours, g_plain):
    # A gradient entry sums hundreds of terms: its rounding error scales with the largest
    # entries, not with its own value (a Winograd form adds transforms' roundings to each term).
    np.testing.assert_allclose(a, b, rtol=rtol, atol=max(atol, 1e-5 * float(jnp.max(jnp.abs(b)))))


CONV_FORMS = {
    "lax": lambda x, k, stride: xla.conv(x, k, stride, 1),
    "im2col": cpu.conv4x4_im2col,
    "shifts": cpu.conv4x4_shifts,
    "winograd": lambda x, k, stride: winograd.conv4x4_winograd(x, k),
    "winograd_s1": lambda x, k, stride: winograd.conv4x4_s1_winograd(x, k),
    "dispatch": cpu.conv4x4,
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
                                lambda x, k: plain_conv(x, k, stride), x, kernel)


WINOGRAD_FORMS = {2: winograd.conv4x4_winograd, 1: winograd.conv4x4_s1_winograd}


@pytest.mark.parametrize("stride,n,h,w,cin,cout", [
    (2, 1, 4, 4, 2, 3), (2, 1, 12, 8, 5, 7), (2, 3, 8, 20, 16, 4), (2, 2, 16, 16, 32, 1),
    (1, 1, 2, 2, 3, 2), (1, 1, 4, 4, 2, 3), (1, 1, 9, 6, 5, 7), (1, 3, 7, 12, 16, 4),
    (1, 2, 16, 16, 32, 8), (1, 1, 33, 31, 8, 1)])
def test_winograd_batch_one_odd_and_non_square(stride, n, h, w, cin, cout):
  key_x, key_k = jax.random.split(jax.random.key(4 + stride))
  x = jax.random.normal(key_x, (n, h, w, cin))
  kernel = 0.3 * jax.random.normal(key_k, (4, 4, cin, cout))
  _assert_same_values_and_grads(WINOGRAD_FORMS[stride], lambda x, k: plain_conv(x, k, stride),
                                x, kernel)


# Model-scale shapes, Winograd vs lax: (form, plain, input shape, kernel shape).
MODEL_SCALE_WINOGRAD = {
    "stride 2, a middle encoder level": (
        winograd.conv4x4_winograd, lambda x, k: plain_conv(x, k, 2), (1, 32, 32, 128),
        (4, 4, 128, 256)),
    "stride 1, the PatchGAN's conv_3 at 256 px": (
        winograd.conv4x4_s1_winograd, lambda x, k: plain_conv(x, k, 1), (1, 32, 32, 256),
        (4, 4, 256, 512)),
    "transposed, G's up_1 at 256 px": (
        winograd.conv_transpose4x4_winograd, plain_conv_transpose, (1, 64, 64, 256),
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
  assert cpu.use_winograd(shape, kernel_shape, stride, dtype) == expected


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
  assert cpu.use_winograd(shape, kernel_shape, 2, dtype, transposed=True) == expected


TRANSPOSE_FORMS = {
    "col2im": cpu.conv_transpose4x4_col2im,
    "taps": cpu.conv_transpose4x4_taps,
    "winograd": winograd.conv_transpose4x4_winograd,
    "dispatch": cpu.conv_transpose4x4,
    "xla": lambda x, k: xla.conv_transpose(x, k, 2, 1),
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
  np.testing.assert_allclose(ours(x, kernel), torch_semantics_conv_transpose(x, kernel),
                             rtol=1e-5, atol=1e-5)
  _assert_same_values_and_grads(ours, plain_conv_transpose, x, kernel)


# ---- The impls (model.conv_impl): each equals XLA's convolution, values and gradients.

IMPL_CASES = [  # (stride, n, h, w, cin, cout): small odd shapes and every CPU form's regime
    (2, 2, 8, 8, 3, 5), (2, 1, 6, 10, 4, 1), (2, 2, 16, 16, 16, 8), (1, 1, 7, 9, 2, 3),
    (1, 1, 9, 9, 16, 8), (2, 1, 32, 32, 64, 128)]


@pytest.mark.parametrize("impl", kernels.CONV_IMPLS)
@pytest.mark.parametrize("stride,n,h,w,cin,cout", IMPL_CASES)
def test_every_impl_equals_xla_conv4x4(impl, stride, n, h, w, cin, cout):
  key_x, key_k = jax.random.split(jax.random.key(11))
  x = jax.random.normal(key_x, (n, h, w, cin))
  kernel = 0.3 * jax.random.normal(key_k, (4, 4, cin, cout))
  _assert_same_values_and_grads(lambda x, k: kernels.conv4x4(x, k, stride, impl),
                                lambda x, k: plain_conv(x, k, stride), x, kernel)


@pytest.mark.parametrize("impl", kernels.CONV_IMPLS)
@pytest.mark.parametrize("n,h,w,cin,cout", [(1, 3, 5, 2, 3), (2, 8, 8, 16, 8), (1, 4, 4, 32, 8),
                                            (1, 16, 16, 64, 3)])
def test_every_impl_equals_xla_conv_transpose4x4(impl, n, h, w, cin, cout):
  key_x, key_k = jax.random.split(jax.random.key(12))
  x = jax.random.normal(key_x, (n, h, w, cin))
  kernel = 0.3 * jax.random.normal(key_k, (4, 4, cin, cout))
  np.testing.assert_allclose(kernels.conv_transpose4x4(x, kernel, impl),
                             torch_semantics_conv_transpose(x, kernel), rtol=1e-5, atol=1e-5)
  _assert_same_values_and_grads(lambda x, k: kernels.conv_transpose4x4(x, k, impl),
                                plain_conv_transpose, x, kernel)


@pytest.mark.parametrize("impl", kernels.CONV_IMPLS)
def test_every_impl_equals_xla_resnet_layers(impl):
  key_x, key_k, key_t = jax.random.split(jax.random.key(13), 3)
  x = jax.random.normal(key_x, (2, 10, 12, 5))
  for k, stride, padding in ((3, 2, 1), (3, 1, 0), (7, 1, 0)):
    kernel = 0.3 * jax.random.normal(key_k, (k, k, 5, 4))
    plain = lambda x, w: jax.lax.conv_general_dilated(
        x, w, (stride, stride), ((padding, padding),) * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest")
    _assert_same_values_and_grads(lambda x, w: kernels.conv(x, w, stride, padding, impl),
                                  plain, x, kernel)
  kernel = 0.3 * jax.random.normal(key_t, (3, 3, 5, 4))
  np.testing.assert_allclose(kernels.conv_transpose3x3(x, kernel, impl),
                             torch_semantics_conv_transpose(x, kernel), rtol=1e-5, atol=1e-5)
  _assert_same_values_and_grads(lambda x, w: kernels.conv_transpose3x3(x, w, impl),
                                lambda x, w: kernels.conv_transpose3x3(x, w, "xla"), x, kernel)


@pytest.mark.parametrize("impl", ["auto", "cpu_tuned"])
def test_model_scale_impls_equal_xla(impl):
  # G's down_2 and up_2 at 256 px, batch 1: values and gradients within float32 rounding.
  key_x, key_k, key_dy = jax.random.split(jax.random.key(14), 3)
  rel = lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
  for fn, x_shape, k_shape in (
      (lambda impl: lambda x, k: kernels.conv4x4(x, k, 2, impl), (1, 64, 64, 128),
       (4, 4, 128, 256)),
      (lambda impl: lambda x, k: kernels.conv_transpose4x4(x, k, impl), (1, 32, 32, 512),
       (4, 4, 512, 128))):
    x = jax.random.normal(key_x, x_shape)
    kernel = 0.02 * jax.random.normal(key_k, k_shape)
    expected, vjp_xla = jax.vjp(fn("xla"), x, kernel)
    got, vjp_ours = jax.vjp(fn(impl), x, kernel)
    dy = jax.random.normal(key_dy, expected.shape)
    assert rel(got, expected) < 1e-5
    for a, b in zip(vjp_ours(dy), vjp_xla(dy)):
      assert rel(a, b) < 1e-5


def test_unknown_impl_names_the_config_field():
  with pytest.raises(ValueError, match=r"model.conv_impl 'fast'.*auto"):
    kernels.conv4x4(jnp.ones((1, 8, 8, 3)), jnp.ones((4, 4, 3, 8)), 2, "fast")


def test_symbolic_sizes_take_the_forms_of_their_smallest_value():
  """An exported generator's any-batch, any-size input: every layer of the paper's U-Net picks,
  for b × 256h × 256w, the form it picks for one 256×256 image (a Winograd form only where the
  divisibility it needs holds for every size)."""
  b, h, w = jax.export.symbolic_shape("b, h, w")
  assert cpu.at_least(b * h, 1) and not cpu.at_least(b * h, 2) and cpu.at_least(4, 2)
  widths = [64, 128, 256, 512, 512, 512, 512, 512]
  for i, cin in enumerate([3] + widths[:-1]):
    side = 256 // 2**i
    kernel = (4, 4, cin, widths[i])
    assert (cpu.conv4x4_form((b, side * h, side * w, cin), kernel, 2)
            == cpu.conv4x4_form((1, side, side, cin), kernel, 2)), f"down_{i}"
    # up_i takes down_i's output size, with the skip concatenated below the innermost level.
    t_kernel = (4, 4, widths[i] * (1 if i == 7 else 2), widths[i - 1] if i else 3)
    t_side = side // 2
    assert (cpu.conv_transpose4x4_form((b, t_side * h, t_side * w, t_kernel[2]), t_kernel)
            == cpu.conv_transpose4x4_form((1, t_side, t_side, t_kernel[2]), t_kernel)), f"up_{i}"
  # 2·h is even for every h but a multiple of 4 only for even h: no stride-2 Winograd there.
  assert cpu.conv4x4_form((1, 2 * h, 2 * w, 512), (4, 4, 512, 512), 2) == "im2col"
