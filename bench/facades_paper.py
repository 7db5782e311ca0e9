"""The paper's model on the real CMP facades, trained for a wall-clock budget, then evaluated.

  python -m bench.facades_paper --hours 2 [--sec_per_step 0.55] [--workdir runs/facades_paper]

Trains `configs/facades.py` unchanged in architecture and data (unet_256, 70×70 PatchGAN,
256 px, batch 1, resize 286 + random crop 256 + flip, label map → photo) for the number of
steps that fits the budget at `--sec_per_step` (or exactly `--steps`), rounded to whole epochs,
with the paper's schedule compressed in its proportions: half the epochs at constant lr, half
in linear decay (the paper: 100 + 100). It evaluates on val in paper mode at
`--eval_points` evenly spaced steps during training, then the final checkpoint in both
test-time modes, writes the results page, WORKDIR/paper_run.json (plan, times, numbers) and
WORKDIR/samples_256.png (label map | ours | photo for eight val images).

Background-friendly: start it with `nice -n 19`; rerunning with the same workdir resumes the
run (a larger `--hours` / `--steps` extends it: the plan is recomputed, so the lr of steps still
to come follows the new length). The facades are read from `--facades_dir` or the
PIX2PIX_FACADES_DIR variable (the authors' `facades/` folder with train/ and val/, or their
tarball).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import time

from bench.common import REPO, machine_line
from bench.facades_quality import evaluate_both_modes, sample_figure

STEPS_PER_EPOCH = 400  # facades train: 400 images at batch 1
# Val images shown in samples_256.png (file stems of the authors' val split).
SAMPLE_NAMES = ("1", "5", "12", "27", "51", "63", "78", "94")


def plan(args) -> dict:
  """Steps, epochs and the compressed 100 + 100 schedule for the budget."""
  steps = args.steps or int(args.hours * 3600 / args.sec_per_step)
  epochs = max(2, round(steps / STEPS_PER_EPOCH))
  n_epochs = epochs // 2
  return {"steps": epochs * STEPS_PER_EPOCH, "epochs": epochs, "n_epochs": n_epochs,
          "n_epochs_decay": epochs - n_epochs,
          "hours": None if args.steps else args.hours,
          "sec_per_step": None if args.steps else args.sec_per_step}


def build_config(args, run_plan: dict):
  from configs import facades
  config = facades.get_config()
  config.data.manual_dir = args.facades_dir or config.data.manual_dir
  if not config.data.manual_dir:
    raise SystemExit("error: no facades: pass --facades_dir DIR or set PIX2PIX_FACADES_DIR to "
                     "the authors' facades folder (train/, val/) or facades.tar.gz")
  config.data.tfds_data_dir = os.path.abspath(args.tfds_data_dir)
  config.optim.n_epochs = run_plan["n_epochs"]
  config.optim.n_epochs_decay = run_plan["n_epochs_decay"]
  config.num_train_steps = run_plan["steps"]
  every = max(STEPS_PER_EPOCH, run_plan["steps"] // args.eval_points)
  config.log_every_steps = 100
  config.sample_every_steps = every
  config.eval_every_steps = every
  config.checkpoint_every_steps = 1000
  config.eval_batch_size = 1  # the authors test at batch 1 (paper mode: one image's statistics)
  config.num_test = 0  # all 100 val images (not their test.py's first 50)
  config.eval_mode = "paper"
  return config


def logged_history(workdir: pathlib.Path) -> dict:
  """From metrics.jsonl (`plots.read_metrics`, robust to resumed runs): the val evaluations
  during training, and the wall time and mean seconds per step of the logged intervals."""
  from pix2pix_jax import plots
  train, evals = plots.read_metrics(workdir)
  seconds, previous = 0.0, 0
  for r in train:
    seconds += (r["step"] - previous) / r["steps_per_sec"]
    previous = r["step"]
  return {"logged_train_seconds": seconds,
          "sec_per_step": seconds / previous if previous else None,
          "eval_during_training": [{k: r[k] for k in ("step", "l1", "psnr", "ssim")}
                                   for r in evals]}


def results_markdown(record: dict) -> str:
  """The run's numbers as Markdown for docs/results.md: plan, times, evaluations, final."""
  launches = record["launches"]
  active = sum(l["seconds"] for l in launches)
  lines = [
      "| | |", "|---|---|",
      f"| date | {record['date']} |",
      f"| machine | {record['machine']} |",
      f"| training | {record['steps']:,} steps at batch 1 = {record['epochs']:g} epochs "
      f"({record['plan']['n_epochs']} at lr 2e-4, {record['plan']['n_epochs_decay']} of linear "
      "decay to 0, the paper's 100 + 100 compressed) |",
      f"| wall time | {active / 3600:.2f} h "
      + (f"over {len(launches)} launches (resumed each time from its checkpoint)"
         if len(launches) > 1 else "in one launch")
      + f" including evaluations; {record['logged_train_seconds'] / 3600:.2f} h in logged training "
      f"intervals: {record['sec_per_step']:.2f} s/step on average |",
      "", "| step | epoch | L1 ↓ | PSNR dB ↑ | SSIM ↑ |", "|---|---|---|---|---|"]
  lines += [f"| {r['step']:,} | {r['step'] / STEPS_PER_EPOCH:.1f} | {r['l1']:.4f} | "
            f"{r['psnr']:.2f} | {r['ssim']:.4f} |" for r in record["eval_during_training"]]
  for mode, r in record["final"].items():
    lines.append(f"| **{record['steps']:,}, final, {mode} mode** | {record['epochs']:g} | "
                 f"**{r['l1']:.4f}** | **{r['psnr']:.2f}** | **{r['ssim']:.4f}** |")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default=str(REPO / "runs" / "facades_paper"))
  parser.add_argument("--tfds_data_dir", default=str(REPO / "runs" / "tfds"))
  parser.add_argument("--facades_dir", default="",
                      help="the authors' facades folder or tarball (default: PIX2PIX_FACADES_DIR)")
  parser.add_argument("--hours", type=float, default=2.0, help="training budget (wall clock)")
  parser.add_argument("--sec_per_step", type=float, default=0.55,
                      help="expected seconds per step on this machine, to turn hours into steps")
  parser.add_argument("--steps", type=int, default=0, help="exact steps (overrides --hours)")
  parser.add_argument("--eval_points", type=int, default=6, help="val evaluations in training")
  parser.add_argument("--report_only", action="store_true",
                      help="print the Markdown of a finished run's paper_run.json and exit")
  args = parser.parse_args()
  if args.report_only:
    record = json.loads((pathlib.Path(args.workdir) / "paper_run.json").read_text())
    print(results_markdown(record))
    return

  from absl import logging
  logging.set_verbosity(logging.INFO)
  logging.use_absl_handler()
  from pix2pix_jax import loop, platform
  platform.quiet_library_logs()
  workdir = pathlib.Path(args.workdir).absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  run_plan = plan(args)
  config = build_config(args, run_plan)
  platform.configure(config)
  record_path = workdir / "paper_run.json"
  record = json.loads(record_path.read_text()) if record_path.exists() else {"launches": []}
  record["plan"] = run_plan
  print(f"plan: {run_plan}", flush=True)

  t0 = time.time()
  summary = loop.train_and_evaluate(config, str(workdir))
  record["launches"].append({"start": datetime.datetime.fromtimestamp(t0).isoformat(" ", "seconds"),
                             "seconds": time.time() - t0, "end_step": summary["step"]})
  record_path.write_text(json.dumps(record, indent=1))
  if summary["preempted"]:
    raise SystemExit(f"training stopped at step {summary['step']}; rerun to resume")

  import jax
  results = evaluate_both_modes(config, workdir)
  final = {mode: {k: r[k] for k in ("l1", "psnr", "ssim", "num_images", "json_path", "seconds")}
           for mode, r in results.items()}
  page, images_dir = results["paper"]["page"], results["paper"]["images_dir"]
  names = sample_figure(config, images_dir, str(workdir / "samples_256.png"), SAMPLE_NAMES)
  record.update({
      "date": datetime.date.today().isoformat(),
      "machine": f"{machine_line('jax')}, {jax.default_backend()} backend",
      "steps": summary["step"],
      "epochs": summary["step"] / STEPS_PER_EPOCH,
      "wall_seconds": sum(l["seconds"] for l in record["launches"]),
      **logged_history(workdir),
      "final": final,
      "page": page,
      "samples": {"png": str(workdir / "samples_256.png"), "names": names},
  })
  record_path.write_text(json.dumps(record, indent=1))
  print(json.dumps(record, indent=1))
  print(results_markdown(record))


if __name__ == "__main__":
  from pix2pix_jax import cli
  raise SystemExit(cli.call(main))
