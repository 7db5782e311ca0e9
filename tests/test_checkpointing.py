"""Checkpoint safety: atomic saves, damaged steps, retention, config checks, unwritable and full
disks, and the NaN guard of the loop (which must never checkpoint past a bad step)."""

import errno
import json
import logging
import os
import pathlib
import shutil
import subprocess
import sys

import grain
import jax
import jax.numpy as jnp
import pytest

from conftest import REPO_ROOT
from helpers import tiny_config
from pix2pix_jax import checkpointing, finite, loop, state as state_lib

MODEL = {"model": {"generator": "unet", "ngf": 8}}


def _state(step: int) -> dict:
  return {"w": jnp.arange(64, dtype=jnp.float32) * step, "b": jnp.full((3,), step, jnp.float32),
          "step": jnp.asarray(step, jnp.int32)}


def _abstract():
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                      _state(0))


def _iterator():
  return iter(grain.MapDataset.range(1000).to_iter_dataset())


def _checkpointer(directory, config=None, **kwargs):
  return checkpointing.Checkpointer(directory, config=MODEL if config is None else config,
                                    **kwargs)


def _save_steps(directory, steps, **kwargs):
  """Saves `steps`; after step s the iterator's next element is s."""
  ckpt, it = _checkpointer(directory, **kwargs), _iterator()
  position = 0
  for s in steps:
    while position < s:
      next(it)
      position += 1
    ckpt.save(s, _state(s), it, force=True)
  ckpt.close()


def _restore(directory, **kwargs):
  ckpt, it = _checkpointer(directory), _iterator()
  try:
    restored = ckpt.restore_latest(_abstract(), it, **kwargs)
  finally:
    ckpt.close()
  if restored is None:
    return None
  state, step = restored
  return step, float(state["w"][1]), int(next(it))


def test_round_trip_restores_state_and_data_position(tmp_path):
  _save_steps(tmp_path / "ckpt", [1, 2])
  assert _restore(tmp_path / "ckpt") == (2, 2.0, 2)
  assert _restore(tmp_path / "empty") is None


def test_leftover_temporary_directory_is_ignored_and_removed(tmp_path):
  directory = tmp_path / "ckpt"
  _save_steps(directory, [1, 2])
  # What a kill during the save of step 3 leaves behind.
  partial = directory / "3.orbax-checkpoint-tmp"
  (partial / "state").mkdir(parents=True)
  (partial / "state" / "junk").write_bytes(b"\0" * 100)
  assert _restore(directory) == (2, 2.0, 2)
  assert not partial.exists()
  _save_steps(directory, [3])
  assert _restore(directory) == (3, 3.0, 3)


def _delete_arrays(step_dir):
  for p in (step_dir / "state").rglob("*"):
    if p.is_file() and p.parent.name == "d":
      p.unlink()


def _truncate_arrays(step_dir):
  for p in (step_dir / "state").rglob("*"):
    if p.is_file() and p.parent.name == "d":
      p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2])


def _empty(step_dir):
  for p in sorted(step_dir.rglob("*"), reverse=True):
    p.rmdir() if p.is_dir() else p.unlink()


def _wrong_step(step_dir):
  # A step directory replaced by hand: its content belongs to the step before.
  shutil.rmtree(step_dir)
  shutil.copytree(step_dir.with_name(str(int(step_dir.name) - 1)), step_dir)


DAMAGE = {
    "array files deleted": _delete_arrays,
    "array files truncated": _truncate_arrays,
    "_METADATA removed": lambda d: (d / "state" / "_METADATA").unlink(),
    "_CHECKPOINT_METADATA removed": lambda d: (d / "_CHECKPOINT_METADATA").unlink(),
    "data iterator state removed": lambda d: (d / "data" / "process_0-of-1.json").unlink(),
    "step directory emptied": _empty,
    "state of another step": _wrong_step,
}


# Orbax's I/O threads may report a closed event loop after a failed restore; harmless.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, damage):
  directory = tmp_path / "ckpt"
  _save_steps(directory, [1, 2, 3], max_to_keep=3)
  DAMAGE[damage](directory / "3")
  with caplog.at_level(logging.WARNING):
    assert _restore(directory, set_aside_damaged=True) == (2, 2.0, 2)
  assert "Checkpoint 3" in caplog.text and "damaged" in caplog.text
  # The damaged step is set aside, not deleted, and the good ones are untouched.
  assert (directory / "3.damaged").is_dir()
  assert sorted(os.listdir(directory)) == ["1", "2", "3.damaged"]
  # The resumed run can save step 3 again, and retention counts only good steps.
  _save_steps(directory, [3, 4], max_to_keep=3)
  assert _checkpointer(directory).all_steps() == [2, 3, 4]
  assert _restore(directory) == (4, 4.0, 4)


def test_without_set_aside_damaged_steps_stay_in_place(tmp_path):
  directory = tmp_path / "ckpt"
  _save_steps(directory, [1, 2])
  _delete_arrays(directory / "2")
  assert _restore(directory) == (1, 1.0, 1)
  assert sorted(os.listdir(directory)) == ["1", "2"]


def test_no_usable_checkpoint_fails_and_moves_nothing(tmp_path):
  directory = tmp_path / "ckpt"
  _save_steps(directory, [1, 2])
  for s in ("1", "2"):
    (directory / s / "state" / "_METADATA").unlink()
  with pytest.raises(checkpointing.CheckpointError, match=r"no usable checkpoint.*\n.*step 2"):
    _restore(directory, set_aside_damaged=True)
  assert sorted(os.listdir(directory)) == ["1", "2"]


def test_max_to_keep_and_keep_every_steps(tmp_path):
  directory = tmp_path / "ckpt"
  _save_steps(directory, range(1, 10), max_to_keep=2, keep_every_steps=4)
  assert _checkpointer(directory).all_steps() == [4, 8, 9]
  _save_steps(tmp_path / "all", range(1, 6), max_to_keep=0)
  assert _checkpointer(tmp_path / "all").all_steps() == [1, 2, 3, 4, 5]
  with pytest.raises(ValueError, match="max_to_keep"):
    _checkpointer(tmp_path / "bad", max_to_keep=-1)


def test_resuming_with_a_different_model_shows_the_differences(tmp_path):
  directory = tmp_path / "ckpt"
  _save_steps(directory, [1])
  other = {"model": {"generator": "unet", "ngf": 16, "norm": "instance"}}
  ckpt = _checkpointer(directory, config=other)
  with pytest.raises(checkpointing.CheckpointError) as e:
    ckpt.restore_latest(_abstract(), _iterator())
  ckpt.close()
  message = str(e.value)
  assert "different model" in message and str(directory) in message
  assert "model.ngf: checkpoint has 8, config has 16" in message
  assert "model.norm: checkpoint has (absent), config has 'instance'" in message
  # Settings outside `model` (the length of the run, intervals) may change on resume.
  longer = dict(MODEL, num_train_steps=100, log_every_steps=7)
  ckpt = _checkpointer(directory, config=longer)
  assert ckpt.restore_latest(_abstract(), _iterator())[1] == 1
  ckpt.close()
  # Init options only choose the initial weights: a checkpoint saved without them (before they
  # existed) or with others resumes.
  reinit = {"model": dict(MODEL["model"], init_type="kaiming", init_gain=0.5)}
  ckpt = _checkpointer(directory, config=reinit)
  assert ckpt.restore_latest(_abstract(), _iterator())[1] == 1
  ckpt.close()


def _fail_iterator_save(exception):
  def save(self, directory, item=None, args=None):
    del self, item, args
    (directory / "partial.json").write_text("{")  # a half-written item, as a full disk leaves
    raise exception
  return save


@pytest.mark.parametrize("exception", [
    OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "process_0-of-1.json"),
    # TensorStore's form of the same failure while writing arrays.
    ValueError("RESOURCE_EXHAUSTED: Error writing local file \"state/d/0\": No space left on "
               "device [os_error_code='28']"),
])
def test_full_disk_at_save_keeps_earlier_checkpoints(tmp_path, monkeypatch, exception):
  workdir = tmp_path / "run"
  directory = workdir / "checkpoints"
  _save_steps(directory, [1, 2], max_to_keep=2)
  ckpt, it = _checkpointer(directory, max_to_keep=2), _iterator()
  monkeypatch.setattr(grain.checkpoint.CheckpointHandler, "save", _fail_iterator_save(exception))
  with pytest.raises(checkpointing.CheckpointError) as e:
    ckpt.save(3, _state(3), it, force=True)
  message = str(e.value)
  assert f"saving checkpoint 3 in {workdir}" in message
  assert "disk is full" in message and "MiB free" in message and "[1, 2]" in message
  monkeypatch.undo()
  ckpt.close()
  assert sorted(os.listdir(directory)) == ["1", "2"]  # no partial step, nothing deleted
  assert _restore(directory) == (2, 2.0, 2)


def test_unwritable_workdir_fails_before_training(tmp_path):
  # A path below a regular file can never be created, whoever runs the test.
  blocker = tmp_path / "file"
  blocker.write_text("")
  with pytest.raises(checkpointing.CheckpointError, match=f"cannot write to {blocker}/run"):
    loop.train_and_evaluate(tiny_config(), str(blocker / "run"))


def test_read_only_workdir_fails_before_training(tmp_path, monkeypatch):
  workdir = tmp_path / "run"
  (workdir / "checkpoints").mkdir(parents=True)
  (workdir / "checkpoints").chmod(0o555)
  try:
    try:
      (workdir / "checkpoints" / "probe").write_text("")
    except PermissionError:
      pass
    else:
      # Root ignores directory permissions: let the OS refuse the write as it would anyone else.
      (workdir / "checkpoints" / "probe").unlink()
      write_bytes = pathlib.Path.write_bytes

      def refuse_in_checkpoints(path, data):
        if path.parent == workdir / "checkpoints":
          raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return write_bytes(path, data)

      monkeypatch.setattr(pathlib.Path, "write_bytes", refuse_in_checkpoints)
    with pytest.raises(checkpointing.CheckpointError,
                       match=f"cannot write to {workdir}/checkpoints: Permission denied"):
      loop.train_and_evaluate(tiny_config(), str(workdir))
    assert os.listdir(workdir) == ["checkpoints"]
    assert os.listdir(workdir / "checkpoints") == []
  finally:
    (workdir / "checkpoints").chmod(0o755)


@pytest.mark.parametrize("key,value,message", [
    ("checkpoint_every_steps", -1, "--config.checkpoint_every_steps=-1: must be an integer >= 0"),
    ("max_to_keep", -2, "--config.max_to_keep=-2: must be an integer >= 0"),
    ("num_train_steps", 0, "--config.num_train_steps=0: must be an integer >= 1, or -1"),
])
def test_invalid_loop_settings_fail_before_training(tmp_path, key, value, message):
  config = tiny_config()
  config[key] = value
  with pytest.raises(ValueError, match=message):
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_non_finite_state_is_never_checkpointed():
  zeros = lambda *shape: jnp.zeros(shape, jnp.float32)
  state = state_lib.TrainState(
      step=jnp.asarray(7, jnp.int32), rng=jnp.zeros((2,), jnp.uint32),
      g_params={"w": zeros(3).at[1].set(jnp.inf)}, g_batch_stats={}, g_opt_state=(zeros(3),),
      d_params={"w": zeros(2)}, d_batch_stats={"mean": zeros(2)}, d_opt_state=(zeros(2),))
  with pytest.raises(finite.NonFiniteLossError,
                     match="non-finite values in g_params after step 7.*checkpoint 5 is the "
                           "last good one"):
    finite.check_state(state, 7, last_saved=5)  # pylint: disable=protected-access
  finite.check_state(state.replace(g_params={"w": zeros(3)}), 7, 5)  # pylint: disable=protected-access


# ---- End to end: a NaN in the data stops the run at that step ----------------------------------

_NAN_DRIVER = """
import sys
sys.path[:0] = [{repo!r}, {configs!r}]
import numpy as np
import tiny
from pix2pix_jax import loop, parallel, pixels, platform

config = tiny.get_config()
config.num_train_steps, config.checkpoint_every_steps, config.log_every_steps = 6, 2, 2
config.sample_every_steps = config.eval_every_steps = 0
platform.configure(config)
# Batches reach the step as uint8 and are scaled there by this table: pixel value 255 becomes
# NaN, every batch but the third is kept below 255, and the third's inputs are all 255.
pixels.UNIT_RANGE_OF_UINT8 = np.append(pixels.UNIT_RANGE_OF_UINT8[:255], np.nan)
batches = []

def nan_at_step_3(local):
  batches.append(None)
  local = {{k: np.minimum(v, 254) for k, v in local.items()}}
  if len(batches) == 3:
    local["A"] = np.full_like(local["A"], 255)
  return local

# Every batch the loop reads goes through the placer it asks for (host arrays on one CPU).
parallel.batch_placer = lambda sharding: nan_at_step_3
loop.train_and_evaluate(config, sys.argv[1])
"""


def compile_cache_env(tmp_path_factory) -> dict[str, str]:
  """Subprocesses share compiled programs through JAX's persistent cache (same for all tests of
  this session); a cached program is the same executable, so results are unchanged."""
  cache = tmp_path_factory.getbasetemp() / "jax_compilation_cache"
  return {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
          "JAX_COMPILATION_CACHE_DIR": str(cache),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.mark.slow
def test_nan_loss_stops_at_its_step_and_keeps_the_last_good_checkpoint(tmp_path,
                                                                      tmp_path_factory):
  driver = tmp_path / "nan_driver.py"
  driver.write_text(_NAN_DRIVER.format(repo=str(REPO_ROOT),
                                       configs=str(REPO_ROOT / "tests" / "configs")))
  workdir = tmp_path / "run"
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **compile_cache_env(tmp_path_factory))
  result = subprocess.run([sys.executable, str(driver), str(workdir)], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode != 0
  assert "NonFiniteLossError: non-finite loss at step 3: " in result.stderr, result.stderr[-3000:]
  assert "g_l1=nan" in result.stderr
  assert "checkpoint 2 is the last good one" in result.stderr
  assert sorted(os.listdir(workdir / "checkpoints")) == ["2"]
  logged = [json.loads(l)["step"] for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert logged == [2]


def test_imported_checkpoint_restores_without_a_data_position(tmp_path):
  # convert.py writes the authors' weights as a state without a data-iterator position; a
  # training run resuming from it (fine-tuning) starts the input pipeline from the beginning.
  config = {**MODEL, checkpointing.IMPORTED_KEY: "latest_net_G.pth"}
  ckpt = _checkpointer(tmp_path / "ckpt", config=config)
  ckpt.save(0, _state(0), force=True)
  ckpt.close()
  ckpt, it = _checkpointer(tmp_path / "ckpt"), _iterator()
  state, step = ckpt.restore_latest(_abstract(), it)
  ckpt.close()
  assert step == 0 and int(next(it)) == 0
  # Without the import marker, a missing data position is damage, not a fresh start.
  ckpt = _checkpointer(tmp_path / "plain")
  ckpt.save(0, _state(0), force=True)
  ckpt.close()
  with pytest.raises(checkpointing.CheckpointError, match="no usable checkpoint"):
    _restore(tmp_path / "plain")


def test_resume_with_a_different_process_count_continues_the_stream(tmp_path):
  # A run saved by 2 processes (one position file each, equal positions) resumed by 1 process.
  _save_steps(tmp_path / "ckpt", [3])
  data = tmp_path / "ckpt" / "3" / "data"
  own = data / "process_0-of-1.json"
  for p in range(2):
    (data / f"process_{p}-of-2.json").write_text(own.read_text())
  own.unlink()
  assert _restore(tmp_path / "ckpt") == (3, 3.0, 3)
  # Disagreeing positions cannot be continued: the step counts as damaged.
  (data / "process_1-of-2.json").write_text('{"next_index": 7}')
  with pytest.raises(checkpointing.CheckpointError, match="no usable checkpoint"):
    _restore(tmp_path / "ckpt")
