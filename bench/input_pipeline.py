"""Images/s of the full input pipeline at 256 px, by number of reader threads.

  python -m bench.input_pipeline [--images 200] [--write]

Measures decode + the authors' augmentation (resize 286, random crop 256, flip) + batching
through grain, for the synthetic source, the real facades as a JPEG folder, and the same
prepared as TFDS array_record (when PIX2PIX_FACADES_DIR names the authors' facades folder), and
prints a Markdown table; `--write` puts it into docs/benchmarks.md (section "Input pipeline"). Compare with the training
step rate in the same file: the pipeline must never be the bottleneck.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from bench.common import FACADES, machine_line, write_section
from configs import default
from pix2pix_jax.data import pipeline


def _config(threads: int, batch: int):
  config = default.get_config()
  config.data.num_threads = threads
  config.data.prefetch = 8
  config.batch_size = batch
  config.model.generator = "unet_256"
  return config


def measure(source, threads: int, batch: int, images: int) -> float:
  it = pipeline.make_train_iterator(_config(threads, batch), source)
  for _ in range(max(2, 8 // batch)):  # warm up: threads started, buffer filled once
    next(it)
  t0 = time.perf_counter()
  n = 0
  while n < images:
    n += len(next(it)["A"])
  return n / (time.perf_counter() - t0)


def sources(tmp: str):
  from pix2pix_jax.data.synthetic import SyntheticFacades
  yield "synthetic facades (rendered at 286 px)", SyntheticFacades(400, 286, seed=0)
  if FACADES.is_dir():
    from pix2pix_jax.data.folder import AlignedFolderSource
    yield "facades, JPEG folder", AlignedFolderSource(FACADES, "train")
    from pix2pix_jax.data import prepare, tfds_builder
    prepare.prepare("facades", tmp, manual_dir=str(FACADES))
    yield "facades, TFDS array_record", tfds_builder.TfdsSource("pix2pix/facades", "train", tmp)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=200)
  parser.add_argument("--threads", default="1,2,4")
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--write", action="store_true")
  args = parser.parse_args()
  threads = [int(t) for t in args.threads.split(",")]
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for name, source in sources(tmp):
      rates = [measure(source, t, args.batch, args.images) for t in threads]
      rows.append((name, rates))
      print(name, " ".join(f"{t} threads: {r:.0f} img/s" for t, r in zip(threads, rates)),
            flush=True)
  table = [f"Machine: {machine_line('jax', 'grain')}. 256-px crops, batch {args.batch}, "
           f"{args.images} images per cell (`python -m bench.input_pipeline --write`).", "",
           "| source | " + " | ".join(f"{t} thread{'s' * (t > 1)}" for t in threads) + " |",
           "|---|" + "---:|" * len(threads)]
  for name, rates in rows:
    table.append(f"| {name} | " + " | ".join(f"{r:.0f} img/s" for r in rates) + " |")
  text = "\n".join(table)
  print(text)
  if args.write:
    write_section("Input pipeline", text)

if __name__ == "__main__":
  main()
