"""The training batches of one process: read by threads or worker processes, placed ahead.

`TrainIterator`'s checkpointed state is its position in the stream of batches alone, so a run
resumes at exactly the next batch, with any number of workers. This module imports no JAX:
worker processes unpickle the dataset, and with it only the data modules.
"""

from __future__ import annotations

import collections
import json
import os
from typing import Any, Callable

import grain

from pix2pix_jax.data import workers

# `data.num_workers="auto"` on accelerator hosts: processes for decoding and augmentation, at most
# this many and leaving a core for the training process.
MAX_AUTO_WORKERS = 8


def resolve_num_workers(num_workers: int | str, backend: str) -> int:
  """`data.num_workers` as a number of worker processes on a host of `backend`.

  "auto": none on CPU-only hosts (there the training step itself uses every core, and reading in
  threads of the training process is as fast: docs/benchmarks.md, section "Input pipeline"); on
  GPU/TPU hosts one per core up to `MAX_AUTO_WORKERS`, leaving one core to the training process.
  """
  if num_workers == "auto":
    if backend == "cpu":
      return 0
    return max(1, min(MAX_AUTO_WORKERS, (os.cpu_count() or 2) - 1))
  try:
    workers = int(num_workers)  # an int, or its text from a saved config's override
  except (TypeError, ValueError):
    workers = -1
  if workers < 0 or isinstance(num_workers, (bool, float)):
    raise ValueError(f"--config.data.num_workers must be 'auto' or an integer >= 0, got "
                     f"{num_workers!r}")
  return workers


class TrainIterator:
  """Batches of `dataset` from position `next_index` on; checkpointable by grain's handler.

  The state is the number of batches returned, `{"next_index": n}` (the format of grain's own
  in-process iterator), so a checkpoint does not depend on how the batches were read: a run
  saved with 4 worker processes resumes with none, and the other way round. Batches are the
  same whatever the number of workers: every example's augmentation is a function of its
  position, and worker i of k reads positions i, i + k, ..., merged back in order
  (`workers.WorkerPool`). `place` (e.g. building the global sharded `jax.Array`) runs `ahead`
  batches in advance, so a batch's transfer overlaps the running step; the state still counts
  only the batches handed out.

  Args:
    dataset: an (infinite) MapDataset of this process's batches.
    num_workers: worker processes decoding and augmenting (0: threads of this process).
    num_threads: reading threads (per worker process when there are workers).
    prefetch: batches each reader keeps ready (threads), or per worker process.
    place: applied to every batch `ahead` batches before it is returned (None: returned as read).
    ahead: how many placed batches wait beyond the one returned.
  """

  def __init__(self, dataset: grain.MapDataset, *, num_workers: int = 0, num_threads: int = 1,
               prefetch: int = 4, place: Callable[[Any], Any] | None = None, ahead: int = 1):
    if num_workers < 0:
      raise ValueError(f"data.num_workers must be >= 0 or 'auto', got {num_workers}")
    self._dataset = dataset
    self.num_workers = num_workers
    self._read_options = grain.ReadOptions(num_threads=max(1, num_threads),
                                           prefetch_buffer_size=max(1, prefetch))
    self._worker_buffer = max(1, prefetch) if num_workers else 0
    self._place = place or (lambda batch: batch)
    self._ahead = ahead if place is not None else 0
    self._next_index = 0
    self._reader = None  # started at the first batch, from `_next_index`
    self._queue: collections.deque = collections.deque()

  def _start(self) -> None:
    if self.num_workers:
      self._reader = workers.WorkerPool(
          self._dataset, start=self._next_index, num_workers=self.num_workers,
          num_threads=self._read_options.num_threads, depth=self._worker_buffer)
    else:
      self._reader = iter(self._dataset[self._next_index:].to_iter_dataset(self._read_options))

  def __iter__(self) -> "TrainIterator":
    return self

  def __next__(self):
    if self._reader is None:
      self._start()
    while len(self._queue) <= self._ahead:
      self._queue.append(self._place(next(self._reader)))
    self._next_index += 1
    return self._queue.popleft()

  # ---- grain.checkpoint.CheckpointSave / CheckpointRestore call these.
  def get_state(self) -> bytes:
    return json.dumps({"next_index": self._next_index}, indent=4).encode()

  def set_state(self, state: bytes | str | dict) -> None:
    """Continues at `state["next_index"]` (bytes or text as saved, or the dict itself)."""
    if isinstance(state, (bytes, str)):
      state = json.loads(state)
    next_index = int(state["next_index"])
    if next_index < 0:
      raise ValueError(f"data iterator position {next_index} is negative")
    self.close()
    self._next_index = next_index

  def start_prefetch(self) -> None:
    """Reading starts at the first batch asked for (after a restore has set the position)."""

  def close(self) -> None:
    """Stops the readers (worker processes included) and drops the batches read ahead."""
    reader, self._reader = self._reader, None
    self._queue.clear()
    if reader is not None and hasattr(reader, "close"):
      reader.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass  # interpreter shutdown

  def __repr__(self) -> str:
    return (f"TrainIterator(next_index={self._next_index}, num_workers={self.num_workers}, "
            f"ahead={self._ahead})")
