"""gcp-storage-emulator with the object preconditions and headers of GCS that our clients use.

The emulator ignores `ifGenerationMatch` / `ifGenerationNotMatch` and sends no
`x-goog-generation` with a download; GCS does both, TensorStore's OCDBT (Orbax's checkpoint
format) relies on them and the run lock relies on the first. GCS also answers 503 or 429 now and
then, which clients must retry: here every FLAKY_EVERY-th request for an object whose name holds
"flaky" gets one of them (alternately) without being carried out, and a line `injected <code>
...` on standard output. Run as `python gcs_emulator.py start ...` (the emulator's own
arguments).
"""

import functools
import itertools
import sys
from http import HTTPStatus

from gcp_storage_emulator.exceptions import NotFound
from gcp_storage_emulator.handlers import objects  # patched before the server's routes exist


def _generation(request, storage):
  name = request.params.get("object_id") or (request.query.get("name") or [None])[0]
  if name is None:
    return None
  try:
    return str(storage.get_file_obj(request.params["bucket_name"], name)["generation"])
  except NotFound:
    return None


def _precondition(handler, *, read: bool):
  @functools.wraps(handler)
  def checked(request, response, storage, *args, **kwargs):
    current = _generation(request, storage)
    match = (request.query.get("ifGenerationMatch") or [None])[0]
    not_match = (request.query.get("ifGenerationNotMatch") or [None])[0]
    if match is not None and (current or "0") != match:
      response.status = HTTPStatus.PRECONDITION_FAILED
      response.json({"error": {"code": 412, "message": "Precondition Failed"}})
      return None
    if not_match is not None and current is not None and current == not_match:
      if read:
        response.status = HTTPStatus.NOT_MODIFIED
        return None
      response.status = HTTPStatus.PRECONDITION_FAILED
      response.json({"error": {"code": 412, "message": "Precondition Failed"}})
      return None
    result = handler(request, response, storage, *args, **kwargs)
    if read and current is not None and response.status == HTTPStatus.OK:
      response["x-goog-generation"] = current
      response["x-goog-metageneration"] = "1"
    return result
  return checked


FLAKY_EVERY = 30
_flaky_requests = itertools.count(1)


def _flaky(handler):
  @functools.wraps(handler)
  def sometimes_unavailable(request, response, storage, *args, **kwargs):
    name = request.params.get("object_id") or (
        request.query.get("name") or request.query.get("prefix") or [""])[0]
    if "flaky" in (name or ""):
      n = next(_flaky_requests)
      if n % FLAKY_EVERY == 0:
        status = (HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.TOO_MANY_REQUESTS)[
            (n // FLAKY_EVERY) % 2]
        response.status = status
        response.json({"error": {"code": status.value, "message": "injected: try again"}})
        print(f"injected {status.value} {handler.__name__} {name}", flush=True)
        return None
    return handler(request, response, storage, *args, **kwargs)
  return sometimes_unavailable


objects.download = _flaky(_precondition(objects.download, read=True))
objects.get = _flaky(_precondition(objects.get, read=True))
objects.insert = _flaky(_precondition(objects.insert, read=False))
objects.delete = _flaky(_precondition(objects.delete, read=False))
objects.ls = _flaky(objects.ls)

if __name__ == "__main__":
  from gcp_storage_emulator.__main__ import main  # pylint: disable=g-import-not-at-top
  main(sys.argv[1:])
