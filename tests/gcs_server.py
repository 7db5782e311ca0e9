"""A GCS JSON-API server on 127.0.0.1 for the tests (gcp-storage-emulator, in memory, with
GCS's object preconditions: gcs_emulator.py).

`GcsServer` starts one on a free port and stops it; `environment()` is what points gcsfs (and
so etils.epath), Orbax's TensorStore and array_record at it. The server does not check
credentials.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

BUCKET = "runs"


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class GcsServer:

  def __init__(self, log_path):
    self.port = free_port()
    self.url = f"http://127.0.0.1:{self.port}"
    self.log_path = pathlib.Path(log_path)
    self._log = open(log_path, "wb")  # pylint: disable=consider-using-with
    self.process = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, str(pathlib.Path(__file__).with_name("gcs_emulator.py")), "start",
         "--host", "127.0.0.1",
         "--port", str(self.port), "--default-bucket", BUCKET, "--in-memory"],
        stdout=self._log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
      try:
        urllib.request.urlopen(f"{self.url}/storage/v1/b/{BUCKET}", timeout=1).read()
        break
      except OSError:
        if self.process.poll() is not None or time.monotonic() > deadline:
          self.stop()
          raise RuntimeError(f"the GCS server did not start (see {log_path})") from None
        time.sleep(0.1)

  def environment(self) -> dict[str, str]:
    return {"STORAGE_EMULATOR_HOST": self.url, "TENSORSTORE_GCS_HTTP_URL": self.url,
            "CLOUD_STORAGE_EMULATOR_ENDPOINT": self.url,
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}

  def stop(self) -> None:
    if self.process.poll() is None:
      self.process.terminate()
      try:
        self.process.wait(10)
      except subprocess.TimeoutExpired:
        self.process.kill()
        self.process.wait()
    self._log.close()


def apply(environment: dict[str, str]) -> dict[str, str | None]:
  """Sets `environment` in os.environ; returns the previous values."""
  previous = {k: os.environ.get(k) for k in environment}
  os.environ.update(environment)
  return previous


def restore(previous: dict[str, str | None]) -> None:
  for key, value in previous.items():
    if value is None:
      os.environ.pop(key, None)
    else:
      os.environ[key] = value
