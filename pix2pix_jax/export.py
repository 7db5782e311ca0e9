"""The trained generator as a self-contained `jax.export` artifact, and a loader for it.

The artifact is `jax.export.Exported.serialize()` bytes: StableHLO with the weights inlined as
constants. Running it needs only jax and numpy (`load_exported` imports nothing else: no flax,
no model code). Next to it, ARTIFACT.json records what the function expects.

The exported function is

  generator(images: f32[b, H, W, input_nc] in [-1, 1], seed: i32[], batch_index: i32[])
      -> f32[b, H, W, output_nc] in [-1, 1]

Shapes, most general first: a symbolic batch b and symbolic H = M·h, W = M·w (any batch size and
any image size whose sides are multiples of M = 2**num_downs, the U-Net's constraint); if the
layers cannot be traced with symbolic sizes (a formulation picked by comparing a size with a
threshold cannot be decided for all sizes), H and W are fixed to the training crop; if even the
batch cannot be symbolic, it is fixed to the translator's batch size. `export_generator` takes
the first that lowers and records it (`in_shapes` in the JSON); the loader splits a larger batch
into chunks of a fixed batch size.

Test-time mode: the artifact holds one mode, the config's `eval_mode` at export time.
* paper (default): dropout on, batch normalisation with the statistics of the batch passed in
  (so outputs depend on what is batched together; the authors test one image at a time). The
  dropout key is fold_in(key(seed), batch_index), as `inference.Translator` keys its batches:
  the loader's `gen(images, seed)` returns exactly `Translator(batch_size=b)(images, seed=seed)`
  where b is the artifact's batch (or all the images, for a symbolic batch).
* eval: running averages, no dropout; `seed` and `batch_index` are accepted and ignored, so both
  variants share one calling convention. Export both with `--config.eval_mode=paper` / `=eval`
  when both are wanted.

Exactness: the weights enter the computation through an optimisation barrier, so XLA compiles
the same arithmetic as for the in-process generator (whose weights are arguments) instead of
constant-folding them (which changes the last bit of, e.g., eval-mode BatchNorm). Outputs are
bitwise equal on the same backend when the layers pick the same formulation for the same
shapes (`tests/test_export.py`).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax import atomic, errors

FORMAT = "pix2pix-jax generator, jax.export"
# Lowered for all of these when possible (one artifact runs on any of them), else the current one.
DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")


def _metadata_path(path: pathlib.Path) -> pathlib.Path:
  return path.with_name(path.name + ".json")


def _shape_candidates(translator, symbolic_batch: bool, symbolic_spatial: bool) -> list[str]:
  m, c, crop = translator.size_multiple, translator.input_nc, translator.crop_size
  candidates = []
  if symbolic_batch and symbolic_spatial:
    candidates.append(f"b, {m}*h, {m}*w, {c}")
  if symbolic_batch:
    candidates.append(f"b, {crop}, {crop}, {c}")
  candidates.append(f"{translator.batch_size}, {crop}, {crop}, {c}")
  return candidates


def _lower(generator, shape: str, platforms):
  args = (jax.ShapeDtypeStruct(jax.export.symbolic_shape(shape), jnp.float32),
          jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.int32))
  try:
    return jax.export.export(jax.jit(generator), platforms=tuple(platforms))(*args)
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, jax.errors.InconclusiveDimensionOperation):
      raise
    fallback = (jax.default_backend(),)
    if tuple(platforms) == fallback:
      raise
    # Some backends may not lower on this machine; the current one always does.
    logging.warning("lowering for %s failed (%s: %s); exporting for %s only", tuple(platforms),
                    type(e).__name__, str(e).splitlines()[0][:200], fallback)
    return jax.export.export(jax.jit(generator), platforms=fallback)(*args)


def export_generator(translator, path: str | os.PathLike, *, platforms=DEFAULT_PLATFORMS,
                     symbolic_batch: bool = True, symbolic_spatial: bool = True) -> pathlib.Path:
  """Serialises `translator`'s generator (an `inference.Translator`) to `path`.

  Args:
    translator: the loaded generator, its weights and test-time mode.
    path: the artifact to write (its metadata goes to PATH.json).
    platforms: the backends to lower for; falls back to the current backend if one fails.
    symbolic_batch, symbolic_spatial: allow a symbolic batch / symbolic H, W (multiples of
      2**num_downs). The most general allowed shapes that lower are used (module docstring).
  """
  path = pathlib.Path(path)
  mode = translator.mode
  params, stats = translator.g_params, translator.g_batch_stats

  def generator(images, seed, batch_index):
    # The barrier keeps XLA from constant-folding the inlined weights into the arithmetic.
    weights = jax.lax.optimization_barrier((params, stats))
    key = jax.random.fold_in(jax.random.key(seed), batch_index)
    return translator._generate(*weights, images, key, mode=mode)  # pylint: disable=protected-access

  exported, refused = None, []
  for shape in _shape_candidates(translator, symbolic_batch, symbolic_spatial):
    try:
      exported = _lower(generator, shape, platforms)
      break
    except jax.errors.InconclusiveDimensionOperation as e:
      refused.append(f"({shape}): {str(e).splitlines()[0]}")
      logging.warning("the generator does not trace with input shape (%s): %s", shape,
                      refused[-1])
  if exported is None:
    raise ValueError("the generator could not be exported with any input shape:\n"
                     + "\n".join(refused))
  with atomic.atomic_path(path) as temporary:
    temporary.write_bytes(exported.serialize())
  metadata = {
      "format": FORMAT,
      "signature": "(images f32[b, H, W, input_nc] in [-1, 1], seed i32[], batch_index i32[]) "
                   "-> f32[b, H, W, output_nc] in [-1, 1]",
      "mode": mode,
      "input_nc": translator.input_nc,
      "output_nc": translator.output_nc,
      "size_multiple": translator.size_multiple,
      "crop_size": translator.crop_size,
      "direction": translator.direction,
      "step": translator.step,
      "default_seed": translator.seed,
      "platforms": list(exported.platforms),
      "in_shapes": [str(a) for a in exported.in_avals],
      "refused_shapes": refused,
      "jax_version": jax.__version__,
  }
  _metadata_path(path).write_text(json.dumps(metadata, indent=1))
  return path


class ExportedGenerator:
  """A deserialised generator: `gen(images, seed=0)`; uint8 in → uint8 out, floats → float32.

  Images are (N, H, W, C) or (H, W, C). With a fixed batch size k in the artifact, N must be a
  multiple of k and the images run k at a time (batch_index 0, 1, ...).
  """

  def __init__(self, exported, metadata: dict | None = None):
    self.exported = exported
    self.metadata = metadata or {}
    batch, height, width, channels = exported.in_avals[0].shape
    self.input_nc = int(channels)
    self.batch = None if jax.export.is_symbolic_dim(batch) else int(batch)
    symbolic = jax.export.is_symbolic_dim(height) or jax.export.is_symbolic_dim(width)
    self.image_size = None if symbolic else (int(height), int(width))
    self.size_multiple = int(self.metadata.get("size_multiple", 1))
    self._call = jax.jit(exported.call)

  def __repr__(self) -> str:
    return (f"ExportedGenerator(mode={self.metadata.get('mode', '?')}, "
            f"in={self.exported.in_avals[0].str_short()}, platforms={self.exported.platforms})")

  def _check(self, shape) -> None:
    if len(shape) != 4 or shape[-1] != self.input_nc:
      raise ValueError(f"expected images shaped (N, H, W, {self.input_nc}), got {shape}")
    n, h, w, _ = shape
    if self.image_size is not None and (h, w) != self.image_size:
      raise ValueError(f"image size {w}×{h}: this artifact was exported for "
                       f"{self.image_size[1]}×{self.image_size[0]} images only")
    m = self.size_multiple
    if h % m or w % m:
      raise ValueError(f"image size {w}×{h}: this generator needs width and height that are "
                       f"multiples of {m}")
    if self.batch is not None and n % self.batch:
      raise ValueError(f"{n} images: this artifact runs batches of exactly {self.batch}")

  def __call__(self, images, seed: int = 0) -> np.ndarray:
    images = np.asarray(images)
    single = images.ndim == 3
    if single:
      images = images[None]
    self._check(images.shape)
    as_uint8 = images.dtype == np.uint8
    x = images.astype(np.float32) * (2.0 / 255.0) - 1.0 if as_uint8 else images.astype(np.float32)
    k = self.batch or len(x)
    out = np.concatenate([
        np.asarray(self._call(jnp.asarray(x[i:i + k]), jnp.int32(seed), jnp.int32(i // k)))
        for i in range(0, len(x), k)])
    if as_uint8:
      out = np.round((np.clip(out, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    return out[0] if single else out


def load_exported(path: str | os.PathLike) -> ExportedGenerator:
  """Loads an artifact written by `export_generator`; needs jax and numpy only."""
  path = pathlib.Path(path)
  try:
    data = path.read_bytes()
  except OSError as e:
    raise errors.PathNotFoundError(f"{path}: no artifact to load ({e.strerror or e}); export "
                                   "one with launch.py --mode=export --output=PATH") from e
  try:
    exported = jax.export.deserialize(bytearray(data))
  except Exception as e:  # pylint: disable=broad-except
    raise errors.InputError(f"{path}: not a jax.export artifact ({type(e).__name__}: {e})") from e
  meta_path = _metadata_path(path)
  metadata = json.loads(meta_path.read_text()) if meta_path.is_file() else None
  return ExportedGenerator(exported, metadata)
