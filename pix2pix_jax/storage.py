"""Where a run's files live: a local path or a Cloud Storage URL (gs://), as one path type.

Every path a user gives goes through `resolve`, which returns an `etils.epath.Path` (the path
type TFDS and Orbax use) for both. Object storage has no rename and no append, so the few
writers that need them ask `is_remote` and write whole objects instead (one upload is atomic):
`atomic.atomic_path`, `metrics_log.MetricsLog`, `lock.RunLock`.
"""

from __future__ import annotations

import os
import re
import threading
import uuid

from etils import epath

from pix2pix_jax import errors

# scheme → (the fsspec client that serves it, the extra that installs it). Only schemes whose
# every use here (Orbax's TensorStore, TFDS, the run lock) is tested are listed.
CLIENTS = {"gs": ("gcsfs", "gcs")}
# How long a user-facing check may wait for a bucket's endpoint (seconds).
PROBE_TIMEOUT_S = float(os.environ.get("PIX2PIX_STORAGE_TIMEOUT", 25))
# gcsfs's zonal-bucket probe goes over gRPC first and can hang for a minute against endpoints
# that speak only JSON over HTTP; the JSON API serves every bucket this project writes.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")


def scheme(path) -> str | None:
  """'gs' for gs://..., None for a local path."""
  match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", os.fspath(path))
  return match.group(1).lower() if match else None


def is_remote(path) -> bool:
  return scheme(path) is not None


def resolve(path, flag: str = "path") -> epath.Path:
  """The path a user gave (`flag` names where, e.g. --workdir), local or a bucket URL.

  Local paths are made absolute with ~ expanded. A URL of a scheme without a client here is a
  `errors.UsageError` naming the schemes that work; a missing client, the extra to install.
  """
  text = os.fspath(path)
  kind = scheme(text)
  if kind is None:
    return epath.Path(os.path.abspath(os.path.expanduser(text)))
  if kind not in CLIENTS:
    raise errors.UsageError(
        f"{flag} {text}: {kind}:// is not supported; use a local path or gs://BUCKET/PATH")
  module, extra = CLIENTS[kind]
  try:
    __import__(module)
  except ImportError as e:
    raise errors.MissingExtraError(f"{flag} {text}", module, extra) from e
  return epath.Path(text)


def describe(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def _with_deadline(work, path: epath.Path, flag: str, action: str):
  """Runs `work()` in a thread; a bucket that does not answer within PROBE_TIMEOUT_S is one
  clear error instead of a minute of retries."""
  outcome: dict = {}

  def run():
    try:
      outcome["value"] = work()
    except BaseException as e:  # pylint: disable=broad-except
      outcome["error"] = e

  thread = threading.Thread(target=run, daemon=True, name="storage-probe")
  thread.start()
  thread.join(PROBE_TIMEOUT_S)
  if thread.is_alive():
    raise errors.StorageError(
        f"{flag} {path}: no answer from its storage endpoint within {PROBE_TIMEOUT_S} s while "
        f"{action}; check the network, the bucket name and the credentials "
        "(STORAGE_EMULATOR_HOST for a local server)")
  if "error" in outcome:
    raise outcome["error"]
  return outcome.get("value")


def check_bucket(path: epath.Path, flag: str, *, write: bool = False) -> None:
  """Fails fast, naming the URL, when a bucket path cannot be read (or, with `write`, written):
  an unknown bucket, missing credentials, an unreachable endpoint. Local paths pass."""
  if not is_remote(path):
    return
  bucket = epath.Path(f"{scheme(path)}://{os.fspath(path).split('://', 1)[1].split('/')[0]}")

  def probe():
    try:
      if not bucket.exists():
        raise errors.PathNotFoundError(
            f"{flag} {path}: the bucket {bucket} does not exist (or this account cannot see "
            "it); create it or fix the name")
      if write:
        marker = path / f".write_test_{uuid.uuid4().hex}"
        marker.write_bytes(b"")
        marker.unlink()
    except errors.Pix2pixError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # every client reports differently
      raise errors.StorageError(
          f"{flag} {path}: {'cannot write there' if write else 'cannot read it'} "
          f"({describe(e)}); check the credentials (GOOGLE_APPLICATION_CREDENTIALS or "
          "gcloud auth application-default login) and the bucket's permissions") from e

  _with_deadline(probe, path, flag, "checking the bucket")


def files(path) -> list[epath.Path]:
  """Every file under the folder `path`, recursively (on object storage: every object)."""
  path = epath.Path(path)
  if is_remote(path):
    from etils.epath import backend  # pylint: disable=g-import-not-at-top
    fs = backend.fsspec_backend.fs(os.fspath(path))
    return [epath.Path(f"{scheme(path)}://{name}") for name in fs.find(os.fspath(path))]
  return [epath.Path(root) / name for root, _, names in os.walk(os.fspath(path))
          for name in names]


def invalidate_cache(path) -> None:
  """Forgets the client's cached listings under `path` (gcsfs caches them): call before
  listing what another process may have written."""
  if not is_remote(path):
    return
  from etils.epath import backend  # pylint: disable=g-import-not-at-top
  backend.fsspec_backend.fs(os.fspath(path)).invalidate_cache()
