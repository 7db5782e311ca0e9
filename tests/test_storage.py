"""Paths in a bucket (storage.py, atomic.py, metrics_log.py) and one writer per run (lock.py),
against a real GCS JSON-API server on 127.0.0.1 (the `gcs` fixture) and on the local disk."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from etils import epath

from conftest import REPO_ROOT
from pix2pix_jax import atomic, errors, lock, metrics_log, storage


def _bucket_path(name: str) -> epath.Path:
  return epath.Path(f"gs://runs/{name}-{time.time_ns()}")


# ---------------------------------------------------------------------------- paths

def test_paths_take_local_paths_and_gs_urls_and_name_what_else_works(monkeypatch, tmp_path):
  assert storage.resolve("~/x", "--workdir") == epath.Path(os.path.expanduser("~/x"))
  assert os.fspath(storage.resolve("gs://bucket/run", "--workdir")) == "gs://bucket/run"
  with pytest.raises(errors.UsageError, match=r"--workdir s3://b/run: s3:// is not supported; "
                                              r"use a local path or gs://BUCKET/PATH"):
    storage.resolve("s3://b/run", "--workdir")
  monkeypatch.setitem(sys.modules, "gcsfs", None)  # as where the gcs extra is not installed
  with pytest.raises(errors.MissingExtraError, match=r'pip install -e "\.\[gcs\]"'):
    storage.resolve("gs://bucket/run", "--workdir")


def test_an_unknown_bucket_is_named(gcs):
  with pytest.raises(errors.PathNotFoundError, match="the bucket gs://no-such-bucket does not"):
    storage.check_bucket(epath.Path("gs://no-such-bucket/run"), "--workdir")
  storage.check_bucket(epath.Path("gs://runs/run"), "--workdir", write=True)


# ---------------------------------------------------------------------------- whole files

def test_atomic_writes_upload_whole_objects_and_mark_folders_complete(gcs):
  base = _bucket_path("atomic")
  with atomic.atomic_path(base / "page.html") as temporary:
    temporary.write_text("complete")
  assert (base / "page.html").read_text() == "complete"
  with pytest.raises(RuntimeError), atomic.atomic_path(base / "page.html") as temporary:
    temporary.write_text("half")
    raise RuntimeError("killed")
  assert (base / "page.html").read_text() == "complete"
  folder = base / "extracted"
  with atomic.atomic_path(folder) as temporary:
    (temporary / "train").mkdir(parents=True)
    (temporary / "train" / "1.png").write_bytes(b"png")
    assert not atomic.is_complete(folder)
  assert atomic.is_complete(folder) and (folder / "train" / "1.png").read_bytes() == b"png"


def test_metrics_grow_without_append_and_a_resume_drops_later_lines(gcs):
  workdir = _bucket_path("metrics")
  log = metrics_log.MetricsLog(workdir)
  written = 0
  for step in range(1, 7):
    log.append({"kind": "train", "step": step, "g_l1": 1.0 / step})
    if step % 2 == 0:
      log.flush()  # one new object per flush, never a rewrite
  parts = sorted(p.name for p in (workdir / metrics_log.PARTS).iterdir())
  assert parts == ["000000000001.jsonl", "000000000003.jsonl", "000000000005.jsonl"]
  assert not (workdir / metrics_log.NAME).exists()
  written += sum(len(p.read_bytes()) for p in (workdir / metrics_log.PARTS).iterdir())
  lines = metrics_log.read_lines(workdir)
  assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]

  resumed = metrics_log.MetricsLog(workdir)  # a run resumed from checkpoint 4
  resumed.truncate_after(4)
  assert [json.loads(line)["step"] for line in metrics_log.read_lines(workdir)] == [1, 2, 3, 4]
  resumed.append({"kind": "train", "step": 5, "g_l1": 0.5})
  resumed.close()
  final = (workdir / metrics_log.NAME).read_bytes()
  assert [json.loads(line)["step"] for line in final.decode().splitlines()] == [1, 2, 3, 4, 5]
  assert not list((workdir / metrics_log.PARTS).iterdir()) if (
      workdir / metrics_log.PARTS).exists() else True
  local = sum(len(line) + 1 for line in final.decode().splitlines())
  assert written <= 2 * local


# ---------------------------------------------------------------------------- one writer

_HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from pix2pix_jax import lock
    with lock.held(sys.argv[1]):
      print("held", flush=True)
      time.sleep(600)
""")


def _hold_in_subprocess(workdir, env=None):
  process = subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, "-c", _HOLDER.format(repo=str(REPO_ROOT)), os.fspath(workdir)],
      stdout=subprocess.PIPE, text=True, env=env)
  assert process.stdout.readline().strip() == "held"
  return process


def test_a_second_writer_on_a_local_workdir_is_refused_until_the_first_dies(tmp_path):
  holder = _hold_in_subprocess(tmp_path)
  try:
    with pytest.raises(lock.WorkdirInUseError, match=rf"--workdir {tmp_path} is in use by another "
                       rf"run \(host {socket.gethostname()}, process {holder.pid}, since "):
      lock.RunLock(tmp_path).acquire()
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with lock.held(tmp_path):  # the kernel freed the dead holder's lock at once
    assert (tmp_path / lock.NAME).exists()
  assert not (tmp_path / lock.NAME).exists()


def test_a_bucket_lock_is_created_if_absent_renewed_under_its_generation_and_expires(
    gcs, monkeypatch):
  import gcsfs
  requests = []
  send = gcsfs.GCSFileSystem._request  # pylint: disable=protected-access

  async def recording(self, method, path, *args, **kwargs):  # every HTTP request gcsfs sends
    if "run.lock" in str(path) or str(kwargs.get("name", "")).endswith("run.lock"):
      requests.append((method, {k: v for k, v in kwargs.items() if k != "data"}))
    return await send(self, method, path, *args, **kwargs)

  monkeypatch.setattr(gcsfs.GCSFileSystem, "_request", recording)
  monkeypatch.setattr(lock, "RENEW_S", 0.2)
  workdir = _bucket_path("lock")
  first = lock.RunLock(workdir)
  first.acquire()
  time.sleep(0.7)  # a few renewals
  uploads = [kw for method, kw in requests if method == "POST"]
  assert uploads[0]["ifGenerationMatch"] == 0, "created only if absent"
  assert len(uploads) >= 2 and all(int(kw["ifGenerationMatch"]) > 0 for kw in uploads[1:]), \
      "renewed only over its own generation"
  with pytest.raises(lock.WorkdirInUseError, match=rf"process {os.getpid()}, since .*, lease "):
    lock.RunLock(workdir).acquire()
  first.release()
  assert requests[-1][0] == "DELETE" and int(requests[-1][1]["ifGenerationMatch"]) > 0
  assert not (workdir / lock.NAME).exists()

  # A holder that stopped renewing: after LEASE_S its lock is taken over, again under the
  # generation that was read.
  (workdir / lock.NAME).write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": "then",
                                               "renewed": time.time() - lock.LEASE_S - 1}))
  requests.clear()
  with lock.held(workdir):
    takeover = [kw for method, kw in requests if method == "POST"][0]
    assert int(takeover["ifGenerationMatch"]) > 0
