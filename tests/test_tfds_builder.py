"""Tests for pix2pix_jax/data/tfds_builder.py and the prepare CLI (pix2pix_jax/data/prepare.py)."""

import os
import pathlib
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

import tensorflow_datasets as tfds
from PIL import Image

from conftest import REAL_FACADES
from pix2pix_jax.data import folder, images, prepare, tfds_builder

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
FAKE_SPLITS = {"train": 4, "val": 2, "test": 3}


def _write_fake_dataset(root: pathlib.Path, splits=FAKE_SPLITS, ext=".png"):
  """Aligned A|B images whose halves differ per file, like the authors' layout."""
  rng = np.random.default_rng(0)
  for split, count in splits.items():
    (root / split).mkdir(parents=True)
    for index in range(1, count + 1):
      pixels = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
      Image.fromarray(pixels).save(root / split / f"{index}{ext}")
  return root


def _expected(root: pathlib.Path, split: str) -> dict:
  source = folder.AlignedFolderSource(root, split)
  return {source[i]["name"]: source[i] for i in range(len(source))}


def _offline_facades(data_dir, manual_dir):
  builder = tfds_builder.Pix2pix(config="facades", data_dir=data_dir, allow_download=False)
  prepare.prepare_builder(builder, manual_dir=manual_dir)
  return builder


@pytest.fixture(scope="module")
def fake_facades(tmp_path_factory):
  """A tiny 'facades' prepared once from an extracted folder in the manual dir."""
  base = tmp_path_factory.mktemp("fake_facades")
  manual_dir = base / "manual"
  _write_fake_dataset(manual_dir / "facades")
  data_dir = base / "data"
  builder = _offline_facades(data_dir, manual_dir)
  return builder, data_dir, manual_dir


def test_prepare_writes_array_record_splits(fake_facades):
  builder, data_dir, _ = fake_facades
  prepared = data_dir / "pix2pix" / "facades" / "1.0.0"
  assert pathlib.Path(builder.data_dir) == prepared
  assert sorted(p.name.split(".array_record")[0] for p in prepared.glob("*.array_record*")) == [
      "pix2pix-test", "pix2pix-train", "pix2pix-val"]
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == FAKE_SPLITS


@pytest.mark.parametrize("split", sorted(FAKE_SPLITS))
def test_records_round_trip_through_tfds_source(fake_facades, split):
  _, data_dir, manual_dir = fake_facades
  source = tfds_builder.TfdsSource("pix2pix/facades", split, data_dir)
  expected = _expected(manual_dir / "facades", split)
  assert len(source) == len(expected)
  for index in range(len(source)):
    example = source[index]
    assert isinstance(example["name"], str)
    assert example["a"].dtype == np.uint8 and example["a"].shape == (8, 8, 3)
    np.testing.assert_array_equal(example["a"], expected[example["name"]]["a"])  # Left half.
    np.testing.assert_array_equal(example["b"], expected[example["name"]]["b"])  # Right half.
  with pytest.raises(IndexError):
    source[len(source)]


def test_tfds_source_is_picklable_and_tfds_data_source_works(fake_facades):
  _, data_dir, _ = fake_facades
  source = tfds_builder.TfdsSource("pix2pix/facades", "train", data_dir)
  clone = pickle.loads(pickle.dumps(source))
  np.testing.assert_array_equal(clone[1]["b"], source[1]["b"])
  records = tfds.data_source("pix2pix/facades", split="train", data_dir=os.fspath(data_dir))
  assert len(records) == len(source)


def test_second_prepare_is_a_no_op(fake_facades, tmp_path):
  builder, data_dir, _ = fake_facades
  files = sorted(pathlib.Path(builder.data_dir).iterdir())
  mtimes = [p.stat().st_mtime_ns for p in files]
  # The manual dir is not even looked at: an empty one is fine.
  _offline_facades(data_dir, tmp_path / "empty")
  assert sorted(pathlib.Path(builder.data_dir).iterdir()) == files
  assert [p.stat().st_mtime_ns for p in files] == mtimes


def test_tfds_source_split_errors(fake_facades):
  _, data_dir, _ = fake_facades
  with pytest.raises(ValueError, match=r"'bogus' .* missing; available splits: test \(3 examples\), "
                     r"train \(4 examples\), val \(2 examples\)"):
    tfds_builder.TfdsSource("pix2pix/facades", "bogus", data_dir)
  with pytest.raises(FileNotFoundError, match=r"no prepared dataset pix2pix/maps .*prepare --dataset maps"):
    tfds_builder.TfdsSource("pix2pix/maps", "train", data_dir)
  assert len(tfds_builder.TfdsSource("pix2pix/facades", "train[:2]", data_dir)) == 2


def test_missing_manual_dir_error_says_what_to_put_where(tmp_path):
  manual_dir = tmp_path / "manual"
  with pytest.raises(FileNotFoundError) as error:
    _offline_facades(tmp_path / "data", manual_dir)
  message = str(error.value)
  assert f"{manual_dir / 'facades.tar.gz'}" in message
  assert f"{manual_dir / 'facades'}/, holding train/, val/, test/" in message
  assert "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz" in message
  assert f"--manual_dir {manual_dir}" in message


def test_tarball_in_manual_dir_is_extracted_once(tmp_path):
  source = _write_fake_dataset(tmp_path / "src" / "facades", {"train": 2, "val": 1})
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  with tarfile.open(manual_dir / "facades.tar.gz", "w:gz") as archive:
    archive.add(source, arcname="facades")
  builder = _offline_facades(tmp_path / "data", manual_dir)
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {"train": 2, "val": 1}
  extracted = tmp_path / "data" / "downloads" / "extracted" / "facades.tar.gz"
  assert (extracted / "facades" / "train" / "1.png").is_file()
  assert tfds_builder.extract_tarball(manual_dir / "facades.tar.gz", extracted.parent) == extracted


def test_cityscapes_needs_manual_preparation(tmp_path):
  builder = tfds_builder.Pix2pix(config="cityscapes", data_dir=tmp_path / "data")
  with pytest.raises(FileNotFoundError, match=r"(?s)cannot be downloaded.*gtFine_color.*leftImg8bit"):
    prepare.prepare_builder(builder, manual_dir=tmp_path / "manual")


def test_cityscapes_accepts_the_authors_test_folder_as_val(tmp_path):
  # The authors' preparation script writes the Cityscapes val split to test/.
  _write_fake_dataset(tmp_path / "manual" / "cityscapes", {"train": 2, "test": 1})
  builder = tfds_builder.Pix2pix(config="cityscapes", data_dir=tmp_path / "data")
  prepare.prepare_builder(builder, manual_dir=tmp_path / "manual")
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {"train": 2, "val": 1}


def test_folder_builder_detects_aligned_and_paired_splits(tmp_path):
  source_dir = _write_fake_dataset(tmp_path / "mine", {"train": 3})
  for side, value in (("A", 10), ("B", 20)):
    (source_dir / "val" / side).mkdir(parents=True)
    Image.fromarray(np.full((6, 4, 3), value, np.uint8)).save(source_dir / "val" / side / "x.png")
  builder = prepare.prepare("folder", tmp_path / "data", source_dir=source_dir, name="mine")
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {"train": 3, "val": 1}
  example = tfds_builder.TfdsSource("pix2pix_folder/mine", "val", tmp_path / "data")[0]
  assert example["name"] == "x" and example["a"].shape == (6, 4, 3)
  assert (example["a"] == 10).all() and (example["b"] == 20).all()


def test_folder_builder_rejects_bad_names(tmp_path):
  with pytest.raises(ValueError, match="lower-case letters"):
    tfds_builder.Pix2pixFolder(config="My Data", data_dir=tmp_path)


def test_corrupt_source_image_names_the_file(tmp_path):
  manual_dir = tmp_path / "manual"
  _write_fake_dataset(manual_dir / "facades", {"train": 2})
  (manual_dir / "facades" / "train" / "2.png").write_bytes(b"not a png")
  with pytest.raises(images.BadImageError, match=r"2\.png: not an image"):
    _offline_facades(tmp_path / "data", manual_dir)


def test_skip_bad_leaves_corrupt_images_out(tmp_path):
  manual_dir = tmp_path / "manual"
  _write_fake_dataset(manual_dir / "facades", {"train": 4})
  (manual_dir / "facades" / "train" / "2.png").write_bytes(b"not a png")  # Bad header.
  data = images.encode_jpeg(np.zeros((8, 16, 3), np.uint8))
  (manual_dir / "facades" / "train" / "5.jpg").write_bytes(data[: len(data) // 2])  # Bad pixels.
  builder = tfds_builder.Pix2pix(
      config="facades", data_dir=tmp_path / "data", allow_download=False, skip_bad=True)
  prepare.prepare_builder(builder, manual_dir=manual_dir)
  source = tfds_builder.TfdsSource("pix2pix/facades", "train", tmp_path / "data")
  assert sorted(source[i]["name"] for i in range(len(source))) == ["1", "3", "4"]


def test_prepare_cli_folder_and_error(tmp_path):
  source_dir = _write_fake_dataset(tmp_path / "src", {"train": 2})
  command = [sys.executable, "-m", "pix2pix_jax.data.prepare", "--dataset", "folder",
             "--source_dir", os.fspath(source_dir), "--name", "cli_data",
             "--data_dir", os.fspath(tmp_path / "data")]
  result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert "train: 2 pairs, aligned A|B" in result.stdout
  assert f"is prepared at {tmp_path / 'data' / 'pix2pix_folder' / 'cli_data' / '1.0.0'}" in result.stdout
  command = [sys.executable, "-m", "pix2pix_jax.data.prepare", "--dataset", "facades",
             "--nodownload", "--manual_dir", os.fspath(tmp_path / "none"),
             "--data_dir", os.fspath(tmp_path / "data")]
  result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert "error: no source data for pix2pix/facades" in result.stderr


def test_prepare_cli_on_a_truncated_jpeg_names_the_options_to_type(tmp_path):
  source_dir = _write_fake_dataset(tmp_path / "src", {"train": 2}, ext=".jpg")
  data = (source_dir / "train" / "2.jpg").read_bytes()
  (source_dir / "train" / "2.jpg").write_bytes(data[: len(data) // 2])
  command = [sys.executable, "-m", "pix2pix_jax.data.prepare", "--dataset", "folder",
             "--source_dir", os.fspath(source_dir), "--name", "cut",
             "--data_dir", os.fspath(tmp_path / "data")]
  result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  error = result.stderr.strip().splitlines()[-1]
  assert error.startswith("error: ") and f"{source_dir / 'train' / '2.jpg'}: " in error
  # What the user can type, for this command and for a run; not a Python keyword argument.
  assert "prepare with --skip_bad" in error
  assert "--config.data.skip_bad_images=True" in error and "skip_bad=True" not in error
  result = subprocess.run(command + ["--skip_bad"], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stderr
  assert "(train 1 examples)" in result.stdout


@pytest.mark.real_data
@pytest.mark.skipif(not (REAL_FACADES / "val").is_dir(),
                    reason="the real CMP facades are not here: set PIX2PIX_FACADES_DIR")
def test_real_facades_val_split(tmp_path):
  # Only val (100 images) is linked into the manual dir, to keep this test short.
  (tmp_path / "manual" / "facades").mkdir(parents=True)
  (tmp_path / "manual" / "facades" / "val").symlink_to((REAL_FACADES / "val").resolve())
  builder = _offline_facades(tmp_path / "data", tmp_path / "manual")
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {"val": 100}
  source = tfds_builder.TfdsSource("pix2pix/facades", "val", tmp_path / "data")
  names = set()
  for index in range(len(source)):
    example = source[index]
    names.add(example["name"])
    assert example["a"].shape == (256, 256, 3) and example["b"].shape == (256, 256, 3)
  assert names == {str(i) for i in range(1, 101)}
  for index in (0, 57):  # Stored losslessly: exactly the halves of the original JPEG.
    example = source[index]
    original = images.load_image(REAL_FACADES / "val" / f"{example['name']}.jpg")
    np.testing.assert_array_equal(example["a"], original[:, :256])
    np.testing.assert_array_equal(example["b"], original[:, 256:])
