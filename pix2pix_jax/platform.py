"""Process-wide JAX settings applied by every entry point before any array is created."""

from __future__ import annotations

import ctypes
import logging as std_logging
import os

import jax
from absl import logging


def configure(config=None) -> None:
  """Random bits independent of sharding; deterministic GPU kernels when the config asks.

  `config.deterministic` adds `--xla_gpu_deterministic_ops=true` to XLA_FLAGS: XLA:GPU then
  uses deterministic implementations of scatter, reductions, matrix products and convolutions
  and does not autotune (a kernel chosen by timing can differ between runs). XLA reads the flag
  when JAX starts its backend, so entry points call this before creating any array. CPU and TPU
  ignore it. What it costs: docs/reproducibility.md.
  """
  jax.config.update("jax_threefry_partitionable", True)
  if config is not None and config.get("deterministic", False):
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_gpu_deterministic_ops" not in flags:
      if _backend_started():
        logging.warning("config.deterministic is set after JAX started its backend: XLA will "
                        "not see --xla_gpu_deterministic_ops in this process.")
      os.environ["XLA_FLAGS"] = (flags + " --xla_gpu_deterministic_ops=true").strip()
    logging.info("Deterministic XLA:GPU kernels requested (XLA_FLAGS=%s)",
                 os.environ["XLA_FLAGS"])


def release_free_host_memory() -> None:
  """Returns the C heap's free pages to the operating system (glibc's `malloc_trim`).

  Initialisation and XLA compilation free several hundred MB that glibc keeps in the arenas of
  the threads that used them, where the training step's threads never reuse them: trimming
  after them cuts the steady resident memory of a unet_256 run by ~25% (docs/benchmarks.md).
  Does nothing where the C library has no `malloc_trim`.
  """
  try:
    ctypes.CDLL(None).malloc_trim(0)
  except (OSError, AttributeError):
    pass


def _backend_started() -> bool:
  try:
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # a JAX without this internal: assume not started
    return False


class _OwnInfoOnly(std_logging.Filter):
  """Keeps INFO from this project's files; other libraries (Orbax, grain, ...) show warnings."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING:
      return True
    path = record.pathname.replace(os.sep, "/")
    return "/pix2pix_jax/" in path or path.endswith("launch.py")


def quiet_library_logs() -> None:
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _OwnInfoOnly) for f in handler.filters):
    handler.addFilter(_OwnInfoOnly())
