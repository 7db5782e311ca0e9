"""Draws on a web export (--format=web) in headless Chromium and saves a screenshot.

  python launch.py --mode=export --format=web --workdir runs/quickstart --output page
  python -m bench.screenshot_web --folder page --output docs/web_page.png

Serves the folder on 127.0.0.1, paints two window columns and a shop front with the named
brushes, waits for the translation and shoots the page. Needs Debian's Chromium
(`apt-get install -y chromium`) and Playwright's Python package (the test extra).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import threading

# (brush, [(x0, y0, x1, y1) in canvas fractions]) painted in order.
STROKES = (
    ("window", [(0.3, 0.25, 0.3, 0.55), (0.7, 0.25, 0.7, 0.55)]),
    ("shop", [(0.15, 0.85, 0.85, 0.85)]),
)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--folder", required=True)
  parser.add_argument("--output", default="docs/web_page.png")
  parser.add_argument("--chromium", default="/usr/lib/chromium/chromium")
  args = parser.parse_args()
  from playwright.sync_api import sync_playwright

  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=args.folder)
  handler.log_message = lambda *a: None
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    with sync_playwright() as playwright:
      browser = playwright.chromium.launch(executable_path=args.chromium,
                                           args=["--no-sandbox", "--disable-gpu"])
      page = browser.new_page(viewport={"width": 960, "height": 640})
      page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
      page.wait_for_function("window.pix2pix.last !== undefined", timeout=600_000)
      box = page.locator("#input").bounding_box()
      page.locator("#size").fill("6")
      for brush, strokes in STROKES:
        page.locator("#brushes button", has_text=brush).first.click()
        for x0, y0, x1, y1 in strokes:
          page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
          page.mouse.down()
          page.mouse.move(box["x"] + x1 * box["width"], box["y"] + y1 * box["height"],
                          steps=20)
          page.mouse.up()
      page.evaluate("window.pix2pix.translate()")
      page.screenshot(path=args.output, full_page=True)
      browser.close()
  finally:
    server.shutdown()
  print(f"wrote {args.output}")


if __name__ == "__main__":
  main()
