"""Helpers shared by the tests: tiny configs, subprocess launches, reference convolutions."""

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


# ---- Reference convolutions, written independently of pix2pix_jax.kernels.

def plain_conv(x, kernel, stride):
  """PyTorch Conv2d(k=4, p=1, stride) as one XLA convolution at full precision."""
  import jax
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), ((1, 1), (1, 1)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest")


def plain_conv_transpose(x, kernel):
  """PyTorch ConvTranspose2d(k=4, s=2, p=1): a convolution of the 2-dilated input with the
  spatially flipped kernel and padding k-1-p = 2 on each side."""
  import jax
  return jax.lax.conv_general_dilated(
      x, kernel[::-1, ::-1], (1, 1), ((2, 2), (2, 2)), lhs_dilation=(2, 2),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), precision="highest")


def torch_semantics_conv_transpose(x, kernel):
  """ConvTranspose2d(k, s=2, p=1, output_padding=k-3) by its definition (numpy, float64):
  out[2i + kh - 1] += x[i] @ w[kh], cropped to 2H × 2W (k = 4, and k = 3 with output_padding 1).
  """
  import numpy as np
  x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
  n, h, w, _ = x.shape
  k = kernel.shape[0]
  out = np.zeros((n, 2 * h + k - 1, 2 * w + k - 1, kernel.shape[-1]))
  for kh in range(k):
    for kw in range(k):
      out[:, kh:kh + 2 * h:2, kw:kw + 2 * w:2] += x @ kernel[kh, kw]
  return out[:, 1:2 * h + 1, 1:2 * w + 1]
