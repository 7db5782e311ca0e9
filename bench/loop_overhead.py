"""What the training loop adds to the step: the bare jitted step against the whole loop.

  python -m bench.loop_overhead [--steps 400] [--rounds 2] [--write]

A CPU stand-in for an accelerator's short steps. For each config it times
* the bare step: `loop.Experiment`'s compiled train step on one fixed batch already on the
  device, `--steps` steps dispatched back to back, one wait at the end;
* the loop: `loop.train_and_evaluate` as `launch.py` runs it (the input pipeline from the
  source, batches placed on the devices one step ahead, the step, metrics, logging every 50
  steps to metrics.jsonl and TensorBoard), its rate from the logged windows after the first
  (the first holds the start-up);
in rounds alternating bare, loop, loop, bare, ... so that both see the same machine load, and
prints the per-step times and their ratio as ranges over the rounds. Configs: a model whose
bare step takes about 5 ms here (32-px synthetic facades, a 5-level U-Net of width 8, batch 4)
and the quickstart (64 px, batch 4). Samples, evaluation and checkpoints are off but for the
final checkpoint. `--write` puts the table into docs/benchmarks.md (section "Loop overhead").
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

from bench.common import machine_line, write_section
from configs import quickstart

LOG_EVERY = 50


def small_config():
  """A model whose bare step takes about 5 ms on two CPU cores."""
  config = quickstart.get_config()
  config.data.load_size, config.data.crop_size = 36, 32
  config.model.num_downs, config.model.ngf, config.model.ndf = 5, 8, 8
  return config


CONFIGS = {"5-ms step (32 px, width 8, batch 4)": small_config,
           "quickstart (64 px, width 32, batch 4)": quickstart.get_config}


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
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  return 1e3 * (time.perf_counter() - start) / steps


def loop_step_ms(make_config, steps: int) -> float:
  from pix2pix_jax import loop
  total = steps + LOG_EVERY  # the first window holds the start-up and is left out
  with tempfile.TemporaryDirectory() as workdir:
    loop.train_and_evaluate(_loop_config(make_config(), total), workdir)
    records = [json.loads(line) for line in (pathlib.Path(workdir) / "metrics.jsonl").open()]
  windows = [r for r in records if r["kind"] == "train"][1:]
  counted = sum(LOG_EVERY for _ in windows)
  seconds = sum(LOG_EVERY / r["steps_per_sec"] for r in windows)
  return 1e3 * seconds / counted


def _range(values: list[float], digits: int = 2) -> str:
  return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=400)
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--write", action="store_true")
  args = parser.parse_args()
  from absl import logging
  from pix2pix_jax import platform
  platform.configure()
  logging.set_verbosity(logging.WARNING)

  results = {name: {"bare": [], "loop": []} for name in CONFIGS}
  for round_index in range(args.rounds):
    order = ("bare", "loop") if round_index % 2 == 0 else ("loop", "bare")
    for name, make_config in CONFIGS.items():
      for kind in order:
        measure = bare_step_ms if kind == "bare" else loop_step_ms
        results[name][kind].append(measure(make_config, args.steps))
        print(f"round {round_index + 1}, {name}, {kind}: {results[name][kind][-1]:.2f} ms/step",
              flush=True)

  lines = [f"Machine: {machine_line('jax', 'flax')}. `python -m bench.loop_overhead --steps "
           f"{args.steps} --rounds {args.rounds}`: ms per step, ranges over the rounds.", "",
           "| config | bare step | whole loop | loop ÷ bare |", "|---|---:|---:|---:|"]
  for name, r in results.items():
    ratios = [loop / bare for loop, bare in zip(r["loop"], r["bare"])]
    lines.append(f"| {name} | {_range(r['bare'])} ms | {_range(r['loop'])} ms | "
                 f"{_range(ratios, 3)} |")
  text = "\n".join(lines)
  print(text)
  if args.write:
    write_section("Loop overhead", text)


if __name__ == "__main__":
  main()
