"""Process-wide JAX settings applied by every entry point before any array is created."""

from __future__ import annotations

import ctypes
import logging as std_logging
import os

import jax
from absl import logging


# XLA flags every entry point sets (unless XLA_FLAGS already names them). Region analysis in
# XLA:CPU's copy insertion lets the donated train state be updated in place: without it XLA
# copies every parameter and Adam moment that is read by more than one operation before its
# in-place update (the decoder's and bottleneck's largest kernels, ~190 MB for unet_256), and
# schedules the copies at the start of the step, so they sit under its peak. Results are bit
# for bit the same; peak memory and time drop (docs/benchmarks.md). Other backends ignore it.
DEFAULT_XLA_FLAGS = ("--xla_cpu_copy_insertion_use_region_analysis=true",)


def _add_xla_flag(flag: str) -> bool:
  """Appends `--name=value` to XLA_FLAGS unless `--name` is there; True if it was added."""
  flags = os.environ.get("XLA_FLAGS", "")
  if flag.split("=")[0] in flags:
    return False
  os.environ["XLA_FLAGS"] = (flags + " " + flag).strip()
  return True


def configure(config=None) -> None:
  """Random bits independent of sharding; `DEFAULT_XLA_FLAGS`; deterministic GPU kernels when
  the config asks.

  `config.deterministic` adds `--xla_gpu_deterministic_ops=true` to XLA_FLAGS: XLA:GPU then
  uses deterministic implementations of scatter, reductions, matrix products and convolutions
  and does not autotune (a kernel chosen by timing can differ between runs). XLA reads its flags
  when JAX starts its backend, so entry points call this before creating any array. CPU and TPU
  ignore it. What it costs: docs/reproducibility.md.
  """
  jax.config.update("jax_threefry_partitionable", True)
  started = _backend_started()
  for flag in DEFAULT_XLA_FLAGS:
    _add_xla_flag(flag)
  if config is not None and config.get("deterministic", False):
    if _add_xla_flag("--xla_gpu_deterministic_ops=true") and started:
      logging.warning("config.deterministic is set after JAX started its backend: XLA will "
                      "not see --xla_gpu_deterministic_ops in this process.")
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
