"""The training loop around the step: no device-to-host copies between log steps, and the
persistent compilation cache (hit on a second launch; an unusable cache never fails a run)."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO_ROOT
from helpers import tiny_config
from pix2pix_jax import loop, platform


def _guard_cpu_arrays_like_accelerators(monkeypatch):
  """Makes a copy of a jax.Array to numpy fail under transfer_guard_device_to_host("disallow").

  On GPU/TPU the guard itself refuses such copies; XLA:CPU's arrays already live in host memory,
  so there it never fires. Every way to numpy goes through `ArrayImpl._value` (float, int, bool,
  item, tolist, device_get, printing) or numpy's asarray/array (the buffer protocol).
  """
  from jax._src import array as array_lib, config as jax_config
  disallowed = lambda: jax_config.transfer_guard_device_to_host.value == "disallow"
  value = array_lib.ArrayImpl._value

  def guarded_value(self):
    if disallowed():
      raise AssertionError("device-to-host copy of a jax.Array in the loop's hot path")
    return value.fget(self)

  monkeypatch.setattr(array_lib.ArrayImpl, "_value", property(guarded_value))
  for name in ("asarray", "array"):
    convert = getattr(np, name)

    def guarded(x, *args, _convert=convert, **kwargs):
      if disallowed() and isinstance(x, jax.Array):
        raise AssertionError("device-to-host copy of a jax.Array in the loop's hot path")
      return _convert(x, *args, **kwargs)

    monkeypatch.setattr(np, name, guarded)


def test_steps_between_log_steps_copy_nothing_to_the_host(tmp_path, monkeypatch):
  _guard_cpu_arrays_like_accelerators(monkeypatch)
  x = jnp.arange(3) + 1
  for copy in (np.asarray, jax.device_get, lambda a: float(a[0]), lambda a: bool(a[1])):
    with jax.transfer_guard_device_to_host("disallow"), pytest.raises(AssertionError):
      copy(x)  # the guard works
  monkeypatch.setattr(loop, "HOT_PATH_TRANSFERS", "disallow")
  config = tiny_config(num_train_steps=7, log_every_steps=3, sample_every_steps=0,
                       eval_every_steps=0, checkpoint_every_steps=0)
  summary = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["step"] == 7
  logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
  assert [r["step"] for r in logged if r["kind"] == "train"] == [3, 6, 7]


def test_unusable_cache_folder_is_reported_and_compiling_goes_on(tmp_path, caplog):
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  previous = jax.config.jax_compilation_cache_dir
  try:
    assert platform.configure_compilation_cache(str(blocker / "cache")) == ""
    assert jax.config.jax_compilation_cache_dir is None
  finally:
    jax.config.update("jax_compilation_cache_dir", previous)
  assert "cannot be used" in caplog.text and "--config.compilation_cache_dir" in caplog.text
  assert platform.compilation_cache_path("") == ""
  assert platform.compilation_cache_path("~/c") == os.path.expanduser("~/c")


def test_default_cache_folder_is_per_user_unless_jax_names_one(monkeypatch, tmp_path):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  assert platform.compilation_cache_path("default") == str(
      tmp_path / "pix2pix_jax" / "jax_compilation_cache")
  assert platform.is_per_host_cache(tiny_config())
  assert not platform.is_per_host_cache(tiny_config(compilation_cache_dir="/shared/cache"))
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/elsewhere")
  assert platform.compilation_cache_path("default") == "/elsewhere"
  assert not platform.is_per_host_cache(tiny_config())


_COMPILE_TWICE = """
import sys
import jax, jax.numpy as jnp
from absl import logging
from pix2pix_jax import platform
logging.set_verbosity(logging.INFO)
platform.configure_compilation_cache(sys.argv[1])
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
with platform.compile_log("f"):
  compiled = f.lower(jnp.ones((64, 64))).compile()
print("value", float(compiled(jnp.ones((64, 64)))))
"""


def _compile_in_a_fresh_process(cache) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  return subprocess.run([sys.executable, "-c", _COMPILE_TWICE, str(cache)], env=env,
                        capture_output=True, text=True, timeout=120, check=True)


def test_a_corrupt_cache_entry_is_a_warning_and_a_normal_compile(tmp_path):
  cache = tmp_path / "cache"
  first = _compile_in_a_fresh_process(cache)
  assert "Compiled f in" in first.stderr and "(compilation cache miss)" in first.stderr
  second = _compile_in_a_fresh_process(cache)
  assert "(compilation cache hit)" in second.stderr
  entries = [p for p in cache.rglob("*") if p.is_file()]
  assert entries
  for entry in entries:
    entry.write_bytes(b"\x00garbage" * 10)
  third = _compile_in_a_fresh_process(cache)
  assert "Error reading persistent compilation cache entry" in third.stderr
  assert "(compilation cache miss)" in third.stderr
  assert third.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]
