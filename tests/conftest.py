"""Shared test settings: CPU only, fast, deterministic."""

import os
import pathlib
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The real CMP facades (the authors' facades/ folder: train/, val/), where the environment
# variable PIX2PIX_FACADES_DIR points (CI sets it); tests that need them skip without it.
REAL_FACADES = pathlib.Path(os.environ.get("PIX2PIX_FACADES_DIR") or "/nonexistent/facades")

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests (and the launch.py subprocesses they start, which inherit the environment) compile
# the same tiny networks: XLA's persistent cache makes every compile after the first a lookup.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(REPO_ROOT / ".pytest_cache" / "jax_compilation_cache"))

if str(REPO_ROOT) not in sys.path:
  sys.path.insert(0, str(REPO_ROOT))


# The modules that take longest, first: pytest-xdist (--dist loadfile) hands whole modules to
# the workers in collection order, so starting with the long ones keeps both workers busy to the
# end instead of leaving one of them alone with a long module.
LONGEST_FIRST = ("test_multiprocess", "test_parallel", "test_launch", "test_torch_equivalence",
                 "test_reproducibility", "test_kernels", "test_models", "test_train",
                 "test_onnx_export", "test_walkthrough", "test_demo")


def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.path.stem
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
  items.sort(key=rank)  # stable: tests keep their order within a module


@pytest.fixture(scope="session")
def gcs(tmp_path_factory):
  """A GCS server on 127.0.0.1 for this test worker, with the clients of this process (and of
  the launches it starts) pointed at it; yields it, reaps it at the end."""
  import gcs_server
  server = gcs_server.GcsServer(tmp_path_factory.mktemp("gcs") / "server.log")
  previous = gcs_server.apply(server.environment())
  try:
    yield server
  finally:
    gcs_server.restore(previous)
    server.stop()
