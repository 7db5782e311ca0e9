"""The web export's sizes, its reduced weights' error, and its speed in headless Chromium.

  python -m bench.web_page            # the quickstart model and unet_256, 3 rounds of timing
  python -m bench.web_page --write    # also updates docs/benchmarks.md

For each model (random initial weights of the config's generator, drawn from its seed; trained
weights are no smaller to store): the ONNX model's size with float32, float16 and int8 weights,
the PSNR of the reduced weights' outputs against float32's on eight inputs (the first eight val
images of the real facades when PIX2PIX_FACADES_DIR names them, else synthetic facades), the
folder's size, and per translation (eval mode, one image) onnxruntime in Python on this CPU
beside the page in headless Chromium (WebAssembly, one thread), and the page's time from
opening to its first output.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import statistics
import sys
import tempfile
import threading
import time

import numpy as np

from bench.common import FACADES, REPO, machine_line, write_section


def _config(name: str):
  sys.path.insert(0, str(REPO))
  from configs import default, quickstart  # pylint: disable=import-outside-toplevel
  config = quickstart.get_config() if name == "quickstart" else default.get_config()
  config.model.conv_impl = "xla"
  config.eval_mode = "eval"
  return config


def _translator(config):
  import jax  # pylint: disable=import-outside-toplevel
  from pix2pix_jax import inference, state  # pylint: disable=import-outside-toplevel
  built = state.build(config)
  weights = jax.jit(built.init)()
  return inference.Translator(built.generator, weights.g_params, weights.g_batch_stats,
                              config=config, step=0)


def _inputs(config, count: int = 8) -> np.ndarray:
  from pix2pix_jax.data import pipeline  # pylint: disable=import-outside-toplevel
  config = config.copy_and_resolve_references()
  if FACADES.is_dir() and config.data.crop_size == 256:
    config.data.dataset, config.data.data_dir = "folder", str(FACADES)
  source = pipeline.get_source(config, "val")
  batch = next(pipeline.eval_batches(config, source, count, limit=count))
  return np.asarray(batch["A"], np.float32).transpose(0, 3, 1, 2), config.data.dataset


def _folder_size(folder) -> int:
  return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(folder)
             for f in files)


def _page_times(folder, rounds: int) -> tuple[float, list[float]]:
  from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, str(REPO / "tests"))
  from test_demo import _chromium  # pylint: disable=import-outside-toplevel
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
  handler.log_message = lambda *args: None
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    with sync_playwright() as playwright:
      browser = playwright.chromium.launch(executable_path=_chromium(),
                                           args=["--no-sandbox", "--disable-gpu"])
      page = browser.new_page()
      start = time.perf_counter()
      page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
      page.wait_for_function("window.pix2pix.last !== undefined", timeout=600_000)
      first = time.perf_counter() - start
      runs = [page.evaluate("window.pix2pix.translate().then(r => r.seconds)")
              for _ in range(rounds)]
      browser.close()
  finally:
    server.shutdown()
  return first, runs


def measure(name: str, rounds: int) -> dict:
  import onnxruntime as ort  # pylint: disable=import-outside-toplevel
  from pix2pix_jax import canvas  # pylint: disable=import-outside-toplevel
  from pix2pix_jax.export import onnx_model, web_page  # pylint: disable=import-outside-toplevel
  config = _config(name)
  translator = _translator(config)
  variables = translator.variables
  inputs, data = _inputs(config)
  row = {"model": name, "data": data}
  outputs = {}
  for weights in web_page.WEIGHT_FORMATS:
    model = web_page.reduce_weights(
        onnx_model.build_model(translator.generator, variables, "eval", input_nc=3), weights)
    row[f"{weights}_mb"] = len(model.SerializeToString()) / 2**20
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs[weights] = session.run(None, {"images": inputs})[0]
    if weights == "int8":
      one = inputs[:1]
      session.run(None, {"images": one})
      times = []
      for _ in range(rounds):
        start = time.perf_counter()
        session.run(None, {"images": one})
        times.append(time.perf_counter() - start)
      row["python_s"] = statistics.median(times)
  for weights in ("float16", "int8"):
    mse = float(np.mean((outputs[weights] - outputs["float32"]) ** 2))
    row[f"{weights}_psnr"] = 10 * np.log10(4.0 / mse) if mse else float("inf")
  with tempfile.TemporaryDirectory() as tmp:
    folder = os.path.join(tmp, "page")
    web_page.write_page(translator, folder, palette=canvas.palette_for(config),
                        sample=np.zeros((config.data.crop_size,) * 2 + (3,), np.uint8),
                        title=name)
    row["folder_mb"] = _folder_size(folder) / 2**20
    row["largest_mb"] = max(os.path.getsize(os.path.join(folder, f))
                            for f in os.listdir(folder)) / 2**20
    row["first_s"], page_runs = _page_times(folder, rounds)
    row["page_s"] = statistics.median(page_runs)
  return row


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--models", default="quickstart,unet_256")
  parser.add_argument("--write", action="store_true")
  args = parser.parse_args()
  rows = [measure(name, args.rounds) for name in args.models.split(",")]
  lines = [f"`python -m bench.web_page --rounds {args.rounds}`; "
           + machine_line("jax", "onnxruntime") + "; onnxruntime-web 1.31.1 in headless "
           "Chromium (WebAssembly, one thread).", "",
           "| model | weights MB: float32 / float16 / int8 | PSNR vs float32 (dB): float16 / "
           "int8 | folder MB (largest file) | onnxruntime, Python (s) | page (s) | page's "
           "first output (s) |", "|---|---|---|---|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['model']} ({r['data']} inputs) | {r['float32_mb']:.1f} / "
                 f"{r['float16_mb']:.1f} / {r['int8_mb']:.1f} | {r['float16_psnr']:.1f} / "
                 f"{r['int8_psnr']:.1f} | {r['folder_mb']:.1f} ({r['largest_mb']:.1f}) | "
                 f"{r['python_s']:.3f} | {r['page_s']:.3f} | {r['first_s']:.1f} |")
  print("\n".join(lines))
  if args.write:
    write_section("Web page", "\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
