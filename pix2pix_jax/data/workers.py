"""Worker processes that decode and augment training batches into reused shared memory.

Each worker writes its batches into a few slots of one shared-memory block, which the training
process copies out and hands back. Unlike grain's `mp_prefetch`, which creates, faults in and
unlinks a fresh segment per array per batch, this pays for the memory once (docs/benchmarks.md,
section "Input pipeline"). Like `iterator.py`, this module imports no JAX.
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import pickle
import tempfile
import traceback
from multiprocessing import reduction
from typing import Any

import numpy as np

from pix2pix_jax import errors

# The start method of the workers: "fork" would copy the training process's JAX threads.
_CONTEXT = "spawn"
_ALIGN = 64  # bytes; every array of a slot starts on a cache line
_JOIN_S = 5.0  # seconds a closing pool waits for a terminated worker before killing it


class _Fd:
  """A file descriptor that a spawned process receives as its own (multiprocessing's DupFd, the
  mechanism it uses for the ends of its pipes)."""

  def __init__(self, fd: int):
    self.fd = fd

  def __reduce__(self):
    return _received_fd, (reduction.DupFd(self.fd),)


def _received_fd(dup) -> int:
  return dup.detach()


def _anonymous_file(size: int) -> int:
  """A descriptor of a new `size`-byte file that has no name in any file system."""
  if hasattr(os, "memfd_create"):  # Linux
    fd = os.memfd_create("pix2pix-batches", os.MFD_CLOEXEC)
  else:
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryFile(dir=shm) as f:  # unlinked at creation on POSIX
      fd = os.dup(f.fileno())
  os.ftruncate(fd, size)
  return fd


def _layout(batch: dict) -> tuple[dict[str, tuple[tuple[int, ...], np.dtype, int]], int]:
  """{key: (shape, dtype, byte offset)} of `batch`'s arrays in one slot, and the slot's size."""
  layout, offset = {}, 0
  for key, value in batch.items():
    value = np.asarray(value)
    layout[key] = (value.shape, value.dtype, offset)
    offset += -(-value.nbytes // _ALIGN) * _ALIGN
  return layout, max(offset, _ALIGN)


def _fits(batch: Any, layout: dict) -> bool:
  """Whether `batch` can be written into a slot (arrays of Python objects cannot)."""
  return (isinstance(batch, dict) and batch.keys() == layout.keys() and all(
      isinstance(v, np.ndarray) and not v.dtype.hasobject and (v.shape, v.dtype) == layout[k][:2]
      for k, v in batch.items()))


def _views(buffer, layout: dict, base: int) -> dict[str, np.ndarray]:
  return {key: np.ndarray(shape, dtype, buffer=buffer, offset=base + offset)
          for key, (shape, dtype, offset) in layout.items()}


def _work(pickled_dataset: bytes, start: int, step: int, num_threads: int, block_fd: int,
          block_size: int, layout: dict, slot_size: int, slots: range, free, ready) -> None:
  """Worker process: reads positions start, start + step, ... into its slots, in order."""
  import grain  # pylint: disable=import-outside-toplevel
  block = mmap.mmap(block_fd, block_size)
  idle = list(slots)
  try:
    dataset = pickle.loads(pickled_dataset)
    reader = iter(dataset[start::step].to_iter_dataset(grain.ReadOptions(
        num_threads=num_threads, prefetch_buffer_size=max(2, num_threads))))
    for batch in reader:
      if not _fits(batch, layout):
        ready.send(("batch", batch))
        continue
      if not idle:
        idle.append(free.recv())
      slot = idle.pop()
      for key, view in _views(block, layout, slot * slot_size).items():
        np.copyto(view, batch[key])
      ready.send(("slot", slot))
  except (EOFError, BrokenPipeError, KeyboardInterrupt):
    return  # the training process closed the pool or died
  except BaseException as e:  # pylint: disable=broad-except
    text = traceback.format_exc()
    try:
      ready.send(("error", e, text))
    except Exception:  # pylint: disable=broad-except
      ready.send(("error", RuntimeError(f"{type(e).__name__}: {e}"), text))


class WorkerError(RuntimeError):
  """The traceback of an exception raised in a worker process (the cause of the one raised)."""


class WorkerDiedError(errors.Pix2pixError, RuntimeError):
  """A worker process ended while the run still needed its batches."""


class WorkerPool:
  """Batches `dataset[start]`, `dataset[start + 1]`, ... read by `num_workers` processes.

  The first batch, read here, gives the layout of the slots; worker w of N reads positions
  start + 1 + w, start + 1 + w + N, ... (with grain's in-process reader, `num_threads` threads)
  into its `depth` slots, so a batch costs two copies of warm memory and a few bytes through a
  pipe, whatever its size. The block is an anonymous file (`memfd_create`, else an unlinked
  temporary file) passed as a descriptor, so nothing is left behind however the run ends
  (kill -9 included); a worker whose parent dies sees its pipes close and exits. A batch that
  does not fit the slots (a `preprocess` that keeps each image's size) travels pickled through
  the pipe. A worker's exception is raised by `__next__` with its type and message (the
  worker's traceback as its cause); a worker that dies is reported with its exit code.

  Args:
    dataset: a MapDataset of batches (dicts of numpy arrays), picklable.
    start: the first position handed out.
    num_workers: worker processes (>= 1).
    num_threads: reading threads in each worker.
    depth: batches each worker may have ready (its slots).
  """

  def __init__(self, dataset, *, start: int, num_workers: int, num_threads: int = 1,
               depth: int = 2):
    if num_workers < 1:
      raise ValueError(f"a WorkerPool needs at least one worker, got {num_workers}")
    if os.name != "posix":
      raise errors.UsageError(
          f"data.num_workers={num_workers}: worker processes need a POSIX system (Linux, macOS); "
          "use --config.data.num_workers=0 (reading threads, data.num_threads)")
    self._num_workers, self._next = num_workers, 0
    self._processes, self._free, self._ready, self._block, self._first = [], [], [], None, None
    try:
      pickled = pickle.dumps(dataset, pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
      raise errors.UsageError(
          f"data.num_workers={num_workers}: the training data cannot be sent to worker processes "
          f"({e}); use --config.data.num_workers=0 (reading threads)") from e
    # The first batch gives the slots' layout and is handed out as it is; the workers go on.
    self._first = dataset[start]
    self._layout, self._slot_size = _layout(self._first)
    size = self._slot_size * num_workers * depth
    self._fd = _anonymous_file(size)
    self._block = mmap.mmap(self._fd, size)
    context = multiprocessing.get_context(_CONTEXT)
    try:
      for w in range(num_workers):
        free_out, free_in = context.Pipe(duplex=False)
        ready_out, ready_in = context.Pipe(duplex=False)
        process = context.Process(
            target=_work, name=f"pix2pix-data-{w}", daemon=True,
            args=(pickled, start + 1 + w, num_workers, max(1, num_threads), _Fd(self._fd), size,
                  self._layout, self._slot_size, range(w * depth, (w + 1) * depth), free_out,
                  ready_in))
        process.start()
        free_out.close()  # the worker's ends: closed here, so either side sees the other die
        ready_in.close()
        self._processes.append(process)
        self._free.append(free_in)
        self._ready.append(ready_out)
    except BaseException:
      self.close()
      raise

  def __iter__(self) -> "WorkerPool":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    if self._first is not None:
      batch, self._first = self._first, None
      return batch
    w = self._next % self._num_workers
    try:
      message = self._ready[w].recv()
    except (EOFError, OSError):
      process = self._processes[w]
      process.join(_JOIN_S)
      raise WorkerDiedError(
          f"data worker process {w} (of data.num_workers={self._num_workers}) ended with exit "
          f"code {process.exitcode} while reading (killed, or out of memory?); its batches "
          "cannot be read: restart the run, which resumes from the last checkpoint") from None
    kind, payload = message[0], message[1]
    if kind == "error":
      raise payload from WorkerError(f"in data worker {w}:\n{message[2]}")
    self._next += 1
    if kind == "batch":
      return payload
    batch = {k: v.copy() for k, v in _views(self._block, self._layout,
                                            payload * self._slot_size).items()}
    try:
      self._free[w].send(payload)
    except OSError:
      pass  # the worker has died: its next batch reports it
    return batch

  def close(self) -> None:
    """Stops the workers and releases the shared block (idempotent)."""
    processes, self._processes = self._processes, []
    for process in processes:
      if process.is_alive():
        process.terminate()
    for process in processes:
      process.join(_JOIN_S)
      if process.is_alive():
        process.kill()
        process.join()
    for connection in self._free + self._ready:
      connection.close()
    self._free, self._ready = [], []
    if self._block is not None:
      self._block.close()
      os.close(self._fd)
      self._block = None

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass  # interpreter shutdown
