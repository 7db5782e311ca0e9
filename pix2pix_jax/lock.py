"""One writer per run: a lock in the workdir that a second launch finds and stops at.

Local disks and NFS: a POSIX lock (`fcntl.lockf`) on WORKDIR/run.lock, held for the run's
lifetime. The kernel frees it when the holder ends, kill -9 included; on NFS the server frees
the lock of a host that died when that host's lease expires (90 s by default on Linux).

Object storage (gs://): WORKDIR/run.lock is an object written only if absent (GCS's
generation precondition, ifGenerationMatch=0), rewritten by its holder every `RENEW_S`
seconds with a precondition on its own generation, and taken over only when it has not been
renewed for `LEASE_S` seconds, or its process is gone from this very host, again with a
precondition on the generation read: two launches never both hold it.

The file names the holder (host, process id, since when) for the message a second launch
prints. Only process 0 of a multi-host run takes the lock: the run's processes are one holder.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import threading
import time
import urllib.parse
from typing import Iterator

from absl import logging
from etils import epath

from pix2pix_jax import errors, storage

NAME = "run.lock"
LEASE_S = 90  # object storage: a lock not renewed for this long is free
RENEW_S = 20


class WorkdirInUseError(errors.UsageError):
  """Another live run holds the workdir."""


def _holder() -> dict:
  return {"host": socket.gethostname(), "pid": os.getpid(),
          "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _in_use(workdir, holder: dict, note: str = "") -> WorkdirInUseError:
  who = (f"host {holder.get('host', '?')}, process {holder.get('pid', '?')}, since "
         f"{holder.get('since', '?')}")
  return WorkdirInUseError(
      f"--workdir {workdir} is in use by another run ({who}{note}); stop that run, or give "
      "this one another --workdir")


def _pid_alive(pid) -> bool:
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, ValueError, TypeError):
    return True
  return True


class _LocalLock:
  """fcntl.lockf on a file in the workdir."""

  def __init__(self, workdir: epath.Path):
    self.path = os.path.join(os.fspath(workdir), NAME)
    self.fd = None

  def acquire(self, workdir) -> None:
    import fcntl  # pylint: disable=g-import-not-at-top  # POSIX only
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        if e.errno not in (errno.EACCES, errno.EAGAIN):
          os.close(fd)
          raise
        try:
          holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except ValueError:
          holder = {}
        # Closing any descriptor of the file would drop our locks on it: we hold none here.
        os.close(fd)
        raise _in_use(workdir, holder) from None
      try:
        same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
      except FileNotFoundError:
        same = False
      if same:
        break
      os.close(fd)  # the holder removed the file as we opened it: lock the new one
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(_holder()).encode(), 0)
    os.fsync(fd)
    self.fd = fd

  def release(self) -> None:
    if self.fd is not None:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(self.path)  # while still locked: a waiting launch then retries the new file
      os.close(self.fd)
      self.fd = None


class _GcsLease:
  """A lease object under generation preconditions (the GCS JSON API, through gcsfs)."""

  def __init__(self, workdir: epath.Path):
    from etils.epath import backend  # pylint: disable=g-import-not-at-top
    url = os.fspath(workdir / NAME)
    self.fs = backend.fsspec_backend.fs(url)
    self.bucket, self.key = url.split("://", 1)[1].split("/", 1)
    base = self.fs._location  # pylint: disable=protected-access
    self.object_url = (f"{base}/storage/v1/b/{self.bucket}/o/"
                       f"{urllib.parse.quote(self.key, safe='')}")
    self.upload_url = f"{base}/upload/storage/v1/b/{self.bucket}/o"
    self.generation = None
    self.lost = False
    self._stop = threading.Event()
    self._thread = None

  def _write(self, holder: dict, if_generation_match) -> str:
    """Uploads `holder` if the object's generation is `if_generation_match` (0: absent);
    returns the new generation. FileExistsError (HTTP 412) when it is not."""
    reply = self.fs.call("POST", self.upload_url, uploadType="media", name=self.key,
                         ifGenerationMatch=if_generation_match,
                         data=json.dumps({**holder, "renewed": time.time()}).encode(),
                         json_out=True)
    return str(reply["generation"])

  def _read(self) -> tuple[str, dict] | None:
    try:
      meta = self.fs.call("GET", self.object_url, json_out=True)
      _, body = self.fs.call("GET", self.object_url, alt="media",
                             ifGenerationMatch=meta["generation"])
    except FileNotFoundError:
      return None
    try:
      holder = json.loads(body)
    except ValueError:
      holder = {}
    return str(meta["generation"]), holder

  def _stale(self, holder: dict) -> bool:
    if holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid")):
      return True
    return time.time() - float(holder.get("renewed", 0)) > LEASE_S

  def acquire(self, workdir) -> None:
    self.holder = _holder()
    for _ in range(3):
      found = self._read()
      try:
        if found is None:
          self.generation = self._write(self.holder, 0)
        else:
          generation, holder = found
          if not self._stale(holder):
            age = time.time() - float(holder.get("renewed", 0))
            raise _in_use(workdir, holder, f", lease renewed {age:.0f} s ago")
          logging.warning("Taking over the expired lock of %s (host %s, process %s).", workdir,
                          holder.get("host"), holder.get("pid"))
          self.generation = self._write(self.holder, generation)
      except FileExistsError:  # another launch wrote it between our read and our write
        continue
      self._thread = threading.Thread(target=self._renew, daemon=True, name="run-lock")
      self._thread.start()
      return
    found = self._read()
    raise _in_use(workdir, found[1] if found else {})

  def _renew(self) -> None:
    while not self._stop.wait(RENEW_S):
      try:
        self.generation = self._write(self.holder, self.generation)
      except FileExistsError:
        self.lost = True
        logging.error("The lock of this run's workdir was taken by another launch.")
        return
      except Exception as e:  # pylint: disable=broad-except  # retried at the next renewal
        logging.warning("Renewing the workdir lock failed (%s); retrying.", storage.describe(e))

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    if self.generation is not None and not self.lost:
      with contextlib.suppress(FileNotFoundError, FileExistsError):
        self.fs.call("DELETE", self.object_url, ifGenerationMatch=self.generation)
    self.generation = None


class RunLock:
  """`with RunLock(workdir) as lock:` holds the workdir for this run (process 0 only).

  `acquire()` may be called early (to stop at once) and again later: it takes the lock once.
  """

  def __init__(self, workdir, enabled: bool = True):
    self.workdir = epath.Path(workdir)
    self.enabled = enabled
    self._lock = None

  def acquire(self) -> None:
    if not self.enabled or self._lock is not None:
      return
    lock = _GcsLease(self.workdir) if storage.is_remote(self.workdir) else _LocalLock(
        self.workdir)
    lock.acquire(self.workdir)
    self._lock = lock

  @property
  def lost(self) -> bool:
    return bool(self._lock is not None and getattr(self._lock, "lost", False))

  def check(self) -> None:
    """Raises when another launch took the lock over (this run paused past the lease)."""
    if self.lost:
      raise WorkdirInUseError(f"--workdir {self.workdir}: another launch took this run's lock "
                              f"(not renewed for {LEASE_S} s); stopping before writing more")

  def release(self) -> None:
    if self._lock is not None:
      self._lock.release()
      self._lock = None

  def __enter__(self) -> "RunLock":
    return self

  def __exit__(self, *exc) -> None:
    self.release()


@contextlib.contextmanager
def held(workdir, enabled: bool = True) -> Iterator[RunLock]:
  with RunLock(workdir, enabled) as run_lock:
    run_lock.acquire()
    yield run_lock
