"""The input pipeline: source → grain (shuffle, augment, batch) → per-process batches.

Every example's randomness is a function of (config.seed, its global position in the stream),
so runs with the same seed see the same batches whatever the number of processes or devices,
and a resumed run continues at exactly the next batch (`TrainStream`). Augmentation is the
authors' `get_transform` (`Transform`).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from typing import Any, Iterator

import grain
import numpy as np
from PIL import Image

from pix2pix_jax import errors, pixels, storage
from pix2pix_jax.data import datasets
from pix2pix_jax.data.iterator import TrainIterator, resolve_num_workers

PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
DIRECTIONS = ("AtoB", "BtoA")


@dataclasses.dataclass(frozen=True)
class Transform:
  """The authors' `get_transform` (data/base_dataset.py) with its static settings.

  Optional grayscale, bicubic resize to `load_size`, random crop `crop_size`, random horizontal
  flip (the same crop and flip for A and B), then scaling to [-1, 1]. A plain picklable value,
  not the config; its fields are checked by `config_check`.
  """
  direction: str = "AtoB"
  preprocess: str = "resize_and_crop"
  load_size: int = 286
  crop_size: int = 256
  flip: bool = True
  input_nc: int = 3
  output_nc: int = 3
  size_multiple: int = 4  # 'none' preprocessing rounds sizes to a multiple of this
  aspect_ratio: float = 1.0  # width / height of load and crop sizes (resize / crop modes)
  # True: float32 in [-1, 1]. False: uint8 as read, for training batches, which the train step
  # scales on the devices (4× fewer bytes from the readers to the devices, no host arithmetic).
  scaled: bool = True

  @classmethod
  def from_config(cls, config, train: bool) -> "Transform":
    from pix2pix_jax import models  # not at the top: worker processes need no JAX
    d, m = config.data, config.model
    load_size, flip = d.load_size, not d.no_flip
    if not train:
      # The authors' test options: load_size = crop_size and no flipping.
      load_size, flip = d.crop_size, False
    return cls(direction=d.direction, preprocess=d.preprocess, load_size=load_size,
               crop_size=d.crop_size, flip=flip, input_nc=m.input_nc, output_nc=m.output_nc,
               size_multiple=models.size_multiple(config), aspect_ratio=float(d.aspect_ratio),
               scaled=not train)

  # ---- The authors' transforms on PIL images.
  def _target_size(self, w: int, h: int) -> tuple[int, int]:
    if "resize" in self.preprocess:
      return round(self.load_size * self.aspect_ratio), self.load_size
    if "scale_width" in self.preprocess:
      if w == self.load_size and h >= self.crop_size:
        return w, h
      return self.load_size, int(max(self.load_size * h / w, self.crop_size))
    return w, h

  def __call__(self, example: dict, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
    """{"a", "b", "name"} uint8 → {"A": input, "B": target}, HWC, float32 in [-1, 1] (uint8
    when not `scaled`)."""
    a, b = example["a"], example["b"]
    if self.direction == "BtoA":
      a, b = b, a
    x_in, x_out = _channels(a, self.input_nc), _channels(b, self.output_nc)
    if x_in.shape[:2] != x_out.shape[:2]:
      raise errors.InputError(f"{example.get('name', '?')}: A and B differ in size "
                       f"({x_in.shape[1]}×{x_in.shape[0]} vs {x_out.shape[1]}×{x_out.shape[0]})")
    h, w = x_in.shape[:2]
    new_w, new_h = self._target_size(w, h)
    if (new_w, new_h) != (w, h):
      x_in = np.asarray(Image.fromarray(x_in).resize((new_w, new_h), Image.BICUBIC))
      x_out = np.asarray(Image.fromarray(x_out).resize((new_w, new_h), Image.BICUBIC))
    if "crop" in self.preprocess:
      ch = self.crop_size
      # The authors crop squares; a non-square aspect_ratio crops (crop_size, crop_size·ratio)
      # in the resize modes.
      cw = round(ch * self.aspect_ratio) if "resize" in self.preprocess else ch
      if new_w < cw or new_h < ch:
        raise errors.InputError(
            f"{example.get('name', '?')}: image {new_w}×{new_h} is smaller than the crop "
            f"{cw}×{ch} (data.crop_size, data.aspect_ratio)")
      if rng is None:  # deterministic centre crop when no randomness is wanted
        x0, y0 = (new_w - cw) // 2, (new_h - ch) // 2
      else:
        # The authors' get_params draws x then y.
        x0 = int(rng.integers(0, new_w - cw + 1))
        y0 = int(rng.integers(0, new_h - ch + 1))
      x_in, x_out = x_in[y0:y0 + ch, x0:x0 + cw], x_out[y0:y0 + ch, x0:x0 + cw]
    if self.preprocess == "none":
      m = self.size_multiple
      ph, pw = max(m, round(new_h / m) * m), max(m, round(new_w / m) * m)
      if (pw, ph) != (new_w, new_h):
        x_in = np.asarray(Image.fromarray(x_in).resize((pw, ph), Image.BICUBIC))
        x_out = np.asarray(Image.fromarray(x_out).resize((pw, ph), Image.BICUBIC))
    # The authors draw the flip unconditionally (random.random() > 0.5), then apply it if enabled.
    if self.flip and rng is not None and rng.random() > 0.5:
      x_in, x_out = _flipped(x_in), _flipped(x_out)
    convert = to_unit_range if self.scaled else _with_channel_axis
    return {"A": convert(x_in), "B": convert(x_out)}


def _channels(x: np.ndarray, channels: int) -> np.ndarray:
  """uint8 HWC RGB (channels 3) or HW grey (channels 1), as PIL's convert("RGB" / "L") gives.

  Arrays already in that form are used as they are (PIL's conversion would copy them unchanged).
  """
  if x.dtype == np.uint8 and (x.ndim == 3 and x.shape[-1] == 3 if channels == 3 else x.ndim == 2):
    return x
  return np.asarray(Image.fromarray(x).convert("L" if channels == 1 else "RGB"))


def _flipped(x: np.ndarray) -> np.ndarray:
  """`x[:, ::-1]`, copied: numpy copies a reversed view of 3-byte pixels byte by byte, `take`
  gathers whole pixels, which is faster (and the batch needs a copy either way)."""
  return np.take(x, np.arange(x.shape[1] - 1, -1, -1), axis=1)


def _with_channel_axis(x: np.ndarray) -> np.ndarray:
  return x[..., None] if x.ndim == 2 else x


def to_unit_range(x: np.ndarray) -> np.ndarray:
  """uint8 HWC (or HW) pixels → float32 HWC in [-1, 1]."""
  return _with_channel_axis(pixels.to_unit_range(x))


def image_shape(config, source=None) -> tuple[int, int]:
  """(H, W) of training batches.

  The resize/crop modes fix it from the config; 'scale_width' and 'none' depend on the images,
  so the first training example is transformed to find out (all examples must agree).
  """
  d = config.data
  if "crop" in d.preprocess:
    cw = round(d.crop_size * d.aspect_ratio) if "resize" in d.preprocess else d.crop_size
    return d.crop_size, cw
  source = source if source is not None else get_source(config, d.train_split)
  shape = Transform.from_config(config, train=True)(source[0], None)["A"].shape
  return int(shape[0]), int(shape[1])


# ---------------------------------------------------------------------------- sources

def get_source(config, split: str):
  """The random-access source for `config.data.dataset` and `split`, limited to the first
  `data.max_dataset_size` files in the authors' order when that is set."""
  source = _dataset_source(config, split)
  limit = config.data.get("max_dataset_size", 0)
  if limit and limit < len(source):
    source = Subset(source, authors_order(source)[:limit])
  return source


def _dataset_source(config, split: str):
  d = config.data
  name = d.dataset
  if name == datasets.SYNTHETIC:
    from pix2pix_jax.data.synthetic import SyntheticFacades
    # Different splits are different buildings: offset the seed per split.
    offset = {"train": 0, "val": 1, "test": 2}.get(split, 3)
    count = d.num_synthetic if split == "train" else max(8, d.num_synthetic // 8)
    return SyntheticFacades(count, image_size=d.load_size if "resize" in d.preprocess
                            else d.crop_size, seed=config.seed * 10 + offset).rendered()
  if name == datasets.FOLDER:
    from pix2pix_jax.data.folder import folder_source
    return folder_source(storage.resolve(d.data_dir, "--config.data.data_dir"), split,
                         skip_bad=d.skip_bad_images)
  if datasets.is_known(name):
    from pix2pix_jax.data import tfds_builder
    if name in datasets.AUTHORS:
      # Idempotent: a no-op once prepared; otherwise builds from data.manual_dir or downloads.
      from pix2pix_jax.data import prepare
      prepare.prepare(name, d.tfds_data_dir or None, manual_dir=d.manual_dir or None,
                      skip_bad=d.skip_bad_images)
      name = f"pix2pix/{name}"
    return tfds_builder.TfdsSource(name, split, data_dir=d.tfds_data_dir or None)
  raise errors.UsageError(f"unknown data.dataset {name!r}; choose {datasets.choices()}")


def authors_order(source) -> list[int]:
  """Indices of `source` in the authors' file order.

  Their `AlignedDataset` lists `sorted(make_dataset(dir))`: paths compared as strings, so
  '10.jpg' comes before '2.jpg' and 'B.jpg' before 'a.jpg'. Folder sources give their files'
  names (`file_names`); prepared TFDS records keep only the stem, sorted as stem + '.', which
  is the same order unless one stem is another followed by '.' and more ('a' and 'a.b').
  """
  keys = getattr(source, "file_names", None)
  if keys is None:
    names = getattr(source, "names", None)
    if names is None:
      names = [str(source[i]["name"]) for i in range(len(source))]
    keys = [f"{name}." for name in names]
  return sorted(range(len(keys)), key=keys.__getitem__)


class Subset:
  """The examples `indices` of `source`, in that order (a source itself, picklable)."""

  def __init__(self, source, indices):
    self.source, self.indices = source, list(indices)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"index {index} out of range for {len(self)} examples of {self.source}")
    return self.source[self.indices[index]]

  @property
  def names(self) -> list[str]:
    names = self.source.names
    return [names[i] for i in self.indices]

  @property
  def file_names(self) -> list[str]:
    file_names = self.source.file_names
    return [file_names[i] for i in self.indices]

  def __repr__(self) -> str:
    return f"{len(self)} of {self.source!r}"


# ---------------------------------------------------------------------------- grain

def check_split_fits_batch(source, global_batch: int) -> None:
  """Training needs at least one global batch of examples."""
  if len(source) < global_batch:
    raise errors.UsageError(
        f"the training split has {len(source)} examples, fewer than one global batch of "
        f"{global_batch}: use --config.batch_size={len(source)} or less, or more data")


def train_dataset(source, transform: Transform, *, seed: int, global_batch: int,
                  process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """An infinite MapDataset of this process's rows of each global batch (`TrainStream`)."""
  check_split_fits_batch(source, global_batch)
  if global_batch % process_count:
    raise errors.UsageError(f"global batch {global_batch} is not divisible by {process_count} "
                            "processes")
  return TrainStream(source, transform, seed=seed, global_batch=global_batch,
                     process_index=process_index, process_count=process_count)


# Position k is augmented with the generator of SeedSequence([seed, k]); an epoch's order comes
# from SeedSequence([seed, epoch, _ORDER]), a different sequence for every epoch and position.
_ORDER = 1


@functools.lru_cache(maxsize=4)
def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The order of the examples in `epoch`: a fresh permutation per epoch (read-only)."""
  order = np.random.default_rng([seed, epoch, _ORDER]).permutation(num_examples)
  order.setflags(write=False)
  return order


class TrainStream(grain.MapDataset):
  """Local batch b of process p of P: the rows [p·L, (p+1)·L) of global batch b (L = G / P).

  Row r of global batch b is position k = b·G + r of the global stream, and position k is
  example `epoch_permutation(N, seed, k // N)[k % N]`, augmented by `transform` with a generator
  seeded by (seed, k). So every process reads its own rows of the same global batches, and a
  batch depends on its index alone: threads and worker processes may read batches in any order.

  One dataset instead of grain's source → shuffle → repeat → random_map → batch chain: the same
  stream with less per-example bookkeeping (docs/benchmarks.md, section "Input pipeline").
  """

  def __init__(self, source, transform: Transform, *, seed: int, global_batch: int,
               process_index: int = 0, process_count: int = 1):
    super().__init__()
    self._source, self._transform, self._seed = source, transform, seed
    self._global, self._local = global_batch, global_batch // process_count
    self._first_row = process_index * self._local

  def __len__(self) -> int:
    return sys.maxsize  # infinite: epochs follow one another

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    n = len(self._source)
    start = index * self._global + self._first_row
    rows = []
    for k in range(start, start + self._local):
      example = self._source[int(epoch_permutation(n, self._seed, k // n)[k % n])]
      rows.append(self._transform(example, np.random.default_rng([self._seed, k])))
    return {key: np.stack([row[key] for row in rows]) for key in rows[0]}

  def __str__(self) -> str:
    return (f"TrainStream({self._source!r}, seed={self._seed}, rows {self._first_row}–"
            f"{self._first_row + self._local - 1} of global batches of {self._global})")


def make_train_iterator(config, source, *, process_index: int = 0, process_count: int = 1,
                        backend: str = "cpu", place=None, ahead: int = 1) -> TrainIterator:
  """This process's training batches (see `TrainIterator`), read as `config.data` says.

  `backend` (jax.default_backend()) resolves `data.num_workers="auto"`; `place`, when given,
  runs `ahead` batches before each batch is returned (e.g. placing it on the devices).
  """
  ds = train_dataset(source, Transform.from_config(config, train=True), seed=config.seed,
                     global_batch=config.batch_size, process_index=process_index,
                     process_count=process_count)
  d = config.data
  return TrainIterator(ds, num_workers=resolve_num_workers(d.get("num_workers", 0), backend),
                       num_threads=d.num_threads, prefetch=d.prefetch, place=place, ahead=ahead)


def eval_batches(config, source, batch_size: int, limit: int = 0) -> Iterator[dict[str, Any]]:
  """The split in the authors' file order (their test.py: no shuffling), without augmentation
  (their test transform), with names; only the first `limit` examples when it is set (their
  --num_test).

  The last batch may be smaller than `batch_size`.
  """
  transform = Transform.from_config(config, train=False)
  order = authors_order(source)
  if limit:
    order = order[:limit]

  def load(i):
    example = source[i]
    out = transform(example, None)
    out["name"] = example["name"]
    return out

  ds = grain.MapDataset.source(order).map(load).batch(batch_size, drop_remainder=False)
  options = grain.ReadOptions(num_threads=max(1, config.data.num_threads),
                              prefetch_buffer_size=max(1, config.data.prefetch))
  yield from ds.to_iter_dataset(options)


def steps_per_epoch(config, num_examples: int) -> int:
  return max(1, num_examples // config.batch_size)
