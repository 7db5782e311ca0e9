"""Per-layer timings of every CPU conv formulation in `pix2pix_jax.kernels`, to choose the dispatch.

  python -m bench.layers --batch=4          # ~3 min on 2 cores
  python -m bench.layers --batch=1 --reps=10

For every 4×4 conv and transposed conv of the paper's model (`unet_256` + basic 70×70 PatchGAN,
256-px RGB pairs) it times one jitted forward + backward pass (gradients for input and kernel)
of each applicable formulation and prints a Markdown table: milliseconds (the fastest of
`--reps` runs, which is the most robust on a shared machine) and GFLOP/s counted with the
direct convolution's FLOPs (2 per multiply-add, three matrix products), so Winograd's show as
"effective" GFLOP/s. `dispatch` is what `conv4x4` / `conv_transpose4x4` pick.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import jax
import jax.numpy as jnp

from pix2pix_jax.kernels import cpu, xla
from pix2pix_jax.kernels.winograd import (conv4x4_s1_winograd, conv4x4_winograd,
                                          conv_transpose4x4_winograd)

Conv = Callable[[jax.Array, jax.Array], jax.Array]

# (name, input H = W, Cin, Cout, stride); the discriminator sees 6 channels (input + output).
CONVS = [
    ("G down_0", 256, 3, 64, 2), ("G down_1", 128, 64, 128, 2), ("G down_2", 64, 128, 256, 2),
    ("G down_3", 32, 256, 512, 2), ("G down_4", 16, 512, 512, 2), ("G down_5", 8, 512, 512, 2),
    ("G down_6", 4, 512, 512, 2), ("G down_7", 2, 512, 512, 2),
    ("D conv_0", 256, 6, 64, 2), ("D conv_1", 128, 64, 128, 2), ("D conv_2", 64, 128, 256, 2),
    ("D conv_3", 32, 256, 512, 1), ("D conv_4", 31, 512, 1, 1),
]
# (name, input H = W, Cin, Cout): the decoder's inputs are the skip concatenations.
TRANSPOSED = [
    ("G up_7", 1, 512, 512), ("G up_6", 2, 1024, 512), ("G up_5", 4, 1024, 512),
    ("G up_4", 8, 1024, 512), ("G up_3", 16, 1024, 256), ("G up_2", 32, 512, 128),
    ("G up_1", 64, 256, 64), ("G up_0", 128, 128, 3),
]


def conv_forms(h: int, stride: int) -> dict[str, Conv]:
  forms = {
      "dispatch": lambda x, k: cpu.conv4x4(x, k, stride),
      "lax": lambda x, k: xla.conv(x, k, stride, 1),
      "im2col": lambda x, k: cpu.conv4x4_im2col(x, k, stride),
  }
  if stride == 2 and h % 4 == 0:
    forms["winograd"] = conv4x4_winograd
  if stride == 1:
    forms["winograd_s1"] = conv4x4_s1_winograd
  return forms


def transposed_forms(h: int) -> dict[str, Conv]:
  forms = {
      "dispatch": cpu.conv_transpose4x4,
      "xla": lambda x, k: xla.conv_transpose(x, k, 2, 1),
      "col2im": cpu.conv_transpose4x4_col2im,
      "taps": cpu.conv_transpose4x4_taps,
  }
  if h % 2 == 0:
    forms["winograd"] = conv_transpose4x4_winograd
  return forms


def time_fwd_bwd(conv: Conv, x: jax.Array, kernel: jax.Array, reps: int) -> float:
  """Fastest of `reps` runs of a jitted forward + backward pass, in seconds."""
  def loss(x, k):
    y = conv(x, k)
    return jnp.vdot(y, jnp.cos(y))  # a cotangent that depends on y, as a real loss's does

  step = jax.jit(jax.grad(loss, argnums=(0, 1)))
  jax.block_until_ready(step(x, kernel))
  best = float("inf")
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(step(x, kernel))
    best = min(best, time.perf_counter() - start)
  return best


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=4)
  parser.add_argument("--reps", type=int, default=5)
  parser.add_argument("--only", default="", help="substring of the layer names to time")
  args = parser.parse_args()

  rows = []
  cases = ([(name, h, cin, cout, stride, False) for name, h, cin, cout, stride in CONVS]
           + [(name, h, cin, cout, 2, True) for name, h, cin, cout in TRANSPOSED])
  for name, h, cin, cout, stride, transposed in cases:
    if args.only not in name:
      continue
    kx, kk = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (args.batch, h, h, cin))
    kernel = 0.02 * jax.random.normal(kk, (4, 4, cin, cout))
    if transposed:
      forms, out_pixels = transposed_forms(h), args.batch * h * h  # FLOPs per input pixel
    else:
      out = (h + 2 - 4) // stride + 1
      forms, out_pixels = conv_forms(h, stride), args.batch * out * out
    flops = 3 * 2 * out_pixels * 16 * cin * cout
    cells = []
    for form, conv in forms.items():
      seconds = time_fwd_bwd(conv, x, kernel, args.reps)
      cells.append(f"{form} {seconds * 1e3:.1f} ms ({flops / seconds / 1e9:.0f})")
    shape = f"{h}² {cin}→{cout}" + (" s1" if stride == 1 else "")
    rows.append(f"| {name} {'(T)' if transposed else ''} | {shape} | " + " | ".join(cells) + " |")
    print(rows[-1], flush=True)

  print(f"\nbatch {args.batch}, fwd+bwd, fastest of {args.reps}; ms (GFLOP/s, direct FLOPs)\n")
  print("| layer | shape | formulations |\n|---|---|---|")
  print("\n".join(rows))


if __name__ == "__main__":
  from pix2pix_jax import cli
  raise SystemExit(cli.call(main))
