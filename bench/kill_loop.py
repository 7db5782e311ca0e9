"""Kill-and-resume test: SIGKILL the training process at random moments, resume, compare bits.

  python -m bench.kill_loop                          # tiny test config, 5 kills, seed 0
  python -m bench.kill_loop --config=configs/quickstart.py --steps=40 --kills=3
  python -m bench.kill_loop --compare=runs/a,runs/b  # only compare two finished runs
  python -m bench.kill_loop --workdir=gs://BUCKET/kill_loop --kills=2  # both runs in a bucket

1. Trains the config uninterrupted to --steps (the reference run).
2. Trains it again with a checkpoint every --checkpoint_every steps. Each time a launch has
   written a new checkpoint, waits a random time (seeded by --seed, up to --max_delay seconds:
   anywhere in a step, a save or a log write), sends SIGKILL and relaunches the same command;
   after --kills kills the last launch runs to the end.
3. Compares the two final checkpoints: every leaf of the train state bit for bit (parameters,
   batch statistics, optimiser states, step, rng), the data iterator's position, and every
   logged training value. Prints what it did and PASS or FAIL (exit status 0 or 1).

The reference run compiles on its own; the killed run's launches share JAX's persistent
compilation cache (--compilation_cache), so only its first launch compiles. A cached program is
the same executable, and the two runs' programs are compiled separately.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

from absl import app, flags, logging

from bench.common import REPO
from pix2pix_jax import metrics_log, storage

flags.DEFINE_string("config", str(REPO / "tests" / "configs" / "tiny.py"), "Config file.")
flags.DEFINE_integer("steps", 40, "Training steps of both runs.")
flags.DEFINE_integer("checkpoint_every", 1, "Checkpoint interval of the killed run (steps).")
flags.DEFINE_integer("kills", 5, "How many times the training process is killed.")
flags.DEFINE_integer("seed", 0, "Seeds the kill times.")
flags.DEFINE_float("max_delay", 1.0, "Longest wait (s) after a new checkpoint before a kill.")
flags.DEFINE_string("workdir", "", "Where both runs go, a folder or gs:// (default: a new "
                    "temporary directory); the logs stay on this machine.")
flags.DEFINE_integer("cpu_devices", 0, "Run on this many fake CPU devices (0: default platform).")
flags.DEFINE_bool("compilation_cache", True, "Share compiled programs between the launches.")
flags.DEFINE_multi_string("override", [], "Extra --config.key=value for every launch.")
flags.DEFINE_string("compare", "", "WORKDIR_A,WORKDIR_B: only compare their latest checkpoints.")
flags.DEFINE_integer("timeout", 1800, "Seconds one launch may take.")
FLAGS = flags.FLAGS


def _env(workdir, cache: bool) -> dict[str, str]:
  env = dict(os.environ, PYTHONPATH=str(REPO))
  if FLAGS.cpu_devices:
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={FLAGS.cpu_devices}"
  if cache:
    env["JAX_COMPILATION_CACHE_DIR"] = str(workdir / "jax_compilation_cache")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  return env


def _command(run_dir, checkpoint_every: int) -> list[str]:
  # Every step logged, so that every step's losses are compared; no evaluation or samples.
  return [sys.executable, str(REPO / "launch.py"), f"--config={FLAGS.config}",
          f"--workdir={run_dir}", f"--config.num_train_steps={FLAGS.steps}",
          f"--config.checkpoint_every_steps={checkpoint_every}", "--config.log_every_steps=1",
          "--config.eval_every_steps=0", "--config.sample_every_steps=0",
          *FLAGS.override]


def _committed(step_dir) -> bool:
  # On a disk a step is renamed into place when complete; in a bucket it gets a marker.
  return not storage.is_remote(step_dir) or (step_dir / "commit_success.txt").exists()


def saved_steps(run_dir) -> list[int]:
  directory = run_dir / "checkpoints"
  storage.invalidate_cache(directory)
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and _committed(p))


def _saving_now(run_dir) -> bool:
  directory = run_dir / "checkpoints"
  return directory.is_dir() and any(
      p.name.endswith(".orbax-checkpoint-tmp") or p.name.isdigit() and not _committed(p)
      for p in directory.iterdir())


def _launch(run_dir, checkpoint_every, env, log_path, kill_delay: float | None):
  """One launch; with `kill_delay`, SIGKILL once a new checkpoint exists and the delay passed.

  Returns (exit code, seconds, what was on disk when the kill was sent or None).
  """
  before = saved_steps(run_dir)
  start = time.monotonic()
  with open(log_path, "w") as log:
    proc = subprocess.Popen(_command(run_dir, checkpoint_every), cwd=REPO, env=env,
                            stdout=log, stderr=log)
  killed_at = None
  try:
    if kill_delay is not None:
      while proc.poll() is None and saved_steps(run_dir) in ([], before):
        if time.monotonic() - start > FLAGS.timeout:
          raise TimeoutError(f"no new checkpoint after {FLAGS.timeout} s; see {log_path}")
        time.sleep(0.02)
      deadline = time.monotonic() + kill_delay
      while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
      if proc.poll() is None:
        killed_at = {"steps": saved_steps(run_dir), "saving": _saving_now(run_dir),
                     "log_lines": len(log_path.read_text().splitlines())}
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=FLAGS.timeout)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  return proc.returncode, time.monotonic() - start, killed_at


def _final_state(run_dir):
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  step = saved_steps(run_dir)[-1]
  step_dir = run_dir / "checkpoints" / str(step)
  state = ocp.StandardCheckpointer().restore(step_dir / "state")
  leaves = {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]}
  positions = {p.name: json.loads(p.read_text()) for p in sorted((step_dir / "data").iterdir())
               if p.name.endswith(".json")}
  return step, leaves, positions


def _train_metrics(run_dir) -> list[dict]:
  records = [json.loads(l) for l in metrics_log.read_lines(run_dir)]
  return [{k: v for k, v in r.items() if k != "steps_per_sec"}
          for r in records if r["kind"] == "train"]


def compare(run_a, run_b) -> list[str]:
  """Human-readable differences between two runs' latest checkpoints and logs (empty: none)."""
  step_a, leaves_a, data_a = _final_state(run_a)
  step_b, leaves_b, data_b = _final_state(run_b)
  from pix2pix_jax import checkpointing, provenance  # pylint: disable=import-outside-toplevel
  env_a, env_b = (checkpointing.read_saved_environment(run / "checkpoints", step)
                  for run, step in ((run_a, step_a), (run_b, step_b)))
  if env_a and env_b and provenance.differences(env_a, env_b):
    print("warning: the runs were made in environments that break bit-identity:\n"
          + "\n".join(f"  {line}" for line in provenance.differences(env_a, env_b)))
  elif not (env_a and env_b):
    print("note: a checkpoint has no record of its environment (saved before records existed)")
  problems = []
  if step_a != step_b:
    problems.append(f"latest checkpoints are steps {step_a} and {step_b}")
  if leaves_a.keys() != leaves_b.keys():
    problems.append(f"different leaves: {sorted(set(leaves_a) ^ set(leaves_b))[:5]}")
  differing = [k for k in sorted(set(leaves_a) & set(leaves_b))
               if leaves_a[k].dtype != leaves_b[k].dtype or leaves_a[k].shape != leaves_b[k].shape
               or leaves_a[k].tobytes() != leaves_b[k].tobytes()]
  for k in differing[:10]:
    a, b = leaves_a[k], leaves_b[k]
    gap = (float(abs(a.astype("float64") - b.astype("float64")).max())
           if a.shape == b.shape and a.dtype.kind in "fiu" else float("nan"))
    problems.append(f"leaf {k} differs (max |a - b| = {gap:.3g})")
  if len(differing) > 10:
    problems.append(f"... {len(differing)} of {len(leaves_a)} leaves differ in all")
  if data_a != data_b:
    problems.append(f"data positions differ: {data_a} vs {data_b}")
  metrics_a, metrics_b = _train_metrics(run_a), _train_metrics(run_b)
  if metrics_a != metrics_b:
    diff = next((a, b) for a, b in zip(metrics_a + [None], metrics_b + [None]) if a != b)
    problems.append(f"logged training values differ, first at {diff[0]} vs {diff[1]}")
  if not problems:
    print(f"compare: latest checkpoints (step {step_a}) have {len(leaves_a)} leaves, all "
          f"bit-identical; data position {data_a} identical; {len(metrics_a)} logged training "
          "steps identical")
  return problems


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # Orbax's restore chatter
  # Stopping this script stops its launch too (the `finally` in `_launch`).
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
  if FLAGS.compare:
    run_a, run_b = (storage.resolve(p, "--compare") for p in FLAGS.compare.split(","))
    problems = compare(run_a, run_b)
    print("\n".join(problems) + "\nFAIL" if problems else "PASS")
    sys.exit(1 if problems else 0)

  root = storage.resolve(FLAGS.workdir or tempfile.mkdtemp(prefix="kill_loop_"), "--workdir")
  logs = (pathlib.Path(tempfile.mkdtemp(prefix="kill_loop_logs_")) if storage.is_remote(root)
          else pathlib.Path(root))
  logs.mkdir(parents=True, exist_ok=True)
  env = _env(root, cache=FLAGS.compilation_cache)
  rng = random.Random(FLAGS.seed)
  print(f"kill loop: {FLAGS.config}, {FLAGS.steps} steps, checkpoint every "
        f"{FLAGS.checkpoint_every}, {FLAGS.kills} SIGKILLs (seed {FLAGS.seed}), in {root}")

  reference, killed = root / "reference", root / "killed"
  code, seconds, _ = _launch(reference, FLAGS.steps, _env(root, cache=False),
                             logs / "reference.log", None)
  if code != 0:
    sys.exit(f"the reference run failed ({code}); see {logs / 'reference.log'}")
  print(f"reference: {FLAGS.steps} steps uninterrupted in {seconds:.1f} s")

  launch = 0
  kills = 0
  while True:
    launch += 1
    log = logs / f"killed.{launch}.log"
    delay = rng.uniform(0, FLAGS.max_delay) if kills < FLAGS.kills else None
    code, seconds, killed_at = _launch(killed, FLAGS.checkpoint_every, env, log, delay)
    resumed = re.search(r"Resumed from checkpoint (\d+)", log.read_text())
    start = f"resumed from checkpoint {resumed[1]}" if resumed else "started fresh"
    if killed_at is not None:
      kills += 1
      print(f"launch {launch}: {start}; SIGKILL {delay:.2f} s after a new checkpoint, "
            f"{seconds:.1f} s in (checkpoints on disk {killed_at['steps']}"
            f"{', a save in progress' if killed_at['saving'] else ''}, "
            f"{killed_at['log_lines']} log lines) -> exit {code}")
      continue
    print(f"launch {launch}: {start}; ran to the end in {seconds:.1f} s -> exit {code}")
    if code != 0:
      print(f"FAIL: launch {launch} exited with {code}; see {log}")
      sys.exit(1)
    break

  problems = compare(reference, killed)
  if kills < FLAGS.kills:
    problems.append(f"only {kills} of {FLAGS.kills} kills happened (the run finished first: "
                    "use more --steps)")
  print("\n".join(problems) + "\nFAIL" if problems else f"PASS ({kills} kills)")
  sys.exit(1 if problems else 0)


if __name__ == "__main__":
  from pix2pix_jax import cli
  sys.exit(cli.run(main))
