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

from etils import epath

from pix2pix_jax import atomic, errors, image_metrics
from pix2pix_jax.pixels import to_uint8

EVAL_MODES = ("paper", "eval")


def generate(generator: nn.Module, g_params, g_batch_stats, images: jax.Array, key: jax.Array,
             mode: str = "paper") -> jax.Array:
  """G(images) in the chosen test-time mode (pure; jit it)."""
  if mode not in EVAL_MODES:
    raise errors.UsageError(f"eval mode must be one of {EVAL_MODES}, got {mode!r}")
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
             mode: str = "paper", on_outputs=None, on_batch=None) -> dict[str, Any]:
  """Mean and per-image L1 / PSNR / SSIM of G(A) against B over `batches`.

  `batches` yields {"A", "B", "name"} host batches (see `pipeline.eval_batches`). Dropout keys are
  fold_in(key(seed), batch index): the same call gives the same numbers. In paper mode the
  normalisation statistics are those of each batch, so the numbers depend on the batch size
  (the authors test at batch 1). `on_outputs(names, outputs)` receives each batch's generated
  images (e.g. to write them to disk); `on_batch(batch, outputs, metrics)` the whole host batch,
  the outputs and the per-image metrics as numpy arrays.
  """
  base = jax.random.key(seed)
  per_image: list[dict[str, Any]] = []
  for i, batch in enumerate(batches):
    fake, metrics = _eval_fn(generator, mode)(g_params, g_batch_stats, jnp.asarray(batch["A"]),
                                              jnp.asarray(batch["B"]),
                                              jax.random.fold_in(base, i))
    metrics = {k: np.asarray(v) for k, v in metrics.items()}
    names = [str(n) for n in batch["name"]]
    fake = np.asarray(fake)
    if on_outputs is not None:
      on_outputs(names, fake)
    if on_batch is not None:
      on_batch(batch, fake, metrics)
    for j, name in enumerate(names):
      per_image.append({"name": name, **{k: float(v[j]) for k, v in metrics.items()}})
  if not per_image:
    raise errors.InputError("the evaluation split is empty: it has no images")
  summary = {k: float(np.mean([r[k] for r in per_image])) for k in ("l1", "psnr", "ssim")}
  return {"mode": mode, "num_images": len(per_image), **summary, "per_image": per_image}


def write_json(result: dict, path: str | pathlib.Path) -> None:
  with atomic.atomic_path(path) as temporary:
    temporary.write_text(json.dumps(result, indent=1))


# ---------------------------------------------------------------------------- saved results

def save_png(path: str | pathlib.Path, image) -> None:
  """Writes one (H, W, C) image, floats in [-1, 1] or uint8, C in {1, 3}, as PNG."""
  from PIL import Image
  pixels = image if np.asarray(image).dtype == np.uint8 else to_uint8(image)
  pixels = np.asarray(pixels)
  if pixels.ndim == 3 and pixels.shape[-1] == 1:
    pixels = pixels[..., 0]
  with atomic.atomic_path(path) as temporary:
    Image.fromarray(pixels).save(temporary, format="PNG", compress_level=1)


def file_stem(name: str) -> str:
  """An example's name as a file name: its stem, without directories."""
  stem = pathlib.PurePath(str(name).replace("\\", "/")).stem
  return stem if stem and stem not in (".", "..") else "image"


def write_results_page(directory: str | pathlib.Path, result: dict[str, Any], *,
                       title: str, grid: str | None = None) -> pathlib.Path:
  """`directory/index.html`: one row per image, input | output | target and its metrics.

  Like the authors' test-time page (results/<name>/test_latest/index.html). Image links are
  relative: `inputs/NAME.png`, `NAME.png` (the output) and `targets/NAME.png`, as
  `commands.run_eval` writes them.
  """
  import html
  directory = epath.Path(directory)
  esc = html.escape
  rows = []
  for r in result["per_image"]:
    stem = esc(r["file"])
    cells = "".join(f'<td><a href="{src}"><img src="{src}" alt="{kind} {stem}"></a></td>'
                    for kind, src in (("input", f"inputs/{stem}.png"), ("output", f"{stem}.png"),
                                      ("target", f"targets/{stem}.png")))
    rows.append(f"<tr><th>{esc(r['name'])}</th>{cells}<td>{r['l1']:.4f}</td>"
                f"<td>{r['psnr']:.2f}</td><td>{r['ssim']:.4f}</td></tr>")
  notes = {
      "paper": "paper mode: dropout on and batch normalisation with the statistics of each test "
               f"batch (batch size {result.get('eval_batch_size', '?')}), as the paper and the "
               "authors' test.py; results depend on the batch size and the seed",
      "eval": "eval mode: running averages, no dropout",
  }
  summary = (f"<p>{result['num_images']} images · L1 {result['l1']:.4f} · PSNR "
             f"{result['psnr']:.2f} dB · SSIM {result['ssim']:.4f}<br>"
             f"{esc(notes.get(result['mode'], result['mode']))}</p>")
  grid_html = (f'<p><a href="{esc(grid)}"><img class="grid" src="{esc(grid)}" alt="samples">'
               "</a></p>" if grid else "")
  page = (
      '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
      f"<title>{esc(title)}</title><style>"
      "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
      "table{border-collapse:collapse;font-variant-numeric:tabular-nums}"
      "td,th{border:1px solid #ddd;padding:4px;text-align:right}"
      "td img{width:192px;height:auto;display:block}img.grid{max-width:100%}"
      f"</style></head><body><h1>{esc(title)}</h1>{summary}{grid_html}"
      "<table><thead><tr><th>name</th><th>input</th><th>output</th><th>target</th>"
      "<th>L1 ↓</th><th>PSNR dB ↑</th><th>SSIM ↑</th></tr></thead><tbody>"
      + "".join(rows) + "</tbody></table></body></html>\n")
  path = directory / "index.html"
  with atomic.atomic_path(path) as temporary:
    temporary.write_text(page, encoding="utf-8")
  return path
