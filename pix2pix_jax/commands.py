"""The test-time modes of `launch.py` (eval, translate, export, summary) and the dispatch.

`resolve_config` picks the config a launch runs with (the run's saved config unless one is
given); `run` calls the function `modes.MODES` names for the mode. Only `train` imports the
training loop.
"""

from __future__ import annotations

import inspect
import time
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from pix2pix_jax import config_check, errors, evaluate, inference, modes, storage



def resolve_config(mode: str, workdir: str, config=None,
                   step: int | None = None) -> ml_collections.ConfigDict:
  """The config a launch runs with.

  train: `config` when given (a new run, or a resume checked against the checkpoint's model);
  without it the run in `workdir` resumes with its saved config. Test-time modes: the run's
  saved config, with `config`'s test-time fields on top (`inference.run_config`); `summary` of
  a workdir without checkpoints describes `config`'s networks. The result is checked for
  `mode` (`config_check`: every problem at once, as `errors.ConfigError`). Reads files only (no
  JAX backend starts), so launch.py calls it before distributed start-up.
  """
  if mode not in modes.LAUNCH_MODES:
    raise errors.UsageError(f"unknown mode {mode!r}; choose one of {modes.LAUNCH_MODES}")
  if mode == "train" and config is None:
    try:
      config = inference.saved_config(workdir)
    except FileNotFoundError:
      raise errors.UsageError(
          f"--workdir {workdir} holds no run to resume (no checkpoints in "
          f"{storage.resolve(workdir, '--workdir') / 'checkpoints'}): pass --config to start "
          "one, e.g. "
          "--config configs/facades.py") from None
    logging.info("Resuming the run in %s with its saved config", workdir)
  elif mode != "train":
    try:
      config = inference.run_config(workdir, config, step)
    except FileNotFoundError:
      if mode != "summary" or config is None:
        raise
  config_check.check(config, mode=mode)
  return config


def run(mode: str, config, workdir: str, **options):
  """Runs one launch mode with a config from `resolve_config`; `options` are launch.py's flags,
  of which the mode's function receives those it takes."""
  function = modes.MODES[mode].function()
  accepted = inspect.signature(function).parameters
  return function(config, workdir, **{k: v for k, v in options.items() if k in accepted})


def run_eval(config, workdir: str, step: int | None = None, split: str | None = None
             ) -> dict[str, Any]:
  """L1 / PSNR / SSIM of a checkpoint on a split, with images, JSON and a results page.

  Writes, with NAME = `<split>_step<N>_<mode>`:
    WORKDIR/eval/NAME.json                      overall and per-image metrics
    WORKDIR/eval/NAME/<image>.png               the generated images
    WORKDIR/eval/NAME/{inputs,targets}/<image>.png, samples.png (grid with D heatmaps),
    WORKDIR/eval/NAME/index.html                input | output | target per image
  Returns the result dict (with the paths under "json_path", "images_dir", "page").
  """
  from pix2pix_jax import report
  from pix2pix_jax.data import pipeline
  split = split or config.data.eval_split
  if not split:
    raise errors.UsageError("no split to evaluate: pass --split=NAME or set "
                            "--config.data.eval_split=NAME")
  built, weights, step = inference.restore(config, workdir, step)
  source = pipeline.get_source(config, split)
  mode = config.eval_mode
  name = f"{split}_step{step}_{mode}"
  eval_dir = storage.resolve(workdir, "--workdir") / "eval"
  images_dir = eval_dir / name
  files: list[str] = []
  used: set[str] = set()
  grid: dict[str, list] = {"A": [], "B": [], "out": []}

  def on_batch(batch, outputs, metrics):
    del metrics
    for j, example_name in enumerate(batch["name"]):
      stem = evaluate.file_stem(example_name)
      k = 2
      while stem in used:  # distinct examples with the same stem keep distinct files
        stem = f"{evaluate.file_stem(example_name)}_{k}"
        k += 1
      used.add(stem)
      files.append(stem)
      evaluate.save_png(images_dir / f"{stem}.png", outputs[j])
      evaluate.save_png(images_dir / "inputs" / f"{stem}.png", batch["A"][j])
      evaluate.save_png(images_dir / "targets" / f"{stem}.png", batch["B"][j])
      if len(grid["A"]) < max(1, config.num_samples):
        grid["A"].append(batch["A"][j])
        grid["B"].append(batch["B"][j])
        grid["out"].append(outputs[j])

  t0 = time.perf_counter()
  # The authors' test.py: the first num_test files in their order (configs saved before
  # num_test existed evaluate the whole split, as then).
  batches = pipeline.eval_batches(config, source, config.eval_batch_size,
                                  limit=config.get("num_test", 0))
  result = evaluate.evaluate(built.generator, weights.g_params, weights.g_batch_stats, batches,
                             seed=config.seed, mode=mode, on_batch=on_batch)
  seconds = time.perf_counter() - t0
  for record, stem in zip(result["per_image"], files):
    record["file"] = stem
  result = {"split": split, "step": step, "mode": mode, "eval_batch_size": config.eval_batch_size,
            "seed": config.seed, "direction": config.data.direction,
            "image_size": list(pipeline.image_shape(config, source)),
            "seconds": round(seconds, 3), "environment": _environment_note(config, workdir, step),
            **{k: v for k, v in result.items() if k != "mode"}}

  # Sample grid with the discriminator's per-patch opinion, as the training samples.
  inputs, targets = np.stack(grid["A"]), np.stack(grid["B"])
  outputs = jnp.asarray(np.stack(grid["out"]))
  heat = evaluate.discriminator_probability(
      built.discriminator, weights.d_params, weights.d_batch_stats, jnp.asarray(inputs),
      outputs, config.loss.gan_mode, mode)
  report.save_sample_grid(images_dir / "samples.png", inputs, np.asarray(outputs), targets,
                          np.asarray(heat))
  json_path = eval_dir / f"{name}.json"
  evaluate.write_json(result, json_path)
  page = evaluate.write_results_page(
      images_dir, result, grid="samples.png",
      title=f"{eval_dir.parent.name} · {split} · step {step} · {mode} mode")
  result.update(json_path=str(json_path), images_dir=str(images_dir), page=str(page))

  lines = [f"{'image':<24} {'L1':>8} {'PSNR':>8} {'SSIM':>8}"]
  lines += [f"{r['name'][:24]:<24} {r['l1']:8.4f} {r['psnr']:8.2f} {r['ssim']:8.4f}"
            for r in result["per_image"]]
  lines.append(f"{'mean of ' + str(result['num_images']):<24} {result['l1']:8.4f} "
               f"{result['psnr']:8.2f} {result['ssim']:8.4f}")
  print("\n".join(lines))
  print(f"eval {split} @ step {step} ({mode} mode, batch {config.eval_batch_size}): "
        f"L1 {result['l1']:.4f}  PSNR {result['psnr']:.2f} dB  SSIM {result['ssim']:.4f}\n"
        f"metrics: {json_path}\nimages and page: {page}", flush=True)
  return result


def _environment_note(config, workdir: str, step: int) -> dict:
  """What made the checkpoint and what evaluates it: numbers may differ in the last bits
  where they differ (`provenance.differences`)."""
  from pix2pix_jax import checkpointing, provenance
  now = provenance.record(config)
  saved = checkpointing.read_saved_environment(
      storage.resolve(workdir, "--workdir") / "checkpoints", step)
  return {"checkpoint": saved, "now": now,
          "differences": None if saved is None else provenance.differences(saved, now)}


def run_translate(config, workdir: str, input_path: str, output: str,
                  step: int | None = None, *, aligned: bool = False,
                  resize: str = "crop_size") -> list[epath.Path]:
  """Translates an image file or a folder of images into OUTPUT/NAME.png."""
  if not input_path or not output:
    raise errors.UsageError("--mode=translate needs --input (an image or a folder) and "
                            "--output (a folder)")
  paths = inference.list_inputs(input_path)
  translator = inference.translator(config, workdir, step)
  written = translator.translate_files(paths, output, aligned=aligned, resize=resize)
  print(f"translated {len(written)} image(s) with checkpoint {translator.step} "
        f"({translator.mode} mode) into {storage.resolve(output, '--output')}", flush=True)
  return written


def run_export(config, workdir: str, output: str, step: int | None = None, *,
               export_format: str | None = None, with_discriminator: bool = False,
               eval_mode: str | None = None):
  """Writes the generator in the format --format or --output's ending names
  (`export.FORMATS`); returns what the format's writer returns. `eval_mode` is
  --config.eval_mode when the command line gives it: a format with a test-time mode of its own
  (the web page's is eval) takes it instead."""
  from pix2pix_jax import export
  if not output:
    raise errors.UsageError("--mode=export needs --output: the artifact's path, e.g. "
                            "--output=gen.jax or --output=gen.onnx (a folder for --format=pth)")
  chosen = export.format_of(output, export_format)
  writer = export.module(chosen.name).export
  takes = inspect.signature(writer).parameters
  options = {}
  if with_discriminator:
    if "with_discriminator" not in takes:
      raise errors.UsageError(f"--with_discriminator applies to --format=pth only (--format="
                              f"{chosen.name} exports the generator)")
    options["with_discriminator"] = True
  if eval_mode is not None and "eval_mode" in takes:
    options["eval_mode"] = eval_mode
  return writer(config, workdir, output, step, **options)


def run_summary(config, workdir: str, output: str | None = None) -> epath.Path:
  """Both networks layer by layer, the checkpoints, the latest evaluation and the config.

  Printed as Markdown and written to `output` (default WORKDIR/summary.md). Nothing is restored:
  the tables come from the networks' abstract shapes (`state.build`).
  """
  from pix2pix_jax import atomic, state as state_lib, summary
  workdir_path = storage.resolve(workdir, "--workdir")
  built = state_lib.build(config)
  weights = built.abstract_state
  m, (h, w) = config.model, state_lib.default_image_shape(config)
  g_text, _ = summary.network_section(
      f"Generator: {config.model.generator}, {m.input_nc} → {m.output_nc} channels",
      built.generator, {"params": weights.g_params, "batch_stats": weights.g_batch_stats},
      (1, h, w, m.input_nc))
  d_text, _ = summary.network_section(
      f"Discriminator: {config.model.discriminator}, {m.input_nc + m.output_nc} channels in "
      "(input and output image)",
      built.discriminator, {"params": weights.d_params, "batch_stats": weights.d_batch_stats},
      (1, h, w, m.input_nc + m.output_nc))
  text = "\n".join([f"# {workdir_path.name}", "", f"Run directory: {workdir_path}", "",
                    g_text, d_text, summary.checkpoints_section(workdir_path),
                    summary.evaluation_section(workdir_path),
                    summary.environment_section(workdir_path), summary.config_section(config)])
  path = storage.resolve(output, "--output") if output else workdir_path / "summary.md"
  with atomic.atomic_path(path) as temporary:
    temporary.write_text(text)
  print(text, flush=True)
  print(f"summary written to {path}", flush=True)
  return path
