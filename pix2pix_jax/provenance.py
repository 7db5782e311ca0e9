"""What made a run: its code, data, libraries, hardware and numerics settings, as one record.

Each launch writes its record into the workdir (`environment/`) and with every checkpoint, so a
copied checkpoint carries it. `differences` names what, between two records, breaks the
bit-identity the reproducibility contract promises (docs/reproducibility.md).
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import socket
import subprocess

import jax
from absl import logging

from pix2pix_jax import errors, storage

# The packages whose version can change a run's numbers (jaxlib's plugins are found by name).
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain",
            "tensorflow-datasets", "numpy", "pillow")
_PLUGINS = ("jax-cuda", "jax_cuda", "jax-rocm", "jax_rocm", "libtpu")
_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
ENVIRONMENT_DIR = "environment"  # in the workdir: one record per launch


@functools.cache
def source_sha256() -> str:
  """A hash of the package's Python sources: a change to docs or tests leaves it unchanged."""
  digest = hashlib.sha256()
  for path in sorted(_PACKAGE_DIR.rglob("*.py")):
    digest.update(path.relative_to(_PACKAGE_DIR).as_posix().encode() + b"\0")
    digest.update(path.read_bytes() + b"\0")
  return digest.hexdigest()


@functools.cache
def git_state() -> dict | None:
  """The checkout's commit and whether the package's files differ from it (None outside one)."""
  root = _PACKAGE_DIR.parent
  try:
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--",
                             "pix2pix_jax", "configs", "launch.py"], capture_output=True,
                            text=True, timeout=10, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return None
  return {"commit": commit, "modified": bool(status.strip())}


def package_versions() -> dict[str, str]:
  versions = {}
  for name in PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = "absent"
  for dist in importlib.metadata.distributions():
    name = (dist.metadata["Name"] or "").lower()
    if name.startswith(_PLUGINS):
      versions[name] = dist.version
  return versions


def _version() -> str:
  try:
    return importlib.metadata.version("pix2pix-jax")
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def data_record(config) -> dict:
  """The data a config trains on: a dataset's name (and prepared version), or a digest of a
  folder's file list (names and sizes)."""
  d = config.data
  record = {"dataset": d.dataset, "direction": d.direction}
  if d.dataset == "synthetic":
    record["num_synthetic"] = d.num_synthetic
  elif d.dataset == "folder" and d.data_dir:
    digest = hashlib.sha256()
    files = sorted(storage.files(storage.resolve(d.data_dir, "--config.data.data_dir")),
                   key=os.fspath)
    for path in files:
      digest.update(f"{os.fspath(path)}\0{path.stat().length}\n".encode())
    record["files"] = len(files)
    record["file_list_sha256"] = digest.hexdigest()
  return record


def record(config) -> dict:
  """This process's record for a run of `config` (devices as JAX sees them now)."""
  device = jax.devices()[0]
  return {
      "code": {"version": _version(), "source_sha256": source_sha256(), "git": git_state()},
      "data": data_record(config),
      "python": platform.python_version(),
      "packages": package_versions(),
      "platform": device.platform,
      "device_kind": device.device_kind,
      "device_count": jax.device_count(),
      "process_count": jax.process_count(),
      "numerics": {"XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
                   "matmul_precision": str(jax.config.jax_default_matmul_precision),
                   "deterministic": bool(config.get("deterministic", False)),
                   "compute_dtype": config.get("compute_dtype", "float32"),
                   "conv_impl": config.model.get("conv_impl", "auto")},
      "host": socket.gethostname(),
      "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }


def _fields(rec: dict) -> dict[str, str]:
  """The fields that decide the numbers, flattened: what two runs must share to be
  bit-identical (not the host, the time, the Python or the git state, which the code hash
  covers)."""
  devices = f"{rec.get('device_count')} {rec.get('platform')} ({rec.get('device_kind')})"
  fields = {"code": rec.get("code", {}).get("source_sha256", "?")[:12],
            "devices": devices, "processes": str(rec.get("process_count"))}
  fields.update({k: str(v) for k, v in rec.get("packages", {}).items()})
  fields.update({k: str(v) for k, v in rec.get("numerics", {}).items()})
  fields["data"] = json.dumps(rec.get("data", {}), sort_keys=True)
  return fields


def differences(before: dict, now: dict) -> list[str]:
  """`key: before → now` for each field that breaks bit-identity between two records."""
  return _field_differences(_fields(before), _fields(now))


def _field_differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
  return [f"{key}: {a.get(key, '(absent)')} → {b.get(key, '(absent)')}"
          for key in list(dict.fromkeys([*a, *b])) if a.get(key) != b.get(key)]


def summary(rec: dict) -> str:
  """One line: the code, the main libraries and the devices."""
  packages = rec.get("packages", {})
  git = rec.get("code", {}).get("git") or {}
  code = (f"commit {git['commit'][:10]}{' (modified)' if git.get('modified') else ''}"
          if git else f"source {rec.get('code', {}).get('source_sha256', '?')[:12]}")
  return (f"{code}; jax {packages.get('jax', '?')}, jaxlib {packages.get('jaxlib', '?')}, flax "
          f"{packages.get('flax', '?')}; {rec.get('device_count')} {rec.get('platform')} "
          f"device(s) ({rec.get('device_kind')}), {rec.get('process_count')} process(es)")


class EnvironmentChangedError(errors.UsageError):
  """A resume in an environment that breaks bit-identity, with the strict setting on."""


def check_resume(checkpoints, now: dict, strict: bool) -> list[str]:
  """Compares the newest checkpoint's record in `checkpoints` with `now`; warns in one block
  (raises `EnvironmentChangedError` when `strict`) for every difference that breaks
  bit-identity. Returns the differences."""
  from pix2pix_jax import checkpointing  # pylint: disable=g-import-not-at-top
  directory = storage.resolve(checkpoints, "--workdir")
  steps = checkpointing.saved_steps(directory)
  if not steps:
    return []
  saved = checkpointing.read_saved_environment(directory, steps[-1])
  if saved is None:
    logging.info("Checkpoint %d has no record of the environment that made it (saved before "
                 "records existed): bit-identity with its run cannot be checked.", steps[-1])
    return []
  found = differences(saved, now)
  if found:
    where = f"checkpoint {steps[-1]} was made with {summary(saved)}; now {summary(now)}"
    lines = "\n".join(f"  {line}" for line in found)
    if strict:
      raise EnvironmentChangedError(
          f"{where}: the resumed run would not be bit-identical to an uninterrupted run:\n"
          f"{lines}\nResume where the checkpoint was made, or leave out "
          "--config.require_identical_environment=True to go on anyway.")
    logging.warning("%s: training goes on, but is not bit-identical to an uninterrupted "
                    "run:\n%s\n(--config.require_identical_environment=True stops instead.)",
                    where, lines)
  return found


# The bytes each process sends of its fields when the hosts compare them (a few hundred are
# used; a longer record is compared by its digest).
_GATHER_BYTES = 8192


def check_hosts_agree(rec: dict) -> None:
  """In a multi-host run every process's record must decide the same numbers: otherwise every
  process stops, naming each process that differs from process 0 and how."""
  if jax.process_count() == 1:
    return
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  encoded = json.dumps(_fields(rec), sort_keys=True).encode()
  if len(encoded) > _GATHER_BYTES:
    encoded = json.dumps({"fields_sha256": hashlib.sha256(encoded).hexdigest()}).encode()
  buffer = np.zeros(_GATHER_BYTES, np.uint8)
  buffer[:len(encoded)] = np.frombuffer(encoded, np.uint8)
  gathered = np.asarray(multihost_utils.process_allgather(buffer)).reshape(
      jax.process_count(), _GATHER_BYTES)
  fields = [json.loads(bytes(row).rstrip(b"\0")) for row in gathered]
  differing = {p: _field_differences(fields[0], fields[p])
               for p in range(1, len(fields)) if fields[p] != fields[0]}
  if differing:
    raise EnvironmentChangedError(
        "the processes of this run would not compute the same numbers: " + "; ".join(
            f"process {p} differs from process 0 in {', '.join(found)}"
            for p, found in differing.items())
        + ": install the same versions and settings on every host")
