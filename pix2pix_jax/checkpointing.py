"""Orbax checkpoints of {train state, data-iterator position, config, environment}, safe against
failures: a save is complete or absent, a failed save names the directory and leaves the saved
steps alone, a damaged step is reported and passed over (and set aside by a training run), and
a config with another model is refused with the differing keys.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import shutil
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from pix2pix_jax import atomic, errors, storage

# Config sections whose change makes a checkpoint unusable (shapes or meaning of the state).
STRUCTURAL_KEYS = ("model",)
# Keys of those sections that do not change what a checkpoint holds, so they may differ (or be
# absent from configs saved before they existed): how convolutions are computed (runs and
# checkpoints are interchangeable between impls) and how the initial weights were drawn (a
# checkpoint has its own).
NON_STRUCTURAL_KEYS = ("model.conv_impl", "model.init_type", "model.init_gain")
# Files every complete step has, relative to the step directory.
REQUIRED_FILES = ("_CHECKPOINT_METADATA", "state/_METADATA")
# Config key marking a checkpoint imported from other weights (no data-iterator position).
IMPORTED_KEY = "imported_from"
DAMAGED_SUFFIX = ".damaged"
TMP_SUFFIX = ".orbax-checkpoint-tmp"


class CheckpointError(errors.Pix2pixError, RuntimeError):
  """A checkpoint directory that cannot be used or written, with the reason."""


class ModelMismatchError(CheckpointError, errors.UsageError):
  """A config whose model is not the one a checkpoint was trained with (a usage error: the
  command names the wrong config or workdir)."""


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    key = f"{prefix}{k}"
    if isinstance(v, dict):
      out.update(_flatten(v, key + "."))
    else:
      out[key] = v
  return out


def config_differences(saved: dict, current: dict, sections=STRUCTURAL_KEYS) -> list[str]:
  """Lines `key: saved → current` for every key of `sections` (None: all keys) that differs.

  The structural comparison (`sections` given) leaves out `NON_STRUCTURAL_KEYS`.
  """
  if sections is None:
    a, b = _flatten(saved), _flatten(current)
  else:
    a, b = {}, {}
    for section in sections:
      a.update(_flatten(saved.get(section, {}), section + "."))
      b.update(_flatten(current.get(section, {}), section + "."))
    for key in NON_STRUCTURAL_KEYS:
      a.pop(key, None)
      b.pop(key, None)
  missing = object()
  show = lambda v: "(absent)" if v is missing else repr(v)
  return [f"  {key}: checkpoint has {show(a.get(key, missing))}, config has "
          f"{show(b.get(key, missing))}"
          for key in sorted(set(a) | set(b)) if a.get(key, missing) != b.get(key, missing)]


def check_same_model(saved: dict, current: dict, what: str,
                     hint: str = "Use a fresh --workdir, or the config the checkpoint was "
                                 "trained with.") -> None:
  """Raises ModelMismatchError listing the `model` keys that differ between `what`'s saved
  config and the current one."""
  diffs = config_differences(saved, current)
  if diffs:
    raise ModelMismatchError(f"{what} was made with a different model:\n" + "\n".join(diffs)
                             + f"\n{hint}")


def check_resumable(directory: str | os.PathLike, config: dict) -> None:
  """Raises ModelMismatchError when the newest checkpoint in `directory` (with a saved config)
  was trained with another model than `config`'s. Reads files only."""
  for step in reversed(saved_steps(directory)):
    saved = read_saved_config(directory, step)
    if saved is not None:
      check_same_model(saved, config, f"checkpoint {step} in {directory}",
                       hint="Use a fresh --workdir, or the config the checkpoint was trained "
                            "with (leave out --config to resume with the run's saved config).")
      return


def check_writable(directory: str | os.PathLike) -> None:
  """Fails before training starts when the output directory cannot be written."""
  if storage.is_remote(directory):
    storage.check_bucket(epath.Path(directory), "--workdir", write=True)
    return
  path = pathlib.Path(directory)
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_test_{os.getpid()}"
    probe.write_bytes(b"0" * 4096)
    probe.unlink()
  except OSError as e:
    raise CheckpointError(f"cannot write to {path}: {e.strerror or e}. Choose a writable "
                          "--workdir or free some space.") from e


def _free_space(path: epath.Path) -> str:
  if storage.is_remote(path):
    return "object storage"
  path = pathlib.Path(path)
  for p in (path, *path.parents):
    if p.exists():
      try:
        return f"{shutil.disk_usage(p).free / 2**20:.1f} MiB free on that disk"
      except OSError:
        break
  return "free space unknown"


def _is_disk_full(e: BaseException) -> bool:
  if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
    return True
  text = str(e)
  # TensorStore reports the OS error inside a ValueError.
  return "No space left on device" in text or "os_error_code='28'" in text


def _restored_step(state) -> int | None:
  step = getattr(state, "step", None)
  if step is None and isinstance(state, dict):
    step = state.get("step")
  if step is None or np.ndim(step) != 0:
    return None
  if isinstance(step, jax.Array) and not step.is_fully_addressable:
    step = step.addressable_data(0)  # replicated over processes: any local copy
  return int(np.asarray(step))


class Checkpointer:
  """Saves and restores the train state together with the input pipeline's position."""

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3,
               keep_every_steps: int = 0, config: dict | None = None,
               environment: dict | None = None):
    if max_to_keep < 0 or keep_every_steps < 0:
      raise ValueError(f"max_to_keep ({max_to_keep}) and keep_every_steps ({keep_every_steps}) "
                       "must be >= 0 (0 = keep all / no extra keeping)")
    self.directory = storage.resolve(directory, "checkpoint directory")
    self.config = config or {}
    self.environment = environment  # provenance.record: saved with every step
    # On a disk a save returns once its step is complete. In a bucket the upload goes on in the
    # background once the state is copied to host memory and the data position is taken (both
    # at the save's step), so that the step does not wait for the network: a step counts once
    # its commit marker is written, and the next save, a restore or `close` waits for it.
    self.background = storage.is_remote(self.directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep or None,
        keep_period=keep_every_steps or None,
        create=True,
        # Leftovers of saves interrupted by a kill are removed when a run opens the directory.
        cleanup_tmp_directories=True,
        enable_async_checkpointing=self.background,
    )
    self.manager = ocp.CheckpointManager(self.directory, options=options)
    self._closed = False

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, data_iterator=None, *, force: bool = False) -> bool:
    """Saves `step` completely or not at all; raises `CheckpointError` when it cannot."""
    items = {"state": ocp.args.StandardSave(state),
             "config": ocp.args.JsonSave(self.config)}
    if self.environment is not None:
      items["environment"] = ocp.args.JsonSave(self.environment)
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    try:
      saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
      if not self.background:
        self.manager.wait_until_finished()
    except Exception as e:  # Orbax reports I/O failures as OSError or (TensorStore) ValueError.
      self._remove_partial(step)
      reason = str(e).splitlines()[0][:500] if str(e) else type(e).__name__
      hint = ("The disk is full: free some space or choose another --workdir, then relaunch "
              "the same command to resume." if _is_disk_full(e) else
              "Relaunch the same command to resume from the newest checkpoint.")
      raise CheckpointError(
          f"saving checkpoint {step} in {self.directory} failed ({_free_space(self.directory)})"
          f": {type(e).__name__}: {reason}\nThe checkpoints already there are intact: "
          f"{self.all_steps()}. {hint}") from e
    if saved:
      logging.info("%s checkpoint %d to %s", "Uploading" if self.background else "Saved", step,
                   self.directory)
    return saved

  def _remove_partial(self, step: int) -> None:
    if jax.process_index() != 0:
      return
    for path in self.directory.glob(f"{step}{TMP_SUFFIX}*"):
      with contextlib.suppress(OSError):
        path.rmtree()

  def saved_config(self, step: int) -> dict | None:
    return read_saved_config(self.directory, step)

  def _is_imported(self, step: int, saved_config: dict | None) -> bool:
    """A checkpoint written by `convert.py` from the authors' weights: a state, no data position."""
    return bool(saved_config and saved_config.get(IMPORTED_KEY)) and not (
        self.directory / str(step) / "data").exists()

  def _missing_files(self, step: int, with_data: bool) -> list[str]:
    step_dir = self.directory / str(step)
    required = list(REQUIRED_FILES)
    if with_data:
      required.append(f"data/process_{jax.process_index()}-of-{jax.process_count()}.json")
    return [name for name in required if not (step_dir / name).is_file()]

  def _position_from_other_process_count(self, step: int) -> dict | None:
    states = []
    for path in sorted((self.directory / str(step) / "data").glob("process_*-of-*.json")):
      try:
        states.append(json.loads(path.read_text()))
      except (OSError, json.JSONDecodeError):
        return None
    if not states or any(st != states[0] for st in states):
      return None
    return states[0]

  def restore_latest(self, abstract_state, data_iterator=None, step: int | None = None, *,
                     set_aside_damaged: bool = False, partial: bool = False):
    """Restores the newest usable checkpoint (or `step`); returns (state, step) or None.

    `abstract_state` is a pytree of `jax.ShapeDtypeStruct` with shardings; `data_iterator` is
    restored in place. With `partial`, `abstract_state` names only some of the saved state's
    fields (e.g. `state.Weights`, the networks without their optimisers): only those are read
    (Orbax's partial restore); the checkpoint format is the same. Damaged steps are reported
    and skipped; with `set_aside_damaged` (a training run resuming) the damaged steps newer
    than the restored one are renamed to `N.damaged`, so that they neither block saving step N
    again nor count towards `max_to_keep`. Nothing is renamed when no step is usable.
    """
    steps = [step] if step is not None else sorted(self.all_steps(), reverse=True)
    failures: list[tuple[int, str]] = []
    for s in steps:
      saved = self.saved_config(s)
      if saved is not None and self.config:
        check_same_model(saved, self.config, f"checkpoint {s} in {self.directory}")
      with_data = data_iterator is not None
      if with_data and self._is_imported(s, saved):
        logging.info("Checkpoint %d holds weights imported from %s and no data position: the "
                     "input pipeline starts from its beginning.", s, saved[IMPORTED_KEY])
        with_data = False
      foreign_position = None
      if with_data and self._missing_files(s, True) and not self._missing_files(s, False):
        # Saved by a different number of processes: every process's position is the number of
        # global batches consumed, so any of them continues this run's stream exactly.
        foreign_position = self._position_from_other_process_count(s)
        if foreign_position is not None:
          with_data = False
      missing = self._missing_files(s, with_data)
      if missing:
        self._report_damage(s, failures, f"missing {', '.join(missing)}")
        continue
      if partial:
        items = {"state": ocp.args.PyTreeRestore(
            item=abstract_state, partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args(abstract_state))}
      else:
        items = {"state": ocp.args.StandardRestore(abstract_state)}
      if with_data:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
      try:
        restored = self.manager.restore(s, args=ocp.args.Composite(**items))
      except (ValueError, KeyError, FileNotFoundError, OSError) as e:
        self._report_damage(s, failures, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
        continue
      inner_step = _restored_step(restored["state"])
      if inner_step is not None and inner_step != s:
        self._report_damage(s, failures, f"its state is at step {inner_step}")
        continue
      if foreign_position is not None:
        data_iterator.set_state(foreign_position)
        logging.info("Checkpoint %d was saved by a different number of processes; the input "
                     "pipeline continues at its position %s.", s, foreign_position)
      if failures:
        logging.warning("Resumed from checkpoint %d after skipping damaged ones:\n%s", s,
                        "\n".join(f"  step {f}: {why}" for f, why in failures))
        if set_aside_damaged:
          self._set_aside([f for f, _ in failures])
      if saved is not None and self.config:
        changed = config_differences(saved, self.config, sections=None)
        if changed:
          logging.info("Settings changed since checkpoint %d (the model is the same):\n%s", s,
                       "\n".join(changed))
      return restored["state"], s
    if failures:
      raise CheckpointError(f"no usable checkpoint in {self.directory}:\n" + "\n".join(
          f"  step {f}: {why}" for f, why in failures)
          + "\nMove the damaged steps away to start over, or restore them from a backup.")
    return None

  def _report_damage(self, step: int, failures: list, why: str) -> None:
    failures.append((step, why))
    logging.warning("Checkpoint %d in %s is damaged (%s); trying an older one.", step,
                    self.directory, why)

  def _set_aside(self, steps: list[int]) -> None:
    ocp.multihost.sync_global_processes("pix2pix_set_aside_damaged_start")
    if jax.process_index() == 0:
      for s in steps:
        source = self.directory / str(s)
        target = self.directory / f"{s}{DAMAGED_SUFFIX}"
        n = 1
        while target.exists():
          target = self.directory / f"{s}{DAMAGED_SUFFIX}-{n}"
          n += 1
        _move(source, target)
        logging.warning("Set damaged checkpoint %d aside as %s", s, target)
    ocp.multihost.sync_global_processes("pix2pix_set_aside_damaged_done")
    self.manager.reload()

  def reached_preemption(self, step: int) -> bool:
    return self.manager.reached_preemption(step)

  def close(self) -> None:
    """Waits for a save still uploading (reported as a failed save) and closes; once."""
    if self._closed:
      return
    self._closed = True
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  # as in `save`
      raise CheckpointError(f"saving the last checkpoint in {self.directory} failed: "
                            f"{type(e).__name__}: {str(e).splitlines()[0][:500]}\nThe "
                            f"checkpoints already there are intact: {self.all_steps()}. "
                            "Relaunch the same command to resume from the newest one.") from e
    self.manager.close()


def _move(source: epath.Path, target: epath.Path) -> None:
  """A rename on a disk; on object storage (no rename) a copy of every object, then a delete:
  interrupted, the damaged step is still there and is set aside again at the next resume."""
  if not storage.is_remote(source):
    source.rename(target)
    return
  for path in storage.files(source):
    (target / path.relative_to(source)).write_bytes(path.read_bytes())
  source.rmtree()


def saved_steps(directory: str | os.PathLike) -> list[int]:
  """The steps of the checkpoints in `directory`, oldest first ([] when it does not exist).
  Reads the listing afresh (a bucket client's cached one may predate another process's save)."""
  directory = epath.Path(directory)
  storage.invalidate_cache(directory)
  if not directory.is_dir():
    return []
  return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def read_saved_environment(directory: str | os.PathLike, step: int) -> dict | None:
  """The record of what made checkpoint `step` (`provenance.record`); None for a checkpoint
  saved before records existed."""
  try:
    saved = ocp.JsonCheckpointHandler().restore(
        epath.Path(directory) / str(step) / "environment")
  except (ValueError, FileNotFoundError, OSError):
    return None
  return dict(saved) if isinstance(saved, dict) else None


def read_saved_config(directory: str | os.PathLike, step: int) -> dict | None:
  """The config saved with checkpoint `step` in `directory` (None when absent or unreadable).

  Reads the file with Orbax's JSON handler and nothing else: no JAX backend is started, so
  launch.py can read a run's config before distributed initialisation and XLA settings.
  """
  try:
    saved = ocp.JsonCheckpointHandler().restore(epath.Path(directory) / str(step) / "config")
  except (ValueError, FileNotFoundError, OSError):  # json.JSONDecodeError is a ValueError
    return None
  return dict(saved) if isinstance(saved, dict) else None


def save_config_json(workdir: str | os.PathLike, config_dict: dict) -> None:
  with atomic.atomic_path(epath.Path(workdir) / "config.json") as temporary:
    temporary.write_text(json.dumps(config_dict, indent=2, sort_keys=True, default=str))
