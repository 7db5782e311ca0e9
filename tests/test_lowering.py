"""The training step lowered for other platforms on this CPU: XLA's convolutions on GPU/TPU.

`model.conv_impl="auto"` dispatches with `lax.platform_dependent`, so what a program runs is
decided when it is lowered: these tests lower the paper's full training step (unet_256 + the
70×70 PatchGAN, batch 1, 256 px) for `cuda`, `tpu` and `cpu` and read the StableHLO.
"""

import functools
import re

import jax
import jax.numpy as jnp
import pytest

from configs import facades
from pix2pix_jax import kernels, models, state as state_lib, train

# Convolutions in one paper training step when every conv layer is an XLA convolution:
#   G forward 16 (8 down + 8 up); G backward 16 kernel gradients + 15 input gradients (none
#   for the data); D update: 2 forward passes × 5, 2 × 5 kernel gradients, 2 × 4 input
#   gradients; G update through D: 5 forward + 5 input gradients (down to fake_B).
PAPER_STEP_CONVOLUTIONS = 16 + 16 + 15 + 10 + 10 + 8 + 5 + 5


def _count(text: str, op: str) -> int:
  return len(re.findall(rf"\bstablehlo\.{op}\b", text))


@functools.lru_cache(maxsize=None)
def _traced_step(conv_impl: str, compute_dtype: str = "float32"):
  config = facades.get_config()
  config.model.conv_impl = conv_impl
  dtype = jnp.bfloat16 if compute_dtype == "bfloat16" else jnp.float32
  generator = models.make_generator(config, dtype)
  discriminator = models.make_discriminator(config, dtype)
  g_tx, d_tx = (state_lib.make_optimizer(config, 400) for _ in range(2))
  abstract = jax.eval_shape(lambda: state_lib.create_train_state(
      config, generator, discriminator, g_tx, d_tx, (256, 256), 3, 3))
  batch = {k: jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32) for k in ("A", "B")}
  step = train.bind_train_step(config, generator, discriminator, g_tx, d_tx)
  with kernels.record_forms() as forms:
    traced = jax.jit(step).trace(abstract, batch)
  return traced, forms


@functools.lru_cache(maxsize=None)
def _lowered_text(conv_impl: str, platform: str, compute_dtype: str = "float32") -> str:
  traced, _ = _traced_step(conv_impl, compute_dtype)
  return traced.lower(lowering_platforms=(platform,)).as_text()


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_auto_lowers_to_plain_convolutions_for_accelerators(platform):
  text = _lowered_text("auto", platform)
  # Every conv layer, forward and backward, is one stablehlo.convolution ...
  assert _count(text, "convolution") == PAPER_STEP_CONVOLUTIONS
  # ... and nothing of the CPU forms is left: they are all matrix products (im2col, col2im,
  # tap-batched, Winograd), and the model itself has none.
  assert _count(text, "dot_general") == 0
  # The transposed convolutions are lhs-dilated convolutions, as nn.ConvTranspose emits.
  assert len(re.findall(r"lhs_dilate = \[2, 2\]", text)) >= 8


def test_auto_lowers_to_the_cpu_formulations_for_cpu():
  text = _lowered_text("auto", "cpu")
  assert _count(text, "dot_general") > 100  # im2col, col2im, Winograd's products, ...
  assert _count(text, "convolution") < PAPER_STEP_CONVOLUTIONS // 4  # only the lax-form layers
  tuned = _lowered_text("cpu_tuned", "cpu")
  for op in ("dot_general", "convolution"):
    assert _count(text, op) == _count(tuned, op)


def test_one_artifact_for_several_platforms_carries_each_form():
  traced, _ = _traced_step("auto")
  text = traced.lower(lowering_platforms=("cpu", "cuda")).as_text()
  # Both forms, behind a stablehlo.case on the platform index.
  assert _count(text, "convolution") >= PAPER_STEP_CONVOLUTIONS
  assert _count(text, "dot_general") > 100
  assert _count(text, "case") > 0


def test_xla_impl_lowers_to_plain_convolutions_everywhere():
  text = _lowered_text("xla", "cpu")
  assert _count(text, "convolution") == PAPER_STEP_CONVOLUTIONS
  assert _count(text, "dot_general") == 0


def test_cpu_tuned_impl_keeps_the_cpu_formulations_on_accelerators():
  text = _lowered_text("cpu_tuned", "cuda")
  assert _count(text, "dot_general") > 100


def test_bfloat16_on_an_accelerator_convolves_in_bfloat16_with_float32_parameters():
  text = _lowered_text("auto", "cuda", "bfloat16")
  convolutions = re.findall(r"stablehlo\.convolution\(.*", text)
  assert len(convolutions) == PAPER_STEP_CONVOLUTIONS
  assert all("bf16" in line for line in convolutions)
  assert _count(text, "dot_general") == 0
  # The train state (parameters, optimiser moments, statistics) stays float32: the main
  # function's arguments are all f32 or integer, none bf16.
  signature = re.search(r"func\.func public @main\((.*?)\)\s*->", text, re.S).group(1)
  assert "bf16" not in signature and "f32" in signature


def test_the_run_reports_which_forms_it_uses():
  _, forms = _traced_step("auto")
  cuda = kernels.describe(forms, "auto", "cuda")
  cpu = kernels.describe(forms, "auto", "cpu")
  assert "XLA's own convolutions" in cuda and "winograd" not in cuda
  assert "CPU formulations" in cpu and "winograd" in cpu
  # The D runs three times per step: 3 × 5 conv layers + 8 in G's encoder = 23.
  assert "23× conv4x4:xla" in cuda and "8× conv_transpose4x4:xla" in cuda
