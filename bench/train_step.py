"""Training-step throughput: this package's jitted step vs the authors' PyTorch step, side by side.

  python -m bench.train_step                      # batch 1 and 4, prints a table (~6 min)
  python -m bench.train_step --batch_sizes=1 --rounds=8
  python -m bench.train_step --write              # also updates docs/benchmarks.md

The model is the paper's default: `unet_256` generator + 70×70 PatchGAN (`basic`), 256×256 RGB
pairs, Adam(2e-4, β1 0.5), vanilla GAN loss + 100·L1. Both sides run one full training step:

* ours: `loop.Experiment` builds the state and the jitted, donating `train_step` exactly as
  `launch.py --mode=train` does (after `platform.configure`, as every entry point);
* PyTorch: the authors' `UnetGenerator` / `NLayerDiscriminator` and their
  `Pix2PixModel.optimize_parameters` (D on fake.detach() and real, then G through the updated
  D) from `tests/torch_reference.py`, eager, `torch.set_num_threads(<cores>)`.

Each framework lives in its own worker process (so its peak RSS is its own and neither sees the
other's threads). The parent alternates blocks of steps between them — ours, PyTorch, PyTorch,
ours, ... — so that both see the same machine load, and reports median seconds per step over all
blocks, images/s, compile time (ours: `lower().compile()`; PyTorch has none), CPU seconds per
step, peak and steady RSS, achieved GFLOP/s (the model's FLOPs with every convolution computed
directly, as PyTorch does, from XLA's `cost_analysis()` of our step with
`model.conv_impl="xla"`; the same count for both) and the throughput
ratio ours/PyTorch. The machine's load average is printed with the results: on a shared machine
compare ratios measured in one run, never absolute times across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

from bench.common import DOCS, REPO, direct_flops, machine_line, write_section
PROTOCOL = "@@"  # prefix of the workers' protocol lines on stdout; anything else is a log line
QUIET = 0.10  # a round is quiet when other processes used < 10% of the machine in both blocks
IMAGE_SIZE = 256


# --------------------------------------------------------------------------- shared helpers

def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mb() -> float:
  try:
    pages = int(pathlib.Path("/proc/self/statm").read_text().split()[1])
  except OSError:
    return float("nan")
  return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def send(message: dict) -> None:
  print(PROTOCOL + json.dumps(message), flush=True)


def random_pair(batch_size: int, seed: int = 0):
  import numpy as np
  rng = np.random.default_rng(seed)
  shape = (batch_size, IMAGE_SIZE, IMAGE_SIZE, 3)
  return (rng.uniform(-1, 1, shape).astype(np.float32),
          rng.uniform(-1, 1, shape).astype(np.float32))


def cpu_busy_seconds() -> float:
  """CPU seconds all processes on the machine have used since boot (/proc/stat), or nan."""
  try:
    fields = pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
  except OSError:
    return float("nan")
  user, nice, system, idle, iowait, irq, softirq, steal = (int(f) for f in fields[:8])
  return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_block(worker: "Worker", count: int) -> dict:
  """`count` steps on `worker`, with the share of the machine other processes used meanwhile.

  `others` is (CPU seconds of the whole machine - the worker's own CPU seconds) / (wall seconds ·
  cores): 0 on an idle machine, 0.5 when other processes kept one of two cores busy.
  """
  busy0, t0 = cpu_busy_seconds(), time.perf_counter()
  block = worker.request(f"run {count}")
  busy1, wall = cpu_busy_seconds(), time.perf_counter() - t0
  block["others"] = max(0.0, (busy1 - busy0 - sum(block["cpu"])) / (wall * os.cpu_count()))
  return block


class Worker:
  """A benchmark worker subprocess (`python -m MODULE ARGS`) driven line by line over stdio."""

  def __init__(self, module: str, args: list[str]):
    self.proc = subprocess.Popen([sys.executable, "-m", module, *args], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, cwd=REPO)

  def receive(self) -> dict:
    for line in self.proc.stdout:
      if line.startswith(PROTOCOL):
        return json.loads(line[len(PROTOCOL):])
    raise RuntimeError(f"worker {self.proc.args} exited with {self.proc.wait()}")

  def request(self, command: str) -> dict:
    self.proc.stdin.write(command + "\n")
    self.proc.stdin.flush()
    return self.receive()

  def close(self) -> dict:
    final = self.request("quit")
    self.proc.wait(timeout=60)
    return final


def serve(run_steps, final=None) -> None:
  """Worker side: answers `run N` with N steps' wall and CPU seconds, `quit` with its RSS (and
  what `final()` adds, computed after the RSS is read so that it does not count)."""
  for line in sys.stdin:
    command = line.split()
    if command[0] == "run":
      walls, cpus = [], []
      for _ in range(int(command[1])):
        c0, t0 = time.process_time(), time.perf_counter()
        run_steps()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
      send({"wall": walls, "cpu": cpus})
    elif command[0] == "quit":
      message = {"peak_rss_mb": peak_rss_mb(), "rss_mb": current_rss_mb()}
      send({**message, **(final() if final else {})})
      return


# --------------------------------------------------------------------------- the two workers

def xla_flops(stage) -> float:
  """FLOPs from XLA's cost analysis of a lowered or compiled step (one dict, or one per device)."""
  cost = stage.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0))


def jax_worker(batch_size: int, warmup: int) -> None:
  import jax
  import numpy as np
  from configs import default
  from pix2pix_jax import loop, parallel, platform

  config = default.get_config()
  config.batch_size = batch_size
  config.compilation_cache_dir = ""  # a cold compile each time (bench.compile_cache times hits)
  platform.configure(config)
  experiment = loop.Experiment(config, num_train_examples=400)
  t0 = time.perf_counter()
  step = experiment.compile_train_step()  # before the state exists, as the training loop does
  compile_s = time.perf_counter() - t0
  state = experiment.init_state()
  # The step takes uint8 images, as the input pipeline delivers them, and scales them itself.
  a, b = (np.round((x + 1) * 127.5).astype(np.uint8) for x in random_pair(batch_size))
  batch = parallel.global_batch({"A": a, "B": b}, experiment.batch_sharding)
  memory = step.memory_analysis()
  holder = {"state": state}

  def run_step():
    holder["state"], metrics = step(holder["state"], batch)
    jax.block_until_ready((holder["state"], metrics))

  for i in range(warmup):
    run_step()
    if i == 0:
      platform.release_free_host_memory()  # as the training loop does after its first step
  send({"compile_s": compile_s,
        "executed_flops": xla_flops(step),
        "temp_mb": memory.temp_size_in_bytes / 2**20,
        "threads": "XLA default (all cores)", "setup_rss_mb": current_rss_mb()})
  # The direct-convolution FLOP count lowers a second step: done after the RSS is read, as the
  # training loop never does it.
  serve(run_step, final=lambda: {"flops": direct_flops(config)})


def torch_worker(batch_size: int, warmup: int, threads: int) -> None:
  import torch
  from tests import torch_reference

  torch.set_num_threads(threads)
  torch.manual_seed(0)
  netG = torch_reference.define_G(3, 3, 64, "unet_256", "batch", use_dropout=True)
  netD = torch_reference.define_D(6, 64, "basic", norm="batch")
  netG.train()
  netD.train()
  optimizer_G = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
  optimizer_D = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
  criterion_gan = torch_reference.GANLoss("vanilla")
  a, b = random_pair(batch_size)
  real_a = torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()
  real_b = torch.from_numpy(b).permute(0, 3, 1, 2).contiguous()

  def run_step():
    torch_reference.authors_step(netG, netD, optimizer_G, optimizer_D, criterion_gan, real_a,
                                 real_b)

  for _ in range(warmup):
    run_step()
  send({"compile_s": None, "temp_mb": None,
        "threads": f"torch.set_num_threads({threads})", "setup_rss_mb": current_rss_mb()})
  serve(run_step)


# --------------------------------------------------------------------------- the comparison

def median(values):
  values = sorted(values)
  mid = len(values) // 2
  return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def compare(batch_size: int, rounds: int, steps: int, warmup: int, threads: int) -> dict:
  common = [f"--batch_size={batch_size}", f"--warmup={warmup}", f"--threads={threads}"]
  results = {}
  # One worker at a time while setting up: compiling next to a running step would skew both.
  workers = {}
  for name in ("ours", "pytorch"):
    workers[name] = Worker("bench.train_step",
                           [f"--worker={'jax' if name == 'ours' else 'torch'}", *common])
    results[name] = {"setup": workers[name].receive(), "wall": [], "cpu": [], "others": [],
                     "quiet_wall": []}
  for r in range(rounds):
    order = ("ours", "pytorch") if r % 2 == 0 else ("pytorch", "ours")
    blocks = {name: run_block(workers[name], steps) for name in order}
    quiet = max(b["others"] for b in blocks.values()) < QUIET
    for name, block in blocks.items():
      results[name]["wall"] += block["wall"]
      results[name]["cpu"] += block["cpu"]
      results[name]["others"].append(block["others"])
      if quiet:
        results[name]["quiet_wall"] += block["wall"]
  for name, worker in workers.items():
    results[name]["final"] = worker.close()
  flops = results["ours"]["final"]["flops"]
  for name, res in results.items():
    res["median_s"] = median(res["wall"])
    res["min_s"] = min(res["wall"])
    res["cpu_s"] = median(res["cpu"])
    res["images_per_s"] = batch_size / res["median_s"]
    res["gflops_per_s"] = flops / res["median_s"] / 1e9 if flops else float("nan")
  results["ratio"] = results["pytorch"]["median_s"] / results["ours"]["median_s"]
  if results["ours"]["quiet_wall"]:
    results["quiet_ratio"] = (median(results["pytorch"]["quiet_wall"]) /
                              median(results["ours"]["quiet_wall"]))
    results["quiet_steps"] = len(results["ours"]["quiet_wall"])
  results["ratio_min"] = results["pytorch"]["min_s"] / results["ours"]["min_s"]
  results["gflop"] = flops / 1e9
  results["executed_gflop"] = results["ours"]["setup"]["executed_flops"] / 1e9
  return results


def table(all_results: dict[int, dict], load_before, load_after) -> str:
  lines = [
      "| batch | framework | median s/step | min s/step | img/s | CPU s/step | compile s | "
      "peak RSS MB | steady RSS MB | GFLOP/s |",
      "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for bs, res in all_results.items():
    for name in ("ours", "pytorch"):
      r = res[name]
      comp = r["setup"]["compile_s"]
      lines.append(
          f"| {bs} | {'pix2pix-jax' if name == 'ours' else 'PyTorch eager'} | "
          f"{r['median_s']:.3f} | {r['min_s']:.3f} | {r['images_per_s']:.2f} | "
          f"{r['cpu_s']:.2f} | {'-' if comp is None else f'{comp:.1f}'} | "
          f"{r['final']['peak_rss_mb']:.0f} | {r['final']['rss_mb']:.0f} | "
          f"{r['gflops_per_s']:.0f} |")
  lines.append("")
  for bs, res in all_results.items():
    lines.append(f"- batch {bs}: **{res['ratio']:.2f}×** PyTorch's throughput (median; "
                 f"{res['ratio_min']:.2f}× on the fastest step of each), "
                 f"{res['gflop']:.1f} GFLOP per step as direct convolutions (GFLOP/s above; "
                 f"our compiled step executes {res['executed_gflop']:.1f}), "
                 f"{len(res['ours']['wall'])} steps of each, interleaved")
  for bs, res in all_results.items():
    others = res["ours"]["others"] + res["pytorch"]["others"]
    quiet = (f"in the {res['quiet_steps']} steps of each taken in quiet rounds (other processes "
             f"< {QUIET:.0%} of the machine): **{res['quiet_ratio']:.2f}×**"
             if "quiet_ratio" in res else "no quiet round")
    lines.append(f"- batch {bs}: other processes used {100 * min(others):.0f}-"
                 f"{100 * max(others):.0f}% of the machine during the blocks; {quiet}")
  lines.append(f"- load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
               "(1 min)")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch_sizes", default="1,4")
  parser.add_argument("--rounds", type=int, default=0,
                      help="blocks per framework (default: 6 at batch 1, 4 above)")
  parser.add_argument("--steps", type=int, default=2, help="steps per block")
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
  parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
  parser.add_argument("--batch_size", type=int, default=1, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    if args.worker == "jax":
      jax_worker(args.batch_size, args.warmup)
    else:
      torch_worker(args.batch_size, args.warmup, args.threads)
    return

  load_before = os.getloadavg()
  all_results = {}
  for bs in (int(b) for b in args.batch_sizes.split(",")):
    rounds = args.rounds or (6 if bs == 1 else 4)
    all_results[bs] = compare(bs, rounds, args.steps, args.warmup, args.threads)
    print(f"batch {bs}: ours {all_results[bs]['ours']['median_s']:.3f} s/step, PyTorch "
          f"{all_results[bs]['pytorch']['median_s']:.3f} s/step, ratio "
          f"{all_results[bs]['ratio']:.2f}", flush=True)
  body = table(all_results, load_before, os.getloadavg())
  header = (f"Machine: {machine_line('jax', 'torch')}. Command: `python -m bench.train_step`. "
            f"PyTorch: {args.threads} threads.")
  print(header)
  print(body)
  if args.write:
    write_section("Training step", header + "\n\n" + body)
    print(f"updated {DOCS}")


if __name__ == "__main__":
  from pix2pix_jax import cli
  raise SystemExit(cli.call(main))
