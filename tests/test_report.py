"""Tests for pix2pix_jax/report.py, pix2pix_jax/tensorboard.py and bench/screenshot_report.py."""

import glob
import html.parser
import io
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from pix2pix_jax import plots
from pix2pix_jax import report
from pix2pix_jax import tensorboard

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SCREENSHOT_COMMAND = [sys.executable, "-m", "bench.screenshot_report"]


# ----------------------------------------------------------------------------
# Sample grids.

def test_sample_grid_layout_and_pixels(tmp_path):
  rng = np.random.default_rng(0)
  inputs = rng.uniform(-1, 1, (2, 16, 12, 1)).astype(np.float32)  # grey input, colour output
  outputs = rng.uniform(-1, 1, (2, 16, 12, 3)).astype(np.float32)
  targets = rng.uniform(-1, 1, (2, 16, 12, 3)).astype(np.float32)
  heatmaps = np.zeros((2, 4, 3), np.float32)
  heatmaps[:, :2] = 1.0  # Top half judged real, bottom half fake.
  path = tmp_path / "grid.png"
  report.save_sample_grid(path, inputs, outputs, targets, heatmaps)

  with Image.open(path) as image:
    assert image.info["pix2pix_columns"] == "input,output,target,heatmap"
    grid = np.asarray(image.convert("RGB"))
  gap = report.GRID_GAP
  assert grid.shape == (2 * (16 + gap) + gap, 4 * (12 + gap) + gap, 3)
  assert np.all(grid[:gap] == 255)  # Background border.

  def tile(row, col):
    top, left = gap + row * (16 + gap), gap + col * (12 + gap)
    return grid[top:top + 16, left:left + 12].astype(int)

  expected_input = np.round((inputs[1] + 1) * 127.5).astype(int)
  np.testing.assert_array_equal(tile(1, 0), np.repeat(expected_input, 3, axis=-1))
  np.testing.assert_array_equal(tile(0, 2), np.round((targets[0] + 1) * 127.5).astype(int))
  heat = tile(0, 3)
  # RdYlGn: green where D says real (P = 1), red where it says fake (P = 0).
  top_red, top_green = heat[:8, ..., 0].mean(), heat[:8, ..., 1].mean()
  bottom_red, bottom_green = heat[8:, ..., 0].mean(), heat[8:, ..., 1].mean()
  assert top_green > top_red + 40
  assert bottom_red > bottom_green + 40


def test_sample_grid_without_heatmaps_and_leaves_no_temporary(tmp_path):
  images = np.zeros((3, 8, 8, 3), np.float32)
  report.save_sample_grid(tmp_path / "samples" / "step_00000001.png", images, images, images)
  assert os.listdir(tmp_path / "samples") == ["step_00000001.png"]
  with Image.open(tmp_path / "samples" / "step_00000001.png") as image:
    assert image.size == (3 * 12 + 4, 3 * 12 + 4)
    assert image.info["pix2pix_columns"] == "input,output,target"


def test_sample_grid_with_a_reference_column(tmp_path):
  rng = np.random.default_rng(3)
  inputs, outputs, references, targets = (rng.uniform(-1, 1, (2, 8, 6, 3)) for _ in range(4))
  path = tmp_path / "grid.png"
  report.save_sample_grid(path, inputs, outputs, targets, np.full((2, 2, 2), 0.5),
                          references=references, reference_label="authors, step 0")
  with Image.open(path) as image:
    assert image.info["pix2pix_columns"] == "input,output,reference,target,heatmap"
    assert image.info["pix2pix_reference"] == "authors, step 0"
    grid = np.asarray(image.convert("RGB")).astype(int)
  gap = report.GRID_GAP
  assert grid.shape == (2 * (8 + gap) + gap, 5 * (6 + gap) + gap, 3)
  for col, images in ((1, outputs), (2, references), (3, targets)):
    left = gap + col * (6 + gap)
    np.testing.assert_array_equal(grid[gap:gap + 8, left:left + 6],
                                  np.round((images[0] + 1) * 127.5).astype(int))
  with pytest.raises(ValueError, match="references have 1 examples, inputs have 2"):
    report.save_sample_grid(path, inputs, outputs, targets, references=references[:1])


def test_sample_grid_errors(tmp_path):
  images = np.zeros((2, 8, 8, 3), np.float32)
  with pytest.raises(ValueError, match="sigmoid"):
    report.save_sample_grid(tmp_path / "g.png", images, images, images,
                            heatmaps=np.full((2, 2, 2), 3.0))
  with pytest.raises(ValueError, match=r"heatmaps must be shaped \(2, h, w\)"):
    report.save_sample_grid(tmp_path / "g.png", images, images, images, heatmaps=np.zeros((1, 2, 2)))
  with pytest.raises(ValueError, match="outputs have 1 examples, inputs have 2"):
    report.save_sample_grid(tmp_path / "g.png", images, images[:1], images)
  with pytest.raises(ValueError, match=r"C in \{1, 3\}"):
    report.save_sample_grid(tmp_path / "g.png", images, np.zeros((2, 8, 8, 2)), images)


# ----------------------------------------------------------------------------
# Metrics file.

def _train_line(step, **overrides):
  record = dict(kind="train", step=step, epoch=step / 10, g_gan=1.0 + 0.01 * step,
                g_l1=0.5 / (1 + step), d_real=0.6, d_fake=0.5, d_acc_real=0.7,
                d_acc_fake=0.6, lr=2e-4, steps_per_sec=0.5)
  record.update(overrides)
  return json.dumps(record)


def _eval_line(step, mode="paper", psnr=15.0):
  return json.dumps(dict(kind="eval", step=step, split="val", l1=0.2, psnr=psnr, ssim=0.3, mode=mode))


def test_read_metrics_skips_partial_lines_and_keeps_the_resumed_run(tmp_path):
  lines = [_train_line(s) for s in (0, 10, 20, 30)] + [_eval_line(20)]
  # A restart from the step-10 checkpoint logs steps 20 and 30 again.
  lines += ["not json", "[1, 2]", _train_line(20, g_gan=9.0), _eval_line(20, psnr=99.0),
            _eval_line(20, mode="eval"), _train_line(30, g_gan=8.0), '{"kind": "train", "ste']
  (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
  train, evals = plots.read_metrics(tmp_path)
  assert [r["step"] for r in train] == [0, 10, 20, 30]
  assert [r["g_gan"] for r in train[2:]] == [9.0, 8.0]
  assert sorted((r["mode"], r["psnr"]) for r in evals) == [("eval", 15.0), ("paper", 99.0)]
  assert plots.read_metrics(tmp_path / "missing") == ([], [])


def test_ema_is_bias_corrected_and_skips_nan():
  np.testing.assert_allclose(plots.ema(np.full(5, 3.0), 0.9), np.full(5, 3.0))
  smoothed = plots.ema(np.array([np.nan, 1.0, np.nan, 1.0]), 0.5)
  assert np.isnan(smoothed[0])
  np.testing.assert_allclose(smoothed[1:], [1.0, 1.0, 1.0])


# ----------------------------------------------------------------------------
# The page.

class _LinkCollector(html.parser.HTMLParser):

  def __init__(self):
    super().__init__()
    self.links = []
    self.tags = []

  def handle_starttag(self, tag, attrs):
    self.tags.append(tag)
    for name, value in attrs:
      if name in ("src", "href"):
        self.links.append(value)


def _fake_workdir(workdir, with_eval=True):
  rng = np.random.default_rng(1)
  lines = [_train_line(s, g_gan=float(1 + rng.normal())) for s in range(0, 300, 5)]
  if with_eval:
    lines += [_eval_line(s, mode) for s in (100, 200) for mode in ("paper", "eval")]
  (workdir / "metrics.jsonl").write_text("\n".join(lines) + '\n{"kind": "tr')
  (workdir / "config.json").write_text(json.dumps({"model": {"ngf": 8}, "note": "<b>&"}))
  for step in (100, 200):
    images = rng.uniform(-1, 1, (2, 32, 32, 3))
    report.save_sample_grid(workdir / "samples" / f"step_{step:08d}.png", images, images, images,
                            heatmaps=rng.uniform(0, 1, (2, 2, 2)))
  report.save_sample_grid(workdir / "samples" / "eval_step_00000200.png", images, images, images)


def _check_links(workdir, page):
  parser = _LinkCollector()
  parser.feed(page)
  for link in parser.links:
    parts = urllib.parse.urlsplit(link)
    assert not parts.scheme and not parts.netloc and not link.startswith("/"), link
    assert (workdir / urllib.parse.unquote(parts.path)).is_file(), link
  assert "script" not in parser.tags
  return parser.links


def test_write_report_builds_a_self_contained_page(tmp_path):
  _fake_workdir(tmp_path)
  index = report.write_report(tmp_path)
  assert index == os.path.join(tmp_path, "index.html")
  page = pathlib.Path(index).read_text(encoding="utf-8")
  links = _check_links(tmp_path, page)

  for name in ("losses", "accuracy", "eval"):
    plot = tmp_path / "plots" / f"{name}.png"
    with Image.open(plot) as image:
      image.verify()
      assert image.format == "PNG"
    assert any(link.startswith(f"plots/{name}.png") for link in links)
  assert {link for link in links if link.startswith("samples/")} == {
      "samples/step_00000100.png", "samples/step_00000200.png", "samples/eval_step_00000200.png"}
  # Newest step first, each with the column legend; the config is collapsed and escaped.
  assert page.index("step 200</h3>") < page.index("step 100</h3>")
  assert page.count("D heatmap (P(real) per 70\u00d770 patch)") == 2  # Not on the eval grid without one.
  assert "<details><summary>config</summary>" in page and "&lt;b&gt;&amp;" in page
  assert "http://" not in page and "https://" not in page
  assert not glob.glob(str(tmp_path / "**" / "*.tmp"), recursive=True)


# (sample height, width, display scale): small samples are enlarged by a whole factor.
SAMPLE_SIZES = [(64, 64, 3), (256, 256, 1), (256, 512, 1)]


def _grid_workdir(workdir, height, width, references=True, count=2):
  """A workdir whose only content is one sample grid of `count` rows at height × width."""
  images = np.zeros((count, height, width, 3), np.float32)
  report.save_sample_grid(workdir / "samples" / "step_00000010.png", images, images, images,
                          np.full((count, 2, 2), 0.5), references=images if references else None,
                          reference_label="authors, step 0")
  with Image.open(workdir / "samples" / "step_00000010.png") as image:
    return image.size


@pytest.mark.parametrize("height,width,scale", SAMPLE_SIZES)
def test_sample_figure_lays_titles_out_on_the_grid_geometry(tmp_path, height, width, scale):
  grid_width, grid_height = _grid_workdir(tmp_path, height, width)
  page = pathlib.Path(report.write_report(tmp_path)).read_text(encoding="utf-8")
  figure = re.search(r'<figure class="samples" style="width: (\d+)px">.*?</figure>', page).group(0)
  # Drawn width = the PNG's times the whole display factor; the title row spans the same width.
  assert f'style="width: {grid_width * scale}px"' in figure
  assert f'width="{grid_width * scale}" height="{grid_height * scale}"' in figure
  assert ('class="upscaled"' in figure) == (scale > 1)
  assert (f"shown at {scale}\u00d7" in figure) == (scale > 1)
  # One track per gap and per tile, in proportion to their pixels: gap tile gap tile ... gap.
  tracks = re.search(r'grid-template-columns: ([^"]+)"', figure).group(1)
  gap = report.GRID_GAP
  assert tracks == f"{gap}fr " + " ".join([f"minmax(0, {width}fr) {gap}fr"] * 5)
  titles = re.findall(r'<span style="grid-column: (\d+)">(.*?)</span>(?=<span style|</div>)',
                      figure)
  assert [int(column) for column, _ in titles] == [2, 4, 6, 8, 10]  # the tiles' tracks
  assert [text.split("<")[0] for _, text in titles] == [
      "input", "output", "reference: authors, step 0", "target", report.HEATMAP_LABEL]
  # A click opens the full-size grid.
  assert '<a href="samples/step_00000010.png"' in figure and "click for full size" in figure


def test_write_report_without_eval_lines(tmp_path):
  _fake_workdir(tmp_path, with_eval=False)
  page = pathlib.Path(report.write_report(tmp_path)).read_text(encoding="utf-8")
  _check_links(tmp_path, page)
  assert not (tmp_path / "plots" / "eval.png").exists()
  assert "Evaluation" not in page


def test_write_report_on_an_early_or_empty_workdir(tmp_path):
  index = report.write_report(tmp_path)  # Nothing written yet.
  page = pathlib.Path(index).read_text(encoding="utf-8")
  assert "No metrics yet" in page and "No sample grids yet" in page
  assert _check_links(tmp_path, page) == []
  # Only a half-written first line, and a config still being written.
  (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 0, "g_')
  (tmp_path / "config.json").write_text('{"model": ')
  page = pathlib.Path(report.write_report(tmp_path)).read_text(encoding="utf-8")
  assert "No metrics yet" in page and "{&quot;model&quot;: " in page


def test_importing_report_leaves_matplotlib_alone():
  code = ("import sys; import pix2pix_jax.report; "
          "assert 'matplotlib' not in sys.modules, 'report imported matplotlib at import time'")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


# ----------------------------------------------------------------------------
# TensorBoard event files.

def _read_events(logdir):
  """All Event protos in logdir's event files, read with tensorboardX's own proto (no TF)."""
  from tensorboardX.proto import event_pb2
  from tensorboardX.record_writer import masked_crc32c

  events = []
  for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
    data = pathlib.Path(path).read_bytes()
    offset = 0
    while offset < len(data):
      # TFRecord framing: u64 length, u32 masked CRC of it, payload, u32 masked CRC of payload.
      header = data[offset:offset + 8]
      (length,) = struct.unpack("<Q", header)
      (header_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
      payload = data[offset + 12:offset + 12 + length]
      (payload_crc,) = struct.unpack("<I", data[offset + 12 + length:offset + 16 + length])
      assert header_crc == masked_crc32c(header) and payload_crc == masked_crc32c(payload)
      events.append(event_pb2.Event.FromString(payload))
      offset += 16 + length
  return events


def test_metric_writer_scalars_and_images_read_back(tmp_path):
  image = np.zeros((6, 10, 3), np.uint8)
  image[:, :5] = 200
  with tensorboard.MetricWriter(tmp_path / "tb") as writer:
    writer.write_scalars(1, {"g_l1": 0.5, "d_acc_real": np.float32(0.75)})
    writer.write_scalars(2, {"g_l1": np.array(0.25)})
    writer.write_images(2, {"samples": image})
    writer.flush()
    with pytest.raises(ValueError, match="must be uint8"):
      writer.write_images(3, {"bad": image.astype(np.float32)})

  events = _read_events(tmp_path / "tb")
  scalars = sorted((e.step, v.tag, v.simple_value) for e in events for v in e.summary.value
                   if v.HasField("simple_value"))
  assert scalars == [(1, "d_acc_real", 0.75), (1, "g_l1", 0.5), (2, "g_l1", 0.25)]
  images = [(e.step, v) for e in events for v in e.summary.value if v.HasField("image")]
  assert len(images) == 1 and images[0][0] == 2 and images[0][1].tag == "samples"
  decoded = np.asarray(Image.open(io.BytesIO(images[0][1].image.encoded_image_string)))
  np.testing.assert_array_equal(decoded[..., :3], image)


def test_disabled_metric_writer_writes_nothing(tmp_path):
  writer = tensorboard.MetricWriter(tmp_path / "tb", enabled=False)
  writer.write_scalars(1, {"loss": 1.0})
  writer.write_images(1, {"samples": np.zeros((4, 4, 3), np.uint8)})
  writer.flush()
  writer.close()
  assert not (tmp_path / "tb").exists()


# ----------------------------------------------------------------------------
# Headless browser.

def _screenshot(workdir, shot, *args, **kwargs):
  return subprocess.run([*SCREENSHOT_COMMAND, str(workdir), str(shot), *args], cwd=REPO_ROOT,
                        **kwargs)


def test_screenshot_script_explains_a_missing_browser(tmp_path):
  report.write_report(tmp_path)
  result = _screenshot(tmp_path, tmp_path / "shot.png", capture_output=True, text=True,
                       env={**os.environ, "PATH": str(tmp_path)}, check=False)
  assert result.returncode != 0
  assert "no Chromium found" in result.stderr and "apt-get install" in result.stderr


# Under CI (which installs it) a missing Chromium fails these tests instead of skipping them.
needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None and not os.environ.get("CI"),
    reason="chromium is not installed (apt-get install -y chromium)")


@pytest.mark.slow
@needs_chromium
def test_screenshot_of_the_page_is_not_blank(tmp_path):
  _fake_workdir(tmp_path)
  report.write_report(tmp_path)
  shot = tmp_path / "shot.png"
  _screenshot(tmp_path, shot, check=True, timeout=180)
  with Image.open(shot) as image:
    assert image.size == (1400, 2000)
    pixels = np.asarray(image.convert("L"), np.float32)
  assert pixels.var() > 100  # Text, plots and images, not an empty or error page.


# Each column of the browser test's grid in its own colour, so the screenshot shows where it is.
# The input alternates two reds column by column: enlarged without smoothing, only they appear.
_INPUT_REDS = ((255, 0, 0), (128, 0, 0))
_COLUMN_COLOURS = {"output": (0, 255, 0), "reference": (255, 0, 255), "target": (0, 0, 255)}


def _as_float(rgb, count, height, width):
  return np.broadcast_to(np.array(rgb, np.float32) / 127.5 - 1, (count, height, width, 3))


def _coloured_grid_workdir(workdir, height, width, count=2):
  inputs = np.array(_as_float(_INPUT_REDS[0], count, height, width))
  inputs[:, :, 1::2] = _as_float(_INPUT_REDS[1], count, height, 1)
  colours = {name: _as_float(rgb, count, height, width) for name, rgb in _COLUMN_COLOURS.items()}
  path = workdir / "samples" / "step_00000010.png"
  report.save_sample_grid(path, inputs, colours["output"], colours["target"],
                          np.ones((count, 2, 2)), references=colours["reference"],
                          reference_label="authors, step 0")
  with Image.open(path) as image:  # The heatmap tile's colour, as drawn over the output.
    gap = report.GRID_GAP
    return tuple(int(v) for v in image.convert("RGB").getpixel(
        (gap + 4 * (width + gap) + width // 2, gap + height // 2)))


@pytest.mark.slow
@needs_chromium
@pytest.mark.parametrize("height,width,scale", SAMPLE_SIZES)
def test_titles_sit_over_their_columns_in_chromium(tmp_path, height, width, scale):
  heatmap_colour = _coloured_grid_workdir(tmp_path, height, width)
  report.write_report(tmp_path)
  shot_path = tmp_path / "shot.png"
  _screenshot(tmp_path, shot_path, "--height", "1000", check=True, timeout=180)
  shot = np.asarray(Image.open(shot_path).convert("RGB")).astype(int)

  def near(rgb, tolerance=6):
    return np.all(np.abs(shot - np.array(rgb)) <= tolerance, axis=-1)

  reds = (shot[..., 0] > 100) & (shot[..., 1] < 10) & (shot[..., 2] < 10)
  top = int(np.nonzero(reds.any(axis=1))[0][0])  # The first row of tiles starts here.

  def x_range(mask):
    columns = np.nonzero(mask[top + 4:top + 12].any(axis=0))[0]
    assert columns.size, "a column of the grid is missing from the screenshot"
    return int(columns[0]), int(columns[-1])

  tiles = [x_range(reds)] + [x_range(near(_COLUMN_COLOURS[name]))
                             for name in ("output", "reference", "target")]
  tiles.append(x_range(near(heatmap_colour)))
  assert all(a[1] < b[0] for a, b in zip(tiles, tiles[1:])), tiles  # Left to right, apart.
  if scale > 1:  # Small samples are enlarged to a readable width ...
    assert min(right - left + 1 for left, right in tiles) >= report.MIN_DISPLAY_TILE - 2
    # ... without smoothing: inside the input tile only its two reds, no blend of them.
    left, right = tiles[0]
    inside = shot[top + 3:top + 3 * scale * 8, left + 3:right - 2]
    exact = np.zeros(inside.shape[:2], bool)
    for rgb in _INPUT_REDS:
      exact |= np.all(np.abs(inside - np.array(rgb)) <= 3, axis=-1)
    assert exact.mean() > 0.98, f"{1 - exact.mean():.0%} of the enlarged pixels are blended"

  # The last line of every title sits just above the grid: all its ink lies over one tile, and
  # each tile's title is centred on it.
  ink = shot[top - 18:top - 1].max(axis=-1) < 120
  ink_columns = np.nonzero(ink.any(axis=0))[0]
  for x in ink_columns:
    assert any(left - 2 <= x <= right + 2 for left, right in tiles), (
        f"title ink at x={x} is over no column; columns at {tiles}")
  for left, right in tiles:
    over = ink_columns[(ink_columns >= left - 2) & (ink_columns <= right + 2)]
    assert over.size, f"no title over the column at {left}-{right}"
    centre = (over.min() + over.max()) / 2
    assert abs(centre - (left + right) / 2) <= 0.15 * (right - left), (
        f"title centred at {centre}, column at {left}-{right}")


# ----------------------------------------------------------------------------
# A reference run beside ours (config.report.reference_workdir).

def _tiles(path, row=0):
  """{column name: the tile's pixels} of row `row` of a saved sample grid."""
  with Image.open(path) as image:
    names = image.info["pix2pix_columns"].split(",")
    grid = np.asarray(image.convert("RGB")).astype(int)
  gap = report.GRID_GAP
  width = (grid.shape[1] - gap * (len(names) + 1)) // len(names)
  height = width  # The tiny config's samples are square.
  top = gap + row * (height + gap)
  return {name: grid[top:top + height, gap + i * (width + gap):gap + i * (width + gap) + width]
          for i, name in enumerate(names)}


@pytest.mark.slow
def test_reference_run_outputs_appear_beside_ours(tmp_path):
  from helpers import tiny_config
  from pix2pix_jax import loop, platform

  platform.configure()
  # Without dropout, paper mode's outputs are a fixed function of the checkpoint and of the
  # batch (its normalisation statistics): the reference's own last sample grid shows them too.
  # A large learning rate moves the outputs away from the init's near-constant grey in 2 steps.
  settings = {"num_train_steps": 2, "sample_every_steps": 2, "eval_every_steps": 0,
              "checkpoint_every_steps": 2, "log_every_steps": 1, "model.use_dropout": False,
              "optim.lr": 0.02}
  reference = tmp_path / "authors"
  loop.train_and_evaluate(tiny_config(**settings), str(reference))
  ours = tmp_path / "ours"  # A different network (width 4, not 8): different outputs.
  loop.train_and_evaluate(tiny_config(**settings, **{"model.ngf": 4,
                                                     "report.reference_workdir": str(reference)}),
                          str(ours))

  grid = ours / "samples" / "step_00000002.png"
  with Image.open(grid) as image:
    assert image.info["pix2pix_columns"] == "input,output,reference,target,heatmap"
    assert image.info["pix2pix_reference"] == "authors, step 2"
  for row in (0, 1):
    mine, theirs = _tiles(grid, row), _tiles(reference / "samples" / "step_00000002.png", row)
    np.testing.assert_array_equal(mine["input"], theirs["input"])  # The same sample inputs ...
    # ... through the reference's generator: its own output (to float rounding in uint8).
    assert np.abs(mine["reference"] - theirs["output"]).max() <= 1
    assert np.abs(mine["output"] - mine["reference"]).mean() > 10  # Not our output again.
    assert mine["reference"].std() > 10  # Images, not a constant.
  page = (ours / "index.html").read_text(encoding="utf-8")
  assert "reference: authors, step 2" in page


def test_unusable_reference_is_left_out_with_a_warning(tmp_path, caplog):
  from helpers import tiny_config
  from pix2pix_jax import reference

  config = tiny_config(**{"report.reference_workdir": str(tmp_path / "nowhere")})
  with caplog.at_level("WARNING"):
    references, label = reference.reference_outputs(config, np.zeros((2, 32, 32, 3), np.float32))
  assert references is None and label == ""
  assert "nowhere" in caplog.text and "left out of the sample grids" in caplog.text
  assert reference.reference_outputs(tiny_config(), np.zeros((2, 32, 32, 3), np.float32)) == (None, "")
