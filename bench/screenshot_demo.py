"""Draws on a running demo page in headless Chromium and saves a screenshot (docs/demo.png).

  python launch.py --mode=demo --workdir runs/quickstart &      # serves http://127.0.0.1:7860
  python -m bench.screenshot_demo --url http://127.0.0.1:7860 --output docs/demo.png

With a facades palette it paints a column of windows and a shop front with the named brushes,
waits for each translation, turns the PatchGAN heatmap on and shoots the page. Needs Debian's
Chromium (`apt-get install -y chromium`) and Playwright's Python package (the test extra).
"""

from __future__ import annotations

import argparse

STATUS = '#status [data-testid="markdown"]'
# (brush, [(x0, y0, x1, y1) in canvas fractions]) painted in order.
STROKES = (
    ("window", [(0.3, 0.2, 0.3, 0.6), (0.7, 0.2, 0.7, 0.6)]),
    ("shop", [(0.15, 0.85, 0.85, 0.85)]),
)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--url", default="http://127.0.0.1:7860")
  parser.add_argument("--output", default="docs/demo.png")
  parser.add_argument("--chromium", default="/usr/lib/chromium/chromium")
  parser.add_argument("--heatmap", action=argparse.BooleanOptionalAction, default=True)
  args = parser.parse_args()
  from playwright.sync_api import sync_playwright

  with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=args.chromium,
                                         args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(args.url, wait_until="networkidle")
    status = page.locator(STATUS)

    def wait_for_change(before: str, contains: str) -> str:
      page.wait_for_function(
          "([sel, before, contains]) => { const t = document.querySelector(sel).innerText;"
          " return t !== before && t.includes(contains); }", arg=[STATUS, before, contains],
          timeout=60_000)
      return status.inner_text()

    box = page.locator("#canvas canvas").first.bounding_box()
    side = min(box["width"], box["height"])
    left, top = box["x"] + (box["width"] - side) / 2, box["y"] + (box["height"] - side) / 2
    before = status.inner_text()
    for brush, strokes in STROKES:
      if page.locator("#brush").count():
        page.locator("#brush label", has_text=brush).click()
        before = wait_for_change(before, f"Brush: {brush}")
        page.wait_for_timeout(300)
      for x0, y0, x1, y1 in strokes:
        page.mouse.move(left + x0 * side, top + y0 * side)
        page.mouse.down()
        page.mouse.move(left + x1 * side, top + y1 * side, steps=20)
        page.mouse.up()
        before = wait_for_change(before, "translated in")
    if args.heatmap:
      page.locator("#heatmap-toggle input").check()
      wait_for_change(before, "translated in")
    page.wait_for_timeout(500)
    page.screenshot(path=args.output, full_page=True)
    browser.close()
  print(f"wrote {args.output}")


if __name__ == "__main__":
  from pix2pix_jax import cli
  raise SystemExit(cli.call(main))
