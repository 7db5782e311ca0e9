"""Process-wide JAX settings applied by every entry point before any array is created."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging as std_logging
import os
import tempfile
import time

import jax
from absl import logging
from etils import epath

from pix2pix_jax import errors, storage

# XLA flags every entry point sets (unless XLA_FLAGS already names them). Region analysis in
# XLA:CPU's copy insertion lets the donated train state be updated in place: without it XLA
# copies every parameter and Adam moment that is read by more than one operation before its
# in-place update (the decoder's and bottleneck's largest kernels, for unet_256), and
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
  """Random bits independent of sharding; `DEFAULT_XLA_FLAGS`; the persistent compilation cache
  (`configure_compilation_cache`); deterministic GPU kernels when the config asks.

  `config.deterministic` adds `--xla_gpu_deterministic_ops=true` to XLA_FLAGS: XLA:GPU then
  uses deterministic implementations of scatter, reductions, matrix products and convolutions
  and does not autotune (a kernel chosen by timing can differ between runs). XLA reads its flags
  when JAX starts its backend, so entry points call this before creating any array. CPU and TPU
  ignore it. What it costs: docs/reproducibility.md.
  """
  jax.config.update("jax_threefry_partitionable", True)
  configure_compilation_cache(
      DEFAULT_CACHE if config is None else config.get("compilation_cache_dir", DEFAULT_CACHE))
  started = _backend_started()
  for flag in DEFAULT_XLA_FLAGS:
    _add_xla_flag(flag)
  if config is not None and config.get("deterministic", False):
    if _add_xla_flag("--xla_gpu_deterministic_ops=true") and started:
      logging.warning("config.deterministic is set after JAX started its backend: XLA will "
                      "not see --xla_gpu_deterministic_ops in this process.")
    logging.info("Deterministic XLA:GPU kernels requested (XLA_FLAGS=%s)",
                 os.environ["XLA_FLAGS"])


# ---------------------------------------------------------------------------- compilation cache

# `config.compilation_cache_dir` value for the per-user folder (or JAX_COMPILATION_CACHE_DIR).
DEFAULT_CACHE = "default"
# The jax.monitoring events of JAX's persistent compilation cache.
_CACHE_REQUEST = "/jax/compilation_cache/compile_requests_use_cache"
_CACHE_HIT = "/jax/compilation_cache/cache_hits"


def compilation_cache_path(setting: str) -> str:
  """The folder `config.compilation_cache_dir` names; "" when the cache is off.

  "default": JAX_COMPILATION_CACHE_DIR when set, else the per-user cache folder
  ($XDG_CACHE_HOME or ~/.cache)/pix2pix_jax/jax_compilation_cache, on this host.
  """
  if setting == DEFAULT_CACHE:
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
      return os.environ["JAX_COMPILATION_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pix2pix_jax", "jax_compilation_cache")
  if storage.is_remote(setting):  # a bucket the hosts of a pod share; JAX reads it via epath
    return os.fspath(storage.resolve(setting, "--config.compilation_cache_dir"))
  return os.path.expanduser(setting) if setting else ""


def is_per_host_cache(config) -> bool:
  """Whether the config keeps the cache in the per-user folder of each host."""
  return (config.get("compilation_cache_dir", DEFAULT_CACHE) == DEFAULT_CACHE
          and not os.environ.get("JAX_COMPILATION_CACHE_DIR"))


def _unusable(path: str) -> str:
  """Why `path` cannot hold the cache ("" when it can): it must be a writable folder."""
  if storage.is_remote(path):
    try:
      storage.check_bucket(epath.Path(path), "--config.compilation_cache_dir", write=True)
    except errors.Pix2pixError as e:
      return str(e)
    return ""
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
      pass
  except OSError as e:
    return f"{type(e).__name__}: {e.strerror or e}"
  return ""


def configure_compilation_cache(setting: str = DEFAULT_CACHE) -> str:
  """Turns JAX's persistent compilation cache on in the folder `setting` names ("" = off).

  A launch that compiles a program this host has compiled before (the same step, shapes, JAX
  and XLA flags) reads the executable instead of compiling it again; on GPU, XLA's autotuning
  results are kept there too. A folder that cannot be written is reported and the run compiles
  as usual (JAX itself warns about, and skips, an entry it cannot read). Returns the folder
  used ("" when off).
  """
  path = compilation_cache_path(setting)
  if path and (problem := _unusable(path)):
    logging.warning("The compilation cache folder %s cannot be used (%s); compiling without "
                    "it. Set --config.compilation_cache_dir to a writable folder, or to '' to "
                    "turn the cache off.", path, problem)
    path = ""
  jax.config.update("jax_compilation_cache_dir", path or None)
  if path:
    logging.info("Compilation cache: %s", path)
  return path


@contextlib.contextmanager
def compile_log(what: str):
  """Logs how long compiling `what` took inside the block and whether the cache served it.

  Yields a dict that holds, after the block, "seconds" and "cache" (off | hit | miss).
  """
  events, record = collections.Counter(), {}
  listener = lambda event, **kwargs: events.update([event])
  jax.monitoring.register_event_listener(listener)
  start = time.perf_counter()
  try:
    yield record
  finally:
    jax.monitoring.unregister_event_listener(listener)
  record["seconds"] = time.perf_counter() - start
  requests, hits = events[_CACHE_REQUEST], events[_CACHE_HIT]
  record["cache"] = "off" if not requests else "hit" if hits == requests else "miss"
  detail = f", {hits} of {requests} hits" if record["cache"] == "miss" and hits else ""
  logging.info("Compiled %s in %.1f s (compilation cache %s%s)", what, record["seconds"],
               record["cache"], detail)


def release_free_host_memory() -> None:
  """Returns the C heap's free pages to the operating system (glibc's `malloc_trim`).

  Initialisation and XLA compilation free several hundred MB that glibc keeps in the arenas of
  the threads that used them, where the training step's threads never reuse them: trimming
  after them cuts the steady resident memory of a unet_256 run (docs/benchmarks.md).
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
