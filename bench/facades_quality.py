"""Quality on the real CMP facades: train a reduced pix2pix on train, evaluate on val.

  python -m bench.facades_quality [--workdir runs/facades_quality] [--steps 4000]
                                  [--crop_size 128] [--ngf 32] [--update_docs]

Trains `configs/facades.py` (label map → photo, BtoA, batch 1) at a reduced resolution and width
so that it fits in about 12 minutes of two CPU cores, then evaluates the final checkpoint on the
100 val images in both test-time modes (paper: dropout on + test-batch statistics at batch 1, as
the authors; eval: running averages, no dropout) and prints L1 / PSNR / SSIM. Relaunching with
the same workdir resumes training (or skips it when finished) and evaluates again.

Writes WORKDIR/quality.json (numbers, steps, sizes, times, machine) and, with --update_docs,
docs/facades_sample.png (input | output | target rows from val). The results are recorded by
hand in docs/results.md. Needs the facades: PIX2PIX_FACADES_DIR (see configs/facades.py).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import time

from bench.common import REPO, machine_line

# Val images shown in docs/facades_sample.png (file stems of the authors' facades val split; these
# numbers name the same buildings as in the authors' val split). Three rows keep it < 300 KB.
SAMPLE_NAMES = ("1", "5", "51")


def build_config(args):
  from configs import facades
  config = facades.get_config()
  if not config.data.manual_dir:
    raise SystemExit("error: no facades: set PIX2PIX_FACADES_DIR to the authors' facades folder "
                     "(train/, val/) or facades.tar.gz")
  d = config.data
  d.tfds_data_dir = os.path.abspath(args.tfds_data_dir)
  d.crop_size = args.crop_size
  d.load_size = round(args.crop_size * 286 / 256)  # the authors' 286/256 jitter ratio
  m = config.model
  m.generator = "unet_128" if args.crop_size == 128 else "unet_256" if args.crop_size == 256 \
      else "unet"
  m.num_downs = {64: 6, 32: 5}.get(args.crop_size, 8)
  m.ngf = args.ngf
  m.ndf = args.ngf
  # Linear decay over the second half of the run, as the paper's 100 + 100 epochs.
  epochs = max(2, math.ceil(args.steps / 400))  # facades train: 400 steps per epoch
  config.optim.n_epochs = epochs // 2
  config.optim.n_epochs_decay = epochs - epochs // 2
  config.num_train_steps = args.steps
  config.log_every_steps = 50
  config.sample_every_steps = 400
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 400
  config.eval_batch_size = 1  # the authors test at batch 1: paper-mode BN uses one image
  config.num_test = 0  # all 100 val images (not their test.py's first 50)
  config.tensorboard = True
  return config


def sample_figure(config, images_dir: str, out_png: str, names=SAMPLE_NAMES) -> list[str]:
  """label map | output | photo rows for the val images `names` from an eval's saved outputs."""
  import numpy as np
  from PIL import Image
  from pix2pix_jax import report
  from pix2pix_jax.data import pipeline
  source = pipeline.get_source(config, "val")
  transform = pipeline.Transform.from_config(config, train=False)
  wanted = {n: None for n in names}
  for i in range(len(source)):
    example = source[i]
    stem = pathlib.Path(str(example["name"])).stem
    if stem in wanted:
      wanted[stem] = transform(example, None)
  rows = [(n, ex) for n, ex in wanted.items() if ex is not None]
  if not rows:
    raise SystemExit(f"none of the sample images {names} is in the val split")
  outputs = []
  for name, _ in rows:
    pixels = np.asarray(Image.open(pathlib.Path(images_dir) / f"{name}.png"))
    outputs.append(pixels.astype(np.float32) / 127.5 - 1.0)
  report.save_sample_grid(out_png, np.stack([ex["A"] for _, ex in rows]), np.stack(outputs),
                          np.stack([ex["B"] for _, ex in rows]))
  print(f"sample image: {out_png} ({os.path.getsize(out_png) / 1024:.0f} KB), rows "
        f"{[n for n, _ in rows]}")
  return [n for n, _ in rows]


def evaluate_both_modes(config, workdir) -> dict[str, dict]:
  """The checkpoint's val metrics in paper and eval test-time modes (with seconds taken)."""
  from pix2pix_jax import commands
  results = {}
  for mode in ("paper", "eval"):
    config.unlock()
    config.eval_mode = mode
    config.lock()
    t0 = time.perf_counter()
    results[mode] = commands.run_eval(config, str(workdir), split="val")
    results[mode]["seconds"] = time.perf_counter() - t0
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default=str(REPO / "runs" / "facades_quality"))
  parser.add_argument("--tfds_data_dir", default=str(REPO / "runs" / "tfds"))
  parser.add_argument("--steps", type=int, default=4000, help="training steps at batch 1")
  parser.add_argument("--crop_size", type=int, default=128, choices=(32, 64, 128, 256))
  parser.add_argument("--ngf", type=int, default=32, help="G and D base width (paper: 64)")
  parser.add_argument("--update_docs", action="store_true",
                      help="write docs/facades_sample.png from this run")
  args = parser.parse_args()

  from absl import logging
  logging.set_verbosity(logging.INFO)
  logging.use_absl_handler()
  from pix2pix_jax import loop, models, platform
  platform.quiet_library_logs()
  config = build_config(args)
  platform.configure(config)
  workdir = pathlib.Path(args.workdir).absolute()
  timing_path = workdir / "train_time.json"

  t0 = time.perf_counter()
  summary = loop.train_and_evaluate(config, str(workdir))
  train_s = time.perf_counter() - t0
  # Time of the whole training, summed over launches when it was resumed.
  timings = json.loads(timing_path.read_text()) if timing_path.exists() else {}
  timings[str(summary["step"])] = timings.get(str(summary["step"]), 0.0) + train_s
  timing_path.write_text(json.dumps(timings))
  if summary["preempted"]:
    raise SystemExit(f"training stopped at step {summary['step']}; relaunch to resume")

  import jax
  from pix2pix_jax import inference  # after training: a long run need not wait
  results = evaluate_both_modes(config, workdir)

  translator = inference.load(str(workdir), config=config)
  g_params = models.count_params(translator.g_params)
  record = {
      "date": datetime.date.today().isoformat(),
      "machine": f"{machine_line('jax')}, {jax.default_backend()} backend",
      "steps": summary["step"],
      "epochs": summary["step"] / 400,
      "batch_size": config.batch_size,
      "resolution": config.data.crop_size,
      "load_size": config.data.load_size,
      "generator": f"{config.model.generator} (num_downs {translator.num_downs}), "
                   f"ngf {config.model.ngf}",
      "discriminator": f"{config.model.discriminator}, ndf {config.model.ndf}",
      "g_params": g_params,
      "train_seconds_total": sum(timings.values()),
      "eval": {m: {k: r[k] for k in ("l1", "psnr", "ssim", "num_images", "seconds",
                                     "json_path")} for m, r in results.items()},
      "page": results["paper"]["page"],
  }
  (workdir / "quality.json").write_text(json.dumps(record, indent=1))
  print(json.dumps(record, indent=1))
  print("\n| mode | L1 ↓ | PSNR dB ↑ | SSIM ↑ |\n|---|---|---|---|")
  for m, r in results.items():
    print(f"| {m} | {r['l1']:.4f} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
  if args.update_docs:
    sample_figure(config, results["paper"]["images_dir"],
                  str(REPO / "docs" / "facades_sample.png"))


if __name__ == "__main__":
  from pix2pix_jax import cli
  raise SystemExit(cli.call(main))
