"""The reproducibility contract (docs/reproducibility.md), end to end in subprocesses.

Every run trains the tiny config to N steps and is compared with one uninterrupted reference
run: all leaves of the final train state (parameters, batch statistics, optimiser states, step,
rng) bit for bit, the data iterator's position, and every logged training value. The runs share
JAX's persistent compilation cache to save minutes: a launch then runs the executable an earlier
launch compiled, so every run-time difference still shows (`bench/kill_loop.py` also compares
against a reference that compiled on its own).
"""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath

from conftest import REPO_ROOT
from helpers import TINY_CONFIG, run_launch, tiny_config
from pix2pix_jax import platform, storage

N = 6
# Log every step so that every step's losses are compared; no evaluation or samples (faster).
DEFAULTS = {"num_train_steps": N, "log_every_steps": 1, "eval_every_steps": 0,
            "sample_every_steps": 0, "checkpoint_every_steps": 3}
LAUNCH_TIMEOUT = 600


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
  cache = tmp_path_factory.getbasetemp() / "jax_compilation_cache"
  return {"JAX_COMPILATION_CACHE_DIR": str(cache),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _overrides(extra: dict) -> list[str]:
  return [f"--config.{k}={v}" for k, v in {**DEFAULTS, **extra}.items()]


def _launch(workdir, env, *flags, **config):
  return run_launch(workdir, *_overrides(config), *flags, env_extra=env, timeout=LAUNCH_TIMEOUT)


def _start(workdir, env, log_path, *flags, **config) -> subprocess.Popen:
  """launch.py in the background, as `run_launch` runs it, with its log in `log_path`."""
  full_env = {**os.environ, "JAX_PLATFORMS": "cpu",
              "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
              "PYTHONPATH": str(REPO_ROOT), **env}
  cmd = [sys.executable, str(REPO_ROOT / "launch.py"), f"--config={TINY_CONFIG}",
         f"--workdir={workdir}", *_overrides(config), *flags]
  with open(log_path, "w") as log:
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=log)


def _wait_until(condition, proc: subprocess.Popen, what: str, timeout: float = LAUNCH_TIMEOUT):
  deadline = time.monotonic() + timeout
  while not condition():
    if proc.poll() is not None:
      raise AssertionError(f"the run exited ({proc.returncode}) before {what}")
    if time.monotonic() > deadline:
      proc.kill()
      raise AssertionError(f"timed out waiting for {what}")
    time.sleep(0.05)


def _saved_steps(workdir) -> list[int]:
  directory = workdir / "checkpoints"
  storage.invalidate_cache(directory)
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _final_checkpoint(workdir):
  storage.invalidate_cache(workdir)
  step_dir = workdir / "checkpoints" / str(N)
  state = ocp.StandardCheckpointer().restore(step_dir / "state")
  leaves = {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]}
  data_position = json.loads((step_dir / "data" / "process_0-of-1.json").read_text())
  return leaves, data_position


def _train_metrics(workdir) -> list[dict]:
  """Logged training values in order; the measured speed is the only field allowed to vary."""
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [{k: v for k, v in r.items() if k != "steps_per_sec"}
          for r in records if r["kind"] == "train"]


def assert_bit_identical(workdir, reference):
  leaves, position = _final_checkpoint(workdir)
  ref_leaves, ref_position = _final_checkpoint(reference)
  assert leaves.keys() == ref_leaves.keys()
  assert {k.split("]")[0] + "]" for k in leaves} == {
      f"['{name}']" for name in ("step", "rng", "g_params", "g_batch_stats", "g_opt_state",
                                 "d_params", "d_batch_stats", "d_opt_state")}
  differing = [k for k, ref in ref_leaves.items()
               if leaves[k].dtype != ref.dtype or leaves[k].shape != ref.shape
               or leaves[k].tobytes() != ref.tobytes()]
  assert not differing, f"{len(differing)} of {len(ref_leaves)} leaves differ: {differing[:5]}"
  assert int(leaves["['step']"]) == N
  assert position == ref_position
  metrics, ref_metrics = _train_metrics(workdir), _train_metrics(reference)
  assert [m["step"] for m in ref_metrics] == list(range(1, N + 1))
  assert metrics == ref_metrics


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache_env):
  """One uninterrupted run to N steps."""
  workdir = tmp_path_factory.mktemp("reference") / "run"
  _launch(workdir, cache_env)
  assert _saved_steps(workdir) == [3, N]
  return workdir


@pytest.mark.slow
def test_two_runs_of_the_same_config_are_bit_identical(reference, tmp_path, cache_env):
  workdir = tmp_path / "again"
  _launch(workdir, cache_env)
  assert_bit_identical(workdir, reference)


@pytest.mark.slow
def test_stop_then_resume_with_more_steps_is_bit_identical(reference, tmp_path, cache_env):
  # Only num_train_steps differs between the launches: the schedule counts epochs, not steps.
  workdir = tmp_path / "stopped"
  _launch(workdir, cache_env, num_train_steps=2)
  assert _saved_steps(workdir) == [2]
  result = _launch(workdir, cache_env)
  assert "Resumed from checkpoint 2" in result.stderr
  assert _saved_steps(workdir) == [2, 3, N]
  assert_bit_identical(workdir, reference)


@pytest.mark.slow
def test_a_run_read_by_worker_processes_resumes_in_process_bit_identically(reference, tmp_path,
                                                                           cache_env):
  # The reference reads in threads; this run reads its first steps in two worker processes and
  # the rest in threads: the same batches, so the same run.
  workdir = tmp_path / "workers"
  result = _launch(workdir, cache_env, num_train_steps=2, **{"data.num_workers": 2})
  assert "Input pipeline: 2 worker processes" in result.stderr
  _launch(workdir, cache_env, **{"data.num_workers": 0})
  assert_bit_identical(workdir, reference)


@pytest.mark.slow
def test_sigkill_at_an_arbitrary_moment_then_resume_is_bit_identical(reference, tmp_path,
                                                                     cache_env):
  workdir, log = tmp_path / "killed", tmp_path / "killed.log"
  proc = _start(workdir, cache_env, log, checkpoint_every_steps=1)
  try:
    _wait_until(lambda: _saved_steps(workdir), proc, "the first checkpoint")
    time.sleep(random.Random(0).uniform(0, 1))  # anywhere in a step or a save
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.wait()
  assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
  saved = _saved_steps(workdir)
  assert saved and saved[-1] < N, f"the kill came too late to test anything: {saved}"
  result = _launch(workdir, cache_env, checkpoint_every_steps=1)
  assert f"Resumed from checkpoint {saved[-1]}" in result.stderr
  assert_bit_identical(workdir, reference)


@pytest.mark.slow
def test_sigkill_then_resume_with_the_workdir_in_a_bucket_is_bit_identical(reference, gcs,
                                                                          tmp_path, cache_env):
  # Object storage has no rename: a save killed midway leaves a step without its commit marker,
  # which the resume must pass over for the newest complete one.
  workdir, log = epath.Path(f"gs://runs/killed-{time.time_ns()}"), tmp_path / "killed.log"
  proc = _start(workdir, cache_env, log, checkpoint_every_steps=1)
  try:
    # Until a step is committed (a step being written is listed too, without the marker).
    _wait_until(lambda: any((workdir / "checkpoints" / str(s) / "commit_success.txt").exists()
                            for s in _saved_steps(workdir)), proc, "the first checkpoint")
    time.sleep(random.Random(1).uniform(0, 1))
    proc.send_signal(signal.SIGKILL)
  finally:
    proc.wait()
  assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
  committed = [s for s in _saved_steps(workdir)
               if (workdir / "checkpoints" / str(s) / "commit_success.txt").exists()]
  assert committed and committed[-1] < N, f"the kill came too late to test anything: {committed}"
  result = _launch(workdir, cache_env, checkpoint_every_steps=1)
  assert f"Resumed from checkpoint {committed[-1]}" in result.stderr, result.stderr[-3000:]
  assert_bit_identical(workdir, reference)


@pytest.mark.slow
def test_a_bucket_answering_503_and_429_changes_nothing(reference, gcs, cache_env):
  # The server refuses every few requests for this workdir's objects, as GCS does under load:
  # the clients retry with backoff, and the run ends as the reference did, bit for bit.
  workdir = epath.Path(f"gs://runs/flaky-{time.time_ns()}")
  _launch(workdir, cache_env)
  assert_bit_identical(workdir, reference)
  injected = [line.split() for line in gcs.log_path.read_text().splitlines()
              if line.startswith("injected")]
  assert {"503", "429"} <= {words[1] for words in injected}
  refused = {words[2] for words in injected}  # uploads and reads both
  assert "insert" in refused and refused & {"download", "get"}, injected


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["single_process", "distributed_runtime"])
def test_sigterm_saves_the_current_step_exits_cleanly_and_resumes(reference, tmp_path, cache_env,
                                                                  runtime):
  workdir, log = tmp_path / "preempted", tmp_path / "preempted.log"
  # With JAX's distributed runtime, JAX catches SIGTERM and Orbax's preemption check stops
  # every process at the same step (how TPU pods and clusters are preempted).
  flags = [] if runtime == "single_process" else [
      f"--coordinator_address=127.0.0.1:{_free_port()}", "--num_processes=1", "--process_id=0"]
  # No periodic checkpoints, so any checkpoint before N is the preemption's own. Samples every
  # step slow the steps down enough for the signal to arrive mid-run.
  proc = _start(workdir, cache_env, log, *flags, checkpoint_every_steps=0, sample_every_steps=1)
  try:
    _wait_until(lambda: f"step 1/{N}" in log.read_text(), proc, "the first log line")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=LAUNCH_TIMEOUT)
  finally:
    proc.kill()
  text = log.read_text()
  assert proc.returncode == 0, text[-3000:]
  found = re.search(r"Received (SIGTERM|preemption notice): saved checkpoint (\d+) in (\S+); "
                    r"exiting", text)
  assert found, text[-3000:]
  # Under the distributed runtime the signal must reach JAX's preemption service, not a
  # handler of ours (which would stop only the process that got it).
  assert found[1] == ("SIGTERM" if runtime == "single_process" else "preemption notice")
  stopped = int(found[2])
  assert 1 <= stopped < N and found[3] == str(workdir / "checkpoints")
  assert f"Stopped at step {stopped}" in text
  assert _saved_steps(workdir) == [stopped]
  if runtime == "distributed_runtime":
    return  # the resume is the same code path as below
  result = _launch(workdir, cache_env, checkpoint_every_steps=0)
  assert f"Resumed from checkpoint {stopped}" in result.stderr
  assert_bit_identical(workdir, reference)


def test_deterministic_config_asks_xla_for_deterministic_gpu_kernels(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
  defaults = " ".join(platform.DEFAULT_XLA_FLAGS)
  platform.configure(tiny_config())
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2 " + defaults
  for _ in range(2):  # idempotent
    platform.configure(tiny_config(deterministic=True))
    assert os.environ["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=2 " + defaults
                                       + " --xla_gpu_deterministic_ops=true")


def test_default_xla_flags_leave_a_users_own_setting(monkeypatch):
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_copy_insertion_use_region_analysis=false")
  platform.configure(tiny_config())
  assert os.environ["XLA_FLAGS"] == "--xla_cpu_copy_insertion_use_region_analysis=false"


def test_default_xla_flags_keep_the_step_bit_identical_and_smaller(tmp_path):
  # The same tiny training step compiled in two fresh processes, XLA's copy-insertion region
  # analysis off and on: identical states after two steps, and no more temporary memory.
  script = tmp_path / "step.py"
  script.write_text(textwrap.dedent("""
      import sys
      import jax, numpy as np
      sys.path.insert(0, sys.argv[2])
      from helpers import tiny_config
      from pix2pix_jax import loop, parallel
      from pix2pix_jax.data import pipeline
      config = tiny_config()
      source = pipeline.get_source(config, "train")
      exp = loop.Experiment(config, len(source))
      step = exp.compile_train_step()
      state = exp.init_state()
      it = pipeline.make_train_iterator(config, source)
      for _ in range(2):
        local = next(it)
        state, _ = step(state, parallel.global_batch({"A": local["A"], "B": local["B"]},
                                                     exp.batch_sharding))
      np.savez(sys.argv[1], temp=step.memory_analysis().temp_size_in_bytes,
               *jax.device_get(jax.tree.leaves(state)))
  """))
  results = {}
  for setting in ("false", "true"):
    out = tmp_path / f"{setting}.npz"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO_ROOT),
           "XLA_FLAGS": f"--xla_cpu_copy_insertion_use_region_analysis={setting}"}
    subprocess.run([sys.executable, str(script), str(out), str(REPO_ROOT / "tests")], env=env,
                   check=True, capture_output=True, timeout=300)
    results[setting] = np.load(out)
  off, on = results["false"], results["true"]
  assert int(on["temp"]) <= int(off["temp"])
  leaves = [k for k in off.files if k != "temp"]
  assert len(leaves) > 50
  for k in leaves:
    np.testing.assert_array_equal(off[k], on[k])
