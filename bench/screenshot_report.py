"""Renders a run's results page in headless Chromium and saves a screenshot.

  python -m bench.screenshot_report WORKDIR OUT.png [--width 1400 --height 2000]
  python -m bench.screenshot_report --demo OUT_DIR  # sample grids at 64 px, 256 px and 256×512

WORKDIR must already hold index.html (see `pix2pix_jax.report.write_report`). `--demo` writes a
results page per sample size into OUT_DIR/SIZE/ (synthetic facades: label map, a blurred photo
standing in for our output, a reference, the photo, a heatmap) and its screenshot to
OUT_DIR/SIZE.png, to check by eye that the column titles sit over their columns and that small
samples are enlarged without smoothing.

Chromium runs with a fresh profile and no network features, so the shot shows exactly what the
self-contained page renders from file://. On Debian: `apt-get install -y chromium`.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_TIMEOUT_S = 120
# (name, sample height, sample width) of the demo pages.
DEMO_SIZES = (("64px", 64, 64), ("256px", 256, 256), ("256x512", 256, 512))


def find_browser() -> str:
  for name in _BROWSERS:
    path = shutil.which(name)
    if path:
      return path
  raise SystemExit(
      f"error: no Chromium found on PATH (looked for {', '.join(_BROWSERS)}). "
      "Install it, e.g. `apt-get install -y chromium` on Debian/Ubuntu.")


def screenshot(workdir: str, out_png: str, width: int = 1400, height: int = 2000) -> str:
  """Saves a width x height screenshot of WORKDIR/index.html to out_png; returns out_png."""
  index = pathlib.Path(workdir, "index.html").resolve()
  if not index.is_file():
    raise SystemExit(f"error: {index} does not exist; call pix2pix_jax.report.write_report first")
  browser = find_browser()
  out_png = os.path.abspath(out_png)
  os.makedirs(os.path.dirname(out_png), exist_ok=True)
  if os.path.exists(out_png):
    os.remove(out_png)  # So that a stale file cannot pass for a fresh screenshot.
  with tempfile.TemporaryDirectory(prefix="screenshot-profile-") as profile:
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
        f"--window-size={width},{height}", f"--screenshot={out_png}", index.as_uri()]
    try:
      result = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as e:
      raise SystemExit(f"error: {browser} did not finish within {_TIMEOUT_S} s") from e
  if result.returncode != 0 or not os.path.isfile(out_png):
    raise SystemExit(f"error: {browser} exited with {result.returncode} and wrote no "
                     f"{out_png}:\n{result.stderr[-2000:]}")
  return out_png


def demo_samples(height: int, width: int, count: int = 3, seed: int = 0) -> dict:
  """Synthetic facades at height × width: inputs, outputs, references, targets, heatmaps."""
  import numpy as np
  from PIL import Image, ImageFilter

  from pix2pix_jax.data.synthetic import SyntheticFacades

  source = SyntheticFacades(count, max(height, width), seed=seed)

  def image(pixels, blur=0.0):
    picture = Image.fromarray(pixels).resize((width, height), Image.NEAREST)
    if blur:
      picture = picture.filter(ImageFilter.GaussianBlur(blur * max(height, width) / 256))
    return np.asarray(picture, np.float32) / 127.5 - 1.0

  examples = [source[i] for i in range(count)]
  rng = np.random.default_rng(seed)
  patches = (max(1, height // 8 - 2), max(1, width // 8 - 2))  # a 70×70 PatchGAN's grid
  return {
      "inputs": np.stack([image(e["b"]) for e in examples]),
      "outputs": np.stack([image(e["a"], blur=3) for e in examples]),
      "references": np.stack([image(e["a"], blur=1.5) for e in examples]),
      "targets": np.stack([image(e["a"]) for e in examples]),
      "heatmaps": rng.uniform(0, 1, (count, *patches)),
  }


def write_demo(out_dir: str, width: int = 1400, height: int = 2000) -> list[str]:
  """One results page per DEMO_SIZES entry under out_dir, and its screenshot; returns the shots."""
  from pix2pix_jax import report

  shots = []
  for name, sample_height, sample_width in DEMO_SIZES:
    workdir = pathlib.Path(out_dir, name)
    samples = demo_samples(sample_height, sample_width)
    report.save_sample_grid(workdir / "samples" / "step_00001000.png", samples["inputs"],
                            samples["outputs"], samples["targets"], samples["heatmaps"],
                            references=samples["references"],
                            reference_label="authors' model, step 0")
    report.write_report(workdir)
    shots.append(screenshot(str(workdir), str(pathlib.Path(out_dir, f"{name}.png")), width,
                            height))
  return shots


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdir", help="run directory holding index.html (with --demo: where "
                                      "the demo pages and screenshots go)")
  parser.add_argument("out_png", nargs="?", help="where to write the screenshot")
  parser.add_argument("--demo", action="store_true",
                      help="write demo pages at 64 px, 256 px and 256×512 and screenshot them")
  parser.add_argument("--width", type=int, default=1400, help="window width in pixels")
  parser.add_argument("--height", type=int, default=2000, help="window height in pixels")
  args = parser.parse_args(argv)
  if args.demo:
    print("\n".join(write_demo(args.workdir, args.width, args.height)))
    return 0
  if not args.out_png:
    parser.error("out_png is required (or --demo)")
  print(screenshot(args.workdir, args.out_png, args.width, args.height))
  return 0


if __name__ == "__main__":
  from pix2pix_jax import cli
  sys.exit(cli.call(main))
