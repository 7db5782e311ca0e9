"""One-shot accelerator benchmark: what a user waits for on a GPU or TPU, in one command.

  python -m bench.accelerator [--out DIR] [--budget_s 510] [--facades DIR] [--write]

Each measurement runs in a process of its own, one after another (compilations never overlap),
within its own time limit and the remaining `--budget_s`; all share JAX's persistent
compilation cache. In order of priority:
* ours: the paper's train step (unet_256 + 70×70 PatchGAN, 256 px) at batch 1, 16 and 4, in
  float32 and bfloat16 compute: compile time and whether the cache served it, ms/step, images/s,
  model FLOP utilisation (the step's FLOPs as direct convolutions, XLA's count, over the chip's
  dense peak), the compiled step's memory and the device's peak memory;
* the authors' PyTorch step (`tests/torch_reference.py`, their `optimize_parameters`) on the
  same device at the same batch and precision (bfloat16: autocast), eager, and with
  `torch.compile` at batch 1 when the budget allows; the ratio of images/s;
* the whole training loop on the real facades (`--facades`, the authors' facades folder; the
  default is PIX2PIX_FACADES_DIR): `loop.train_and_evaluate` with the input pipeline's worker
  processes, against the bare step on a fixed batch in the same process;
* with `--deterministic`, two fresh processes running 3 steps with `config.deterministic`,
  compared bit for bit, and that mode's step time.
Prints and writes DIR/accelerator.md, DIR/accelerator.json and DIR/jobs.log (each process's
last output lines); `--write` replaces the "Accelerator" section of docs/benchmarks.md.
`--image_size 32 --batches 1,2` checks the script on a CPU in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

from bench.common import FACADES, REPO, direct_flops, write_section

PROTOCOL = "@@"  # prefix of a job's result line on stdout
DTYPES = ("float32", "bfloat16")
BATCHES = (1, 16, 4)
# Dense peak FLOP/s by device kind (vendor datasheets): float32 runs its convolutions as TF32
# under JAX's default precision and PyTorch's default cuDNN settings on these chips.
PEAKS = {
    "H200": {"bfloat16": 989e12, "float32": 494.7e12},
    "H100": {"bfloat16": 989e12, "float32": 494.7e12},
    "A100": {"bfloat16": 312e12, "float32": 156e12},
}
# Seconds each kind of job may take at most (and never more than the budget left).
JOB_LIMITS = {"jax": 240, "torch": 90, "torch_compile": 180, "loop": 240, "digest": 240}


def _peak(device_kind: str, dtype: str) -> float | None:
  for name, peaks in PEAKS.items():
    if name in device_kind:
      return peaks[dtype]
  return None


def paper_config(dtype: str, batch: int, image_size: int, impl: str = "auto"):
  """The paper's model and batch; below 256 px a smaller U-Net (for checking this script)."""
  from configs import default
  config = default.get_config()
  config.model.conv_impl = impl
  config.compute_dtype = dtype
  config.batch_size = batch
  if image_size != 256:
    config.data.crop_size, config.data.load_size = image_size, image_size + image_size // 8
    config.model.generator, config.model.num_downs = "unet", image_size.bit_length() - 1
  return config


def _device():
  import jax
  device = jax.devices()[0]
  return device, getattr(device, "device_kind", str(device))


def _time_steps(run_step, sync, min_seconds: float, max_steps: int = 1000) -> tuple[float, int]:
  """Seconds per step of `run_step` (dispatched back to back, `sync` once at the end)."""
  for _ in range(3):
    run_step()
  sync()
  steps, start = 0, time.perf_counter()
  while steps < 5 or (time.perf_counter() - start < min_seconds and steps < max_steps):
    for _ in range(5):
      run_step()
    steps += 5
    if steps % 20 == 0:
      sync()
  sync()
  return (time.perf_counter() - start) / steps, steps


# ---------------------------------------------------------------------------- jobs (children)

def _uint8_batch(experiment, seed: int = 0):
  import numpy as np
  from pix2pix_jax import parallel
  rng = np.random.default_rng(seed)
  host = {k: rng.integers(0, 256, v.shape, dtype=np.uint8)
          for k, v in experiment.batch_spec().items()}
  return parallel.global_batch(host, experiment.batch_sharding)


def jax_job(args) -> dict:
  import jax
  from pix2pix_jax import loop, platform
  config = paper_config(args.dtype, args.batch, args.image_size, args.impl)
  platform.configure(config)
  device, kind = _device()
  experiment = loop.Experiment(config, num_train_examples=400)
  step = experiment.compile_train_step()
  state = experiment.init_state()
  batch = _uint8_batch(experiment)
  holder = {"state": state}

  def run_step():
    holder["state"], holder["metrics"] = step(holder["state"], batch)

  seconds, steps = _time_steps(run_step, lambda: jax.block_until_ready(holder["state"]),
                               args.min_seconds)
  memory = step.memory_analysis()
  stats = device.memory_stats() or {}
  flops = direct_flops(config)
  peak = _peak(kind, args.dtype)
  return {"device": kind, "platform": device.platform,
          "compile_s": experiment.compile_record["seconds"],
          "cache": experiment.compile_record["cache"], "s_per_step": seconds, "steps": steps,
          "images_per_s": args.batch / seconds, "flops": flops,
          "mfu": flops / seconds / peak if flops and peak else None,
          "step_memory_gb": (memory.temp_size_in_bytes + memory.argument_size_in_bytes
                             + memory.output_size_in_bytes - memory.alias_size_in_bytes) / 1e9,
          "device_peak_gb": stats.get("peak_bytes_in_use", 0) / 1e9 or None,
          "forms": experiment.conv_forms, "g_l1": float(holder["metrics"]["g_l1"])}


def torch_job(args) -> dict:
  import numpy as np
  import torch
  from tests import torch_reference
  device = "cuda" if torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  size = args.image_size
  net_g = torch_reference.define_G(3, 3, 64, "unet", "batch", use_dropout=True,
                                   num_downs=size.bit_length() - 1).to(device)
  net_d = torch_reference.define_D(6, 64, "basic", norm="batch").to(device)
  net_g.train()
  net_d.train()
  optimizer_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
  optimizer_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
  gan_loss = torch_reference.GANLoss("vanilla").to(device)
  rng = np.random.default_rng(0)
  real_a, real_b = (torch.from_numpy(rng.uniform(-1, 1, (args.batch, 3, size, size))
                                     .astype(np.float32)).to(device) for _ in range(2))
  if args.compile:
    net_g, net_d = torch.compile(net_g), torch.compile(net_d)
  autocast = torch.autocast(device_type=device, dtype=torch.bfloat16,
                            enabled=args.dtype == "bfloat16")
  sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
  holder = {}

  def run_step():
    with autocast:
      holder["losses"] = torch_reference.authors_step(
          net_g, net_d, optimizer_g, optimizer_d, gan_loss, real_a, real_b, as_floats=False)

  start = time.perf_counter()
  run_step()  # eager: the first step's set-up; torch.compile: its compilation
  sync()
  first_s = time.perf_counter() - start
  seconds, steps = _time_steps(run_step, sync, args.min_seconds)
  return {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
          "torch": torch.__version__, "first_step_s": first_s, "s_per_step": seconds,
          "steps": steps, "images_per_s": args.batch / seconds,
          "device_peak_gb": torch.cuda.max_memory_allocated() / 1e9 if device == "cuda"
          else None, "g_l1": float(holder["losses"]["g_l1"])}


def loop_job(args) -> dict:
  """The whole training loop on the real facades against the bare step, one process."""
  import tempfile
  import jax
  from configs import facades
  from pix2pix_jax import loop, parallel, platform
  from pix2pix_jax.data import pipeline
  config = facades.get_config()
  base = paper_config("float32", 1, args.image_size)
  config.data.crop_size, config.data.load_size = base.data.crop_size, base.data.load_size
  config.model.generator, config.model.num_downs = base.model.generator, base.model.num_downs
  config.data.dataset, config.data.data_dir = "folder", args.facades
  config.data.eval_split = ""
  platform.configure(config)
  source = pipeline.get_source(config, config.data.train_split)
  experiment = loop.Experiment(config, len(source), train_source=source)
  step = experiment.compile_train_step()
  state = experiment.init_state()
  batch = parallel.global_batch(next(pipeline.make_train_iterator(config, source)),
                                experiment.batch_sharding)
  holder = {"state": state}

  def run_step():
    holder["state"], _ = step(holder["state"], batch)

  bare, _ = _time_steps(run_step, lambda: jax.block_until_ready(holder["state"]),
                        args.min_seconds)
  del holder, state
  every = 50
  config.num_train_steps = args.loop_steps + every
  config.log_every_steps = every
  config.sample_every_steps = config.eval_every_steps = config.checkpoint_every_steps = 0
  config.tensorboard = False
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    loop.train_and_evaluate(config, workdir)
    total = time.perf_counter() - start
    records = [json.loads(l) for l in (pathlib.Path(workdir) / "metrics.jsonl").open()]
  windows = [r for r in records if r["kind"] == "train"][1:]  # the first holds the start-up
  looped = sum(every / r["steps_per_sec"] for r in windows) / (every * len(windows))
  backend = jax.default_backend()
  return {"bare_s_per_step": bare, "loop_s_per_step": looped, "loop_steps": every * len(windows),
          "num_workers": pipeline.resolve_num_workers(config.data.num_workers, backend),
          "cores": os.cpu_count(), "loop_total_s": total}


def digest_job(args) -> dict:
  """3 paper steps at batch 4 with `config.deterministic`; the SHA-256 of every state leaf."""
  import hashlib
  import jax
  import numpy as np
  from pix2pix_jax import loop, platform
  config = paper_config("float32", 4, args.image_size)
  config.deterministic = True
  platform.configure(config)
  experiment = loop.Experiment(config, num_train_examples=400)
  step = experiment.compile_train_step()
  state, batch = experiment.init_state(), _uint8_batch(experiment)
  start = time.perf_counter()
  for _ in range(3):
    state, _ = step(state, batch)
  jax.block_until_ready(state)
  seconds = (time.perf_counter() - start) / 3
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(jax.device_get(state)):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return {"digest": digest.hexdigest(), "s_per_step": seconds,
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


JOBS = {"jax": jax_job, "torch": torch_job, "loop": loop_job, "digest": digest_job}


def run_job_here(args) -> None:
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  result = JOBS[args.job](args)
  print(PROTOCOL + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------- the parent

class Runner:
  """Starts jobs one at a time within the budget; keeps their results and their logs."""

  def __init__(self, args, log_path: pathlib.Path):
    self.args, self.log_path = args, log_path
    self.deadline = time.perf_counter() + args.budget_s
    self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        XLA_PYTHON_CLIENT_PREALLOCATE="false")

  def run(self, kind: str, **options) -> dict:
    left = self.deadline - time.perf_counter()
    limit = min(JOB_LIMITS[kind], left)
    if limit < 20:
      return {"skipped": f"budget spent ({self.args.budget_s:.0f} s)"}
    job = "torch" if kind == "torch_compile" else kind
    command = [sys.executable, "-m", "bench.accelerator", "--job", job,
               "--image_size", str(self.args.image_size),
               "--min_seconds", str(self.args.min_seconds),
               "--loop_steps", str(self.args.loop_steps), "--facades", str(self.args.facades)]
    command += [f"--{k}={v}" for k, v in options.items()]
    if kind == "torch_compile":
      command.append("--compile")
    start = time.perf_counter()
    try:
      done = subprocess.run(command, cwd=REPO, env=self.env, capture_output=True, text=True,
                            timeout=limit)
      output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
      output = "".join(part.decode(errors="replace") if isinstance(part, bytes) else part
                       for part in (e.stdout or "", e.stderr or ""))
      code = None
    seconds = time.perf_counter() - start
    with self.log_path.open("a") as log:
      log.write(f"\n=== {kind} {options} ({seconds:.0f} s, exit {code})\n")
      log.write("\n".join(output.splitlines()[-40:]) + "\n")
    lines = [l for l in output.splitlines() if l.startswith(PROTOCOL)]
    if code is None:
      result = {"skipped": f"over its {limit:.0f} s limit"}
    elif code or not lines:
      last = [l for l in output.splitlines() if l.strip()][-1:] or ["no output"]
      result = {"skipped": f"failed (exit {code}): {last[0][:160]}"}
    else:
      result = json.loads(lines[-1][len(PROTOCOL):])
    result["wall_s"] = seconds
    print(kind, options, {k: v for k, v in result.items() if k != "forms"}, flush=True)
    return result


def _fmt(value, spec: str, suffix: str = "") -> str:
  return "" if value is None else f"{value:{spec}}{suffix}"


def to_markdown(record: dict) -> str:
  lines = [f"Device: **{record.get('device', '?')}**; {record['versions']}; {record['date']}; "
           f"{record['cores']} host cores. `python -m bench.accelerator` (budget "
           f"{record['budget_s']:.0f} s, one process per measurement, compilations one at a "
           "time).", "",
           "| compute | batch | ours: compile s (cache) | ms/step | img/s | MFU | step memory GB "
           "| device peak GB | PyTorch eager ms/step | img/s | ours ÷ PyTorch |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
  for row in record["rows"]:
    ours, theirs = row["ours"], row["torch"]
    if "skipped" in ours:
      cells = [ours["skipped"], "", "", "", "", ""]
    else:
      cells = [f"{ours['compile_s']:.1f} ({ours['cache']})", f"{1e3 * ours['s_per_step']:.2f}",
               f"{ours['images_per_s']:.1f}", _fmt(ours.get("mfu"), ".1%"),
               f"{ours['step_memory_gb']:.2f}", _fmt(ours.get("device_peak_gb"), ".2f")]
    if "skipped" in theirs:
      cells += [theirs["skipped"], "", ""]
    else:
      ratio = (ours["images_per_s"] / theirs["images_per_s"]) if "skipped" not in ours else None
      cells += [f"{1e3 * theirs['s_per_step']:.2f}", f"{theirs['images_per_s']:.1f}",
                _fmt(ratio, ".2f", "×")]
    lines.append(f"| {row['dtype']} | {row['batch']} | " + " | ".join(cells) + " |")
  compiled = record.get("torch_compile")
  if compiled:
    if "skipped" in compiled:
      lines += ["", f"`torch.compile` (float32, batch 1): {compiled['skipped']}."]
    else:
      lines += ["", f"`torch.compile` (float32, batch 1): {1e3 * compiled['s_per_step']:.2f} "
                f"ms/step, {compiled['images_per_s']:.1f} img/s after a first step of "
                f"{compiled['first_step_s']:.0f} s (compilation)."]
  looped = record.get("loop")
  if looped and "skipped" not in looped:
    lines += ["", f"Whole training loop on the real facades (configs/facades.py, batch 1, "
              f"{looped['num_workers']} input worker processes on {looped['cores']} cores, "
              f"{looped['loop_steps']} steps after the first logged window): "
              f"**{1e3 * looped['loop_s_per_step']:.2f} ms/step** against the bare step's "
              f"{1e3 * looped['bare_s_per_step']:.2f} ms on a fixed batch, "
              f"**{looped['loop_s_per_step'] / looped['bare_s_per_step']:.3f}×**."]
  elif looped:
    lines += ["", f"Whole training loop on the real facades: {looped['skipped']}."]
  runs = record.get("deterministic")
  if runs and all("digest" in r for r in runs):
    verdict = "bit-identical" if runs[0]["digest"] == runs[1]["digest"] else "DIFFERENT"
    lines += ["", f"`config.deterministic` (XLA_FLAGS `{runs[0]['xla_flags']}`): two fresh "
              f"processes, 3 paper steps at batch 4 → states **{verdict}** (SHA-256 "
              f"{runs[0]['digest'][:16]} / {runs[1]['digest'][:16]}), "
              f"{1e3 * runs[0]['s_per_step']:.2f} ms/step."]
  elif runs:
    lines += ["", "`config.deterministic` check: " + "; ".join(r.get("skipped", "ran")
                                                             for r in runs) + "."]
  first = next((r["ours"] for r in record["rows"] if "forms" in r["ours"]), None)
  if first:
    lines += ["", f"Convolutions: {first['forms']}. Model FLOPs per image (direct "
              f"convolutions): {first['flops'] / first['batch'] / 1e9:.1f} GFLOP; peak FLOP/s "
              f"for MFU: {record['peaks']}."]
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.environ.get("OUT", str(REPO / "runs" / "accelerator")))
  parser.add_argument("--budget_s", type=float, default=510.0,
                      help="no job starts after this many seconds; each ends by then")
  parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
  parser.add_argument("--dtypes", default=",".join(DTYPES))
  parser.add_argument("--facades", default=str(FACADES),
                      help="the authors' facades folder (train/, val/) for the loop")
  parser.add_argument("--loop_steps", type=int, default=1000)
  parser.add_argument("--min_seconds", type=float, default=3.0, help="timing per measurement")
  parser.add_argument("--no_torch_compile", action="store_true")
  parser.add_argument("--deterministic", action="store_true",
                      help="also: two fresh processes, 3 steps each with config.deterministic, "
                           "compared bit for bit")
  parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
  parser.add_argument("--image_size", type=int, default=256,
                      help="256 (the paper); a smaller power of two only to check this script")
  parser.add_argument("--job", choices=sorted(JOBS), help=argparse.SUPPRESS)
  parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
  parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
  parser.add_argument("--impl", default="auto", help=argparse.SUPPRESS)
  parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.job:
    run_job_here(args)
    return

  import datetime
  import flax
  import jax
  import optax
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "jobs.log").write_text("")
  runner = Runner(args, out / "jobs.log")
  record = {"versions": f"jax {jax.__version__}, flax {flax.__version__}, optax "
                        f"{optax.__version__}, Python {sys.version.split()[0]}",
            "date": datetime.date.today().isoformat(), "cores": os.cpu_count(),
            "budget_s": args.budget_s, "rows": []}
  batches = [int(b) for b in args.batches.split(",")]
  dtypes = args.dtypes.split(",")
  grid = [(d, b) for b in batches for d in dtypes]
  # Batch 1 float32 first, then the loop on the facades (its compilation is the cache's hit),
  # torch.compile, then the other sizes and precisions.
  first, rest = grid[0], grid[1:]
  rows = {}

  def measure(dtype, batch):
    ours = runner.run("jax", dtype=dtype, batch=batch)
    ours["batch"] = batch
    rows[(dtype, batch)] = {"dtype": dtype, "batch": batch, "ours": ours,
                            "torch": runner.run("torch", dtype=dtype, batch=batch)}
    record.setdefault("device", ours.get("device"))

  measure(*first)
  if pathlib.Path(args.facades).is_dir():
    record["loop"] = runner.run("loop")
  else:
    record["loop"] = {"skipped": f"no facades folder at {args.facades} (--facades)"}
  for dtype, batch in rest:
    measure(dtype, batch)
  if not args.no_torch_compile:
    record["torch_compile"] = runner.run("torch_compile", dtype="float32", batch=batches[0])
  if args.deterministic:
    record["deterministic"] = [runner.run("digest") for _ in range(2)]
  record["rows"] = [rows[key] for key in grid if key in rows]
  record["peaks"] = {d: _peak(record.get("device") or "", d) for d in DTYPES}
  markdown = to_markdown(record)
  print(markdown, flush=True)
  (out / "accelerator.md").write_text(markdown)
  (out / "accelerator.json").write_text(json.dumps(record, indent=1, default=str))
  if args.write:
    write_section("Accelerator", markdown)


if __name__ == "__main__":
  from pix2pix_jax import cli
  raise SystemExit(cli.call(main))
