"""Images/s of the training input pipeline, by reader: threads of the process or worker processes.

  python -m bench.input_pipeline [--images 400] [--rounds 2] [--write]

Measures what `loop.py` consumes: decode + the authors' augmentation + batching through grain
(`pipeline.make_train_iterator`, as a training run builds it), after a warm-up that starts the
readers and fills their buffers. Sources:
* the quickstart's synthetic facades (rendered once at 72 px, 64-px crops, batch 4), read by one
  thread of a process pinned to one core;
* at the paper's size (resize 286, crop 256, flip, batch 1): the synthetic facades, and, when
  PIX2PIX_FACADES_DIR names the authors' facades folder, the real facades as a JPEG folder and
  prepared as TFDS array_record;
each with 1 and 2 reading threads in-process (`data.num_workers=0`) and 1 and 2 worker processes
(`data.num_workers=1, 2`). Every cell is measured `--rounds` times (rounds interleaved) and
quoted as a range. `--write` puts the table into docs/benchmarks.md (section "Input pipeline").
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from bench.common import FACADES, machine_line, write_section
from configs import default, quickstart
from pix2pix_jax.data import pipeline

PAPER_READERS = (("1 thread", 0, 1), ("2 threads", 0, 2), ("1 worker", 1, 1),
                 ("2 workers", 2, 1))


def _paper_config(workers: int, threads: int):
  config = default.get_config()
  config.data.num_workers, config.data.num_threads = workers, threads
  return config


def measure(config, source, images: int, warmup_batches: int = 8) -> float:
  """Images/s of `make_train_iterator(config, source)` over `images` images after a warm-up."""
  iterator = pipeline.make_train_iterator(config, source)
  try:
    for _ in range(warmup_batches):
      next(iterator)
    start, count = time.perf_counter(), 0
    while count < images:
      count += len(next(iterator)["A"])
    return count / (time.perf_counter() - start)
  finally:
    iterator.close()


def _pinned_to_one_core(fn, *args):
  """`fn(*args)` with this process (and the threads it starts) on one core."""
  cores = os.sched_getaffinity(0)
  os.sched_setaffinity(0, {min(cores)})
  try:
    return fn(*args)
  finally:
    os.sched_setaffinity(0, cores)


def paper_sources(tmp: str):
  config = default.get_config()
  config.data.dataset = "synthetic"
  yield "synthetic facades (rendered once at 286 px)", pipeline.get_source(config, "train")
  if FACADES.is_dir():
    from pix2pix_jax.data import prepare, tfds_builder
    from pix2pix_jax.data.folder import AlignedFolderSource
    yield "facades, JPEG folder", AlignedFolderSource(FACADES, "train")
    prepare.prepare("facades", tmp, manual_dir=str(FACADES))
    yield "facades, TFDS array_record", tfds_builder.TfdsSource("pix2pix/facades", "train", tmp)


def _range(values: list[float]) -> str:
  low, high = min(values), max(values)
  return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}–{high:.0f}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=400, help="images per cell")
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--write", action="store_true")
  args = parser.parse_args()

  qs_config = quickstart.get_config()
  qs_config.data.num_workers, qs_config.data.num_threads = 0, 1
  qs_source = pipeline.get_source(qs_config, "train")
  quick: list[float] = []
  rows: dict[str, dict[str, list[float]]] = {}
  with tempfile.TemporaryDirectory() as tmp:
    sources = list(paper_sources(tmp))
    for round_index in range(args.rounds):
      quick.append(_pinned_to_one_core(measure, qs_config, qs_source, 4 * args.images))
      print(f"round {round_index + 1}: quickstart synthetic, 1 thread on 1 core: "
            f"{quick[-1]:.0f} img/s", flush=True)
      for name, source in sources:
        for label, workers, threads in PAPER_READERS:
          rate = measure(_paper_config(workers, threads), source, args.images)
          rows.setdefault(name, {}).setdefault(label, []).append(rate)
          print(f"round {round_index + 1}: {name}, {label}: {rate:.0f} img/s", flush=True)

  labels = [label for label, _, _ in PAPER_READERS]
  table = [
      f"Machine: {machine_line('jax', 'grain')}. `python -m bench.input_pipeline --rounds "
      f"{args.rounds}`: images/s as the training loop receives them, the range over "
      f"{args.rounds} rounds.", "",
      f"Quickstart's synthetic facades (rendered once at 72 px, 64-px crops + flip, batch 4), one "
      f"reading thread in a process pinned to one core: **{_range(quick)} img/s**.", "",
      "Paper size (resize 286, random crop 256, flip; batch 1): reading threads of the training "
      "process (`data.num_workers=0`) or worker processes (`data.num_workers=N`, one thread "
      "each):", "",
      "| source | " + " | ".join(labels) + " | 2 workers ÷ 1 (same round) |",
      "|---|" + "---:|" * (len(labels) + 1)]
  for name, rates in rows.items():
    ratios = [two / one for two, one in zip(rates["2 workers"], rates["1 worker"])]
    table.append(f"| {name} | " + " | ".join(_range(rates[label]) for label in labels)
                 + f" | {min(ratios):.2f}–{max(ratios):.2f}× "
                 f"(median {statistics.median(ratios):.2f}) |")
  text = "\n".join(table)
  print(text)
  if args.write:
    write_section("Input pipeline", text)


if __name__ == "__main__":
  from pix2pix_jax import cli
  raise SystemExit(cli.call(main))
