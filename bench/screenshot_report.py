"""Renders a run's results page in headless Chromium and saves a screenshot.

  python -m bench.screenshot_report WORKDIR OUT.png [--width 1400 --height 2000]

WORKDIR must already hold index.html (see `pix2pix_jax.report.write_report`).
Chromium runs with a fresh profile and no network features, so the shot shows
exactly what the self-contained page renders from file://. On Debian:
`apt-get install -y chromium`.
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


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("workdir", help="run directory holding index.html")
  parser.add_argument("out_png", help="where to write the screenshot")
  parser.add_argument("--width", type=int, default=1400, help="window width in pixels")
  parser.add_argument("--height", type=int, default=2000, help="window height in pixels")
  args = parser.parse_args(argv)
  path = screenshot(args.workdir, args.out_png, args.width, args.height)
  print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
