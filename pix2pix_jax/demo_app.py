"""The demo's page: Gradio components and their events (see `demo.py` for what it does)."""

from __future__ import annotations

import html
import itertools
import os
import pathlib
import re

import numpy as np
from absl import logging

from pix2pix_jax import demo, errors

# Small images are shown enlarged with sharp pixels, so single label pixels stay visible.
CSS = """
#output .image-frame, #network-input .image-frame, #heatmap .image-frame {
  width: 100%; height: 100%;
}
#output img, #network-input img, #heatmap img {
  width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;
}
#status { min-height: 2.5em; }
"""
SEED_RANGE = 2**31  # dropout seeds are taken modulo this
_MARKDOWN_SYNTAX = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>])")


def plain_text(text: str) -> str:
  """Text from outside (file names, error messages) shown literally in a Markdown status line:
  no markup, no HTML (an <img> in a file name must not fetch anything)."""
  return _MARKDOWN_SYNTAX.sub(r"\\\1", html.escape(str(text), quote=False))


def _import_gradio():
  # Before the import: Gradio reads these at import and at Blocks() time.
  os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
  os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
  try:
    import gradio as gr  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise errors.MissingExtraError("the demo", "Gradio", "demo") from e
  return gr


def _rgb(image) -> np.ndarray | None:
  """An editor image (None, (H, W), (H, W, 3) or (H, W, 4)) → (H, W, 3) uint8 or None."""
  if image is None:
    return None
  image = np.asarray(image, np.uint8)
  if image.ndim == 2:
    image = image[..., None]
  return np.ascontiguousarray(np.repeat(image, 3, -1) if image.shape[-1] == 1 else image[..., :3])


def _swatch_css(palette: demo.Palette) -> str:
  rules = [f'#brush label:has(input[value="{c}"]) {{ border-left: 1.2em solid {c}; }}'
           for c in palette.hex()]
  return "\n".join(rules)


def build_app(model: demo.DemoModel):
  """The page for `model`; compiles the generator for the canvas before returning."""
  gr = _import_gradio()
  palette = demo.palette_for(model.config)
  canvas, origin = demo.initial_canvas(model)
  compile_seconds = demo.warm_up(model, canvas)
  first = demo.run(model, palette, canvas, canvas, model.default_mode, model.default_seed)
  height, width = canvas.shape[:2]
  brush_size = max(1, round(min(height, width) / 24))
  colours = palette.hex()
  display_height = max(256, min(512, 4 * height))
  requests = itertools.count(1)
  logging.info("demo: %s, %d×%d canvas, compiled in %.1f s", origin, width, height,
               compile_seconds)

  def brush(colour):
    return gr.Brush(colors=colours, default_color=colour, default_size=brush_size,
                    color_mode="defaults" if palette.kind == "free" else "fixed")

  def status(result: demo.Result, mode, seed, note: str = "") -> str:
    text = (f"#{next(requests)} · translated in {1000 * result.seconds:.0f} ms · {mode} mode · "
            f"seed {seed}")
    return f"{text} · {plain_text(note)}" if note else text

  def translate(composite, background, mode, seed, show_heat, note=""):
    seed = int(seed or 0) % SEED_RANGE
    result = demo.run(model, palette, composite, background, mode, seed, bool(show_heat))
    heat = gr.update(value=result.heatmap, visible=bool(show_heat))
    return result.network_input, result.output, heat, status(result, mode, seed, note)

  unchanged = (gr.update(), gr.update(), gr.update())

  def on_edit(value, mode, seed, show_heat):
    value = value or {}
    background = _rgb(value.get("background"))
    composite = _rgb(value.get("composite"))
    if composite is None:
      composite = background
    if composite is None:
      return *unchanged, "The canvas is empty: draw on it, upload an image or reset it."
    try:
      return translate(composite, background, mode, seed, show_heat)
    except Exception as e:  # pylint: disable=broad-except
      logging.exception("demo: translation failed")
      return *unchanged, f"Translation failed: {plain_text(f'{type(e).__name__}: {e}')}"

  def canvas_value(pixels):
    return {"background": pixels, "layers": [], "composite": pixels}

  def on_upload(path, mode, seed, show_heat):
    name = pathlib.Path(str(path)).name if path else "upload"
    try:
      if not path:
        raise demo.UploadError("nothing was uploaded")
      pixels = demo.read_upload(path)
      pixels, note = demo.fit_upload(pixels, (height, width), model.size_multiple,
                                     model.direction, name, fixed_size=model.fixed_hw is not None)
      results = translate(pixels, pixels, mode, seed, show_heat, f"{name} {note}".strip())
    except demo.UploadError as e:
      return gr.update(), *unchanged, f"Upload refused: {plain_text(e)}"
    except Exception as e:  # pylint: disable=broad-except
      logging.exception("demo: upload failed")
      return gr.update(), *unchanged, f"Upload failed: {plain_text(f'{type(e).__name__}: {e}')}"
    return canvas_value(pixels), *results

  def on_reset(mode, seed, show_heat):
    return canvas_value(canvas), *translate(canvas, canvas, mode, seed, show_heat, origin)

  title = pathlib.Path(model.workdir).name if model.workdir else "exported generator"
  kind = {"labels": "a label map", "edges": "an edge map", "free": "an image"}[palette.kind]
  header = (f"## pix2pix · {plain_text(title)}\n"
            f"Checkpoint {model.step} · {model.direction or '?'} · {model.input_nc}→"
            f"{model.output_nc} channels · {width}×{height} px · generator compiled in "
            f"{compile_seconds:.1f} s · canvas: {plain_text(origin)}. Draw {kind} on the left: "
            "the output follows every stroke" + (
                " (strokes are snapped to the class colours)." if palette.kind == "labels"
                else "."))

  with gr.Blocks(title=f"pix2pix demo · {title}", analytics_enabled=False) as app:
    gr.Markdown(header, elem_id="header")
    with gr.Row():
      with gr.Column():
        editor = gr.ImageEditor(
            value=canvas_value(canvas), canvas_size=(width, height), image_mode="RGB",
            type="numpy", format="png", brush=brush(colours[0]), layers=False, sources=(),
            transforms=(), label="Input: draw here", elem_id="canvas",
            height=display_height + 120)
        brush_names = None
        if palette.kind != "free":
          brush_names = gr.Radio(list(zip(palette.names, colours)), value=colours[0],
                                 label="Brush", elem_id="brush")
        with gr.Row():
          upload = gr.UploadButton("Upload image", file_types=["image"], type="filepath",
                                   elem_id="upload")
          reset = gr.Button("Reset canvas", elem_id="reset")
      with gr.Column():
        output = gr.Image(value=first.output, type="numpy", format="png", label="Output",
                          interactive=False, buttons=["download", "fullscreen"],
                          height=display_height, elem_id="output")
        heat_image = gr.Image(type="numpy", format="png", visible=False, interactive=False,
                              label="PatchGAN heatmap: P(real) per patch, red fake → green real",
                              height=display_height, elem_id="heatmap")
        network_input = gr.Image(value=first.network_input, type="numpy", format="png",
                                 label="Generator input", interactive=False,
                                 height=display_height // 2, elem_id="network-input")
    with gr.Row():
      mode = gr.Radio(list(model.modes), value=model.default_mode, label="Test-time mode",
                      info="paper: dropout on, batch statistics; eval: running averages",
                      interactive=len(model.modes) > 1, elem_id="mode")
      seed = gr.Number(value=model.default_seed, precision=0, label="Dropout seed",
                       elem_id="seed")
      show_heat = gr.Checkbox(False, label="PatchGAN heatmap", interactive=model.has_heatmap,
                              info=None if model.has_heatmap else "needs the run's workdir",
                              elem_id="heatmap-toggle")
      button = gr.Button("Translate", variant="primary", elem_id="translate")
    status_box = gr.Markdown(f"Ready: {origin}.", elem_id="status")

    controls = [mode, seed, show_heat]
    results = [network_input, output, heat_image, status_box]
    events = dict(concurrency_id="generator", concurrency_limit=1, show_progress="hidden")
    editor.input(on_edit, [editor, *controls], results, trigger_mode="always_last", **events)
    for trigger in (button.click, mode.change, seed.submit, show_heat.change):
      trigger(on_edit, [editor, *controls], results, **events)
    upload.upload(on_upload, [upload, *controls], [editor, *results], **events)
    reset.click(on_reset, controls, [editor, *results], **events)
    if brush_names is not None:
      names = dict(zip(colours, palette.names))
      brush_names.change(lambda c: (gr.update(brush=brush(c)), f"Brush: {names.get(c, c)}."),
                         brush_names, [editor, status_box], show_progress="hidden")
  app.demo_css = CSS + _swatch_css(palette)
  return app


def _local_no_proxy() -> None:
  """Gradio checks its own URL over HTTP at start: keep loopback off any configured proxy."""
  for key in ("NO_PROXY", "no_proxy"):
    entries = [e for e in os.environ.get(key, "").split(",") if e]
    entries += [h for h in ("localhost", "127.0.0.1") if h not in entries]
    os.environ[key] = ",".join(entries)


def launch(app, host: str = demo.DEFAULT_HOST, port: int = demo.DEFAULT_PORT,
           block: bool = True) -> str:
  """Serves `app` on host:port, offline: no share link, analytics, history or monitoring.

  Returns the local URL (when `block` is False; otherwise serves until interrupted).
  """
  _local_no_proxy()
  app.queue(default_concurrency_limit=1)
  app.launch(server_name=host, server_port=port, share=False, inbrowser=False,
             prevent_thread_lock=not block, footer_links=[], run_history=False,
             enable_monitoring=False, mcp_server=False, ssr_mode=False, pwa=False,
             max_file_size=demo.MAX_UPLOAD_BYTES, css=app.demo_css, show_error=False,
             quiet=not block)
  return app.local_url


def serve(config, workdir: str | None = None, step: int | None = None,
          artifact: str | None = None, host: str = demo.DEFAULT_HOST,
          port: int = demo.DEFAULT_PORT) -> None:
  """Loads the model, compiles it, and serves the page until interrupted (`launch.py
  --mode=demo`; `config` is None: the run's saved config is read with it)."""
  del config
  model = demo.load_model(workdir, step, artifact)
  launch(build_app(model), host=host, port=port, block=True)
