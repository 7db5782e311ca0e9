"""Input-to-output time of the demo for a 256-px `unet_256` (untrained weights) on this machine.

  python -m bench.demo_latency [--repeats 20]

Times what the demo's server does for one stroke, after the generator is compiled (the demo
compiles it before the page opens), in both test-time modes:
  generator   the run's translator on the 256×256 label map (uint8 in, uint8 out)
  + snapping  `demo.run`: strokes snapped to the CMP palette, then the translator
  request     + what Gradio does around it: decode the canvas's two PNGs (composite and
              background) and encode the two PNGs the page shows (output, generator input)
Reports the median and the fastest over `--repeats` strokes. The browser's own time (drawing,
upload of ~60 KB, display) is not included.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image


def _png(pixels: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG")
  return buffer.getvalue()


def _unpng(data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()

  import jax
  from bench import common
  from configs import default
  from pix2pix_jax import demo, inference, models, platform
  from pix2pix_jax.data import synthetic

  config = default.get_config()  # unet_256, 256 px, facades palette (BtoA)
  config.data.direction = "BtoA"
  platform.configure(config)
  generator = models.make_generator(config)
  size = config.data.crop_size
  variables = jax.jit(lambda: generator.init(
      {"params": jax.random.key(0), "dropout": jax.random.key(1)},
      np.zeros((1, size, size, 3), np.float32), train=False))()
  translator = inference.Translator(generator, variables["params"], variables["batch_stats"],
                                    config=config)
  model = demo.DemoModel(translator=translator, config=config)
  palette = demo.palette_for(config)
  background = synthetic.SyntheticFacades(1, size, seed=0)[0]["b"]
  start = time.perf_counter()
  demo.warm_up(model, background)
  compile_seconds = time.perf_counter() - start

  # A stroke: a window-coloured band with anti-aliased (blended) edges, as a browser draws it.
  composite = background.copy()
  window = np.array(synthetic.FACADE_PALETTE["window"])
  composite[100:110, 40:200] = window
  composite[99, 40:200] = (composite[99, 40:200] + window) // 2
  composite_png, background_png = _png(composite), _png(background)

  def request(mode):
    result = demo.run(model, palette, _unpng(composite_png), _unpng(background_png), mode, 0)
    return _png(result.output), _png(result.network_input)

  timed = {
      "generator": lambda mode: model.translate(composite, mode, 0),
      "+ snapping": lambda mode: demo.run(model, palette, composite, background, mode, 0),
      "request": request,
  }
  print(f"# demo input-to-output, unet_256 at {size}×{size}, batch 1, untrained weights")
  print(f"# {common.machine_line('jax')}")
  print(f"# generator compiled for both modes in {compile_seconds:.1f} s")
  print("| mode | what | median ms | fastest ms |")
  print("|---|---|---|---|")
  for mode in model.modes:
    for name, fn in timed.items():
      fn(mode)  # first call after compilation: caches, allocations
      seconds = []
      for _ in range(args.repeats):
        t0 = time.perf_counter()
        fn(mode)
        seconds.append(time.perf_counter() - t0)
      print(f"| {mode} | {name} | {1000 * statistics.median(seconds):.0f} | "
            f"{1000 * min(seconds):.0f} |", flush=True)


if __name__ == "__main__":
  from pix2pix_jax import cli
  raise SystemExit(cli.call(main))
