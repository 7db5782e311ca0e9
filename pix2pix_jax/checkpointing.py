"""Orbax checkpoints of {train state, data-iterator position, config}, safe against failures.

* Saves are atomic (Orbax writes `N.orbax-checkpoint-tmp` and renames it when complete), so a
  run killed mid-save leaves the previous checkpoints as they were.
* `latest_step()` does no integrity check: `restore_latest` tries the newest step and falls back
  through older ones when a step is damaged, saying which and why.
* The run's config travels with every checkpoint; resuming with a different model fails with
  the differing keys listed.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging

# Config sections whose change makes a checkpoint unusable (shapes or meaning of the state).
STRUCTURAL_KEYS = ("model",)


class CheckpointError(RuntimeError):
  """A checkpoint directory that cannot be used, with the reason."""


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
  """Lines `key: saved → current` for every structural key that differs."""
  diffs = []
  for section in sections:
    a = _flatten(saved.get(section, {}), section + ".")
    b = _flatten(current.get(section, {}), section + ".")
    for key in sorted(set(a) | set(b)):
      if a.get(key) != b.get(key):
        diffs.append(f"  {key}: checkpoint has {a.get(key)!r}, config has {b.get(key)!r}")
  return diffs


def check_writable(directory: str | os.PathLike) -> None:
  """Fails before training starts when the output directory cannot be written."""
  path = pathlib.Path(directory)
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write_test_{os.getpid()}"
    probe.write_bytes(b"0" * 4096)
    probe.unlink()
  except OSError as e:
    raise CheckpointError(f"cannot write to {path}: {e.strerror or e}. Choose a writable "
                          "--workdir or free some space.") from e


class Checkpointer:
  """Saves and restores the train state together with the input pipeline's position."""

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3,
               keep_every_steps: int = 0, config: dict | None = None):
    self.directory = pathlib.Path(directory).absolute()
    self.config = config or {}
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep or None,
        keep_period=keep_every_steps or None,
        create=True,
        # Synchronous saves: a save returns only once its step is complete on disk.
        enable_async_checkpointing=False,
    )
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, data_iterator=None, *, force: bool = False) -> bool:
    items = {"state": ocp.args.StandardSave(state),
             "config": ocp.args.JsonSave(self.config)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    try:
      saved = self.manager.save(step, args=ocp.args.Composite(**items), force=force)
      self.manager.wait_until_finished()
    except OSError as e:
      raise CheckpointError(
          f"saving checkpoint {step} to {self.directory} failed: {e}. Earlier checkpoints "
          f"are intact: {self.all_steps()}") from e
    if saved:
      logging.info("Saved checkpoint %d to %s", step, self.directory)
    return saved

  def saved_config(self, step: int) -> dict | None:
    try:
      return self.manager.restore(step, args=ocp.args.Composite(
          config=ocp.args.JsonRestore()))["config"]
    except (ValueError, KeyError, FileNotFoundError):
      return None

  def restore_latest(self, abstract_state, data_iterator=None, step: int | None = None):
    """Restores the newest usable checkpoint (or `step`); returns (state, step) or None.

    `abstract_state` is a pytree of `jax.ShapeDtypeStruct` with shardings; `data_iterator` is
    restored in place. Damaged steps are reported and skipped.
    """
    steps = [step] if step is not None else sorted(self.all_steps(), reverse=True)
    failures = []
    for s in steps:
      saved = self.saved_config(s)
      if saved is not None and self.config:
        diffs = config_differences(saved, self.config)
        if diffs:
          raise CheckpointError(
              f"checkpoint {s} in {self.directory} was made with a different model:\n"
              + "\n".join(diffs)
              + "\nUse a fresh --workdir, or the config the checkpoint was trained with.")
      items = {"state": ocp.args.StandardRestore(abstract_state)}
      if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
      try:
        restored = self.manager.restore(s, args=ocp.args.Composite(**items))
      except (ValueError, KeyError, FileNotFoundError, OSError) as e:
        failures.append(f"step {s}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        logging.warning("Checkpoint %d in %s is damaged (%s); trying an older one.", s,
                        self.directory, failures[-1])
        continue
      if failures:
        logging.warning("Resumed from checkpoint %d after skipping damaged ones:\n%s", s,
                        "\n".join(failures))
      return restored["state"], s
    if failures:
      raise CheckpointError(f"no usable checkpoint in {self.directory}:\n" + "\n".join(failures))
    return None

  def reached_preemption(self, step: int) -> bool:
    return self.manager.reached_preemption(step)

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(tree, shardings):
  """Pytree of ShapeDtypeStruct carrying `shardings`, for restoring onto a (new) mesh."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, shardings)


def save_config_json(workdir: str | os.PathLike, config_dict: dict) -> None:
  path = pathlib.Path(workdir) / "config.json"
  tmp = path.with_suffix(".json.tmp")
  tmp.write_text(json.dumps(config_dict, indent=2, sort_keys=True, default=str))
  os.replace(tmp, path)
