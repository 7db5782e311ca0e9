"""Helpers shared by the tests: tiny configs and subprocess launches."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO_ROOT

TINY_CONFIG = str(REPO_ROOT / "tests" / "configs" / "tiny.py")


def tiny_config(**overrides):
  """The tiny test config as a ConfigDict, with dotted-key overrides."""
  sys.path.insert(0, str(REPO_ROOT / "tests" / "configs"))
  try:
    import tiny
  finally:
    sys.path.pop(0)
  config = tiny.get_config()
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def run_launch(workdir, *overrides, config=TINY_CONFIG, devices: int = 1, timeout: int = 300,
               check: bool = True, env_extra: dict | None = None) -> subprocess.CompletedProcess:
  """Runs launch.py in a subprocess on CPU with `devices` fake devices (`config=None`: no
  --config flag)."""
  env = dict(os.environ)
  env["JAX_PLATFORMS"] = "cpu"
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["PYTHONPATH"] = str(REPO_ROOT)
  env.update(env_extra or {})
  cmd = [sys.executable, str(REPO_ROOT / "launch.py"),
         *([f"--config={config}"] if config is not None else []), f"--workdir={workdir}",
         *overrides]
  result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
  if check and result.returncode != 0:
    raise AssertionError(f"launch failed ({result.returncode}):\n{result.stderr[-4000:]}")
  return result


def synthetic_batch(n: int = 2, size: int = 32):
  """A fixed label map → photo batch of `n` synthetic facades, as float arrays in [-1, 1]."""
  import jax.numpy as jnp
  import numpy as np

  from pix2pix_jax.data.synthetic import SyntheticFacades
  source = SyntheticFacades(n, size, seed=0)
  as_float = lambda key: jnp.asarray(
      np.stack([source[i][key] for i in range(n)]).astype(np.float32) / 127.5 - 1)
  return {"A": as_float("b"), "B": as_float("a")}


def l1_curve(step, state, batch, steps: int = 40):
  """(G L1 loss at each of `steps` training steps on one fixed batch, the final state)."""
  l1 = []
  for _ in range(steps):
    state, metrics = step(state, batch)
    l1.append(float(metrics["g_l1"]))
  return l1, state
