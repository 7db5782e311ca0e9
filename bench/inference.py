"""Generator inference latency: one 256×256 image through `unet_256`, ours vs PyTorch eager.

  python -m bench.inference                 # test-time mode of the paper, then eval mode
  python -m bench.inference --write         # also updates docs/benchmarks.md

Ours is `evaluate.generate` under `jax.jit`, as `evaluate.py`, the translator and the exported
artifact run it; PyTorch is the authors' `UnetGenerator` (`tests/torch_reference.py`) under
`torch.no_grad()`. Mode "paper" is the authors' test.py default (no --eval: dropout on, batch
statistics of the test batch); "eval" uses running averages and no dropout (`model.eval()`).
As in `bench.train_step` each framework has its own worker process and the parent alternates
blocks of calls between them; the result is the median latency per image over all blocks.
"""

from __future__ import annotations

import argparse
import os
import time

from bench import common
from bench import train_step  # the worker processes and their protocol


def jax_worker(mode: str, warmup: int) -> None:
  import functools

  import jax
  import jax.numpy as jnp
  from configs import default
  from pix2pix_jax import evaluate, models, platform

  config = default.get_config()
  platform.configure(config)
  generator = models.make_generator(config)
  image, _ = train_step.random_pair(1)
  image = jnp.asarray(image)
  variables = jax.jit(lambda: generator.init(
      {"params": jax.random.key(0), "dropout": jax.random.key(1)}, image, train=False))()
  key = jax.random.key(2)
  t0 = time.perf_counter()
  generate = jax.jit(functools.partial(evaluate.generate, generator, mode=mode)).lower(
      variables["params"], variables["batch_stats"], image, key).compile()
  compile_s = time.perf_counter() - t0

  def run():
    jax.block_until_ready(generate(variables["params"], variables["batch_stats"], image, key))

  for _ in range(warmup):
    run()
  train_step.send({"compile_s": compile_s, "setup_rss_mb": train_step.current_rss_mb()})
  train_step.serve(run)


def torch_worker(mode: str, warmup: int, threads: int) -> None:
  import torch
  from tests import torch_reference

  torch.set_num_threads(threads)
  torch.manual_seed(0)
  net = torch_reference.define_G(3, 3, 64, "unet_256", "batch", use_dropout=True)
  net.train(mode == "paper")
  image, _ = train_step.random_pair(1)
  image = torch.from_numpy(image).permute(0, 3, 1, 2).contiguous()

  def run():
    with torch.no_grad():
      net(image)

  for _ in range(warmup):
    run()
  train_step.send({"compile_s": None, "setup_rss_mb": train_step.current_rss_mb()})
  train_step.serve(run)


def compare(mode: str, rounds: int, calls: int, warmup: int, threads: int) -> dict:
  results, workers = {}, {}
  for name, kind in (("ours", "jax"), ("pytorch", "torch")):
    workers[name] = train_step.Worker("bench.inference", [
        f"--worker={kind}", f"--mode={mode}", f"--warmup={warmup}", f"--threads={threads}"])
    results[name] = {"setup": workers[name].receive(), "wall": []}
  for r in range(rounds):
    for name in (("ours", "pytorch") if r % 2 == 0 else ("pytorch", "ours")):
      results[name]["wall"] += workers[name].request(f"run {calls}")["wall"]
  for name, worker in workers.items():
    results[name]["final"] = worker.close()
    results[name]["median_ms"] = 1e3 * train_step.median(results[name]["wall"])
    results[name]["min_ms"] = 1e3 * min(results[name]["wall"])
  results["ratio"] = results["pytorch"]["median_ms"] / results["ours"]["median_ms"]
  return results


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--modes", default="paper,eval")
  parser.add_argument("--rounds", type=int, default=6)
  parser.add_argument("--calls", type=int, default=5, help="calls per block")
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
  parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
  parser.add_argument("--mode", default="paper", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    if args.worker == "jax":
      jax_worker(args.mode, args.warmup)
    else:
      torch_worker(args.mode, args.warmup, args.threads)
    return

  load_before = os.getloadavg()
  lines = ["| mode | framework | median ms | min ms | compile s | peak RSS MB |",
           "|---|---|---|---|---|---|"]
  notes = []
  for mode in args.modes.split(","):
    res = compare(mode, args.rounds, args.calls, args.warmup, args.threads)
    for name in ("ours", "pytorch"):
      r = res[name]
      comp = r["setup"]["compile_s"]
      lines.append(f"| {mode} | {'pix2pix-jax' if name == 'ours' else 'PyTorch eager'} | "
                   f"{r['median_ms']:.1f} | {r['min_ms']:.1f} | "
                   f"{'-' if comp is None else f'{comp:.1f}'} | "
                   f"{r['final']['peak_rss_mb']:.0f} |")
    notes.append(f"- {mode}: PyTorch's latency / ours = **{res['ratio']:.2f}×** "
                 f"({len(res['ours']['wall'])} calls of each, interleaved)")
    print(f"{mode}: ours {res['ours']['median_ms']:.1f} ms, PyTorch "
          f"{res['pytorch']['median_ms']:.1f} ms, ratio {res['ratio']:.2f}", flush=True)
  load_after = os.getloadavg()
  notes.append(f"- load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f}")
  header = (f"Machine: {common.machine_line('jax', 'torch')}. Command: "
            "`python -m bench.inference`. One 256×256 image, `unet_256`; "
            f"PyTorch: {args.threads} threads, `torch.no_grad()`.")
  body = "\n".join(lines + [""] + notes)
  print(header)
  print(body)
  if args.write:
    common.write_section("Inference", header + "\n\n" + body)
    print(f"updated {common.DOCS}")


if __name__ == "__main__":
  from pix2pix_jax import cli
  raise SystemExit(cli.call(main))
