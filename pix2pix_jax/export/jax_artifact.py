"""The trained generator as a self-contained `jax.export` artifact, and a loader for it.

The artifact is serialised StableHLO with the weights inlined, lowered for cpu, cuda and tpu,
for any batch and any sides that are multiples of the generator's `size_multiple`. Running it
needs only jax and numpy (`load_exported`: no flax, no model code); PATH.json beside it records
the signature and the test-time mode (`export_generator`).
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from etils import epath

from pix2pix_jax import atomic, errors, storage
from pix2pix_jax.pixels import to_uint8, to_unit_range

FORMAT = "pix2pix-jax generator, jax.export"
# The backends the artifact is lowered for: one artifact runs on any of them.
DEFAULT_PLATFORMS = ("cpu", "cuda", "tpu")


def _metadata_path(path: epath.Path) -> epath.Path:
  return path.with_name(path.name + ".json")


def input_shape(translator) -> str:
  """The artifact's symbolic input shape: any batch, sides multiples of `size_multiple`."""
  m = translator.size_multiple
  return f"b, {m}*h, {m}*w, {translator.input_nc}"


def export_generator(translator, path: str | os.PathLike, *,
                     platforms=DEFAULT_PLATFORMS) -> epath.Path:
  """Serialises `translator`'s generator (an `inference.Translator`) to `path`.

  The exported function is

    generator(images: f32[b, M*h, M*w, input_nc] in [-1, 1], seed: i32[], batch_index: i32[])
        -> f32[b, M*h, M*w, output_nc] in [-1, 1]

  with symbolic b, h, w >= 1 and M = `size_multiple` (2**num_downs, 4 for the ResNet
  generators). Each platform runs its convolution forms (`kernels`); on CPU they are picked once
  for every size: a symbolic size takes the forms of its smallest value, one M×M image
  (`kernels.cpu.at_least`).

  The artifact holds one test-time mode, the translator's (the config's `eval_mode`):
  * paper: dropout on, batch normalisation with the statistics of the batch passed in (so
    outputs depend on what is batched together; the authors test one image at a time). The
    dropout key is fold_in(key(seed), batch_index), as `inference.Translator` keys its batches.
  * eval: running averages, no dropout; `seed` and `batch_index` are accepted and ignored, so
    both modes share one calling convention.

  The weights enter through an optimisation barrier, so XLA compiles the same arithmetic as for
  the in-process generator (whose weights are arguments) instead of constant-folding them
  (which changes the last bit of, e.g., eval-mode BatchNorm). Outputs equal the in-process
  generator's bit for bit where both take the same convolution forms (one M×M image on CPU) and
  to float rounding elsewhere (`tests/test_export.py`).

  Args:
    translator: the loaded generator, its weights and test-time mode.
    path: the artifact to write (its metadata goes to PATH.json).
    platforms: the backends to lower for (all of them go into the one artifact).
  Raises:
    ValueError: the generator does not trace for every batch and size (no fixed-shape
      artifact is written in its place).
  """
  path = storage.resolve(path, "--output")
  mode = translator.mode
  params, stats = translator.g_params, translator.g_batch_stats

  def generator(images, seed, batch_index):
    # The barrier keeps XLA from constant-folding the inlined weights into the arithmetic.
    weights = jax.lax.optimization_barrier((params, stats))
    key = jax.random.fold_in(jax.random.key(seed), batch_index)
    return translator._generate(*weights, images, key, mode=mode)  # pylint: disable=protected-access

  shape = input_shape(translator)
  args = (jax.ShapeDtypeStruct(jax.export.symbolic_shape(shape), jnp.float32),
          jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.int32))
  try:
    exported = jax.export.export(jax.jit(generator), platforms=tuple(platforms))(*args)
  except jax.errors.InconclusiveDimensionOperation as e:
    raise errors.UsageError(f"the generator does not trace for every input of shape ({shape}): "
                            f"{str(e).splitlines()[0]} (a layer decides on a concrete size; "
                            "model.conv_impl=xla avoids the CPU forms)") from e
  with atomic.atomic_path(path) as temporary:
    temporary.write_bytes(exported.serialize())
  m = translator.size_multiple
  metadata = {
      "format": FORMAT,
      "signature": f"(images f32[b, {m}*h, {m}*w, {translator.input_nc}] in [-1, 1], "
                   "seed i32[], batch_index i32[]) -> "
                   f"f32[b, {m}*h, {m}*w, {translator.output_nc}] in [-1, 1]",
      "mode": mode,
      "input_nc": translator.input_nc,
      "output_nc": translator.output_nc,
      "size_multiple": m,
      "crop_size": translator.crop_size,
      "direction": translator.direction,
      "step": translator.step,
      "default_seed": translator.seed,
      "platforms": list(exported.platforms),
      "in_shapes": [str(a) for a in exported.in_avals],
      "jax_version": jax.__version__,
  }
  with atomic.atomic_path(_metadata_path(path)) as temporary:
    temporary.write_text(json.dumps(metadata, indent=1))
  return path


class ExportedGenerator:
  """A deserialised generator: `gen(images, seed=0)`; uint8 in → uint8 out, floats → float32.

  Images are (N, H, W, C) or (H, W, C) and run as one batch, batch_index 0: in paper mode
  `gen(images, seed)` is `Translator(batch_size=len(images))(images, seed=seed)`. Artifacts from
  `export_generator` take any N and any H, W that are multiples of `size_multiple`; `batch` and
  `image_size` are None for them (an artifact lowered for one fixed shape sets them, and then
  accepts that shape only).
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

  def check(self, shape) -> None:
    """Raises ValueError, naming the shape and the rule, for images the artifact cannot take."""
    if len(shape) != 4 or shape[-1] != self.input_nc:
      raise errors.InputError(f"expected images shaped (N, H, W, {self.input_nc}), got {shape}")
    n, h, w, _ = shape
    if n < 1:
      raise errors.InputError(f"no images to translate: shape {shape}")
    m = self.size_multiple
    if h < 1 or w < 1 or h % m or w % m:
      raise errors.InputError(
          f"image size {w}×{h} (width × height): this generator takes widths and heights that "
          f"are multiples of {m} ({m}, {2 * m}, {3 * m}, ...); resize or crop the images")
    if self.image_size is not None and (h, w) != self.image_size:
      raise errors.InputError(f"image size {w}×{h}: this artifact was exported for "
                              f"{self.image_size[1]}×{self.image_size[0]} images only")
    if self.batch is not None and n != self.batch:
      raise errors.InputError(f"{n} images: this artifact was exported for batches of exactly "
                              f"{self.batch}")

  def __call__(self, images, seed: int = 0) -> np.ndarray:
    images = np.asarray(images)
    single = images.ndim == 3
    if single:
      images = images[None]
    self.check(images.shape)
    as_uint8 = images.dtype == np.uint8
    x = to_unit_range(images) if as_uint8 else images.astype(np.float32)
    out = np.asarray(self._call(jnp.asarray(x), jnp.int32(seed), jnp.int32(0)))
    if as_uint8:
      out = to_uint8(out)
    return out[0] if single else out


def load_exported(path: str | os.PathLike) -> ExportedGenerator:
  """Loads an artifact written by `export_generator`; needs jax and numpy only."""
  path = storage.resolve(path, "--artifact")
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


def export(config, workdir: str, output: str, step: int | None = None) -> epath.Path:
  """`launch.py --mode=export --format=jax`: the run's generator as OUTPUT (+ OUTPUT.json)."""
  from pix2pix_jax import inference
  translator = inference.translator(config, workdir, step)
  path = export_generator(translator, output)
  print(f"exported the generator of checkpoint {translator.step} ({translator.mode} mode) to "
        f"{path} (+ {path.name}.json); load it with pix2pix_jax.export.load_exported",
        flush=True)
  return path
