"""What the demo page does (palettes, snapping, uploads, the model), without Gradio.

`launch.py --mode=demo --workdir RUN` (or `--artifact gen.jax`) serves `demo_app.py`'s page on
127.0.0.1: a canvas with the dataset's brushes, strokes snapped to the class colours (Gradio's
are anti-aliased), uploads, the output, the PatchGAN heatmap and a download.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import pathlib
import time

import numpy as np
from PIL import Image

from pix2pix_jax import canvas, errors, evaluate
from pix2pix_jax.canvas import FREE_PALETTE, Palette, palette_for  # noqa: F401
from pix2pix_jax.pixels import to_rgb, to_unit_range
from pix2pix_jax.data import images as images_lib

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
# Uploads: larger files, or images with more pixels, are refused with a message.
MAX_UPLOAD_BYTES = 20 * 2**20
MAX_UPLOAD_PIXELS = 40_000_000
# Uploads whose size the generator could take as it is but with a side past this are resized
# to the canvas instead (a new, large shape would compile and run for seconds).
MAX_CANVAS_SIDE = 1024


def snap_strokes(composite: np.ndarray, background: np.ndarray | None,
                 palette: Palette) -> np.ndarray:
  """Snaps every pixel that differs from `background` to the nearest palette colour.

  Only label maps are snapped: their colours are classes, and an anti-aliased stroke edge is a
  colour the generator never saw. Untouched pixels (the validation input, an upload) are kept.
  """
  composite = np.asarray(composite, np.uint8)
  if palette.kind != "labels":
    return composite
  if background is None or np.shape(background) != composite.shape:
    touched = np.ones(composite.shape[:2], bool)
  else:
    touched = np.any(composite != background, axis=-1)
  if not touched.any():
    return composite
  pixels = composite[touched].astype(np.int32)
  colours = palette.rgb.astype(np.int32)
  distance = ((pixels[:, None, :] - colours[None, :, :]) ** 2).sum(-1)
  snapped = composite.copy()
  snapped[touched] = colours[np.argmin(distance, axis=1)]
  return snapped


# ---------------------------------------------------------------------------- uploads

class UploadError(ValueError):
  """An upload the demo refuses; the message is shown in the page."""


def read_upload(path: str | os.PathLike, *, max_bytes: int = MAX_UPLOAD_BYTES,
                max_pixels: int = MAX_UPLOAD_PIXELS) -> np.ndarray:
  """An uploaded file → (H, W, 3) uint8 RGB, or UploadError saying why not."""
  path = pathlib.Path(path)
  name = path.name
  size = path.stat().st_size
  if size > max_bytes:
    raise UploadError(f"{name} is {size / 2**20:.1f} MB; the demo takes images up to "
                      f"{max_bytes / 2**20:.0f} MB")
  try:
    width, height = images_lib.read_image_size(path)
  except images_lib.BadImageError as e:
    raise UploadError(f"{name} is not an image this demo can read (PNG, JPEG, BMP, WebP, ...)"
                      ) from e
  if width * height > max_pixels:
    raise UploadError(f"{name} is {width}×{height} pixels; the demo takes images up to "
                      f"{max_pixels / 1e6:.0f} megapixels: downscale it first")
  try:
    return images_lib.load_image(path)
  except images_lib.BadImageError as e:
    raise UploadError(str(e).replace(str(path), name)) from e


def fit_upload(pixels: np.ndarray, canvas_hw: tuple[int, int], size_multiple: int,
               direction: str | None, name: str = "upload",
               fixed_size: bool = False) -> tuple[np.ndarray, str]:
  """An uploaded image → the canvas's new content, and a note on what was done to it.

  An aligned A|B pair (width twice the canvas's aspect) gives its input half (B for BtoA).
  Then the translate rule: sizes that are multiples of `size_multiple` are kept, others are
  resized (bicubic) to the canvas size; so are sizes with a side past MAX_CANVAS_SIDE, and any
  other size when the generator takes only one (`fixed_size`).
  """
  canvas_h, canvas_w = canvas_hw
  height, width = pixels.shape[:2]
  notes = []
  if direction and width % 2 == 0 and width * canvas_h == 2 * height * canvas_w:
    a, b = images_lib.split_aligned(pixels, name)
    pixels = b if direction == "BtoA" else a
    notes.append(f"aligned A|B pair: took its {'B (right)' if direction == 'BtoA' else 'A (left)'}"
                 " half, the input")
    height, width = pixels.shape[:2]
  keep = (height % size_multiple == 0 and width % size_multiple == 0
          and max(height, width) <= MAX_CANVAS_SIDE
          and not (fixed_size and (height, width) != (canvas_h, canvas_w)))
  if not keep:
    pixels = np.asarray(Image.fromarray(pixels).resize((canvas_w, canvas_h), Image.BICUBIC))
    notes.append(f"resized from {width}×{height} to {canvas_w}×{canvas_h}")
  return np.ascontiguousarray(pixels), "; ".join(notes)


# ---------------------------------------------------------------------------- the model

def _to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
  """(H, W, 3) uint8 → (H, W, channels), grey as PIL's 'L' (the training transform's)."""
  if channels == 3:
    return pixels
  return np.asarray(Image.fromarray(pixels).convert("L"))[..., None]


class DemoModel:
  """A generator (a run's checkpoint or a jax.export artifact) and, for runs, its discriminator.

  `translate(rgb_uint8_hw3, mode, seed)` returns (H, W, 3) uint8; for a run it is exactly
  `inference.load(workdir)(pixels, seed=seed)` with the run's translator in `mode`.
  """

  def __init__(self, *, translator=None, exported=None, config=None, workdir=None):
    if (translator is None) == (exported is None):
      raise ValueError("DemoModel needs exactly one of translator and exported")
    self.translator, self.exported, self.config = translator, exported, config
    self.workdir = workdir
    self._discriminator = None  # restored on the first heatmap
    if translator is not None:
      self.modes = tuple(evaluate.EVAL_MODES)
      self.default_mode, self.default_seed = translator.mode, translator.seed
      self.input_nc, self.output_nc = translator.input_nc, translator.output_nc
      self.size_multiple, self.direction = translator.size_multiple, translator.direction
      self.step, self.fixed_hw = translator.step, None
      self.crop_size = translator.crop_size
    else:
      meta = exported.metadata
      self.modes = (meta.get("mode", "paper"),)
      self.default_mode, self.default_seed = self.modes[0], int(meta.get("default_seed", 0))
      self.input_nc, self.output_nc = exported.input_nc, int(meta.get("output_nc", 3))
      self.size_multiple = exported.size_multiple
      self.direction, self.step = meta.get("direction"), meta.get("step")
      self.fixed_hw = exported.image_size
      self.crop_size = int(meta.get("crop_size", self.fixed_hw[0] if self.fixed_hw else 256))

  @property
  def has_heatmap(self) -> bool:
    """The discriminator comes from a run's checkpoint (the artifact's step, for artifacts)."""
    return self.workdir is not None and self.config is not None

  def translate(self, pixels: np.ndarray, mode: str, seed: int) -> np.ndarray:
    if mode not in self.modes:
      raise errors.UsageError(f"test-time mode {mode!r} is not available; this generator has "
                              f"{', '.join(self.modes)}")
    if self.translator is not None:
      translator = self.translator
      if mode != translator.mode:
        translator = copy.copy(translator)  # shares the weights and the compiled function
        translator.mode = mode
      out = translator(pixels, seed=int(seed))
    else:
      x = _to_channels(pixels, self.input_nc)
      # A fixed artifact batch k is filled with k copies: batch statistics are then those of the
      # one image, as in a batch of one.
      batch = np.repeat(x[None], self.exported.batch or 1, axis=0)
      out = self.exported(batch, seed=int(seed))[0]
    return to_rgb(out)

  def heatmap(self, pixels: np.ndarray, output: np.ndarray, mode: str) -> np.ndarray:
    """The discriminator's per-patch P(real) for (input, output), (h, w) in [0, 1]."""
    import jax
    import jax.numpy as jnp
    if not self.has_heatmap:
      raise errors.UsageError("no discriminator: the heatmap needs a run's workdir")
    if self._discriminator is None:
      from pix2pix_jax import inference
      built, weights, _ = inference.restore(self.config, self.workdir, self.step)
      probability = jax.jit(functools.partial(evaluate.discriminator_probability,
                                              built.discriminator), static_argnums=(4, 5))
      self._discriminator = (weights.d_params, weights.d_batch_stats, probability)
    params, stats, probability = self._discriminator
    as_float = lambda u8: jnp.asarray(to_unit_range(u8[None]))
    x = as_float(_to_channels(pixels, self.input_nc))
    y = as_float(_to_channels(output, self.output_nc))
    heat = probability(params, stats, x, y, self.config.loss.gan_mode, mode)
    return np.asarray(heat)[0, ..., 0] if np.ndim(heat) == 4 else np.asarray(heat)[0]


def load_model(workdir: str | None = None, step: int | None = None,
               artifact: str | None = None) -> DemoModel:
  """The demo's model: a run's checkpoint (`workdir`), or an artifact (with `workdir`, the
  run's config for palette and validation data, and its discriminator for the heatmap)."""
  from pix2pix_jax import inference
  if artifact:
    from pix2pix_jax import export
    config = inference.saved_config(workdir, step) if workdir else None
    return DemoModel(exported=export.load_exported(artifact), config=config, workdir=workdir)
  if not workdir:
    raise errors.UsageError("--mode=demo needs --workdir (a trained run) or --artifact "
                            "(gen.jax)")
  translator = inference.load(workdir, step)
  return DemoModel(translator=translator, config=translator.config, workdir=workdir)


# ---------------------------------------------------------------------------- the first canvas

def initial_canvas(model: DemoModel) -> tuple[np.ndarray, str]:
  """The canvas to start from: a validation input, or a blank one; and where it came from."""
  return canvas.first_input(model.config, model.fixed_hw, model.crop_size, model.size_multiple)


# ---------------------------------------------------------------------------- one request

@dataclasses.dataclass
class Result:
  network_input: np.ndarray  # (H, W, 3) uint8, what the generator saw
  output: np.ndarray  # (H, W, 3) uint8
  heatmap: np.ndarray | None  # (H, W, 3) uint8 overlay on the output, when asked
  seconds: float


def run(model: DemoModel, palette: Palette, composite: np.ndarray, background: np.ndarray | None,
        mode: str, seed: int, heatmap: bool = False) -> Result:
  """Snap strokes, translate, and optionally colour the discriminator's opinion."""
  start = time.perf_counter()
  network_input = snap_strokes(composite, background, palette)
  output = model.translate(network_input, mode, seed)
  overlay = None
  if heatmap:
    from pix2pix_jax import report  # matplotlib's colour maps
    heat = model.heatmap(network_input, output, mode)
    overlay = report.heatmap_tiles(heat[None], output[None])[0]
  return Result(network_input, output, overlay, time.perf_counter() - start)


def warm_up(model: DemoModel, pixels: np.ndarray) -> float:
  """Compiles the generator for the canvas in every mode before the page opens; seconds."""
  start = time.perf_counter()
  for mode in model.modes:
    model.translate(pixels, mode, model.default_seed)
  return time.perf_counter() - start
