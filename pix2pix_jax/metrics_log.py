"""metrics.jsonl: one JSON record per line, appended as a run trains, on a disk or in a bucket.

Object storage has no append, and rewriting the file at every log step would write it over
and over: there, each flush writes its lines as one new object under `metrics.jsonl.parts/`
(named by its first step), and `close` writes metrics.jsonl whole once and removes the parts,
so every line is written at most twice. `read_lines` joins the file and any parts.
"""

from __future__ import annotations

import json
import os
import time

from etils import epath

from pix2pix_jax import atomic, storage

NAME = "metrics.jsonl"
PARTS = NAME + ".parts"
# Object storage: a flush writes a part at most this often (seconds), unless forced.
FLUSH_S = 10


def _parts(workdir: epath.Path) -> list[epath.Path]:
  folder = workdir / PARTS
  storage.invalidate_cache(folder)
  if not folder.is_dir():
    return []
  return sorted(p for p in folder.iterdir() if p.name.endswith(".jsonl"))


def read_lines(workdir) -> list[str]:
  """Every line logged in `workdir`, in order (the file's, then its parts')."""
  workdir = epath.Path(workdir)
  return _read([workdir / NAME, *_parts(workdir)])


def _read(paths: list[epath.Path]) -> list[str]:
  lines = []
  for path in paths:
    try:
      lines += path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except (FileNotFoundError, IsADirectoryError):
      continue
  return lines


def _step(line: str) -> float | None:
  try:
    record = json.loads(line)
  except ValueError:
    return None  # a line cut short by a kill
  return record.get("step", 0) if isinstance(record, dict) else None


class MetricsLog:
  """The metrics of one run in `workdir`; only one process writes it."""

  def __init__(self, workdir):
    self.workdir = epath.Path(workdir)
    self.path = self.workdir / NAME
    self.remote = storage.is_remote(self.workdir)
    self._pending: list[str] = []
    self._flushed_at = time.monotonic()

  def append(self, record: dict) -> None:
    line = json.dumps(record) + "\n"
    if self.remote:
      self._pending.append(line)
      return
    with open(os.fspath(self.path), "a") as f:
      f.write(line)

  def flush(self, force: bool = True) -> None:
    """Object storage: the lines appended since the last flush, as one new object (unless
    `force` is off and the last flush was less than FLUSH_S ago)."""
    if not self._pending or not force and time.monotonic() - self._flushed_at < FLUSH_S:
      return
    self._flushed_at = time.monotonic()
    step = _step(self._pending[0]) or 0
    part = self.workdir / PARTS / f"{int(step):012d}.jsonl"
    with atomic.atomic_path(part) as temporary:
      temporary.write_text("".join(self._pending))
    self._pending = []

  def truncate_after(self, step: float) -> None:
    """Drops the lines logged after `step` (a resumed run logs them again) and any line cut
    short; on object storage the parts are joined into metrics.jsonl."""
    parts = _parts(self.workdir)
    lines = _read([self.path, *parts])
    joined = parts if self.remote else []
    kept = [line for line in lines if (s := _step(line)) is not None and s <= step]
    if kept == lines and not joined:
      return
    with atomic.atomic_path(self.path) as temporary:
      temporary.write_text("".join(line + "\n" for line in kept))
    for part in joined:
      part.unlink()

  def close(self) -> None:
    """Object storage: metrics.jsonl written whole, the parts removed."""
    self.flush()
    if self.remote and _parts(self.workdir):
      self.truncate_after(float("inf"))
