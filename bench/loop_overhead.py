"""What the training loop adds to the step: the bare jitted step against the whole loop.

  python -m bench.loop_overhead [--rounds 4] [--steps-scale 1] [--write]

A CPU stand-in for an accelerator's short steps. For each config it times, in windows of 50
steps (each ended by one wait for the devices, as the loop's log steps end),
* the bare step: `loop.Experiment`'s compiled train step on one fixed batch already on the
  device, dispatched back to back;
* the loop: `loop.train_and_evaluate` as `launch.py` runs it (the input pipeline from the
  source, the batches handed to the step, metrics, logging every 50 steps to metrics.jsonl and
  TensorBoard), its windows read from the logged rates, but for the first (the start-up);
and takes the median window of each run, so that a few seconds of another job on this shared
machine do not decide the result. Rounds alternate bare, loop, loop, bare, ...; the table gives
the per-step times and their ratio as ranges over the rounds, and the ratio's median.
Configs: a model whose bare step takes under 5 ms here (32-px synthetic facades, a 5-level U-Net
of width 8, batch 2) and the quickstart (64 px, batch 4). Samples, evaluation and checkpoints
are off but for the final checkpoint. `--write` puts the table into docs/benchmarks.md (section
"Loop overhead").
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import tempfile
import time

from bench.common import machine_line, write_section
from configs import quickstart

LOG_EVERY = 50


def small_config():
  """A model whose bare step takes under 5 ms on two CPU cores."""
  config = quickstart.get_config()
  config.data.load_size, config.data.crop_size = 36, 32
  config.model.num_downs, config.model.ngf, config.model.ndf = 5, 8, 8
  config.batch_size = 2
  return config


# config name: (config, steps timed); about 10 s (the small model) and 25 s of steps here, so
# that a measurement outlasts this machine's short swings in speed.
CONFIGS = {"≤ 5-ms step (32 px, width 8, batch 2)": (small_config, 3000),
           "quickstart (64 px, width 32, batch 4)": (quickstart.get_config, 300)}


def _loop_config(config, steps: int):
  config.num_train_steps = steps
  config.log_every_steps = LOG_EVERY
  config.sample_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 0
  config.data.eval_split = ""
  return config


def bare_step_ms(make_config, steps: int) -> float:
  import jax
  from pix2pix_jax import loop, parallel
  from pix2pix_jax.data import pipeline
  config = make_config()
  source = pipeline.get_source(config, config.data.train_split)
  experiment = loop.Experiment(config, len(source), train_source=source)
  step = experiment.compile_train_step()
  state = experiment.init_state()
  local = next(pipeline.make_train_iterator(config, source))
  batch = parallel.global_batch(local, experiment.batch_sharding)
  for _ in range(20):
    state, metrics = step(state, batch)
  jax.block_until_ready(state)
  windows = []
  for _ in range(steps // LOG_EVERY):
    start = time.perf_counter()
    for _ in range(LOG_EVERY):
      state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    windows.append(1e3 * (time.perf_counter() - start) / LOG_EVERY)
  return statistics.median(windows)


def loop_step_ms(make_config, steps: int) -> float:
  from pix2pix_jax import loop
  total = steps + LOG_EVERY  # the first window holds the start-up and is left out
  with tempfile.TemporaryDirectory() as workdir:
    loop.train_and_evaluate(_loop_config(make_config(), total), workdir)
    records = [json.loads(line) for line in (pathlib.Path(workdir) / "metrics.jsonl").open()]
  windows = [r for r in records if r["kind"] == "train"][1:]
  return statistics.median(1e3 / r["steps_per_sec"] for r in windows)


def _range(values: list[float], digits: int = 2) -> str:
  return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--steps-scale", type=float, default=1.0,
                      help="multiplies every config's number of timed steps")
  parser.add_argument("--write", action="store_true")
  args = parser.parse_args()
  from absl import logging
  from pix2pix_jax import platform
  platform.configure()
  logging.set_verbosity(logging.WARNING)

  results = {name: {"bare": [], "loop": []} for name in CONFIGS}
  for round_index in range(args.rounds):
    order = ("bare", "loop") if round_index % 2 == 0 else ("loop", "bare")
    for name, (make_config, steps) in CONFIGS.items():
      steps = max(LOG_EVERY, round(steps * args.steps_scale / LOG_EVERY) * LOG_EVERY)
      for kind in order:
        measure = bare_step_ms if kind == "bare" else loop_step_ms
        results[name][kind].append(measure(make_config, steps))
        print(f"round {round_index + 1}, {name}, {kind}: {results[name][kind][-1]:.2f} ms/step",
              flush=True)

  scale = f" --steps-scale {args.steps_scale:g}" if args.steps_scale != 1 else ""
  lines = [f"Machine: {machine_line('jax', 'flax')}. `python -m bench.loop_overhead --rounds "
           f"{args.rounds}{scale}`: ms per step, ranges over the rounds.", "",
           "| config | bare step | whole loop | loop ÷ bare | median |",
           "|---|---:|---:|---:|---:|"]
  for name, r in results.items():
    ratios = [loop / bare for loop, bare in zip(r["loop"], r["bare"])]
    lines.append(f"| {name} | {_range(r['bare'])} ms | {_range(r['loop'])} ms | "
                 f"{_range(ratios, 3)} | {statistics.median(ratios):.3f} |")
  text = "\n".join(lines)
  print(text)
  if args.write:
    write_section("Loop overhead", text)


if __name__ == "__main__":
  main()
