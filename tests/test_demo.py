"""The interactive demo (`demo.py`, `demo_app.py`): palettes, snapping, uploads, and the page
itself driven in Debian's Chromium against a tiny trained run."""

import importlib
import io
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import types
import urllib.parse
import urllib.request

import numpy as np
import pytest
from PIL import Image

from helpers import tiny_config
from pix2pix_jax import demo
from pix2pix_jax.data import synthetic

WAIT_MS = 60_000  # for one answer of the page: generous for a busy CI machine
STATUS = '#status [data-testid="markdown"]'
WINDOW = synthetic.FACADE_PALETTE["window"]
WALL = synthetic.FACADE_PALETTE["wall"]


# ---------------------------------------------------------------------------- palettes

def test_palette_follows_dataset_and_direction():
  labels = demo.palette_for(tiny_config())  # synthetic facades, BtoA: label map → photo
  assert labels.kind == "labels"
  assert labels.names == synthetic.CLASS_NAMES and labels.colours[2] == WINDOW
  facades = demo.palette_for(tiny_config(**{"data.dataset": "facades"}))
  assert facades.kind == "labels" and len(facades.names) == 12  # all CMP classes
  assert facades.names[:3] == ("background", "wall", "window")
  assert dict(zip(facades.names, facades.colours))["deco"] == (255, 170, 0)
  assert demo.palette_for(tiny_config(**{"data.direction": "AtoB"})).kind == "free"  # photo in
  edges = demo.palette_for(tiny_config(**{"data.dataset": "edges2shoes",
                                          "data.direction": "AtoB"}))
  assert edges.kind == "edges" and edges.colours == ((0, 0, 0), (255, 255, 255))
  assert demo.palette_for(tiny_config(**{"data.dataset": "maps"})).kind == "free"
  assert demo.palette_for(None).kind == "free"


def test_snap_strokes_snaps_touched_pixels_only():
  palette = demo.palette_for(tiny_config())
  background = np.zeros((8, 8, 3), np.uint8)
  background[:] = WALL
  background[0, 0] = (10, 20, 30)  # not a class colour, but untouched: kept
  composite = background.copy()
  composite[4, 1:7] = WINDOW  # the stroke
  half = (np.array(WINDOW) + np.array(WALL)) // 2  # an anti-aliased edge pixel
  composite[5, 1:7] = half
  composite[3, 3] = (250, 10, 5)  # near pillar red
  snapped = demo.snap_strokes(composite, background, palette)
  touched = np.any(composite != background, axis=-1)
  np.testing.assert_array_equal(snapped[~touched], background[~touched])
  colours = {tuple(c) for c in palette.colours}
  assert all(tuple(p) in colours for p in snapped[touched])
  assert (snapped[4, 1:7] == WINDOW).all()
  assert tuple(snapped[3, 3]) == synthetic.FACADE_PALETTE["pillar"]
  nearest = min(colours, key=lambda c: sum((int(a) - int(b)) ** 2 for a, b in zip(c, half)))
  assert tuple(snapped[5, 1]) == nearest
  # Without a background (or of another size) every pixel is a stroke pixel.
  assert all(tuple(p) in colours
             for p in demo.snap_strokes(composite, None, palette).reshape(-1, 3))
  # Photos and edge maps are never snapped.
  free = demo.snap_strokes(composite, background, demo.FREE_PALETTE)
  np.testing.assert_array_equal(free, composite)


# ---------------------------------------------------------------------------- uploads

def _save(tmp_path, name, image: Image.Image, **kwargs) -> pathlib.Path:
  path = tmp_path / name
  image.save(path, **kwargs)
  return path


def test_read_upload_accepts_images_of_any_usual_mode(tmp_path):
  rgb = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
  cases = {
      "rgb.png": Image.fromarray(rgb),
      "rgba.png": Image.fromarray(rgb).convert("RGBA"),
      "grey.png": Image.fromarray(rgb).convert("L"),
      "palette.png": Image.fromarray(rgb).convert("P"),
      "bits.png": Image.fromarray(rgb).convert("1"),
      "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
      "deep.png": Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),  # 16-bit grey
  }
  for name, image in cases.items():
    pixels = demo.read_upload(_save(tmp_path, name, image))
    assert pixels.shape == (16, 24, 3) and pixels.dtype == np.uint8, name
  np.testing.assert_array_equal(demo.read_upload(tmp_path / "rgba.png"), rgb)
  np.testing.assert_array_equal(demo.read_upload(tmp_path / "deep.png")[..., 0], rgb[..., 0])


def test_read_upload_refuses_bad_files_with_a_message(tmp_path):
  text = tmp_path / "notes.png"
  text.write_text("not an image at all")
  with pytest.raises(demo.UploadError, match="notes.png is not an image"):
    demo.read_upload(text)
  empty = tmp_path / "empty.jpg"
  empty.write_bytes(b"")
  with pytest.raises(demo.UploadError, match="empty.jpg"):
    demo.read_upload(empty)
  image = Image.fromarray(np.zeros((64, 64, 3), np.uint8))
  big = _save(tmp_path, "big.png", image)
  with pytest.raises(demo.UploadError, match=r"big.png is .* MB; the demo takes images up to"):
    demo.read_upload(big, max_bytes=10)
  with pytest.raises(demo.UploadError, match=r"64×64 pixels; .* downscale it"):
    demo.read_upload(big, max_pixels=1000)
  floats = _save(tmp_path, "float.tif", Image.fromarray(np.zeros((8, 8), np.float32)))
  with pytest.raises(demo.UploadError, match="float.tif: floating-point images"):
    demo.read_upload(floats)
  data = big.read_bytes()
  truncated = tmp_path / "cut.png"
  truncated.write_bytes(data[:len(data) // 2])
  with pytest.raises(demo.UploadError, match="cut.png"):
    demo.read_upload(truncated)
  assert str(tmp_path) not in _message(demo.read_upload, truncated)  # no server paths shown


def _message(fn, *args) -> str:
  try:
    fn(*args)
  except demo.UploadError as e:
    return str(e)
  return ""


def test_fit_upload_takes_the_input_half_and_follows_the_translate_resize_rule():
  a = np.full((32, 32, 3), 10, np.uint8)
  b = np.full((32, 32, 3), 200, np.uint8)
  pair = np.concatenate([a, b], axis=1)
  pixels, note = demo.fit_upload(pair, (32, 32), 32, "BtoA")
  np.testing.assert_array_equal(pixels, b)
  assert "aligned A|B" in note and "B (right)" in note
  pixels, _ = demo.fit_upload(pair, (32, 32), 32, "AtoB")
  np.testing.assert_array_equal(pixels, a)
  # Sizes the generator takes as they are stay; others are resized to the canvas.
  square = np.zeros((64, 64, 3), np.uint8)
  kept, note = demo.fit_upload(square, (32, 32), 32, "BtoA")
  assert kept.shape == (64, 64, 3) and note == ""
  odd, note = demo.fit_upload(np.zeros((40, 50, 3), np.uint8), (32, 32), 32, "BtoA")
  assert odd.shape == (32, 32, 3) and "resized from 50×40 to 32×32" in note
  huge, _ = demo.fit_upload(np.zeros((2048, 2048, 3), np.uint8), (32, 32), 32, None)
  assert huge.shape == (32, 32, 3)
  fixed, _ = demo.fit_upload(square, (32, 32), 32, "BtoA", fixed_size=True)
  assert fixed.shape == (32, 32, 3)


# ---------------------------------------------------------------------------- models, canvas

class _FakeExported:
  """Stands in for export.ExportedGenerator: grey in, a fixed batch of 2; records its calls."""
  batch, input_nc, size_multiple, image_size = 2, 1, 32, (32, 32)
  metadata = {"mode": "eval", "output_nc": 3, "direction": "AtoB", "step": 7,
              "default_seed": 3, "crop_size": 32}

  def __init__(self):
    self.calls = []

  def __call__(self, images, seed=0):
    self.calls.append((images, seed))
    return np.repeat(255 - images, 3, axis=-1)


def test_artifact_model_fills_its_fixed_batch_and_keeps_its_mode():
  exported = _FakeExported()
  model = demo.DemoModel(exported=exported)
  assert model.modes == ("eval",) and model.default_seed == 3 and model.step == 7
  assert model.fixed_hw == (32, 32) and model.direction == "AtoB" and not model.has_heatmap
  pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
  output = model.translate(pixels, "eval", seed=5)
  (images, seed), = exported.calls
  grey = np.asarray(Image.fromarray(pixels).convert("L"))
  assert images.shape == (2, 32, 32, 1) and seed == 5  # two copies: batch statistics of one
  np.testing.assert_array_equal(images[1, ..., 0], grey)
  np.testing.assert_array_equal(output, np.repeat(255 - grey[..., None], 3, axis=-1))
  with pytest.raises(ValueError, match="paper.*not available"):
    model.translate(pixels, "paper", seed=0)
  canvas, origin = demo.initial_canvas(model)  # no run config: a blank, white canvas
  assert origin == "blank canvas" and canvas.shape == (32, 32, 3) and (canvas == 255).all()


def _canvas_model(config):
  return types.SimpleNamespace(config=config, fixed_hw=None, crop_size=config.data.crop_size,
                               size_multiple=32)


def test_initial_canvas_is_a_validation_input_or_blank(tmp_path):
  canvas, origin = demo.initial_canvas(_canvas_model(tiny_config()))
  assert origin == "validation input synthetic_00000" and canvas.shape == (32, 32, 3)
  # Facades that were never prepared are neither downloaded nor built: a blank label map.
  unprepared = tiny_config(**{"data.dataset": "facades", "data.tfds_data_dir": str(tmp_path)})
  canvas, origin = demo.initial_canvas(_canvas_model(unprepared))
  assert origin == "blank canvas" and canvas.shape == (32, 32, 3)
  assert (canvas == synthetic.FACADE_PALETTE["background"]).all()
  assert not any(tmp_path.iterdir())


def test_launch_demo_needs_a_workdir_or_an_artifact():
  from conftest import REPO_ROOT
  result = subprocess.run([sys.executable, str(REPO_ROOT / "launch.py"), "--mode=demo"],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
  assert result.returncode != 0 and "--mode=demo: --workdir or --artifact" in result.stderr


# ---------------------------------------------------------------------------- the page

def _chromium() -> str | None:
  """Debian's real Chromium binary (/usr/bin/chromium is a wrapper script)."""
  for candidate in (os.environ.get("PIX2PIX_CHROMIUM", ""), "/usr/lib/chromium/chromium",
                    "/usr/lib/chromium-browser/chromium-browser"):
    if candidate and os.access(candidate, os.X_OK):
      return candidate
  found = shutil.which("chromium")
  if found and open(found, "rb").read(4) == b"\x7fELF":
    return found
  return None


def require_chromium() -> str:
  """Chromium's binary for a browser test: a failure under CI (which installs it), a skip with
  the fix elsewhere."""
  chromium = _chromium()
  if chromium is None:
    if os.environ.get("CI"):
      raise AssertionError("Chromium is missing: CI installs Debian's chromium")
    pytest.skip("Chromium not found: apt-get install -y chromium (Debian's package)")
  return chromium


def offline_browser(playwright, chromium: str, aborted: list, viewport: tuple[int, int],
                    allowed=lambda url: False):
  """Chromium whose pages may reach 127.0.0.1 (and the URLs `allowed` accepts) only; every
  other request is aborted and recorded in `aborted`. Returns (browser, context)."""
  browser = playwright.chromium.launch(executable_path=chromium,
                                       args=["--no-sandbox", "--disable-gpu"])
  context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})

  def only_loopback(route):
    url = urllib.parse.urlparse(route.request.url)
    if url.hostname == "127.0.0.1" or allowed(url):
      route.continue_()
    else:
      aborted.append(route.request.url)
      route.abort()

  context.route("**/*", only_loopback)
  return browser, context


def _require(module: str):
  """Imports an extra the page test needs: a failure in CI, a skip with the fix elsewhere."""
  try:
    return importlib.import_module(module)
  except ImportError:
    if os.environ.get("CI"):
      raise
    pytest.skip(f"{module} is not installed: pip install -e '.[test,demo]'")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture
def outbound_connections(monkeypatch):
  """Records connections from this process (the demo's server) to anything but loopback."""
  seen = []
  connect = socket.socket.connect

  def guarded(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
      host = address[0]
      if host not in ("127.0.0.1", "::1", "localhost"):
        seen.append(address)
        raise OSError(f"test: no network for the demo (tried {address})")
    return connect(self, address)

  monkeypatch.setattr(socket.socket, "connect", guarded)
  return seen


def _fetch_png(url: str) -> np.ndarray:
  with urllib.request.urlopen(url, timeout=10) as response:
    return np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))


@pytest.mark.slow
def test_demo_page_in_chromium(tmp_path, outbound_connections):
  chromium = require_chromium()
  _require("gradio")
  sync_api = _require("playwright.sync_api")
  from pix2pix_jax import demo_app, inference, loop, platform

  # A tiny run, trained for one step, then served as `launch.py --mode=demo` does.
  workdir = tmp_path / "run"
  platform.configure()
  loop.train_and_evaluate(tiny_config(num_train_steps=1, checkpoint_every_steps=1,
                                      eval_every_steps=0, sample_every_steps=0,
                                      log_every_steps=1), str(workdir))
  model = demo.load_model(str(workdir))
  app = demo_app.build_app(model)
  url = demo_app.launch(app, port=_free_port(), block=False)
  aborted = []
  try:
    with sync_api.sync_playwright() as playwright:
      browser, context = offline_browser(playwright, chromium, aborted, (1280, 1000))
      page = context.new_page()
      page.goto(url, wait_until="networkidle")
      # The Markdown itself: the block around it also shows Gradio's timer while busy.
      status = page.locator(STATUS)
      # The header names where the canvas came from; the editor also sends its first value.
      sync_api.expect(page.locator("#header")).to_contain_text("validation input synthetic_",
                                                                timeout=WAIT_MS)

      def wait_for_new_status(before: str, contains: str = "translated in") -> str:
        page.wait_for_function(
            "([sel, before, contains]) => { const t = document.querySelector(sel).innerText;"
            " return t !== before && t.includes(contains); }", arg=[STATUS, before, contains],
            timeout=WAIT_MS)
        return status.inner_text()

      def src(elem_id: str) -> str:
        return page.locator(f"#{elem_id} img").get_attribute("src")

      def shown(elem_id: str) -> np.ndarray:
        return _fetch_png(src(elem_id))

      def wait_for_new_input(before: str) -> str:
        """Waits until the page shows another generator input (a stroke was translated)."""
        page.wait_for_function(
            "before => document.querySelector('#network-input img').src !== before",
            arg=before, timeout=WAIT_MS)
        return src("network-input")

      start_src = src("network-input")
      start_input = _fetch_png(start_src)

      # Two strokes with the named "window" brush, the output after each.
      before = status.inner_text()
      page.locator("#brush label", has_text="window").click()
      before = wait_for_new_status(before, "Brush: window")
      page.wait_for_timeout(300)  # the editor takes the new brush colour
      box = page.locator("#canvas canvas").first.bounding_box()
      size = min(box["width"], box["height"]) * 0.6
      cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
      input_src = start_src
      for dy in (-0.2, 0.2):
        page.mouse.move(cx - size / 2, cy + dy * size)
        page.mouse.down()
        page.mouse.move(cx + size / 2, cy + dy * size, steps=12)
        page.mouse.up()
        input_src = wait_for_new_input(input_src)
      # Whatever was still queued (the editor's first value, the strokes) has been answered
      # once the button's translation is shown.
      before = status.inner_text()
      page.locator("#translate").click()
      before = wait_for_new_status(before)
      network_input, output = shown("network-input"), shown("output")

      # The page translated exactly what it shows, as inference.load(W) does.
      expected = inference.load(workdir)(network_input)
      assert np.abs(output.astype(int) - expected.astype(int)).max() <= 1
      touched = np.any(network_input != start_input, axis=-1)
      assert touched.sum() >= 20, "the strokes did not reach the generator's input"
      colours = {tuple(c) for c in demo.palette_for(model.config).colours}
      assert {tuple(p) for p in network_input[touched]} <= colours  # snapped
      assert (network_input[touched] == WINDOW).all(axis=-1).mean() > 0.5

      # Download of the output: the same pixels.
      with page.expect_download() as download:
        page.locator("#output a[download]").click()
      downloaded = np.asarray(Image.open(download.value.path()).convert("RGB"))
      np.testing.assert_array_equal(downloaded, output)

      # Another dropout seed (paper mode): the translator's output for that seed. (The tiny
      # U-Net has no dropout layer, 5 levels: the seed reaches the call, the pixels stay.)
      page.locator("#seed input").fill("7")
      page.locator("#seed input").press("Enter")
      before = wait_for_new_status(before, "seed 7")
      expected = inference.load(workdir)(network_input, seed=7)
      assert np.abs(shown("output").astype(int) - expected.astype(int)).max() <= 1

      # Eval mode and the heatmap.
      page.locator("#mode label", has_text="eval").click()
      before = wait_for_new_status(before, "eval mode")
      expected = inference.load(workdir, mode="eval")(network_input)
      assert np.abs(shown("output").astype(int) - expected.astype(int)).max() <= 1
      assert not np.array_equal(expected, output)  # running averages, not batch statistics
      page.locator("#heatmap-toggle input").check()
      before = wait_for_new_status(before)
      sync_api.expect(page.locator("#heatmap img")).to_be_visible()
      assert shown("heatmap").shape == output.shape

      # A bad upload gets a message; an aligned A|B pair gives its B half (BtoA).
      bad = tmp_path / "bad.png"
      bad.write_text("this is not a PNG")
      with page.expect_file_chooser() as chooser:
        page.locator("#upload").click()
      chooser.value.set_files(str(bad))
      before = wait_for_new_status(before, "Upload refused: bad.png is not an image")
      pair_b = synthetic.SyntheticFacades(1, 32, seed=5)[0]["b"]
      pair = np.concatenate([np.zeros_like(pair_b), pair_b], axis=1)
      Image.fromarray(pair).save(tmp_path / "pair.png")
      with page.expect_file_chooser() as chooser:
        page.locator("#upload").click()
      chooser.value.set_files(str(tmp_path / "pair.png"))
      before = wait_for_new_status(before, "aligned A|B")
      np.testing.assert_array_equal(shown("network-input"), pair_b)

      page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
      browser.close()
  finally:
    app.close()
  assert (tmp_path / "demo.png").stat().st_size > 10_000
  assert aborted == [], f"the page asked the network for {aborted}"
  assert outbound_connections == [], f"the server connected to {outbound_connections}"


def test_status_shows_outside_text_literally():
  from pix2pix_jax import demo_app  # imports without Gradio
  shown = demo_app.plain_text('<img src="http://example.com/x.png"> *bold* [a](b)')
  assert "<" not in shown and ">" not in shown
  assert all(f"\\{c}" in shown for c in "*[]()")


def test_the_page_imports_the_demo_logic_never_the_other_way_round():
  import ast
  from conftest import REPO_ROOT
  tree = ast.parse((REPO_ROOT / "pix2pix_jax" / "demo.py").read_text())
  names = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
           for alias in node.names}
  modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
  assert "demo_app" not in names and not any("demo_app" in (m or "") for m in modules)
  assert not any(name.startswith("gradio") for name in names | {m or "" for m in modules})
