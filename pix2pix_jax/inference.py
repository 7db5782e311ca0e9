"""A trained run at test time, from its workdir alone: `translator = inference.load(WORKDIR)`,
then `translator(images_uint8)` or `translator.translate_files(paths, out_dir)`.

Only the networks' parameters and batch statistics are restored (no optimiser, no training
code). Test time follows `config.eval_mode` (`evaluate.py`); image sizes that are not multiples
of the generator's `size_multiple` follow `resize` (`Translator.target_size`).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from flax import traverse_util
from PIL import Image

from pix2pix_jax import checkpointing, config_check, errors, evaluate, state as state_lib, storage
from pix2pix_jax.pixels import to_uint8, to_unit_range
from pix2pix_jax.data import images as images_lib

RESIZE_MODES = ("crop_size", "multiple", "none")
# Config fields a given config sets at test time, over the run's saved config: how to test and
# on which data, never what was trained (the model must match; other settings keep the run's).
TEST_TIME_KEYS = (
    "seed", "eval_mode", "eval_batch_size", "num_samples", "compute_dtype", "deterministic",
    "data.dataset", "data.data_dir", "data.tfds_data_dir", "data.manual_dir", "data.eval_split",
    "data.num_synthetic", "data.num_threads", "data.prefetch", "data.skip_bad_images",
    "num_test", "model.conv_impl", "compilation_cache_dir")


# ---------------------------------------------------------------------------- loading a run

def _checkpoint_steps(workdir: str | os.PathLike) -> tuple[epath.Path, list[int]]:
  directory = storage.resolve(workdir, "--workdir") / "checkpoints"
  steps = checkpointing.saved_steps(directory)
  if not steps:
    raise errors.PathNotFoundError(
        f"no checkpoints in {directory}: train first (launch.py --config CONFIG --workdir "
        f"{workdir}) or point --workdir at a trained run")
  return directory, steps


def saved_config(workdir: str | os.PathLike, step: int | None = None) -> ml_collections.ConfigDict:
  """The config a run's checkpoint was trained with (falls back to WORKDIR/config.json).

  Reads files only, so no JAX backend starts: launch.py calls it before distributed start-up.
  """
  directory, steps = _checkpoint_steps(workdir)
  if step is not None and step not in steps:
    raise errors.UsageError(f"no checkpoint {step} in {directory}; available steps: {steps} "
                            "(--step=N, or leave it out for the latest)")
  saved = checkpointing.read_saved_config(directory, step if step is not None else steps[-1])
  if not saved:
    path = directory.parent / "config.json"
    if not path.is_file():
      raise errors.PathNotFoundError(f"no config saved with the checkpoints in {directory} nor "
                                     f"at {path}; pass the training config explicitly")
    saved = json.loads(path.read_text())
  return ml_collections.ConfigDict(saved)


def run_config(workdir: str | os.PathLike, config=None,
               step: int | None = None) -> ml_collections.ConfigDict:
  """The config to test a run with: its saved config, with `config`'s test-time fields on top.

  Without `config`, the saved config as it is. With it, the fields in `TEST_TIME_KEYS` (and any
  field the saved config does not have) take `config`'s values; a different `model` raises
  `checkpointing.CheckpointError` listing the differences; the other (training) settings keep
  the run's values.
  """
  saved = saved_config(workdir, step)
  if config is None:
    return saved
  flat_saved = traverse_util.flatten_dict(saved.to_dict(), sep=".")
  flat_given = traverse_util.flatten_dict(config.to_dict(), sep=".")
  checkpointing.check_same_model(
      saved.to_dict(), config.to_dict(), f"the run in {workdir}",
      hint="Leave out --config to use the run's saved config; only test-time fields may "
           f"differ ({', '.join(TEST_TIME_KEYS)}).")
  merged, applied, kept = dict(flat_saved), [], []
  for key, value in flat_given.items():
    if key not in flat_saved or key in TEST_TIME_KEYS:
      merged[key] = value
      if key in flat_saved and value != flat_saved[key]:
        applied.append(f"  {key}: {flat_saved[key]!r} → {value!r}")
    elif value != flat_saved[key]:
      kept.append(f"  {key}: {flat_saved[key]!r} (the config has {value!r})")
  if applied:
    logging.info("Test-time settings from the config:\n%s", "\n".join(applied))
  if kept:
    logging.info("Training settings kept from the run (they do not apply at test time):\n%s",
                 "\n".join(kept))
  return ml_collections.ConfigDict(traverse_util.unflatten_dict(merged, sep="."))


def restore(config, workdir: str | os.PathLike, step: int | None = None, *, mesh=None
            ) -> tuple[state_lib.Built, state_lib.Weights, int]:
  """Restores a run's networks onto the current devices: (built, weights, step).

  Builds the networks and the abstract `Weights` only (`state.build` without optimisers) and
  reads just those subtrees of the checkpoint: no optimiser, schedule, train step or data
  source is built. The config's model must be the checkpoint's (the difference is listed
  otherwise).
  """
  directory, steps = _checkpoint_steps(workdir)
  if step is not None and step not in steps:
    raise errors.UsageError(f"no checkpoint {step} in {directory}; available steps: {steps} "
                            "(--step=N, or leave it out for the latest)")
  built = state_lib.build(config, mesh=mesh)
  ckpt = checkpointing.Checkpointer(directory, config=config.to_dict())
  try:
    restored = ckpt.restore_latest(built.abstract_state, None, step=step, partial=True)
  finally:
    ckpt.close()
  if restored is None:
    raise errors.PathNotFoundError(f"no usable checkpoint in {directory}")
  weights, restored_step = restored
  logging.info("Restored the networks of checkpoint %d from %s", restored_step, directory)
  return built, weights, restored_step


def load(workdir: str | os.PathLike, step: int | None = None, config=None, *,
         mode: str | None = None, seed: int | None = None,
         batch_size: int | None = None) -> "Translator":
  """A `Translator` for the run in `workdir` at `step` (default: the latest checkpoint).

  The run's saved config is used; a given `config` changes only its test-time fields
  (`run_config`). `mode`, `seed` and `batch_size` default to the config's eval_mode, seed and
  eval_batch_size.
  """
  config = run_config(workdir, config, step)
  config_check.check(config, mode="translate")
  built, weights, restored_step = restore(config, workdir, step)
  return Translator(built.generator, weights.g_params, weights.g_batch_stats, config=config,
                    step=restored_step, mode=mode, seed=seed, batch_size=batch_size)


def translator(config, workdir: str | os.PathLike, step: int | None = None) -> "Translator":
  """A `Translator` for a checked config (`load` with the config already resolved)."""
  built, weights, restored_step = restore(config, workdir, step)
  return Translator(built.generator, weights.g_params, weights.g_batch_stats, config=config,
                    step=restored_step)


# ---------------------------------------------------------------------------- translating

def _to_channels(pixels: np.ndarray, channels: int, name: str) -> np.ndarray:
  """(H, W, C) with C in {1, 3, 4} → C = `channels` (alpha dropped, grey as PIL's 'L')."""
  if pixels.ndim == 2:
    pixels = pixels[..., None]
  c = pixels.shape[-1]
  if pixels.ndim != 3 or c not in (1, 3, 4):
    raise errors.InputError(f"{name}: expected an (H, W, C) image with C in 1, 3 or 4, got "
                            f"shape {pixels.shape}")
  if c == 4:  # alpha is dropped, not composited, as PIL's convert('RGB') in training
    pixels, c = pixels[..., :3], 3
  if c == channels:
    return pixels
  if channels == 3:
    return np.repeat(pixels, 3, axis=-1)
  if pixels.dtype == np.uint8:  # exactly the training transform's convert('L')
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).convert("L"))[..., None]
  weights = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as PIL's 'L'
  return (pixels.astype(np.float32) @ weights)[..., None]


def _resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
  """Bicubic resize (PIL's, as the training transform) of uint8 or float (H, W, C)."""
  if pixels.dtype == np.uint8:
    mode_image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    out = np.asarray(mode_image.resize((width, height), Image.BICUBIC))
    return out[..., None] if out.ndim == 2 else out
  channels = [np.asarray(Image.fromarray(np.ascontiguousarray(pixels[..., k], np.float32),
                                         mode="F").resize((width, height), Image.BICUBIC))
              for k in range(pixels.shape[-1])]
  return np.stack(channels, axis=-1)


class Translator:
  """The generator of a trained run as a function on images.

  Call it on (N, H, W, C) or (H, W, C) arrays: uint8 pixels give uint8 outputs, floats (in
  [-1, 1], the training range) give float32 outputs in [-1, 1]. Channels are converted to the
  model's input_nc (alpha dropped, grey repeated or RGB turned grey as PIL's 'L').
  """

  def __init__(self, generator, g_params, g_batch_stats, *, config, step: int = 0,
               mode: str | None = None, seed: int | None = None, batch_size: int | None = None):
    self.generator = generator
    self.g_params, self.g_batch_stats = g_params, g_batch_stats
    self.config, self.step = config, step
    self.mode = mode or config.eval_mode
    if self.mode not in evaluate.EVAL_MODES:
      raise errors.UsageError(f"eval mode must be one of {evaluate.EVAL_MODES}, got "
                              f"{self.mode!r}")
    self.seed = config.seed if seed is None else int(seed)
    self.batch_size = int(batch_size or config.eval_batch_size or 1)
    self.input_nc, self.output_nc = config.model.input_nc, config.model.output_nc
    self.direction = config.data.direction
    self.crop_size = config.data.crop_size
    self.size_multiple = generator.size_multiple
    self._generate = jax.jit(functools.partial(evaluate.generate, generator),
                             static_argnames=("mode",))

  def __repr__(self) -> str:
    return (f"Translator(step={self.step}, mode={self.mode!r}, direction={self.direction}, "
            f"{self.input_nc}→{self.output_nc} channels, sizes multiple of "
            f"{self.size_multiple}, batch_size={self.batch_size}, seed={self.seed})")

  @property
  def variables(self) -> dict:
    """The generator's Flax variables ({'params', 'batch_stats'})."""
    return {"params": self.g_params, "batch_stats": self.g_batch_stats}

  # ---- preparing inputs
  def target_size(self, width: int, height: int, name: str, resize: str) -> tuple[int, int]:
    """The (width, height) an image of this size goes through the generator at."""
    if resize not in RESIZE_MODES:
      raise errors.UsageError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    m = self.size_multiple
    if width % m == 0 and height % m == 0:
      return width, height
    if resize == "none":
      raise errors.InputError(
          f"{name}: {width}×{height} pixels, but this generator ({self.generator.title}) "
          f"needs width and height that are multiples of {m}. Resize or crop it to a "
          f"multiple of {m}, or use resize='crop_size' (to {self.crop_size}×{self.crop_size}) "
          "or resize='multiple'.")
    if resize == "crop_size":
      return self.crop_size, self.crop_size
    return max(m, round(width / m) * m), max(m, round(height / m) * m)

  def prepare(self, pixels: np.ndarray, name: str = "image", *, aligned: bool = False,
              resize: str = "crop_size") -> np.ndarray:
    """One image (H, W, C) → the generator's float32 input in [-1, 1].

    `aligned`: the image is an authors' A|B pair; the input half is chosen by
    config.data.direction (A, the left half, for AtoB; B, the right half, for BtoA).
    """
    pixels = np.asarray(pixels)
    if aligned:
      a, b = images_lib.split_aligned(_to_channels(pixels, 3, name), name)
      pixels = b if self.direction == "BtoA" else a
    pixels = _to_channels(pixels, self.input_nc, name)
    height, width = pixels.shape[:2]
    new_w, new_h = self.target_size(width, height, name, resize)
    if (new_w, new_h) != (width, height):
      pixels = _resize(np.ascontiguousarray(pixels), new_w, new_h)
    if pixels.dtype == np.uint8:
      return to_unit_range(pixels)
    return pixels.astype(np.float32)

  # ---- running the generator
  def generate(self, inputs: np.ndarray, key: jax.Array) -> np.ndarray:
    """One batch of prepared inputs (N, H, W, input_nc) → float32 outputs in [-1, 1]."""
    out = self._generate(self.g_params, self.g_batch_stats, jnp.asarray(inputs), key,
                         mode=self.mode)
    return np.asarray(out, dtype=np.float32)

  def _run(self, inputs: Sequence[np.ndarray], seed: int | None) -> list[np.ndarray]:
    """Prepared inputs → outputs, `batch_size` at a time (consecutive equal sizes batched)."""
    base = jax.random.key(self.seed if seed is None else int(seed))
    outputs: list[np.ndarray] = []
    chunk = 0
    start = 0
    while start < len(inputs):
      stop = start + 1
      while (stop < len(inputs) and stop - start < self.batch_size
             and inputs[stop].shape == inputs[start].shape):
        stop += 1
      batch = np.stack(inputs[start:stop])
      outputs.extend(self.generate(batch, jax.random.fold_in(base, chunk)))
      chunk += 1
      start = stop
    return outputs

  def __call__(self, images, *, seed: int | None = None, resize: str = "crop_size",
               aligned: bool = False) -> np.ndarray:
    """Translates images: (N, H, W, C) or (H, W, C), uint8 or float in [-1, 1]."""
    images = np.asarray(images)
    single = images.ndim == 3
    if single:
      images = images[None]
    if images.ndim != 4:
      raise errors.InputError(f"expected images shaped (N, H, W, C) or (H, W, C), got "
                              f"{images.shape}")
    as_uint8 = images.dtype == np.uint8
    if not as_uint8:
      images = images.astype(np.float32)
    inputs = [self.prepare(img, f"image {i}", aligned=aligned, resize=resize)
              for i, img in enumerate(images)]
    outputs = np.stack(self._run(inputs, seed))
    if as_uint8:
      outputs = to_uint8(outputs)
    return outputs[0] if single else outputs

  def translate_files(self, paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, *,
                      aligned: bool = False, resize: str = "crop_size",
                      seed: int | None = None) -> list[epath.Path]:
    """Translates image files; writes OUT_DIR/NAME.png for each input NAME.ext.

    Raises BadImageError (naming the file) for unreadable images and ValueError for sizes
    refused by resize="none" or two inputs that would write the same output name; all inputs
    are read and checked before anything is written.
    """
    paths = [epath.Path(p) for p in paths]
    if not paths:
      raise errors.UsageError("no input images to translate")
    targets: dict[str, epath.Path] = {}
    for path in paths:
      stem = evaluate.file_stem(path.name)
      if stem in targets:
        raise errors.InputError(f"{targets[stem]} and {path} would both be written to {stem}.png; "
                                "rename one of them")
      targets[stem] = path
    inputs = [self.prepare(images_lib.load_image(p), os.fspath(p), aligned=aligned,
                           resize=resize) for p in paths]
    outputs = self._run(inputs, seed)
    out_dir = storage.resolve(out_dir, "--output")
    written = []
    for stem, out in zip(targets, outputs):
      evaluate.save_png(out_dir / f"{stem}.png", out)
      written.append(out_dir / f"{stem}.png")
    return written


def list_inputs(path: str | os.PathLike) -> list[epath.Path]:
  """An image file, or the images directly inside a folder (natural order)."""
  from pix2pix_jax.data import folder
  path = storage.resolve(path, "--input")
  storage.check_bucket(path, "--input")
  if path.is_dir():
    found = folder.list_images(path)
    if not found:
      raise errors.PathNotFoundError(
          f"{path} holds no images ({', '.join(images_lib.IMAGE_EXTENSIONS)})")
    return found
  if not path.is_file():
    raise errors.PathNotFoundError(f"--input {path} is neither an image file nor a folder")
  return [path]
