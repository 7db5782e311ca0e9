"""Multi-process training over loopback: 2 processes × 2 CPU devices train like 1 device.

Each process is a real `launch.py` with `--coordinator_address/--num_processes/--process_id`.
JAX's distributed runtime aborts a process whose peer died only after its heartbeat timeout, so
the launches set short timeouts and every started process is killed in a `finally`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from etils import epath

from conftest import REPO_ROOT
from helpers import TINY_CONFIG
from pix2pix_jax import metrics_log, storage
from test_parallel import (RUN_OVERRIDES, RUN_STEPS, assert_states_close, continuous_run,
                           load_state)

pytestmark = pytest.mark.slow

NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 2
# Evaluation and samples run on every process too; only process 0 may write them.
MULTIPROCESS_OVERRIDES = (*RUN_OVERRIDES, "--config.eval_every_steps=2")
TIMEOUTS = {"PIX2PIX_INIT_TIMEOUT": "120", "PIX2PIX_HEARTBEAT_TIMEOUT": "60",
            "PIX2PIX_SHUTDOWN_TIMEOUT": "120"}


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch_processes(workdir, *overrides, num_processes: int = NUM_PROCESSES,
                     process_ids=None, timeout: float = 600, env_extra=None,
                     log_dir=None, env_by_process=None) -> list[dict]:
  """Starts launch.py as processes `process_ids` of `num_processes` on loopback (process i with
  `env_by_process[i]` added to its environment); waits for all.

  Returns [{"returncode", "log"}] per started process. Processes still running at the deadline
  (or when anything fails) are killed, so none outlives the test.
  """
  process_ids = range(num_processes) if process_ids is None else process_ids
  coordinator = f"127.0.0.1:{_free_port()}"
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT),
             XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}")
  env.update(TIMEOUTS)
  env.update(env_extra or {})
  log_dir = workdir.parent if log_dir is None else log_dir  # local, beside a local workdir
  log_dir.mkdir(parents=True, exist_ok=True)
  started = []
  try:
    for i in process_ids:
      log_path = log_dir / f"{workdir.name}.process_{i}.{time.monotonic_ns()}.log"
      log = open(log_path, "w")
      cmd = [sys.executable, str(REPO_ROOT / "launch.py"), f"--config={TINY_CONFIG}",
             f"--workdir={workdir}", f"--coordinator_address={coordinator}",
             f"--num_processes={num_processes}", f"--process_id={i}", *overrides]
      started.append((subprocess.Popen(cmd, cwd=REPO_ROOT,
                                       env={**env, **(env_by_process or {}).get(i, {})},
                                       stdout=log,
                                       stderr=subprocess.STDOUT), log, log_path))
    deadline = time.monotonic() + timeout
    for proc, _, _ in started:
      proc.wait(timeout=max(1.0, deadline - time.monotonic()))
  finally:
    for proc, log, _ in started:
      if proc.poll() is None:
        proc.kill()
      proc.wait()
      log.close()
  return [{"returncode": proc.returncode, "log": path.read_text()}
          for proc, _, path in started]


def _check_all_succeeded(results):
  for i, r in enumerate(results):
    assert r["returncode"] == 0, f"process {i} exited with {r['returncode']}:\n{r['log'][-4000:]}"


def test_two_processes_train_like_one_process_and_resume(tmp_path_factory):
  base = tmp_path_factory.getbasetemp()
  workdir = base / "two_processes"
  first = launch_processes(workdir, *MULTIPROCESS_OVERRIDES, "--config.num_train_steps=2")
  _check_all_succeeded(first)
  for i, r in enumerate(first):
    assert f"process {i}/2, 2 local / 4 global cpu devices" in r["log"]
  # Every process saved its own input-pipeline position next to the shared train state (the
  # position within its own slice of the stream: the same number on every process).
  data = workdir / "checkpoints" / "2" / "data"
  assert sorted(p.name for p in data.glob("process_*.json")) == [
      "process_0-of-2.json", "process_1-of-2.json"]

  # Both relaunched: they restore the state collectively and their own iterators, and finish.
  second = launch_processes(workdir, *MULTIPROCESS_OVERRIDES)
  _check_all_succeeded(second)
  assert all("Resumed from checkpoint 2" in r["log"] for r in second)

  # The same numbers as one process on one device: the global batch was assembled from both
  # processes' shards in the right order (a process reading the other's rows would not match).
  reference = continuous_run(base, 1)
  diff = assert_states_close(load_state(workdir, RUN_STEPS), load_state(reference, RUN_STEPS),
                             load_state(reference, 2), "2 processes × 2 devices vs 1 × 1")
  print("2×2 vs 1×1:", diff)

  # Only process 0 wrote: each metric line once, one eval file per eval step, the page.
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4]
  assert [r["step"] for r in records if r["kind"] == "eval"] == [2, 4]
  reference_records = [json.loads(l) for l in
                       (reference / "metrics.jsonl").read_text().splitlines()]
  for mine, theirs in zip([r for r in records if r["kind"] == "train"], reference_records):
    assert mine["g_l1"] == pytest.approx(theirs["g_l1"], rel=1e-4), (mine, theirs)
  assert sorted(p.name for p in (workdir / "eval").iterdir()) == [
      "step_00000002.json", "step_00000004.json"]
  assert (workdir / "samples" / "step_00000004.png").is_file()
  assert (workdir / "index.html").is_file()
  assert "Results page" in second[0]["log"] and "Results page" not in second[1]["log"]


def test_two_processes_write_one_workdir_in_a_bucket(gcs, tmp_path):
  workdir = epath.Path(f"gs://runs/two-processes-{time.time_ns()}")
  results = launch_processes(workdir, *MULTIPROCESS_OVERRIDES, "--config.num_train_steps=2",
                             log_dir=tmp_path)
  _check_all_succeeded(results)
  storage.invalidate_cache(workdir)
  data = workdir / "checkpoints" / "2" / "data"
  assert sorted(p.name for p in data.iterdir() if p.name.startswith("process_")) == [
      "process_0-of-2.json", "process_1-of-2.json"]
  # Process 0 alone wrote the run's files, each line once; it alone held the run's lock.
  records = [json.loads(l) for l in metrics_log.read_lines(workdir)]
  assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2]
  assert [r["step"] for r in records if r["kind"] == "eval"] == [2]
  assert (workdir / "index.html").exists() and not (workdir / "run.lock").exists()


def test_a_process_whose_peers_never_come_fails_fast(tmp_path):
  start = time.monotonic()
  results = launch_processes(tmp_path / "alone", *RUN_OVERRIDES, process_ids=[1], timeout=240,
                             env_extra={"PIX2PIX_INIT_TIMEOUT": "5"})
  assert results[0]["returncode"] != 0
  assert "as process 1 via coordinator 127.0.0.1:" in results[0]["log"]
  assert "waiting up to 5 s" in results[0]["log"]
  assert time.monotonic() - start < 200
  assert not (tmp_path / "alone" / "checkpoints").exists()


def test_processes_in_different_environments_stop_in_one_line(tmp_path):
  # Process 1's host sets another default matmul precision: the run must not start.
  results = launch_processes(tmp_path / "mixed", *RUN_OVERRIDES, timeout=240,
                             env_by_process={1: {"JAX_DEFAULT_MATMUL_PRECISION": "highest"}})
  for i, r in enumerate(results):
    assert r["returncode"] == 2, f"process {i}:\n{r['log'][-4000:]}"
    errors = [line for line in r["log"].splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r["log"], r["log"][-4000:]
    assert "process 1 differs from process 0 in matmul_precision: None → highest" in errors[0]
  assert not (tmp_path / "mixed" / "checkpoints").exists()
