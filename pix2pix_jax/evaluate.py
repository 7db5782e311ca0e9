"""Test-time generation and evaluation (L1, PSNR, SSIM) over a split.

Two test-time behaviours:
* "paper" (default): the paper's section 3.3 and the authors' test.py without --eval: dropout
  stays on and batch normalisation uses the statistics of the test batch. The running averages
  are left untouched.
* "eval": the conventional inference mode — running averages, no dropout.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax import image_metrics

EVAL_MODES = ("paper", "eval")


def generate(generator: nn.Module, g_params, g_batch_stats, images: jax.Array, key: jax.Array,
             mode: str = "paper") -> jax.Array:
  """G(images) in the chosen test-time mode (pure; jit it)."""
  if mode not in EVAL_MODES:
    raise ValueError(f"eval mode must be one of {EVAL_MODES}, got {mode!r}")
  variables = {"params": g_params, "batch_stats": g_batch_stats}
  if mode == "eval":
    return generator.apply(variables, images, train=False)
  fake, _ = generator.apply(variables, images, train=True, rngs={"dropout": key},
                            mutable=["batch_stats"])  # updated statistics are discarded
  return fake


def discriminator_probability(discriminator: nn.Module, d_params, d_batch_stats,
                              inputs: jax.Array, outputs: jax.Array, gan_mode: str,
                              mode: str = "paper") -> jax.Array:
  """Per-patch probability that (input, output) is real: the PatchGAN heatmap, (N, h, w)."""
  variables = {"params": d_params, "batch_stats": d_batch_stats}
  pair = jnp.concatenate([inputs, outputs], axis=-1)
  if mode == "eval":
    logits = discriminator.apply(variables, pair, train=False)
  else:
    logits, _ = discriminator.apply(variables, pair, train=True, mutable=["batch_stats"])
  if gan_mode == "lsgan":  # least-squares outputs aim at 1 (real) and 0 (fake)
    return jnp.clip(logits, 0.0, 1.0)
  return jax.nn.sigmoid(logits)


def make_sample_fn(generator, discriminator, gan_mode: str, mode: str):
  """jit-ed (state, inputs, key) → (outputs, heatmaps)."""

  @jax.jit
  def sample(state, inputs, key):
    outputs = generate(generator, state.g_params, state.g_batch_stats, inputs, key, mode)
    heat = discriminator_probability(discriminator, state.d_params, state.d_batch_stats,
                                     inputs, outputs, gan_mode, mode)
    return outputs, heat

  return sample


@functools.lru_cache(maxsize=8)
def _eval_fn(generator, mode):

  @jax.jit
  def eval_batch(g_params, g_batch_stats, inputs, targets, key):
    fake = generate(generator, g_params, g_batch_stats, inputs, key, mode)
    return fake, {
        "l1": image_metrics.l1(fake, targets),
        "psnr": image_metrics.psnr(fake, targets),
        "ssim": image_metrics.ssim(fake, targets),
    }

  return eval_batch


def evaluate(generator: nn.Module, g_params, g_batch_stats, batches, *, seed: int,
             mode: str = "paper", on_outputs=None) -> dict[str, Any]:
  """Mean and per-image L1 / PSNR / SSIM of G(A) against B over `batches`.

  `batches` yields {"A", "B", "name"} host batches (see `pipeline.eval_batches`). Dropout keys are
  fold_in(key(seed), batch index): the same call gives the same numbers. `on_outputs(names,
  outputs)` receives each batch's generated images (e.g. to write them to disk).
  """
  base = jax.random.key(seed)
  per_image: list[dict[str, Any]] = []
  for i, batch in enumerate(batches):
    fake, metrics = _eval_fn(generator, mode)(g_params, g_batch_stats, jnp.asarray(batch["A"]),
                                              jnp.asarray(batch["B"]),
                                              jax.random.fold_in(base, i))
    metrics = {k: np.asarray(v) for k, v in metrics.items()}
    names = [str(n) for n in batch["name"]]
    if on_outputs is not None:
      on_outputs(names, np.asarray(fake))
    for j, name in enumerate(names):
      per_image.append({"name": name, **{k: float(v[j]) for k, v in metrics.items()}})
  if not per_image:
    raise ValueError("evaluation split is empty")
  summary = {k: float(np.mean([r[k] for r in per_image])) for k in ("l1", "psnr", "ssim")}
  return {"mode": mode, "num_images": len(per_image), **summary, "per_image": per_image}


def write_json(result: dict, path: str | pathlib.Path) -> None:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(result, indent=1))
  tmp.replace(path)
