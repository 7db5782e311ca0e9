"""Compilation paid once: a first launch against a second launch of the same run.

  python -m bench.compile_cache [--rounds 2] [--write]

For the quickstart config and the paper's model (unet_256 + 70×70 PatchGAN, 256 px, batch 1,
on synthetic facades so that no data is needed), each round starts `launch.py` twice in fresh
processes with a fresh compilation cache folder: the first launch trains one step and saves it,
the second resumes the run for one more step. From each launch's log it reads how long the
train step and the initialisation took to compile and whether the persistent compilation cache
served them, and measures the time from starting the process to its first logged step. Prints
the ranges over the rounds; `--write` puts the table into docs/benchmarks.md (section
"Compilation cache").
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile
import time

from bench.common import REPO, machine_line, write_section

CONFIGS = {
    "quickstart (64 px, batch 4)": ["--config=configs/quickstart.py"],
    "paper model (unet_256, 256 px, batch 1)": [
        "--config=configs/facades.py", "--config.data.dataset=synthetic",
        "--config.data.num_synthetic=8"],
}
COMPILED = re.compile(r"Compiled the (train step|initialisation) in ([0-9.]+) s \(([^)]*)\)")
STAMP = re.compile(r"^[IWEF](\d{4}) (\d\d:\d\d:\d\d\.\d+)")


def _stamp(line: str, year: int) -> float | None:
  match = STAMP.match(line)
  if not match:
    return None
  day, clock = match.groups()
  moment = datetime.datetime.strptime(f"{year}{day} {clock}", "%Y%m%d %H:%M:%S.%f")
  return moment.timestamp()


def launch(args: list[str], workdir: str, cache: str, steps: int) -> dict:
  """One launch.py process: compile times, cache outcomes, seconds to its first logged step."""
  command = [sys.executable, "launch.py", *args, f"--workdir={workdir}",
             f"--config.compilation_cache_dir={cache}", f"--config.num_train_steps={steps}",
             "--config.log_every_steps=1", "--config.sample_every_steps=0",
             "--config.eval_every_steps=0", "--config.tensorboard=False"]
  env = dict(os.environ, PYTHONPATH=str(REPO))
  start = time.time()
  result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1800, check=True)
  record = {}
  year = datetime.date.today().year
  for line in result.stderr.splitlines():
    if match := COMPILED.search(line):
      what, seconds, outcome = match.groups()
      record[what] = (float(seconds), outcome)
    elif f"step {steps}/{steps}" in line and "first_step_s" not in record:
      record["first_step_s"] = _stamp(line, year) - start
  return record


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--write", action="store_true")
  args = parser.parse_args()
  rows = {name: {"first": [], "second": []} for name in CONFIGS}
  for round_index in range(args.rounds):
    for name, config_args in CONFIGS.items():
      with tempfile.TemporaryDirectory() as tmp:
        cache, workdir = os.path.join(tmp, "cache"), os.path.join(tmp, "run")
        # The second launch resumes the first one's checkpoint: it compiles the train step
        # again, but restores the state instead of initialising it.
        for which, steps in (("first", 1), ("second", 2)):
          record = launch(config_args, workdir, cache, steps)
          rows[name][which].append(record)
          print(f"round {round_index + 1}, {name}, {which} launch: {record}", flush=True)

  def cell(records, key, index=0):
    values = [r[key][index] if index is not None else r[key] for r in records if key in r]
    if not values:
      return "—"
    low, high = min(values), max(values)
    return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}–{high:.1f}"

  lines = [f"Machine: {machine_line('jax')}. `python -m bench.compile_cache --rounds "
           f"{args.rounds}`: seconds, ranges over the rounds; each round uses a fresh cache.", "",
           "| config | launch | train step compile, s | initialisation compile, s | cache | "
           "process start → first step, s |", "|---|---|---:|---:|---|---:|"]
  for name, r in rows.items():
    for which in ("first", "second"):
      outcomes = sorted({rec["train step"][1] for rec in r[which]})
      lines.append(f"| {name} | {which} | {cell(r[which], 'train step')} | "
                   f"{cell(r[which], 'initialisation')} | {', '.join(outcomes)} | "
                   f"{cell(r[which], 'first_step_s', None)} |")
    ratios = [b["train step"][0] / a["train step"][0] for a, b in zip(r["first"], r["second"])]
    lines.append(f"| {name} | second ÷ first (train step) | {min(ratios):.1%}–{max(ratios):.1%} "
                 "| | | |")
  text = "\n".join(lines)
  print(text)
  if args.write:
    write_section("Compilation cache", text)


if __name__ == "__main__":
  main()
