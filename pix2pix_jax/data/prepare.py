"""Prepares a pix2pix dataset as TFDS array_record files, once (again only with --overwrite).

  python -m pix2pix_jax.data.prepare --dataset facades [--manual_dir DIR] [--data_dir DIR]
  python -m pix2pix_jax.data.prepare --dataset folder --source_dir DIR --name NAME

`--data_dir` may be a bucket (gs://): the records are built locally and uploaded.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import tempfile

import tensorflow_datasets as tfds
from absl import flags, logging

from pix2pix_jax import atomic, cli, errors, storage
from pix2pix_jax.data import datasets, folder, tfds_builder

DATASETS = list(datasets.AUTHORS)

# Flags of their own (not absl's global FLAGS), so that launch.py's and these can be parsed
# in one process.
FLAGS = cli.new_flag_values()
_DATASET = flags.DEFINE_enum(
    "dataset", None, DATASETS + ["folder"], "Which dataset to prepare; 'folder' for your own.",
    flag_values=FLAGS)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Where prepared datasets go (TFDS's default, ~/tensorflow_datasets, if "
    "unset).", flag_values=FLAGS)
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Folder holding <dataset>.tar.gz or the extracted <dataset>/ folder "
    "(offline use, cityscapes).", flag_values=FLAGS)
_DOWNLOAD = flags.DEFINE_bool(
    "download", True, "Download from the authors' server when the manual dir has nothing.",
    flag_values=FLAGS)
_SOURCE_DIR = flags.DEFINE_string(
    "source_dir", None, "--dataset folder: the folder whose subfolders are the splits.",
    flag_values=FLAGS)
_NAME = flags.DEFINE_string(
    "name", None, "--dataset folder: the name to store it under (lower-case letters, digits, "
    "'_').", flag_values=FLAGS)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete and rebuild a prepared dataset.",
                               flag_values=FLAGS)
_SKIP_BAD = flags.DEFINE_bool(
    "skip_bad", False, "Leave out corrupt source images (with a warning) instead of stopping.",
    flag_values=FLAGS)


def make_builder(
    dataset: str,
    data_dir: str | os.PathLike | None = None,
    *,
    name: str | None = None,
    allow_download: bool = True,
    skip_bad: bool = False,
) -> tfds.core.DatasetBuilder:
  """The builder of `pix2pix/<dataset>`, or of `pix2pix_folder/<name>` for dataset "folder"."""
  data_dir = os.fspath(storage.resolve(data_dir or tfds.core.constants.DATA_DIR, "--data_dir"))
  if dataset == "folder":
    if not name:
      raise errors.UsageError("--dataset folder needs --name, the name to store the dataset "
                              "under.")
    return tfds_builder.Pix2pixFolder(config=name, data_dir=data_dir, skip_bad=skip_bad)
  if dataset in DATASETS:
    return tfds_builder.Pix2pix(
        config=dataset, data_dir=data_dir, allow_download=allow_download, skip_bad=skip_bad)
  raise errors.UsageError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)} "
                          "or folder.")


def prepare(
    dataset: str,
    data_dir: str | os.PathLike | None = None,
    *,
    manual_dir: str | os.PathLike | None = None,
    source_dir: str | os.PathLike | None = None,
    name: str | None = None,
    allow_download: bool = True,
    skip_bad: bool = False,
    overwrite: bool = False,
) -> tfds.core.DatasetBuilder:
  """Builds `pix2pix/<dataset>`, or `pix2pix_folder/<name>` from `source_dir` for "folder".

  A no-op when already prepared, unless `overwrite`.

  A `data_dir` in a bucket (gs://) is prepared in a local folder and uploaded, as array_record
  writes local files only.

  Returns:
    The builder: `builder.info.splits` is what the records hold; `builder.data_dir` where they
    are (for a bucket: the local copy they are read from).
  """
  manual_dir = source_dir if dataset == "folder" else manual_dir
  if data_dir is None or not storage.is_remote(data_dir):
    builder = make_builder(
        dataset, data_dir, name=name, allow_download=allow_download, skip_bad=skip_bad)
    prepare_builder(builder, manual_dir=manual_dir, overwrite=overwrite)
    return builder
  root = storage.resolve(data_dir, "--data_dir")
  with tempfile.TemporaryDirectory(prefix="pix2pix_prepare_") as staging:
    builder = make_builder(
        dataset, staging, name=name, allow_download=allow_download, skip_bad=skip_bad)
    target = root / pathlib.Path(builder.data_dir).relative_to(staging).as_posix()
    if overwrite or not atomic.is_complete(target):
      prepare_builder(builder, manual_dir=manual_dir, overwrite=overwrite)
      logging.info("Uploading the prepared records to %s", target)
      with atomic.atomic_path(target) as temporary:
        shutil.copytree(builder.data_dir, temporary)
  return tfds.builder_from_directory(tfds_builder.local_copy(target))


def prepare_builder(
    builder: tfds.core.DatasetBuilder,
    *,
    manual_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> None:
  """Runs `builder.download_and_prepare` with the manual dir; keeps downloads on overwrite."""
  if isinstance(builder, tfds_builder.Pix2pixFolder):
    if not manual_dir:
      raise errors.UsageError("--dataset folder needs --source_dir, the folder whose subfolders "
                              "are splits.")
    if not storage.resolve(manual_dir, "--source_dir").is_dir():
      raise errors.PathNotFoundError(f"--source_dir {manual_dir}: no such folder; give the "
                                     "folder whose subfolders (train/, val/) hold the pairs.")
  mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir and os.fspath(storage.resolve(manual_dir, "--manual_dir")),
      download_mode=mode,
  ))


def _describe_folder(source_dir: str) -> None:
  """Prints the layout found for each split folder before building."""
  root = storage.resolve(source_dir, "--source_dir")
  for split in folder.list_splits(root):
    layout = folder.detect_layout(root, split)
    images_dir = root / split / "A" if layout == "paired" else root / split
    count = len(folder.list_images(images_dir))
    if count:
      print(f"  {split}: {count} pairs, {'A/ and B/ folders' if layout == 'paired' else 'aligned A|B'}")


def run(argv: list[str]) -> None:
  """Prepares the dataset the parsed flags name; `argv` holds what the flags left."""
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _DATASET.value is None:
    raise errors.UsageError(f"--dataset is required: one of {', '.join(DATASETS)} or folder.")
  if _DATASET.value == "folder":
    if not _SOURCE_DIR.value or not _NAME.value:
      raise errors.UsageError("--dataset folder needs --source_dir and --name.")
    if not storage.resolve(_SOURCE_DIR.value, "--source_dir").is_dir():
      raise errors.PathNotFoundError(f"--source_dir {_SOURCE_DIR.value}: no such folder; give "
                                     "the folder whose subfolders (train/, val/) hold the pairs.")
    print(f"Preparing {_SOURCE_DIR.value} as pix2pix_folder/{_NAME.value}:")
    _describe_folder(_SOURCE_DIR.value)
    full_name = f"pix2pix_folder/{_NAME.value}"
  else:
    print(f"Preparing pix2pix/{_DATASET.value}")
    full_name = f"pix2pix/{_DATASET.value}"
  data_dir = storage.resolve(_DATA_DIR.value or tfds.core.constants.DATA_DIR, "--data_dir")
  storage.check_bucket(data_dir, "--data_dir", write=True)
  builder = prepare(_DATASET.value, data_dir, manual_dir=_MANUAL_DIR.value,
                    source_dir=_SOURCE_DIR.value, name=_NAME.value,
                    allow_download=_DOWNLOAD.value, skip_bad=_SKIP_BAD.value,
                    overwrite=_OVERWRITE.value)
  splits = ", ".join(f"{s} {info.num_examples}" for s, info in builder.info.splits.items())
  print(f"{full_name} is prepared at {data_dir / full_name / str(builder.info.version)} "
        f"({splits} examples).")
  print(f"Read it with TfdsSource({full_name!r}, split, data_dir={os.fspath(data_dir)!r}); "
        f"train on it with --config.data.tfds_data_dir={os.fspath(data_dir)}.")


def main(argv: list[str] | None = None) -> int:
  """The command line (default sys.argv); returns the exit code."""
  return cli.run(run, argv, FLAGS)


if __name__ == "__main__":
  sys.exit(main())
