"""Process-wide JAX settings applied by every entry point before any array is created."""

from __future__ import annotations

import logging as std_logging
import os

import jax
from absl import logging


def configure(config=None) -> None:
  """Random bits independent of sharding; deterministic GPU kernels when the config asks."""
  jax.config.update("jax_threefry_partitionable", True)
  if config is not None and config.get("deterministic", False):
    # XLA's deterministic kernels (GPU scatter/reductions); no effect on CPU, slower on GPU.
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_gpu_deterministic_ops" not in flags:
      os.environ["XLA_FLAGS"] = (flags + " --xla_gpu_deterministic_ops=true").strip()


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
