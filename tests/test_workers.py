"""Worker processes reading batches into reused shared memory (`workers.WorkerPool`)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import grain
import numpy as np
import pytest

from pix2pix_jax import errors
from pix2pix_jax.data import workers


def _batch(i):
  """Position i: arrays whose values and (for `_ragged`) sizes say which position they are."""
  i = int(i)
  return {"A": np.full((2, 3, 4, 3), i % 256, np.uint8), "index": np.array([i], np.int64)}


def _ragged(i):
  batch = _batch(i)
  if i % 3 == 2:  # every third batch of another size: it cannot use the slots
    batch["A"] = np.full((1, 5, 4, 3), i % 256, np.uint8)
  return batch


def _with_names(i):
  return {**_batch(i), "name": np.array([f"example {int(i)}"], dtype=object)}


def _fails_at_5(i):  # read by worker 0 of 2 from start 0 (worker w reads 1 + w, 3 + w, ...)
  if int(i) == 5:
    raise errors.InputError("example 5: truncated JPEG (re-download the dataset)")
  return _batch(i)


def _dataset(fn):
  return grain.MapDataset.range(10_000).map(fn)


def _read(pool, n):
  return [next(pool) for _ in range(n)]


def _read_all(fn, n, **kwargs):
  """`n` batches of a pool over positions of `fn`, closed afterwards."""
  pool = workers.WorkerPool(_dataset(fn), **kwargs)
  try:
    return _read(pool, n)
  finally:
    pool.close()


@pytest.mark.parametrize("num_workers,depth", [(1, 1), (3, 2)])
def test_batches_in_order_from_any_start_through_reused_slots(num_workers, depth):
  # More batches than slots: every slot is used again.
  batches = _read_all(_batch, 20, start=7, num_workers=num_workers, depth=depth)
  assert [int(b["index"][0]) for b in batches] == list(range(7, 27))
  for i, batch in zip(range(7, 27), batches):
    np.testing.assert_array_equal(batch["A"], _batch(i)["A"])
  # Returned batches are the reader's own copies: later batches do not overwrite them.
  assert int(batches[0]["A"][0, 0, 0, 0]) == 7


def test_batches_that_do_not_fit_the_slots_travel_pickled_in_their_place():
  batches = _read_all(_ragged, 9, start=0, num_workers=2)
  assert [int(b["index"][0]) for b in batches] == list(range(9))
  assert [b["A"].shape[0] for b in batches] == [2, 2, 1] * 3


def test_arrays_of_python_objects_travel_pickled_never_as_pointers_in_the_slots():
  batches = _read_all(_with_names, 4, start=3, num_workers=2)
  assert [b["name"][0] for b in batches] == [f"example {i}" for i in range(3, 7)]
  assert [int(b["A"][0, 0, 0, 0]) for b in batches] == [3, 4, 5, 6]


def test_an_error_in_a_worker_is_raised_with_its_type_message_and_traceback():
  pool = workers.WorkerPool(_dataset(_fails_at_5), start=0, num_workers=2)
  try:
    assert [int(b["index"][0]) for b in _read(pool, 5)] == [0, 1, 2, 3, 4]
    with pytest.raises(errors.InputError, match=r"example 5: truncated JPEG") as info:
      next(pool)
  finally:
    pool.close()
  cause = info.value.__cause__
  assert isinstance(cause, workers.WorkerError)
  assert "in data worker 0" in str(cause) and "_fails_at_5" in str(cause)


def test_a_worker_that_dies_is_reported_with_its_exit_code_not_a_hang():
  pool = workers.WorkerPool(_dataset(_batch), start=0, num_workers=2, depth=1)
  try:
    next(pool)
    os.kill(pool._processes[1].pid, signal.SIGKILL)  # pylint: disable=protected-access
    pool._processes[1].join(10)  # pylint: disable=protected-access
    with pytest.raises(RuntimeError, match=r"data worker process 1 \(of data.num_workers=2\) "
                       r"ended with exit code -9 .*restart the run"):
      for _ in range(4):  # worker 1's batch already written may still be read first
        next(pool)
  finally:
    pool.close()


def test_data_that_cannot_be_sent_to_workers_names_the_flag_that_avoids_them():
  local = _dataset(lambda i: _batch(i))  # a lambda: not picklable
  with pytest.raises(errors.UsageError, match=r"data.num_workers=2: the training data cannot be "
                     r"sent to worker processes .*--config.data.num_workers=0"):
    workers.WorkerPool(local, start=0, num_workers=2)


def test_close_stops_the_workers_and_is_idempotent():
  pool = workers.WorkerPool(_dataset(_batch), start=0, num_workers=2)
  next(pool)
  processes = list(pool._processes)  # pylint: disable=protected-access
  pool.close()
  pool.close()
  assert not any(p.is_alive() for p in processes)


_ORPHAN = textwrap.dedent("""
    import sys, time
    import grain
    from pix2pix_jax.data import workers
    import test_workers
    if __name__ == "__main__":
      pool = workers.WorkerPool(grain.MapDataset.range(10_000).map(test_workers._batch), start=0,
                                num_workers=2)
      next(pool)
      print(" ".join(str(p.pid) for p in pool._processes), flush=True)
      time.sleep(600)
""")


def _alive(pid: int) -> bool:
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split(")")[-1].split()[0] != "Z"
  except FileNotFoundError:
    return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_workers_exit_when_the_training_process_is_killed(tmp_path):
  # kill -9 of the training process: no clean-up runs there, yet nothing is left behind (the
  # block has no name; the workers see their pipes close).
  script = tmp_path / "orphan.py"
  script.write_text(_ORPHAN)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [os.path.dirname(__file__), os.path.dirname(os.path.dirname(__file__))]))
  parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env=env)
  try:
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
      time.sleep(0.1)
    assert not any(_alive(p) for p in pids)
  finally:
    parent.kill()
