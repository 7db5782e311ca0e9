"""Atomic writes: a reader sees the previous file or the complete new one, never half of one.

On a local disk the file (or folder) is written under a temporary name beside its destination
and renamed onto it. Object storage has no rename, but one object upload is atomic: the file is
written to a local temporary and uploaded in one piece; a folder is uploaded file by file and
marked complete by one last object (`COMPLETE_MARKER`), which `is_complete` checks.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from typing import Iterator

from etils import epath

from pix2pix_jax import storage

COMPLETE_MARKER = ".complete"


def _remove(path) -> None:
  if isinstance(path, pathlib.Path):  # local
    if path.is_dir() and not path.is_symlink():
      shutil.rmtree(path)
    else:
      path.unlink(missing_ok=True)
  elif path.is_dir():
    path.rmtree()
  elif path.exists():
    path.unlink()


def is_complete(path) -> bool:
  """Whether `path` (written by `atomic_path`) is there whole: on object storage a folder
  counts only once its marker is."""
  path = epath.Path(path)
  if not path.exists():
    return False
  return not (storage.is_remote(path) and path.is_dir()) or (path / COMPLETE_MARKER).exists()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a local temporary to write; puts it at `path` when the block completes.

  The temporary may be a file or a folder (a folder replaces only a missing or empty `path`,
  or on object storage one left incomplete). On an exception nothing changes at `path`.
  """
  if storage.is_remote(path):
    with _via_upload(epath.Path(path)) as temporary:
      yield temporary
    return
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  temporary = path.with_name(path.name + ".tmp")
  _remove(temporary)  # left by a killed process
  try:
    yield temporary
  except BaseException:
    _remove(temporary)
    raise
  os.replace(temporary, path)


@contextlib.contextmanager
def _via_upload(path: epath.Path) -> Iterator[pathlib.Path]:
  with tempfile.TemporaryDirectory(prefix="pix2pix_upload_") as local:
    temporary = pathlib.Path(local) / path.name
    yield temporary
    if temporary.is_dir():
      if path.exists():
        _remove(path)  # an upload a killed process left incomplete
      for file in sorted(p for p in temporary.rglob("*") if p.is_file()):
        target = path / file.relative_to(temporary).as_posix()
        target.write_bytes(file.read_bytes())
      (path / COMPLETE_MARKER).write_bytes(b"")
    else:
      path.write_bytes(temporary.read_bytes())
