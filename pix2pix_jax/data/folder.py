"""Random-access sources over pix2pix image folders (on a disk or in a bucket).

`AlignedFolderSource` reads the authors' format (`root/split/NAME.jpg`, A on the left half, B on
the right); `PairedFolderSource` reads `root/split/A/NAME.*` with `root/split/B/NAME.*`. Files
are in natural order; `skip_bad=True` leaves out corrupt files (see `folder_source`) instead of
failing on the first with `BadImageError` naming it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence

import numpy as np
from absl import logging
from etils import epath

from pix2pix_jax import errors
from pix2pix_jax.data import images

# How many unmatched or duplicate names an error message lists before "...".
_MAX_NAMES_IN_ERROR = 20

# What a user types to skip bad files: the folder is read by the prepare command or in a run.
SKIP_BAD_HINT = ("To leave out such files instead, prepare with --skip_bad "
                 "(python -m pix2pix_jax.data.prepare) or run with "
                 "--config.data.skip_bad_images=True.")


def natural_key(name: str) -> tuple:
  """Sort key putting 'img2.jpg' before 'img10.jpg' (digit runs compare as numbers)."""
  parts = re.split(r"(\d+)", name)
  # re.split keeps text at even and digits at odd positions, so keys compare
  # str with str and int with int; the raw name breaks ties ('01' vs '1').
  return tuple(int(p) if i % 2 else p.lower() for i, p in enumerate(parts)), name


def list_images(folder: str | os.PathLike) -> list[epath.Path]:
  """Image files directly inside `folder`, in natural order, hidden files left out."""
  folder = epath.Path(folder)
  found = [
      p for p in folder.iterdir()
      if p.suffix.lower() in images.IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
  ]
  return sorted(found, key=lambda p: natural_key(p.name))


def list_splits(root: str | os.PathLike) -> list[str]:
  """Names of the non-hidden subfolders of `root`, sorted."""
  root = epath.Path(root)
  if not root.is_dir():
    return []
  return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def detect_layout(root: str | os.PathLike, split: str) -> str:
  """Returns "paired" if `root/split` has A/ and B/ subfolders, else "aligned"."""
  split_dir = epath.Path(root) / split
  if (split_dir / "A").is_dir() and (split_dir / "B").is_dir():
    return "paired"
  return "aligned"


def folder_source(root: str | os.PathLike, split: str, skip_bad: bool = False):
  """An `AlignedFolderSource` or `PairedFolderSource`, whichever layout `root/split` has.

  Sources are deterministic, thread-safe and picklable (for worker processes). With `skip_bad`
  the constructor reads every file's header and leaves out empty, non-image and (aligned)
  odd-width files; a file whose pixel data is truncated shows only when decoded, and then
  `source[i]` returns the next good example, remembers the file as bad and warns once, so a
  result depends only on the files. `num_skipped` counts the files left out so far.
  """
  if detect_layout(root, split) == "paired":
    return PairedFolderSource(root, split, skip_bad=skip_bad)
  return AlignedFolderSource(root, split, skip_bad=skip_bad)


def _split_dir(root: str | os.PathLike, split: str) -> epath.Path:
  """Checks that `root/split` exists, with errors that say what to pass instead."""
  root_path = epath.Path(root)
  if not root_path.is_dir():
    raise errors.DataNotFoundError(
        f"dataset folder {root} does not exist. Pass the folder that holds the split "
        "folders (train/, val/, ...), e.g. the extracted facades/ folder of the pix2pix "
        "download."
    )
  split_dir = root_path / split
  if not split_dir.is_dir():
    splits = list_splits(root_path)
    raise errors.DataNotFoundError(
        f"split folder {split_dir} does not exist; {root} has "
        + (f"the splits {', '.join(splits)}." if splits else "no split folders at all.")
        + " Pick one of those, or create the folder."
    )
  return split_dir


def _stems(paths: Sequence[epath.Path], folder: epath.Path) -> list[str]:
  """File stems, with an error if two files share one (e.g. 1.jpg and 1.png)."""
  seen: dict[str, epath.Path] = {}
  duplicates = []
  for path in paths:
    if path.stem in seen:
      duplicates.append(f"{seen[path.stem].name}/{path.name}")
    seen[path.stem] = path
  if duplicates:
    raise errors.InputError(
        f"{folder} has files that differ only in extension, so their names clash: "
        f"{_join_names(duplicates)}. Keep one file per name."
    )
  return [p.stem for p in paths]


def _join_names(names: Sequence[str]) -> str:
  shown = ", ".join(names[:_MAX_NAMES_IN_ERROR])
  if len(names) > _MAX_NAMES_IN_ERROR:
    shown += f", ... ({len(names)} in all)"
  return shown


class _FolderSource:
  """Indexing, bad-file skipping and pickling shared by both layouts.

  Subclasses set `self._where` (the split folder) and implement `_read_file`
  and `_check_file` for file index i, then call `_index_files`.
  """

  _where: epath.Path

  def _read_file(self, index: int) -> dict:
    raise NotImplementedError

  def _check_file(self, index: int) -> None:
    raise NotImplementedError

  def _file_name(self, index: int) -> str:
    """The name of file index's image (with extension), whose order the authors sort by."""
    raise NotImplementedError

  def _index_files(self, names: list[str], skip_bad: bool) -> None:
    self._skip_bad = skip_bad
    self._skipped: list[str] = []
    self._bad: set[int] = set()  # Source indices found bad at read time.
    self._lock = threading.Lock()
    keep = list(range(len(names)))
    if skip_bad:
      keep = []
      for index in range(len(names)):
        try:
          self._check_file(index)
          keep.append(index)
        except images.BadImageError as e:
          self._note_bad(names[index], e)
    self._order = keep  # Source index -> file index.
    self.names = [names[i] for i in keep]
    self.file_names = [self._file_name(i) for i in keep]
    if not self._order:
      raise errors.InputError(
          f"all {len(names)} images in {self._where} are unreadable; see the warnings above."
      )

  def __len__(self) -> int:
    return len(self._order)

  @property
  def num_skipped(self) -> int:
    """How many files were found bad and left out so far."""
    with self._lock:
      return len(self._skipped)

  @property
  def skipped(self) -> list[str]:
    """Names of the files left out so far, in the order they were found."""
    with self._lock:
      return list(self._skipped)

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    size = len(self._order)
    if not -size <= index < size:
      raise IndexError(f"index {index} out of range for {size} examples in {self._where}")
    index %= size
    if not self._skip_bad:
      try:
        return self._read_file(self._order[index])
      except images.BadImageError as e:
        raise images.BadImageError(f"{e} {SKIP_BAD_HINT}") from e
    for offset in range(size):
      position = (index + offset) % size
      if position in self._bad:
        continue
      try:
        return self._read_file(self._order[position])
      except images.BadImageError as e:
        with self._lock:
          if position not in self._bad:
            self._bad.add(position)
            self._note_bad(self.names[position], e)
    raise errors.InputError(
        f"all {size} images in {self._where} are unreadable; see the warnings above."
    )

  def _note_bad(self, name: str, error: Exception) -> None:
    """Records a skipped file; callers after construction hold `self._lock`."""
    self._skipped.append(name)
    logging.warning("Skipping a bad image (skip_bad=True): %s", error)

  def __getstate__(self):
    state = dict(self.__dict__)
    del state["_lock"]  # Locks cannot be pickled; each process gets its own.
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()


class AlignedFolderSource(_FolderSource):
  """Aligned A|B images in `root/split/` (any of `images.IMAGE_EXTENSIONS`): A left, B right."""

  def __init__(self, root: str | os.PathLike, split: str, skip_bad: bool = False):
    self.root = epath.Path(root)
    self.split = split
    split_dir = _split_dir(root, split)
    self.paths = list_images(split_dir)
    if not self.paths:
      hint = ""
      if detect_layout(root, split) == "paired":
        hint = " It has A/ and B/ subfolders: read it with PairedFolderSource instead."
      raise errors.DataNotFoundError(
          f"split folder {split_dir} holds no images "
          f"({', '.join(images.IMAGE_EXTENSIONS)}).{hint}")
    self._where = split_dir
    self._index_files(_stems(self.paths, split_dir), skip_bad)

  def _file_name(self, index: int) -> str:
    return self.paths[index].name

  def _check_file(self, index: int) -> None:
    path = self.paths[index]
    width, _ = images.read_image_size(path)
    images.check_aligned_width(width, os.fspath(path))

  def _read_file(self, index: int) -> dict:
    path = self.paths[index]
    pixels = images.load_image(path)
    a, b = images.split_aligned(pixels, os.fspath(path))
    return {"a": np.ascontiguousarray(a), "b": np.ascontiguousarray(b), "name": path.stem}

  def __repr__(self) -> str:
    return f"AlignedFolderSource({os.fspath(self.root)!r}, {self.split!r}, {len(self)} examples)"


class PairedFolderSource(_FolderSource):
  """Separate images `root/split/A/NAME.*` and `root/split/B/NAME.*`, matched by stem.

  A and B of one pair may differ in size and extension; the input pipeline
  resizes both.
  """

  def __init__(self, root: str | os.PathLike, split: str, skip_bad: bool = False):
    self.root = epath.Path(root)
    self.split = split
    split_dir = _split_dir(root, split)
    folders = {side: split_dir / side for side in ("A", "B")}
    for side, folder in folders.items():
      if not folder.is_dir():
        direct = list_images(split_dir)
        hint = (
            f" It holds {len(direct)} images directly: read it with AlignedFolderSource."
            if direct else ""
        )
        raise errors.DataNotFoundError(
            f"{folder} does not exist; a paired split needs the subfolders A/ and B/ "
            f"with matching file names.{hint}"
        )
    files = {side: list_images(folder) for side, folder in folders.items()}
    for side, folder in folders.items():
      if not files[side]:
        raise errors.DataNotFoundError(
            f"{folder} holds no images ({', '.join(images.IMAGE_EXTENSIONS)}).")
    stems = {side: _stems(files[side], folders[side]) for side in files}
    by_stem_b = dict(zip(stems["B"], files["B"]))
    only_a = [s for s in stems["A"] if s not in by_stem_b]
    only_b = sorted(set(stems["B"]) - set(stems["A"]), key=natural_key)
    if only_a or only_b:
      problems = []
      if only_a:
        problems.append(f"{len(only_a)} in A/ have no B/ image: {_join_names(only_a)}")
      if only_b:
        problems.append(f"{len(only_b)} in B/ have no A/ image: {_join_names(only_b)}")
      raise errors.InputError(
          f"unmatched images in {split_dir}: {'; '.join(problems)}. Every A/NAME.* needs "
          "a B/NAME.* with the same name (extensions may differ): rename, add or remove "
          "files."
      )
    self.pairs = [(path_a, by_stem_b[path_a.stem]) for path_a in files["A"]]
    self._where = split_dir
    self._index_files(stems["A"], skip_bad)

  def _file_name(self, index: int) -> str:
    return self.pairs[index][0].name  # the authors' combine_A_and_B.py names a pair after A

  def _check_file(self, index: int) -> None:
    for path in self.pairs[index]:
      images.read_image_size(path)

  def _read_file(self, index: int) -> dict:
    path_a, path_b = self.pairs[index]
    return {
        "a": images.load_image(path_a),
        "b": images.load_image(path_b),
        "name": path_a.stem,
    }

  def __repr__(self) -> str:
    return f"PairedFolderSource({os.fspath(self.root)!r}, {self.split!r}, {len(self)} examples)"
