"""Mixed precision: speed and quality of compute_dtype=bfloat16 against float32.

  python -m bench.mixed_precision [--config configs/quickstart.py] [--steps 300] [--json out.json]

Trains the same network from the same initial parameters on the same batches twice, in
lockstep — float32 compute and bfloat16 compute (parameters, Adam moments and BatchNorm
statistics stay float32 in both) — on one device of the default backend, and prints a Markdown
table: compile time,
seconds per step (median after warm-up), the training L1 of the last 10% of steps, and L1 /
PSNR / SSIM of the validation split. docs/scaling.md quotes the result for this repository's
CPU; on GPUs and TPUs with bfloat16 units expect a speed-up instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import platform as host_platform
import statistics
import time

import jax
import numpy as np

from bench.common import REPO
from pix2pix_jax import evaluate, loop, parallel, platform
from pix2pix_jax.data import pipeline


def load_config(path: str, batch_size: int):
  spec = importlib.util.spec_from_file_location("bench_config", REPO / path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  if batch_size:
    config.batch_size = batch_size
  return config


def build(config, dtype: str):
  config = config.copy_and_resolve_references()
  config.compute_dtype = dtype
  return config, loop.Experiment(config, num_train_examples=config.data.num_synthetic,
                                 mesh=parallel.make_mesh(jax.devices()[:1]))


def compare(config, steps: int, batches, eval_source, dtypes=("float32", "bfloat16")):
  """Trains one run per compute dtype from the same start on the same batches.

  The runs advance in lockstep (one step of each in turn), so that load from other processes
  on a shared machine affects both alike.
  """
  runs = {d: build(config, d) for d in dtypes}
  start = jax.device_get(runs[dtypes[0]][1].init_state())
  states, times, l1, first = {}, {d: [] for d in dtypes}, {d: [] for d in dtypes}, {}
  for d, (_, exp) in runs.items():
    t0 = time.perf_counter()
    state = jax.device_put(start, exp.state_sharding)
    state, metrics = exp.train_step(state, parallel.global_batch(batches[0], exp.batch_sharding))
    jax.block_until_ready(state)
    first[d] = time.perf_counter() - t0
    states[d] = state
    l1[d].append(float(metrics["g_l1"]))
  for i in range(1, steps):
    for d, (_, exp) in runs.items():
      batch = parallel.global_batch(batches[i % len(batches)], exp.batch_sharding)
      t0 = time.perf_counter()
      states[d], metrics = exp.train_step(states[d], batch)
      jax.block_until_ready(states[d])
      times[d].append(time.perf_counter() - t0)
      l1[d].append(float(metrics["g_l1"]))
  rows = []
  tail = max(1, steps // 10)
  for d, (cfg, exp) in runs.items():
    result = evaluate.evaluate(exp.generator, states[d].g_params, states[d].g_batch_stats,
                               pipeline.eval_batches(cfg, eval_source, cfg.eval_batch_size),
                               seed=cfg.seed, mode=cfg.eval_mode)
    rows.append({
        "compute_dtype": d,
        "first_step_s": first[d],  # compile + one step
        "s_per_step": statistics.median(times[d][len(times[d]) // 10:]),
        "train_l1": float(np.mean(l1[d][-tail:])) / cfg.loss.lambda_l1,
        "val_l1": result["l1"], "val_psnr": result["psnr"], "val_ssim": result["ssim"],
        "finite": bool(np.isfinite(l1[d]).all()),
    })
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/quickstart.py")
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--batch_size", type=int, default=0, help="0: the config's")
  parser.add_argument("--json", default="", help="also write the results here")
  args = parser.parse_args()

  platform.configure()
  config = load_config(args.config, args.batch_size)
  source = pipeline.get_source(config, config.data.train_split)
  eval_source = pipeline.get_source(config, config.data.eval_split)
  it = pipeline.make_train_iterator(config, source)
  batches = [{k: v for k, v in next(it).items() if k in ("A", "B")}
             for _ in range(min(args.steps, 100))]

  rows = compare(config, args.steps, batches, eval_source)
  for row in rows:
    print(json.dumps(row), flush=True)

  device = jax.devices()[0]
  print(f"\n{args.config}, batch {config.batch_size}, {args.steps} steps, "
        f"{device.device_kind} ({jax.default_backend()}, {host_platform.machine()}), jax "
        f"{jax.__version__}\n")
  print("| compute | compile + 1st step | s/step | train L1 (last 10%) | val L1 | val PSNR "
        "| val SSIM |")
  print("|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['compute_dtype']} | {r['first_step_s']:.1f} s | {r['s_per_step']:.3f} | "
          f"{r['train_l1']:.4f} | {r['val_l1']:.4f} | {r['val_psnr']:.2f} dB | "
          f"{r['val_ssim']:.3f} |")
  f32, bf16 = rows
  print(f"\nbfloat16 / float32 time per step: {bf16['s_per_step'] / f32['s_per_step']:.2f}×")
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
  from pix2pix_jax import cli
  raise SystemExit(cli.call(main))
