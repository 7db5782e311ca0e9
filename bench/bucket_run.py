"""A quickstart run with its workdir in a bucket against the same run on the local disk.

  python -m bench.bucket_run                    # 2 rounds of the whole quickstart, each way
  python -m bench.bucket_run --rounds 3 --write # also updates docs/benchmarks.md

Starts a GCS JSON-API server on 127.0.0.1 (tests/gcs_server.py), warms the compilation cache
with a short run, then times whole `launch.py` processes (wall time), local disk and bucket
interleaved, the order alternating by round. Also counts the bytes of metrics objects the
bucket run uploaded against the local metrics.jsonl (a line is written at most twice).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench.common import REPO, machine_line, write_section

sys.path.insert(0, str(REPO / "tests"))
import gcs_server  # noqa: E402  pylint: disable=wrong-import-position


def _launch(workdir, env, steps: int, cache: str) -> float:
  cmd = [sys.executable, str(REPO / "launch.py"), f"--config={REPO / 'configs/quickstart.py'}",
         f"--workdir={workdir}", f"--config.compilation_cache_dir={cache}",
         *([f"--config.num_train_steps={steps}"] if steps else [])]
  start = time.perf_counter()
  result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if result.returncode != 0:
    sys.exit(f"{workdir}: launch failed\n{result.stderr[-3000:]}")
  return seconds


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--steps", type=int, default=0, help="0: the quickstart's own 2,000")
  parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
  args = parser.parse_args()
  local_root = tempfile.mkdtemp(prefix="bucket_run_")
  server = gcs_server.GcsServer(os.path.join(local_root, "server.log"))
  try:
    env = {**os.environ, "PYTHONPATH": str(REPO), **server.environment()}
    gcs_server.apply(server.environment())
    from etils import epath  # pylint: disable=import-outside-toplevel
    from pix2pix_jax import metrics_log, storage  # pylint: disable=import-outside-toplevel
    cache = os.path.join(local_root, "jax_cache")
    _launch(os.path.join(local_root, "warm"), env, 20, cache)
    rows = []
    for r in range(args.rounds):
      local, bucket = os.path.join(local_root, f"local{r}"), f"gs://runs/bench{r}"
      order = [("local", local), ("bucket", bucket)]
      times = {name: _launch(path, env, args.steps, cache)
               for name, path in (order if r % 2 == 0 else order[::-1])}
      rows.append((times["local"], times["bucket"]))
      print(f"round {r + 1}: local {times['local']:.1f} s, bucket {times['bucket']:.1f} s, "
            f"ratio {times['bucket'] / times['local']:.3f}", flush=True)
    local_bytes = os.path.getsize(os.path.join(local_root, "local0", "metrics.jsonl"))
    final = epath.Path("gs://runs/bench0") / metrics_log.NAME
    storage.invalidate_cache(final)
    bucket_bytes = len(final.read_bytes())
  finally:
    server.stop()
  ratios = [b / l for l, b in rows]
  lines = [f"`python -m bench.bucket_run --rounds {args.rounds}"
           + (f" --steps {args.steps}" if args.steps else "") + "`; "
           + machine_line("jax", "gcsfs") + ".", "",
           "| round | local disk (s) | bucket on 127.0.0.1 (s) | bucket ÷ local |",
           "|---:|---:|---:|---:|"]
  lines += [f"| {i + 1} | {l:.1f} | {b:.1f} | {b / l:.3f} |" for i, (l, b) in enumerate(rows)]
  lines += ["", f"Median ratio {statistics.median(ratios):.3f} (range {min(ratios):.3f}–"
            f"{max(ratios):.3f}). metrics.jsonl: {local_bytes:,} bytes on disk; the bucket's "
            f"final object {bucket_bytes:,} bytes, plus the same lines once in its parts "
            "(each line uploaded at most twice)."]
  print("\n".join(lines))
  if args.write:
    write_section("Runs in a bucket", "\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
