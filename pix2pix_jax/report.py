"""A static results page for a training run, rebuilt from the files in its workdir.

`write_report(workdir)` turns metrics.jsonl, config.json, the environment record and the sample
grids (`save_sample_grid`) into index.html and plots/: relative links, no JavaScript, so it opens
from `file://` and travels with the workdir. Missing or half-written files never fail it.
"""

from __future__ import annotations

import datetime
import functools
import html
import json
import math
import os
import re
import time

import numpy as np
from etils import epath
from PIL import Image
from PIL import PngImagePlugin

from pix2pix_jax import atomic, losses, provenance, storage
from pix2pix_jax.pixels import to_rgb, to_uint8
from pix2pix_jax.plots import EVAL_FIELDS, plot_accuracy, plot_eval, plot_losses, read_metrics

# Red (judged fake) to green (judged real): the reading needs no legend lookup.
HEATMAP_CMAP = "RdYlGn"
# Share of the heatmap colour in its tile; the rest is the output in grey, so
# the patches can be matched to the image structure underneath.
HEATMAP_OPACITY = 0.75
# Pixels of background between and around the tiles of a sample grid.
GRID_GAP = 4
GRID_BACKGROUND = (255, 255, 255)
# What the heatmap means for the authors' default 3-layer PatchGAN at 256 px.
HEATMAP_LABEL = "D heatmap (P(real) per 70\u00d770 patch)"
# PNG text keys recording a grid's column names and what its reference column shows, read back
# to label the page.
_COLUMNS_KEY = "pix2pix_columns"
_REFERENCE_KEY = "pix2pix_reference"
_DEFAULT_COLUMNS = ("input", "output", "target", "heatmap")
# Sample tiles narrower than this (CSS pixels) are shown enlarged by a whole factor, without
# smoothing, so that 32- or 64-px samples are readable; wider ones are shown as they are.
MIN_DISPLAY_TILE = 192

TRAIN_FIELDS = (("step", "step"), ("epoch", "epoch"),
                *((m.key, m.label) for m in losses.METRICS),
                ("lr", "lr"), ("steps_per_sec", "steps/s"))
_SAMPLE_RE = re.compile(r"^(eval_)?step_(\d+)\.png$")
# Sample steps whose images load with the page; later ones load when scrolled to.
_EAGER_SAMPLE_STEPS = 3


# ----------------------------------------------------------------------------
# Sample grids.

def _to_uint8_rgb(images: np.ndarray) -> np.ndarray:
  """(N, H, W, C) floats in [-1, 1], C in {1, 3} -> (N, H, W, 3) uint8."""
  return to_rgb(to_uint8(images))


def heatmap_tiles(heatmaps: np.ndarray, outputs_rgb: np.ndarray) -> np.ndarray:
  """Colours per-patch probabilities, nearest-upsampled onto the outputs in grey."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top

  _, height, width, _ = outputs_rgb.shape
  rows = np.arange(height) * heatmaps.shape[1] // height
  cols = np.arange(width) * heatmaps.shape[2] // width
  # Nearest neighbour keeps each patch a visible block: one block, one D decision.
  probabilities = heatmaps[:, rows][:, :, cols]
  colour = colormaps[HEATMAP_CMAP](probabilities)[..., :3]
  grey = outputs_rgb.astype(np.float32).mean(axis=-1, keepdims=True) / 255.0
  tiles = HEATMAP_OPACITY * colour + (1.0 - HEATMAP_OPACITY) * grey
  return np.round(tiles * 255.0).astype(np.uint8)


def _check_images(name: str, images, count: int | None = None) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"{name} must be shaped (N, H, W, C) with C in {{1, 3}}, got {images.shape}")
  if count is not None and images.shape[0] != count:
    raise ValueError(f"{name} have {images.shape[0]} examples, inputs have {count}")
  return images


def save_sample_grid(path, inputs, outputs, targets, heatmaps=None, *, references=None,
                     reference_label: str = "") -> np.ndarray:
  """Writes one PNG (and returns its pixels): a row per example, columns
  input | output | [reference] | target | [heatmap].

  Args:
    path: the PNG to write (replaced atomically, so a page never shows half a file).
    inputs, outputs, targets: float arrays (N, H, W, C) in [-1, 1], C in {1, 3};
      C may differ between them (e.g. grey input, colour output).
    heatmaps: optional (N, h, w) (or (N, h, w, 1)) per-patch probabilities in [0, 1]
      that the (input, output) pair is real, as the PatchGAN discriminator sees
      it (e.g. 30x30 at 256 px). Drawn in `HEATMAP_CMAP` over the grey output.
    references: optional (N, H, W, C) outputs of another generator on the same inputs (e.g.
      the authors' model), shown beside ours; `reference_label` says whose (stored in the PNG).
  """
  inputs = _check_images("inputs", inputs)
  count, height, width, _ = inputs.shape
  outputs = _check_images("outputs", outputs, count)
  targets = _check_images("targets", targets, count)
  named = [("outputs", outputs), ("targets", targets)]
  if references is not None:
    references = _check_images("references", references, count)
    named.append(("references", references))
  for name, images in named:
    if images.shape[1:3] != (height, width):
      raise ValueError(f"{name} are {images.shape[1:3]} pixels, inputs are {(height, width)}")

  columns = [_to_uint8_rgb(inputs), _to_uint8_rgb(outputs)]
  names = ["input", "output"]
  if references is not None:
    columns.append(_to_uint8_rgb(references))
    names.append("reference")
  columns.append(_to_uint8_rgb(targets))
  names.append("target")
  if heatmaps is not None:
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim == 4 and heatmaps.shape[-1] == 1:
      heatmaps = heatmaps[..., 0]
    if heatmaps.ndim != 3 or heatmaps.shape[0] != count:
      raise ValueError(f"heatmaps must be shaped ({count}, h, w), got {heatmaps.shape}")
    low, high = np.nanmin(heatmaps), np.nanmax(heatmaps)
    if low < -1e-6 or high > 1 + 1e-6:
      raise ValueError(
          f"heatmaps must be probabilities in [0, 1], got values in [{low:.3g}, {high:.3g}]:"
          " apply a sigmoid to the discriminator's logits first")
    heatmaps = np.clip(np.nan_to_num(heatmaps, nan=0.5), 0.0, 1.0)
    columns.append(heatmap_tiles(heatmaps, columns[1]))
    names.append("heatmap")

  gap = GRID_GAP
  grid = np.empty((count * (height + gap) + gap, len(columns) * (width + gap) + gap, 3), np.uint8)
  grid[...] = GRID_BACKGROUND
  for row in range(count):
    for col, tiles in enumerate(columns):
      top, left = gap + row * (height + gap), gap + col * (width + gap)
      grid[top:top + height, left:left + width] = tiles[row]

  info = PngImagePlugin.PngInfo()
  info.add_text(_COLUMNS_KEY, ",".join(names))
  if references is not None and reference_label:
    info.add_itxt(_REFERENCE_KEY, reference_label)
  with atomic.atomic_path(path) as temporary:
    Image.fromarray(grid).save(temporary, format="PNG", pnginfo=info, compress_level=6)
  return grid


# ----------------------------------------------------------------------------
# The page.

def _format(value) -> str:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return html.escape(str(value))
  if isinstance(value, int):
    return str(value)
  if not math.isfinite(value):
    return str(value)
  return f"{value:.4g}"


def _table(header: list[str], rows: list[list], caption: str = "") -> str:
  caption = f"<caption>{html.escape(caption)}</caption>" if caption else ""
  head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
  body = "".join("<tr>" + "".join(f"<td>{_format(v)}</td>" for v in row) + "</tr>" for row in rows)
  return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _latest_train_table(record: dict) -> str:
  keys = [key for key, _ in TRAIN_FIELDS if key in record]
  # Fields the loop adds later still show up, after the known ones.
  keys += [key for key in record if key not in keys and key != "kind"]
  labels = dict(TRAIN_FIELDS)
  return _table([labels.get(key, key) for key in keys], [[record[key] for key in keys]],
                caption="training (last logged step)")


def _eval_table(evals: list[dict], caption: str = "") -> str:
  header = ["step", "split", "mode"] + [label for _, label in EVAL_FIELDS]
  rows = [[r["step"], r.get("split", ""), r.get("mode", "")] + [r.get(key, "") for key, _ in EVAL_FIELDS]
          for r in evals]
  return _table(header, rows, caption)


def _colour_bar_css() -> str:
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top

  cmap = colormaps[HEATMAP_CMAP]
  stops = []
  for position in np.linspace(0.0, 1.0, 11):
    red, green, blue, _ = (np.array(cmap(position)) * 255).round().astype(int)
    stops.append(f"rgb({red},{green},{blue}) {position * 100:.0f}%")
  return "linear-gradient(to right, " + ", ".join(stops) + ")"


def _grid_info(path: epath.Path) -> tuple[list[str], tuple[int, int] | None, str]:
  """A grid's column names, pixel size (width, height) and reference label, or defaults."""
  if storage.is_remote(path):  # a grid is written once per step: read its header once
    return _remote_grid_info(os.fspath(path))
  return _read_grid_info(path)


@functools.lru_cache(maxsize=4096)
def _remote_grid_info(path: str) -> tuple[list[str], tuple[int, int] | None, str]:
  return _read_grid_info(epath.Path(path))


def _read_grid_info(path: epath.Path) -> tuple[list[str], tuple[int, int] | None, str]:
  try:
    with path.open("rb") as f, Image.open(f) as image:
      names = image.info.get(_COLUMNS_KEY, "")
      reference = image.info.get(_REFERENCE_KEY, "")
      size = image.size
  except (OSError, SyntaxError, ValueError):
    return list(_DEFAULT_COLUMNS), None, ""
  return (names.split(",") if names else list(_DEFAULT_COLUMNS)), size, str(reference)


def _column_title(name: str, reference: str) -> str:
  if name == "heatmap":
    return (f'{html.escape(HEATMAP_LABEL)}<span class="bar"><i>0 fake</i><b></b><i>1 real</i>'
            "</span>")
  if name == "reference" and reference:
    return f"reference: {html.escape(reference)}"
  return html.escape(name)


def _sample_figure(workdir: epath.Path, filename: str, caption: str, eager: bool) -> str:
  names, size, reference = _grid_info(workdir / "samples" / filename)
  count = len(names)
  tile = (size[0] - GRID_GAP * (count + 1)) // count if size else 0
  if tile > 0 and tile * count + GRID_GAP * (count + 1) == size[0]:
    # The titles' grid has a track per gap and per tile of the image, in proportion to their
    # pixels, and spans the image's width: each title sits over its tile at any display size.
    tracks = f"{GRID_GAP}fr " + " ".join(f"minmax(0, {tile}fr) {GRID_GAP}fr" for _ in names)
    positions = [2 * i + 2 for i in range(count)]
    scale = max(1, math.ceil(MIN_DISPLAY_TILE / tile))
  else:  # Not laid out by save_sample_grid: equal columns.
    tracks = f"repeat({count}, minmax(0, 1fr))"
    positions = [i + 1 for i in range(count)]
    scale = 1
  titles = "".join(f'<span style="grid-column: {column}">{_column_title(name, reference)}</span>'
                   for name, column in zip(names, positions))
  source = html.escape(f"samples/{filename}")
  alt = html.escape(caption)
  figure_style, image_attributes, link_title = "", "", "full size"
  if size:
    width, height = size[0] * scale, size[1] * scale
    figure_style = f' style="width: {width}px"'
    image_attributes = f' width="{width}" height="{height}"'
    link_title = f"full size ({size[0]}\u00d7{size[1]} px)"
    if scale > 1:
      image_attributes += ' class="upscaled"'
      caption += f" \u00b7 shown at {scale}\u00d7"
    caption += " \u00b7 click for full size"
  loading = "" if eager else ' loading="lazy"'
  return (f'<figure class="samples"{figure_style}><figcaption>{html.escape(caption)}'
          f'</figcaption><div class="cols" style="grid-template-columns: {tracks}">{titles}</div>'
          f'<a href="{source}" title="{link_title}"><img src="{source}" '
          f'alt="{alt}"{image_attributes}{loading}></a></figure>')


def _samples_section(workdir: epath.Path) -> str:
  try:
    storage.invalidate_cache(workdir / "samples")
    filenames = [p.name for p in (workdir / "samples").iterdir()]
  except (FileNotFoundError, NotADirectoryError):
    filenames = []
  by_step = {}
  for filename in filenames:
    match = _SAMPLE_RE.match(filename)
    if match:
      by_step.setdefault(int(match.group(2)), {})["eval" if match.group(1) else "train"] = filename
  if not by_step:
    return '<p class="empty">No sample grids yet.</p>'
  parts = []
  for index, step in enumerate(sorted(by_step, reverse=True)):
    files = by_step[step]
    parts.append(f'<section class="step"><h3 id="step-{step}">step {step}</h3>')
    for kind, caption in (("train", "fixed samples (validation split when there is one)"),
                          ("eval", "validation")):
      if kind in files:
        parts.append(_sample_figure(workdir, files[kind], caption, index < _EAGER_SAMPLE_STEPS))
    parts.append("</section>")
  return "".join(parts)


def _config_section(workdir: epath.Path) -> str:
  try:
    text = (workdir / "config.json").read_bytes().decode("utf-8", errors="replace")
  except (FileNotFoundError, IsADirectoryError):
    return ""
  try:
    text = json.dumps(json.loads(text), indent=2, sort_keys=True)
  except ValueError:
    pass  # Shown as written: a config still being saved or not JSON after all.
  return (f"<details><summary>config</summary><pre>{html.escape(text)}</pre></details>")


def _environment_section(workdir: epath.Path) -> str:
  """The newest launch's record of what made the run (`provenance.record`)."""
  folder = workdir / provenance.ENVIRONMENT_DIR
  try:
    newest = max(folder.iterdir(), key=lambda p: p.name) if folder.is_dir() else None
    text = newest.read_text() if newest else ""
  except (OSError, ValueError):
    return ""
  return (f"<details><summary>environment ({html.escape(newest.name)})</summary>"
          f"<pre>{html.escape(text)}</pre></details>" if text else "")


def _image(name: str, alt: str) -> str:
  # The time it was drawn in the query makes browsers reload a plot that was redrawn.
  return f'<img class="plot" src="plots/{name}?v={time.time_ns()}" alt="{html.escape(alt)}">'


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em;
       color: #222; background: #fafafa; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #eee; }
caption { text-align: left; color: #555; font-size: 0.95em; padding-bottom: 0.2em; }
pre { background: #fff; border: 1px solid #ddd; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
details summary { cursor: pointer; font-weight: 600; }
img { max-width: 100%; height: auto; display: block; }
img.plot { background: #fff; border: 1px solid #ddd; margin: 0.5em 0; box-sizing: border-box; }
.empty { color: #888; font-style: italic; }
figure { margin: 0.4em 0 1.2em 0; width: fit-content; max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; margin-bottom: 0.4em; }
figure.samples img { width: 100%; }
img.upscaled { image-rendering: pixelated; }
.cols { display: grid; font-size: 0.85em; color: #333; text-align: center; align-items: end;
        margin-bottom: 0.15em; }
.cols > span { min-width: 0; overflow-wrap: anywhere; }
.bar { display: flex; flex-wrap: wrap; align-items: center; justify-content: center; gap: 0 0.4em;
       font-size: 0.85em; }
.bar b { display: inline-block; width: 9em; max-width: 100%; height: 0.8em; border: 1px solid #999;
         background: GRADIENT; }
.bar i { font-style: normal; color: #666; }
.step h3 { margin-bottom: 0.2em; }
"""


def write_report(workdir) -> str:
  """Rebuilds workdir/index.html and its plots from the run's files.

  Cheap enough to call every few hundred steps (a few hundred ms for thousands of
  metric lines); never fails on missing, partial or stale files.

  Returns:
    The path of index.html.
  """
  workdir = storage.resolve(workdir, "workdir")
  plots_dir = workdir / "plots"
  train, evals = read_metrics(workdir)

  body = []
  name = workdir.name
  updated = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
  progress = ""
  if train:
    progress = f" \u00b7 step {train[-1]['step']}"
    if isinstance(train[-1].get("epoch"), (int, float)):
      progress += f" \u00b7 epoch {train[-1]['epoch']:.2f}"
  body.append(f"<h1>pix2pix-jax \u00b7 {html.escape(name)}</h1>")
  body.append(f'<p class="meta">updated {updated}{progress}</p>')
  body.append(_config_section(workdir))
  body.append(_environment_section(workdir))

  body.append("<h2>Latest metrics</h2>")
  if train:
    body.append(_latest_train_table(train[-1]))
  if evals:
    latest = {}
    for record in evals:
      latest[(record.get("split"), record.get("mode"))] = record
    latest = sorted(latest.values(), key=lambda r: (str(r.get("split")), str(r.get("mode"))))
    body.append(_eval_table(latest, caption="evaluation (latest per split and mode)"))
  if not train and not evals:
    body.append('<p class="empty">No metrics yet.</p>')

  body.append("<h2>Losses</h2>")
  if train:
    plot_losses(train, plots_dir / "losses.png")
    body.append(_image("losses.png", "losses"))
    body.append("<h2>Discriminator accuracy</h2>")
    plot_accuracy(train, plots_dir / "accuracy.png")
    body.append(_image("accuracy.png", "discriminator accuracy"))
  else:
    body.append('<p class="empty">No training metrics yet.</p>')

  if evals:
    body.append("<h2>Evaluation</h2>")
    plot_eval(evals, plots_dir / "eval.png")
    body.append(_image("eval.png", "evaluation metrics"))
    body.append(f"<details><summary>all evaluations ({len(evals)})</summary>"
                f"{_eval_table(evals[::-1])}</details>")

  body.append("<h2>Samples</h2>")
  body.append(_samples_section(workdir))

  page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          f"<title>pix2pix-jax \u00b7 {html.escape(name)}</title>"
          f"<style>{_CSS.replace('GRADIENT', _colour_bar_css())}</style></head>\n<body>\n"
          + "\n".join(part for part in body if part) + "\n</body></html>\n")
  index = workdir / "index.html"
  with atomic.atomic_path(index) as temporary:
    temporary.write_text(page, encoding="utf-8")
  return os.fspath(index)
