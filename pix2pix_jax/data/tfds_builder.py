"""TFDS builders for the pix2pix datasets (array_record, no TensorFlow) and a source over them.

`Pix2pix` has one config per dataset of the authors (`pix2pix/facades`, ...); `Pix2pixFolder`
builds a user's folder of pairs under a name given at run time (`pix2pix_folder/NAME`). Each
pair is stored as two lossless PNGs and its file stem, so records decode to exactly the pixels
the authors' loader reads. `TfdsSource` reads them back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
import tarfile
import urllib.request
import zlib

import grain
import numpy as np
import tensorflow_datasets as tfds
import tqdm
from absl import logging
from etils import epath

from pix2pix_jax import atomic, errors, storage
from pix2pix_jax.data import datasets, folder, images

URL_PATTERN = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
HOMEPAGE = "https://phillipi.github.io/pix2pix/"
CITATION = """\
@inproceedings{isola2017image,
  title={Image-to-Image Translation with Conditional Adversarial Networks},
  author={Isola, Phillip and Zhu, Jun-Yan and Zhou, Tinghui and Efros, Alexei A},
  booktitle={Computer Vision and Pattern Recognition (CVPR)},
  year={2017}
}"""
# Threads decoding and encoding images while a split is written: Pillow
# releases the GIL, so this uses every core for the bulk of the work.
_PREPARE_THREADS = os.cpu_count() or 1
_DOWNLOAD_TIMEOUT_S = 60  # Per blocking network operation, not the whole download.
_DOWNLOAD_CHUNK_BYTES = 1 << 20
_CITYSCAPES_INSTRUCTIONS = """\
Cityscapes cannot be downloaded automatically (its licence requires registration).
1. Register at https://www.cityscapes-dataset.com and download gtFine_trainvaltest.zip
   (label maps) and leftImg8bit_trainvaltest.zip (photos); unzip both.
2. Combine them as the authors' datasets/prepare_cityscapes_dataset.py does: for each of
   the train and val splits, take every gtFine/<split>/<city>/*_gtFine_color.png and the
   leftImg8bit/<split>/<city>/*_leftImg8bit.png of the same frame (both lists sorted by
   path), convert both to RGB and resize them to 256x256 with Pillow's default filter,
   paste the photo on the left and the colour label map on the right of one 512x256
   image, and save it as JPEG (quality 100, no chroma subsampling) named 0.jpg, 1.jpg, ...
   in that order. Running their script does all of this; it writes the val split to a
   folder called test/, which is accepted here as val.
3. Put the result at <manual_dir>/cityscapes/train/ and <manual_dir>/cityscapes/val/
   (or pack it as <manual_dir>/cityscapes.tar.gz holding cityscapes/train, cityscapes/val).
"""


@dataclasses.dataclass(eq=False)
class Pix2pixConfig(tfds.core.BuilderConfig):
  """One of the authors' datasets.

  Attributes:
    splits: the split folders the authors ship, e.g. ("train", "val", "test").
    downloadable: whether the authors' tarball may be downloaded (not cityscapes).
    split_folders: other folder names accepted for a split, {split: (folder, ...)}.
  """

  splits: tuple[str, ...] = ("train", "val")
  downloadable: bool = True
  split_folders: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)


def _missing_data_error(name: str, manual_dir: epath.Path, splits, downloadable: bool, reason: str):
  """The error raised when no source data is found: says what to put where."""
  options = [
      f"  - the authors' archive at {manual_dir / (name + '.tar.gz')}"
      + (f" (from {URL_PATTERN.format(name=name)})" if downloadable else ""),
      f"  - or its extracted folder at {manual_dir / name}/, holding "
      + ", ".join(f"{s}/" for s in splits) + " with the aligned A|B images",
  ]
  text = (
      f"no source data for pix2pix/{name}: {reason}. Put\n" + "\n".join(options) + "\n"
      f"and run again with that folder as the manual dir: --config.data.manual_dir="
      f"{manual_dir} for launch.py, --manual_dir {manual_dir} for pix2pix_jax.data.prepare, "
      "DownloadConfig(manual_dir=...) for TFDS."
  )
  if name == "cityscapes":
    text += "\n\n" + _CITYSCAPES_INSTRUCTIONS
  return errors.DataNotFoundError(text)


def _has_images(path: epath.Path) -> bool:
  if not path.is_dir():
    return False
  return bool(folder.list_images(path)) or folder.detect_layout(path.parent, path.name) == "paired"


class _PairsBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared features, writing and manual-dir bookkeeping of both builders."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Pairs as lossless PNG halves, array_record files."}
  # TFDS finds a builder's code (to look for a checksums file beside it) through
  # `importlib_resources`, which it does not install on Python >= 3.9
  # (tensorflow/datasets#11212); naming the file directly avoids that lookup.
  code_path = epath.Path(__file__)

  def __init__(self, *, skip_bad: bool = False, file_format: str | None = "array_record", **kwargs):
    """As TFDS's builders; `skip_bad=True` leaves out corrupt source images (see folder.py)."""
    super().__init__(file_format=file_format, **kwargs)
    self._skip_bad = skip_bad
    self._manual_dir_in_use: epath.Path | None = None

  def download_and_prepare(self, *, download_dir=None, download_config=None, **kwargs):
    """As TFDS's, a no-op when already prepared; the manual dir defaults as in TFDS."""
    download_config = download_config or tfds.download.DownloadConfig()
    # These datasets are never on TFDS's GCS mirror: do not ask it over the network.
    download_config = dataclasses.replace(download_config, try_download_gcs=False)
    default_downloads = epath.Path(download_dir or (self.data_dir_root / "downloads"))
    self._manual_dir_in_use = storage.resolve(
        download_config.manual_dir or default_downloads / "manual", "data.manual_dir")
    super().download_and_prepare(
        download_dir=download_dir, download_config=download_config, **kwargs
    )

  def _features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "image_a": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
        "image_b": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
        "name": tfds.features.Text(),
    })

  def _generate_examples(self, root: epath.Path, folder_name: str):
    """Yields (stem, example) for every pair in `root/folder_name`, in parallel."""
    source = folder.folder_source(root, folder_name, skip_bad=self._skip_bad)
    logging.info("Writing %d pairs from %s", len(source), root / folder_name)
    pairs = (
        grain.MapDataset.source(source)
        .map(_encode_example)
        .to_iter_dataset(grain.ReadOptions(num_threads=_PREPARE_THREADS, prefetch_buffer_size=64))
    )
    written = set()
    for name, example in pairs:
      # With skip_bad, a bad file's index returns the next good pair: write it once.
      if name not in written:
        written.add(name)
        yield name, example
    if source.num_skipped:
      logging.warning("Left out %d bad images of %s: %s", source.num_skipped,
                      root / folder_name, ", ".join(source.skipped))


def _encode_example(example: dict) -> tuple[str, dict]:
  return example["name"], {
      "image_a": images.encode_png(example["a"]),
      "image_b": images.encode_png(example["b"]),
      "name": example["name"],
  }


class Pix2pix(_PairsBuilder):
  """The pix2pix datasets as the authors ship them (aligned A|B JPEGs)."""

  BUILDER_CONFIGS = [
      Pix2pixConfig(name=d.name, splits=d.splits, downloadable=d.downloadable,
                    split_folders=dict(d.split_folders), description=d.description)
      for d in datasets.AUTHORS.values()]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Offline, or for cityscapes: put the authors' archive <name>.tar.gz, or the folder "
      "<name>/ extracted from it (holding train/, val/ and, for facades and night2day, "
      "test/), into the manual dir. Archives are at " + URL_PATTERN + ".\n\n"
      + _CITYSCAPES_INSTRUCTIONS
  )

  def __init__(self, *, allow_download: bool = True, **kwargs):
    """As TFDS's builders; `allow_download=False` never goes to the network."""
    self._allow_download = allow_download
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Paired images for image-to-image translation, as released with pix2pix.",
        features=self._features(),
        homepage=HOMEPAGE,
        citation=CITATION,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = self._find_source(dl_manager)
    config = self.builder_config
    generators = {}
    for split in config.splits:
      candidates = (split, *config.split_folders.get(split, ()))
      found = next((c for c in candidates if _has_images(root / c)), None)
      if found is None:
        logging.warning(
            "pix2pix/%s: no %s/ folder with images in %s; that split is left out.",
            config.name, split, root)
        continue
      generators[split] = self._generate_examples(root, found)
    if not generators:
      raise _missing_data_error(
          config.name, self._manual_dir(), config.splits, config.downloadable,
          f"{root} holds none of the split folders {', '.join(config.splits)}")
    return generators

  def _manual_dir(self) -> epath.Path:
    return self._manual_dir_in_use or self.data_dir_root / "downloads" / "manual"

  def _find_source(self, dl_manager) -> epath.Path:
    """The folder holding the split folders: manual dir first, then the download."""
    config = self.builder_config
    name = config.name
    manual_dir = self._manual_dir()
    folders = [f for s in config.splits for f in (s, *config.split_folders.get(s, ()))]
    for candidate in (manual_dir / name, manual_dir):
      if any(_has_images(candidate / f) for f in folders):
        logging.info("pix2pix/%s: reading the extracted folder %s", name, candidate)
        return candidate
    tarball = manual_dir / f"{name}.tar.gz"
    extract_root = epath.Path(dl_manager.download_dir) / "extracted"
    if tarball.is_file():
      return extract_tarball(tarball, extract_root) / name
    if not config.downloadable:
      raise _missing_data_error(name, manual_dir, config.splits, False,
                                "it cannot be downloaded and the manual dir has none")
    if not self._allow_download:
      raise _missing_data_error(name, manual_dir, config.splits, True,
                                "downloading is off and the manual dir has none")
    url = URL_PATTERN.format(name=name)
    try:
      tarball = download(url, epath.Path(dl_manager.download_dir) / f"{name}.tar.gz")
    except OSError as e:  # No network, HTTP error, timeout: say how to go offline.
      raise _missing_data_error(name, manual_dir, config.splits, True,
                                f"downloading {url} failed ({e})") from e
    return extract_tarball(tarball, extract_root) / name


def download(url: str, destination: epath.Path) -> epath.Path:
  """Downloads `url` to `destination` with a progress bar; a no-op if it is there.

  TFDS's own downloader retries an unreachable host for minutes; this fails at
  once, so offline users get the manual-dir instructions straight away.
  """
  if destination.is_file():
    logging.info("Reusing the download %s", destination)
    return destination
  logging.info("Downloading %s to %s", url, destination)
  # Only a complete file gets the final name.
  with atomic.atomic_path(destination) as partial, \
      urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
    total = int(response.headers.get("Content-Length") or 0) or None
    with open(partial, "wb") as out, tqdm.tqdm(
        total=total, unit="B", unit_scale=True, desc=f"Downloading {destination.name}") as bar:
      while chunk := response.read(_DOWNLOAD_CHUNK_BYTES):
        out.write(chunk)
        bar.update(len(chunk))
  return destination


def extract_tarball(tarball: epath.Path, extract_root: epath.Path) -> epath.Path:
  """Extracts `tarball` into `extract_root/<tarball name>/`; a no-op if done before.

  Python's tarfile rather than TFDS's extractor, which needs TensorFlow.
  """
  destination = extract_root / tarball.name
  if atomic.is_complete(destination):
    logging.info("Reusing the extracted %s", destination)
    return destination
  logging.info("Extracting %s to %s", tarball, destination)
  try:
    with atomic.atomic_path(destination) as partial, tarball.open("rb") as file, \
        tarfile.open(fileobj=file) as archive:
      partial.mkdir()
      for member in tqdm.tqdm(archive, unit=" files", desc=f"Extracting {tarball.name}"):
        # The "data" filter refuses absolute paths, links out of the folder and devices.
        archive.extract(member, partial, filter="data")
  except (tarfile.TarError, EOFError, zlib.error) as e:
    raise errors.InputError(
        f"{tarball} is not a complete .tar.gz archive ({e}). Download it again, or put the "
        "extracted folder in the manual dir instead.") from e
  return destination


@dataclasses.dataclass(eq=False)
class Pix2pixFolderConfig(tfds.core.BuilderConfig):
  """A user dataset; its name is the config name, its folder the manual dir."""


class Pix2pixFolder(_PairsBuilder):
  """Any folder of pairs: `<manual_dir>/<split>/` holding aligned A|B images or A/ and B/.

  Every subfolder of the manual dir with images becomes a split of that name.
  """

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Pass the dataset folder as the manual dir. Each split is a subfolder (train/, val/, "
      "...) holding either aligned A|B images (A left, B right) or subfolders A/ and B/ "
      "with matching file names."
  )

  def __init__(self, *, config: str | Pix2pixFolderConfig | None = None, **kwargs):
    """Args: config: the dataset's name (lower-case letters, digits, '_'), or its config."""
    if config is None:
      raise errors.UsageError("Pix2pixFolder needs a dataset name: "
                              "Pix2pixFolder(config='my_data').")
    if isinstance(config, str):
      name, _, version = config.partition(":")
      if not re.fullmatch(r"[a-z0-9_]+", name):
        raise errors.UsageError(
            f"dataset name {name!r} may hold only lower-case letters, digits and '_'.")
      config = Pix2pixFolderConfig(name=name, version=version or None)
    super().__init__(config=config, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"User pix2pix dataset {self.builder_config.name!r}.",
        features=self._features(),
        homepage=HOMEPAGE,
        citation=CITATION,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = self._manual_dir_in_use
    if root is None or not root.is_dir():
      raise errors.DataNotFoundError(
          f"dataset folder {root} does not exist. Pass the folder holding the split "
          "folders as the manual dir (--source_dir, or DownloadConfig(manual_dir=...)).")
    splits = [s for s in folder.list_splits(root) if _has_images(root / s)]
    bad_names = [s for s in splits if not re.fullmatch(r"\w+", s)]
    if bad_names:
      raise errors.InputError(
          f"split folders {', '.join(bad_names)} in {root} need names of letters, digits "
          "and '_' only: rename them.")
    if not splits:
      raise errors.DataNotFoundError(
          f"no split folder with images in {root} (found subfolders: "
          f"{', '.join(folder.list_splits(root)) or 'none'}). "
          + self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    return {split: self._generate_examples(root, split) for split in splits}


def _prepared_dir(name: str, data_dir: epath.Path) -> epath.Path:
  """`data_dir/<builder>/<config>/<version>` of a prepared dataset, newest version."""
  name, _, version = name.partition(":")
  dataset_dir = data_dir / name
  storage.invalidate_cache(dataset_dir)
  versions = [] if not dataset_dir.is_dir() else [
      p for p in dataset_dir.iterdir()
      if re.fullmatch(r"\d+\.\d+\.\d+", p.name) and (p / "dataset_info.json").is_file()
      and atomic.is_complete(p)
  ]
  if version:
    versions = [p for p in versions if p.name == version]
  if not versions:
    builder_name, _, config = name.partition("/")
    command = (
        f"python -m pix2pix_jax.data.prepare --dataset {config} --data_dir {data_dir}"
        if builder_name == "pix2pix" else
        f"python -m pix2pix_jax.data.prepare --dataset folder --name {config} "
        f"--source_dir DIR --data_dir {data_dir}"
    )
    raise errors.DataNotFoundError(
        f"no prepared dataset {name}{':' + version if version else ''} in {data_dir}. "
        f"Prepare it first: {command}")
  return max(versions, key=lambda p: tuple(int(n) for n in p.name.split(".")))


def local_copy(prepared: epath.Path) -> epath.Path:
  """A prepared dataset in a bucket, copied once to this host's cache: array_record reads
  local files only. The copy is keyed by the dataset's info, so a re-prepared one is copied
  again."""
  info = (prepared / "dataset_info.json").read_bytes()
  key = hashlib.sha256(os.fspath(prepared).encode() + info).hexdigest()[:16]
  cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
  local = (cache / "pix2pix_jax" / "datasets" /
           f"{prepared.parent.parent.name}_{prepared.parent.name}_{prepared.name}_{key}")
  if not local.is_dir():
    logging.info("Copying %s to %s (array_record reads local files)", prepared, local)
    with atomic.atomic_path(local) as temporary:
      for path in storage.files(prepared):
        target = temporary / path.relative_to(prepared).as_posix()
        if target.name != atomic.COMPLETE_MARKER:
          target.parent.mkdir(parents=True, exist_ok=True)
          target.write_bytes(path.read_bytes())
  return epath.Path(local)


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TfdsSource:
  """The source protocol over a prepared `pix2pix/<config>` or `pix2pix_folder/<name>`.

  Random access through TFDS's array_record data source. Index order is the
  order on disk, which TFDS fixes by hashing each file name: deterministic,
  but not the folder's order.
  """

  def __init__(self, name: str, split: str, data_dir: str | os.PathLike | None = None):
    """Args:
      name: "pix2pix/facades", "pix2pix_folder/my_data", optionally ":1.0.0".
      split: a split name, or a TFDS slice of one such as "train[:10]".
      data_dir: where datasets were prepared; TFDS's default when None.
    """
    self.name = name
    self.split = split
    self.data_dir = storage.resolve(data_dir or tfds.core.constants.DATA_DIR,
                                    "data.tfds_data_dir")
    self._open()

  def _open(self):
    prepared = _prepared_dir(self.name, self.data_dir)
    if storage.is_remote(prepared):
      prepared = local_copy(prepared)
    builder = tfds.builder_from_directory(prepared)
    available = {s: info.num_examples for s, info in builder.info.splits.items()}
    base = re.match(r"\w*", self.split).group(0)
    if available.get(base, 0) == 0:
      listing = ", ".join(f"{s} ({n} examples)" for s, n in sorted(available.items()))
      raise errors.UsageError(
          f"split {self.split!r} of {self.name} in {self.data_dir} is "
          f"{'empty' if base in available else 'missing'}; available splits: {listing or 'none'}.")
    self._records = builder.as_data_source(split=self.split)
    self._builder = builder
    self._names: list[str] | None = None

  def __len__(self) -> int:
    return len(self._records)

  @property
  def names(self) -> list[str]:
    """Every record's "name" (file stem), in index order; read once, images left undecoded."""
    if self._names is None:
      skip = tfds.decode.SkipDecoding()
      records = self._builder.as_data_source(
          split=self.split, decoders={"image_a": skip, "image_b": skip})
      self._names = [_text(records[i]["name"]) for i in range(len(records))]
    return self._names

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    size = len(self._records)
    if not -size <= index < size:
      raise IndexError(f"index {index} out of range for {size} examples in {self.name}/{self.split}")
    record = self._records[index % size]
    return {
        "a": np.asarray(record["image_a"], np.uint8),
        "b": np.asarray(record["image_b"], np.uint8),
        "name": _text(record["name"]),
    }

  def __getstate__(self):
    # Reopened on unpickling (grain worker processes) instead of pickling file handles.
    return {"name": self.name, "split": self.split, "data_dir": self.data_dir}

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._open()

  def __repr__(self) -> str:
    return f"TfdsSource({self.name!r}, {self.split!r}, {os.fspath(self.data_dir)!r}, {len(self)} examples)"
