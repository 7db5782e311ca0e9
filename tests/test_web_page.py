"""The generator as a web page (export/web_page.py): reduced weights close to float32, the
lowest ONNX IR version in the oldest onnxruntime the extra admits, and the page in Chromium
giving onnxruntime's outputs, with no request outside its folder."""

import functools
import http.server
import json
import re
import threading
import tomllib

import numpy as np
import pytest

from conftest import REPO_ROOT
from helpers import run_launch
from configs import quickstart
from pix2pix_jax import inference, loop, platform
from pix2pix_jax.data import pipeline
from pix2pix_jax.export import onnx_model, web_page

ort = pytest.importorskip(
    "onnxruntime", reason="ONNX export is an optional extra (pip install '.[onnx]'); CI has it")

pytestmark = pytest.mark.slow
CHROMIUM_WAIT_MS = 120_000


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A quickstart-size run (its 64-px networks; XLA's convolutions compile faster), one step."""
  workdir = tmp_path_factory.mktemp("web") / "run"
  config = quickstart.get_config()
  config.num_train_steps, config.checkpoint_every_steps = 1, 1
  config.eval_every_steps = config.sample_every_steps = 0
  config.model.conv_impl = "xla"
  platform.configure(config)
  loop.train_and_evaluate(config, str(workdir))
  return workdir


@pytest.fixture(scope="module")
def translator(run):
  config = inference.run_config(run)
  config.eval_mode = "eval"
  return inference.translator(config, run)


def _session(model):
  return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _val_inputs(translator, count: int = 8) -> np.ndarray:
  source = pipeline.get_source(translator.config, "val")
  batch = next(pipeline.eval_batches(translator.config, source, count, limit=count))
  return np.asarray(batch["A"], np.float32).transpose(0, 3, 1, 2)


def _psnr(a, b) -> float:
  mse = float(np.mean((a - b) ** 2))
  return 10 * np.log10(4.0 / mse)  # values in [-1, 1]: a range of 2


def test_reduced_weights_stay_close_to_float32_on_eight_validation_inputs(translator):
  variables = {"params": translator.g_params, "batch_stats": translator.g_batch_stats}
  inputs = _val_inputs(translator)
  assert inputs.shape[0] == 8
  outputs = {}
  sizes = {}
  for weights in web_page.WEIGHT_FORMATS:
    model = web_page.reduce_weights(
        onnx_model.build_model(translator.generator, variables, "eval", input_nc=3), weights)
    sizes[weights] = len(model.SerializeToString())
    outputs[weights] = _session(model).run(None, {"images": inputs})[0]
  assert sizes["int8"] < 0.3 * sizes["float32"] and sizes["float16"] < 0.55 * sizes["float32"]
  assert _psnr(outputs["float16"], outputs["float32"]) > 60
  assert _psnr(outputs["int8"], outputs["float32"]) > 40


def test_the_onnx_export_loads_in_the_oldest_onnxruntime_the_extra_admits(translator):
  extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
      "optional-dependencies"]["onnx"]
  oldest = next(re.match(r"onnxruntime>=([\d.]+)", e)[1] for e in extras
                if e.startswith("onnxruntime"))
  assert ort.__version__ == oldest, "the tests run the oldest onnxruntime the extra admits"
  model = onnx_model.build_model(
      translator.generator, {"params": translator.g_params,
                             "batch_stats": translator.g_batch_stats}, "eval", input_nc=3)
  assert model.ir_version == 8 and model.opset_import[0].version == onnx_model.OPSET
  _session(model)  # an IR version newer than the runtime's would be refused here


def test_exporting_without_the_runtime_names_the_command(tmp_path, monkeypatch):
  monkeypatch.setattr(web_page, "runtime_dir", lambda: tmp_path / "none")
  monkeypatch.setattr(web_page, "_npm_dist", lambda: tmp_path / "no_npm")
  with pytest.raises(web_page.RuntimeMissingError,
                     match=r"python -m pix2pix_jax.export.web_page --fetch_runtime"):
    web_page._runtime_files()  # pylint: disable=protected-access


def _serve(folder):
  handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
  handler.log_message = lambda *args: None
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  return server


def _in_chromium(folder, use_page):
  """Serves `folder` on 127.0.0.1, opens its index.html in Chromium once the first translation
  is shown, and returns `use_page(page, context)`; asserts that nothing outside the folder was
  requested."""
  from test_demo import (_require, offline_browser,  # pylint: disable=import-outside-toplevel
                         require_chromium)
  chromium = require_chromium()
  sync_api = _require("playwright.sync_api")
  server = _serve(folder)
  aborted = []
  try:
    with sync_api.sync_playwright() as playwright:
      # The folder is all the page may load (served, or as files).
      browser, context = offline_browser(
          playwright, chromium, aborted, (1200, 900),
          allowed=lambda url: url.scheme == "file" and url.path.startswith(folder.as_posix()))
      page = context.new_page()
      page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
      page.wait_for_function("window.pix2pix.last !== undefined", timeout=CHROMIUM_WAIT_MS)
      result = use_page(page, context)
      browser.close()
  finally:
    server.shutdown()
  assert not aborted, f"requests outside the folder: {aborted}"
  return result


def _meta_and_session(folder):
  meta = json.loads((folder / "model.json").read_text())
  model_bytes = b"".join((folder / name).read_bytes() for name in meta["model_parts"])
  return meta, ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def test_the_page_in_chromium_gives_onnxruntimes_outputs(run, tmp_path):
  from pix2pix_jax import commands  # pylint: disable=import-outside-toplevel
  folder = tmp_path / "page"
  commands.run_export(inference.run_config(run), str(run), str(folder), export_format="web")
  meta, expected_session = _meta_and_session(folder)
  assert meta["mode"] == "eval" and meta["weights"] == "int8" and meta["masks"] == []
  for path in folder.iterdir():
    assert path.stat().st_size < 50 * 2**20, path  # GitHub's warning

  def draw(page, context):
    sample = np.array(page.evaluate("Array.from(window.pix2pix.last.input)"), np.float32)
    # A stroke with the third brush across the canvas.
    page.locator("#brushes button").nth(2).click()
    box = page.locator("#input").bounding_box()
    page.mouse.move(box["x"] + 0.2 * box["width"], box["y"] + 0.3 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.8 * box["width"], box["y"] + 0.6 * box["height"], steps=12)
    page.mouse.up()
    page.evaluate("window.pix2pix.translate()")  # after the stroke's own translation
    shown = page.evaluate("""(() => { const l = window.pix2pix.last;
        return {input: Array.from(l.input), output: Array.from(l.output),
                backend: window.pix2pix.backend,
                timing: document.querySelector('#timing').innerText}; })()""")
    # Opened from file:// the page says how to serve it instead.
    local = context.new_page()
    local.goto((folder / "index.html").as_uri())
    shown["file_note"] = local.locator("#file-note").inner_text()
    return sample, shown

  sample, shown = _in_chromium(folder, draw)
  assert "python -m http.server" in shown["file_note"]
  assert shown["backend"] in ("webgpu", "wasm") and " ms on " in shown["timing"]
  drawn = np.array(shown["input"], np.float32)
  assert (drawn != sample).mean() > 0.01, "the stroke did not reach the model's input"
  colours = {tuple(c) for c in meta["palette"]["colours"]}
  pixels = np.round((drawn.reshape(3, -1).T + 1) * 127.5).astype(int)
  changed = (drawn != sample).reshape(3, -1).any(axis=0)
  assert {tuple(p) for p in pixels[changed]} <= colours, "strokes are exact class colours"
  size = meta["size"][0]
  expected = expected_session.run(None, {"images": drawn.reshape(1, 3, size, size)})[0]
  np.testing.assert_allclose(np.array(shown["output"]).reshape(expected.shape), expected,
                             rtol=0, atol=1e-4)


def test_a_paper_mode_page_draws_dropout_masks_at_each_translation(run, tmp_path):
  folder = tmp_path / "paper_page"
  result = run_launch(run, "--mode=export", "--format=web", f"--output={folder}",
                      "--config.eval_mode=paper", config=None)
  assert "(paper mode)" in result.stdout
  meta, session = _meta_and_session(folder)
  generator_masks = [i.name for i in session.get_inputs() if i.name != "images"]
  assert meta["mode"] == "paper" and generator_masks
  assert sorted(m["name"] for m in meta["masks"]) == sorted(generator_masks)

  def translate_twice(page, context):
    del context
    script = """(() => { const l = window.pix2pix.last;
        const masks = Object.fromEntries(Object.entries(l.masks).map(
            ([name, m]) => [name, {dims: m.dims, keep: Array.from(m.keep)}]));
        return {input: Array.from(l.input), output: Array.from(l.output), masks}; })()"""
    first = page.evaluate(script)
    page.evaluate("window.pix2pix.translate()")
    return first, page.evaluate(script)

  shown = _in_chromium(folder, translate_twice)
  size = meta["size"][0]
  for run_shown in shown:
    feeds = {"images": np.array(run_shown["input"], np.float32).reshape(1, 3, size, size)}
    for name, mask in run_shown["masks"].items():
      keep = np.array(mask["keep"], bool).reshape(mask["dims"])
      assert 0.35 < keep.mean() < 0.65, (name, keep.mean())  # P(keep) = 1 - 0.5
      feeds[name] = keep
    expected = session.run(None, feeds)[0]
    np.testing.assert_allclose(np.array(run_shown["output"]).reshape(expected.shape), expected,
                               rtol=0, atol=1e-4)
  # New masks at each translation: the same drawing, another photo.
  assert shown[0]["input"] == shown[1]["input"] and shown[0]["masks"] != shown[1]["masks"]
  assert not np.allclose(shown[0]["output"], shown[1]["output"])
