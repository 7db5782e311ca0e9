"""Atomic writes: a reader sees the previous file or the complete new one, never half of one.

The results page is read by a browser while training rewrites it, a resumed run reads what a
killed one wrote, and a download or extraction can be interrupted: every such file (or folder)
is written under a temporary name beside its destination and renamed onto it when complete.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
from typing import Iterator


def _remove(path: pathlib.Path) -> None:
  if path.is_dir() and not path.is_symlink():
    shutil.rmtree(path)
  else:
    path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields `PATH.tmp` to write; renames it onto `path` when the block completes.

  The parent folder is created. A temporary left by a killed process is removed first; on an
  exception the temporary is removed and `path` keeps its previous content. The temporary may
  be a file or a folder (a folder replaces only a missing or empty `path`).
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  temporary = path.with_name(path.name + ".tmp")
  _remove(temporary)
  try:
    yield temporary
  except BaseException:
    _remove(temporary)
    raise
  os.replace(temporary, path)
