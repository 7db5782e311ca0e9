"""One-shot accelerator benchmark: the paper's training step on a GPU or TPU, in one command.

  python -m bench.accelerator [--out DIR] [--budget_s 420] [--write]

Installs nothing and needs no data. On the first accelerator it finds it measures and prints as
Markdown (and writes DIR/accelerator.md and DIR/accelerator.json; `--write` also replaces the
"Accelerator" section of docs/benchmarks.md):
* device, JAX/jaxlib/Flax/Optax versions;
* for `model.conv_impl` auto (XLA's own convolutions there) and cpu_tuned (the CPU
  formulations), float32 and bfloat16 compute, batch 1, 4 and 16 of the paper's step (unet_256 +
  70×70 PatchGAN, 256 px): compile time, images/s, model FLOP utilisation (the step's FLOPs as
  direct convolutions, XLA's count, over the chip's dense peak) and the compiled step's memory;
  the device's peak memory;
* 500 steps of the quickstart config (64 px, synthetic facades, through the real input
  pipeline) with the losses every 50 steps;
* two fresh processes running 3 steps with `config.deterministic`, compared bit for bit.

The twelve step variants are compiled concurrently on the host's cores, then timed one after
another; variants left when `--budget_s` runs out are reported as skipped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time

from bench.common import direct_flops, write_section

REPO = pathlib.Path(__file__).resolve().parents[1]
IMPLS = ("auto", "cpu_tuned")
DTYPES = ("float32", "bfloat16")
BATCHES = (1, 4, 16)
# Dense peak FLOP/s by device kind (vendor datasheets): float32 runs its matrix products and
# convolutions as TF32 under JAX's default precision on these chips.
PEAKS = {
    "H200": {"bfloat16": 989e12, "float32": 494.7e12},
    "H100": {"bfloat16": 989e12, "float32": 494.7e12},
    "A100": {"bfloat16": 312e12, "float32": 156e12},
}


def _peak(device_kind: str, dtype: str) -> float | None:
  for name, peaks in PEAKS.items():
    if name in device_kind:
      return peaks[dtype]
  return None


IMAGE_SIZE = {"value": 256}  # --image_size: smaller for a quick check of the script on a CPU


def _paper_config(impl: str, dtype: str, batch: int):
  from configs import default
  config = default.get_config()
  config.model.conv_impl = impl
  config.compute_dtype = dtype
  config.batch_size = batch
  size = IMAGE_SIZE["value"]
  if size != 256:
    config.data.crop_size = config.data.load_size = size
    config.model.generator, config.model.num_downs = "unet", size.bit_length() - 1
  return config


def _random_batch(experiment, seed: int = 0):
  import numpy as np
  from pix2pix_jax import parallel
  rng = np.random.default_rng(seed)
  spec = experiment.batch_spec()
  host = {k: rng.uniform(-1, 1, v.shape).astype(np.float32) for k, v in spec.items()}
  return parallel.global_batch(host, experiment.batch_sharding)


def state_digest(state) -> str:
  """SHA-256 of every leaf's bytes, in tree order."""
  import jax
  import numpy as np
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(jax.device_get(state)):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()


def deterministic_worker(steps: int) -> None:
  """A fresh process: `steps` paper steps at batch 4 with config.deterministic; prints a digest."""
  import jax
  from pix2pix_jax import loop, platform
  config = _paper_config("auto", "float32", 4)
  config.deterministic = True
  platform.configure(config)
  experiment = loop.Experiment(config, num_train_examples=400)
  step = experiment.compile_train_step()
  state = experiment.init_state()
  batch = _random_batch(experiment)
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready(state)
  print(json.dumps({"digest": state_digest(state), "flags": os.environ.get("XLA_FLAGS", ""),
                    "g_l1": float(metrics["g_l1"])}), flush=True)


def _start_deterministic_runs(steps: int) -> list[subprocess.Popen]:
  path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
  env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", PYTHONPATH=path)
  return [subprocess.Popen([sys.executable, "-m", "bench.accelerator", "--deterministic_worker",
                            str(steps), "--image_size", str(IMAGE_SIZE["value"])], cwd=REPO, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for _ in range(2)]


def _collect_deterministic_runs(processes, timeout: float) -> dict:
  results = []
  for p in processes:
    try:
      out, err = p.communicate(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
      p.kill()
      return {"ok": False, "error": "timed out"}
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if p.returncode or not lines:
      return {"ok": False, "error": f"exit {p.returncode}: {err.strip().splitlines()[-3:]}"}
    results.append(json.loads(lines[-1]))
  return {"ok": True, "identical": results[0]["digest"] == results[1]["digest"],
          "digests": [r["digest"][:16] for r in results], "flags": results[0]["flags"],
          "g_l1": [r["g_l1"] for r in results]}


def _compile_variant(impl: str, dtype: str, batch: int) -> dict:
  from pix2pix_jax import loop
  config = _paper_config(impl, dtype, batch)
  experiment = loop.Experiment(config, num_train_examples=400)
  t0 = time.perf_counter()
  compiled = experiment.compile_train_step()
  return {"experiment": experiment, "compiled": compiled,
          "compile_s": time.perf_counter() - t0, "forms": experiment.conv_forms}


def _time_variant(variant: dict, min_seconds: float = 2.0, max_steps: int = 200) -> dict:
  import jax
  experiment, step = variant["experiment"], variant["compiled"]
  state = experiment.init_state()
  batch = _random_batch(experiment)
  for _ in range(3):  # warm-up
    state, metrics = step(state, batch)
  jax.block_until_ready(state)
  n, t0 = 0, time.perf_counter()
  while n < max_steps and (n < 5 or time.perf_counter() - t0 < min_seconds):
    state, metrics = step(state, batch)
    n += 1
    if n % 5 == 0:
      jax.block_until_ready(state)
  jax.block_until_ready(state)
  seconds = (time.perf_counter() - t0) / n
  memory = step.memory_analysis()
  del state
  return {"s_per_step": seconds, "steps_timed": n,
          "g_l1": float(metrics["g_l1"]),
          "step_memory_gb": (memory.temp_size_in_bytes + memory.argument_size_in_bytes
                             + memory.output_size_in_bytes - memory.alias_size_in_bytes) / 1e9}


def quickstart_losses(steps: int = 500, every: int = 50) -> list[dict]:
  """`steps` quickstart steps through the real (synthetic) input pipeline; losses every `every`."""
  import jax
  import numpy as np
  from configs import quickstart
  from pix2pix_jax import loop, parallel
  from pix2pix_jax.data import pipeline
  config = quickstart.get_config()
  source = pipeline.get_source(config, config.data.train_split)
  experiment = loop.Experiment(config, len(source))
  step = experiment.compile_train_step()
  state = experiment.init_state()
  iterator = pipeline.make_train_iterator(config, source, process_index=0, process_count=1)
  window, rows, t0 = [], [], time.perf_counter()
  for i in range(1, steps + 1):
    local = next(iterator)
    batch = parallel.global_batch({"A": local["A"], "B": local["B"]}, experiment.batch_sharding)
    state, metrics = step(state, batch)
    window.append(metrics)
    if i % every == 0:
      host = jax.device_get(window)
      rows.append({"step": i, **{k: float(np.mean([m[k] for m in host]))
                                 for k in ("g_l1", "g_gan", "d_real", "d_fake")}})
      window = []
  jax.block_until_ready(state)
  rows[-1]["seconds_total"] = time.perf_counter() - t0
  return rows


def to_markdown(record: dict) -> str:
  lines = [f"Device: **{record['device']}** ({record['platform']}); {record['versions']}; "
           f"{record['date']}. Peak FLOP/s used for MFU: {record['peaks']}.", ""]
  lines += ["| conv_impl | compute | batch | compile s | ms/step | img/s | MFU | step memory GB |"
            " forms |", "|---|---|---|---|---|---|---|---|---|"]
  for r in record["steps"]:
    if "skipped" in r:
      lines.append(f"| {r['impl']} | {r['dtype']} | {r['batch']} | | | | | | {r['skipped']} |")
      continue
    mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "?"
    lines.append(f"| {r['impl']} | {r['dtype']} | {r['batch']} | {r['compile_s']:.1f} | "
                 f"{1e3 * r['s_per_step']:.2f} | {r['images_per_s']:.1f} | {mfu} | "
                 f"{r['step_memory_gb']:.2f} | {r['forms_short']} |")
  lines += ["", f"Device peak memory in use over the whole benchmark: "
            f"{record.get('device_peak_gb', '?')} GB. Model FLOPs per image (direct "
            f"convolutions): {record['model_gflop_per_image'] or float('nan'):.1f} GFLOP.", ""]
  if record.get("quickstart"):
    lines += ["Quickstart config, 500 steps (means over each 50-step window):", "",
              "| step | G L1 | G GAN | D real | D fake |", "|---|---|---|---|---|"]
    lines += [f"| {r['step']} | {r['g_l1']:.2f} | {r['g_gan']:.3f} | {r['d_real']:.3f} | "
              f"{r['d_fake']:.3f} |" for r in record["quickstart"]]
    lines += ["", f"500 steps in {record['quickstart'][-1]['seconds_total']:.1f} s after "
              "compilation (input pipeline included).", ""]
  det = record.get("deterministic", {})
  if not det:
    pass
  elif det.get("ok"):
    lines.append(f"`config.deterministic`: two fresh processes, 3 paper steps at batch 4 → "
                 f"states **{'bit-identical' if det['identical'] else 'DIFFERENT'}** "
                 f"(SHA-256 {det['digests'][0]} / {det['digests'][1]}; XLA_FLAGS "
                 f"`{det['flags']}`).")
  else:
    lines.append(f"`config.deterministic` check failed to run: {det.get('error')}")
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=os.environ.get("OUT", str(REPO / "runs" / "accelerator")))
  parser.add_argument("--budget_s", type=float, default=420.0,
                      help="stop starting new measurements after this many seconds")
  parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
  parser.add_argument("--quickstart_steps", type=int, default=500, help="0: skip")
  parser.add_argument("--impls", default=",".join(IMPLS))
  parser.add_argument("--workers", type=int, default=4, help="concurrent compilations")
  parser.add_argument("--skip_deterministic", action="store_true")
  parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
  parser.add_argument("--image_size", type=int, default=256,
                      help="paper step's image size (256; a power of two, smaller only to "
                           "check this script quickly)")
  parser.add_argument("--deterministic_worker", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  IMAGE_SIZE["value"] = args.image_size
  if args.deterministic_worker:
    deterministic_worker(args.deterministic_worker)
    return

  start = time.perf_counter()
  # Fresh processes, alongside the rest.
  deterministic = [] if args.skip_deterministic else _start_deterministic_runs(3)
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  import datetime
  import flax
  import jax
  import jaxlib
  import optax
  from pix2pix_jax import platform
  platform.configure()
  device = jax.devices()[0]
  record = {"device": getattr(device, "device_kind", str(device)), "platform": device.platform,
            "versions": f"jax {jax.__version__}, jaxlib {jaxlib.__version__}, flax "
                        f"{flax.__version__}, optax {optax.__version__}, Python "
                        f"{sys.version.split()[0]}",
            "date": datetime.date.today().isoformat(), "steps": []}
  record["peaks"] = {d: _peak(record["device"], d) for d in DTYPES}
  print(record["device"], record["versions"], flush=True)
  batches = [int(b) for b in args.batches.split(",")]
  flops = {b: direct_flops(_paper_config("xla", "float32", b)) for b in batches}
  record["model_gflop_per_image"] = flops[batches[0]] and flops[batches[0]] / batches[0] / 1e9
  variants = [(impl, dtype, b) for impl in args.impls.split(",") for dtype in DTYPES
              for b in batches]
  workers = max(1, min(len(variants), args.workers))
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
  futures = {v: pool.submit(_compile_variant, *v) for v in variants}
  for (impl, dtype, batch), future in list(futures.items()):
    row = {"impl": impl, "dtype": dtype, "batch": batch}
    record["steps"].append(row)
    elapsed = time.perf_counter() - start
    if elapsed > args.budget_s:
      row["skipped"] = f"skipped: budget spent ({elapsed:.0f} s)"
      continue
    try:
      variant = future.result(timeout=max(args.budget_s - elapsed, 1))
      timing = _time_variant(variant)
    except Exception as e:  # pylint: disable=broad-except
      row["skipped"] = f"failed: {type(e).__name__}: {(str(e) or '-').splitlines()[0][:120]}"
      print(row, flush=True)
      continue
    peak = record["peaks"][dtype]
    row.update(compile_s=variant["compile_s"], **timing,
               images_per_s=batch / timing["s_per_step"],
               mfu=flops[batch] / timing["s_per_step"] / peak if peak and flops[batch]
               else None,
               forms=variant["forms"],
               forms_short="XLA convolutions" if "XLA's own" in variant["forms"]
               else "CPU formulations")
    del variant, futures[(impl, dtype, batch)]
    print({k: v for k, v in row.items() if k != "forms"}, flush=True)
  # Compilations still running past the budget are abandoned (the process exits below).
  pool.shutdown(wait=False, cancel_futures=True)
  if args.quickstart_steps and time.perf_counter() - start < args.budget_s + 60:
    record["quickstart"] = quickstart_losses(args.quickstart_steps)
    print(record["quickstart"], flush=True)
  stats = device.memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    record["device_peak_gb"] = round(stats["peak_bytes_in_use"] / 1e9, 2)
  if deterministic:
    record["deterministic"] = _collect_deterministic_runs(
        deterministic, timeout=max(60, args.budget_s + 120 - (time.perf_counter() - start)))
  record["total_s"] = time.perf_counter() - start
  markdown = to_markdown(record)
  print(markdown, flush=True)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "accelerator.md").write_text(markdown)
  (out / "accelerator.json").write_text(json.dumps(record, indent=1, default=str))
  if args.write:
    write_section("Accelerator", markdown)
  sys.stdout.flush()
  os._exit(0)  # without waiting for abandoned compilations


if __name__ == "__main__":
  from pix2pix_jax import cli
  raise SystemExit(cli.call(main))
