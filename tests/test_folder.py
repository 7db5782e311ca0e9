"""Tests for pix2pix_jax/data/folder.py: both folder layouts, ordering and every error."""

import pickle
from concurrent import futures

import numpy as np
import pytest
from PIL import Image

from pix2pix_jax.data import folder, images


def _pair_pixels(index: int, height=4, half=6):
  """An A|B image whose halves encode `index`, so tests can tell examples apart."""
  a = np.full((height, half, 3), index, np.uint8)
  b = np.full((height, half, 3), 200 - index, np.uint8)
  return np.concatenate([a, b], axis=1)


def _write_aligned(split_dir, names, ext=".png"):
  split_dir.mkdir(parents=True, exist_ok=True)
  for index, name in enumerate(names):
    Image.fromarray(_pair_pixels(index)).save(split_dir / f"{name}{ext}")


def _write_paired(split_dir, names_a, names_b):
  for side, names in (("A", names_a), ("B", names_b)):
    (split_dir / side).mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
      value = index if side == "A" else 100 + index
      Image.fromarray(np.full((5, 3, 3), value, np.uint8)).save(split_dir / side / f"{name}.png")


def _truncate(path):
  data = images.encode_jpeg(np.random.default_rng(0).integers(0, 256, (32, 64, 3), np.uint8))
  path.write_bytes(data[: len(data) // 2])


def test_natural_order():
  names = ["10.jpg", "2.jpg", "1.jpg", "img11.png", "img9.png", "b.jpg", "a.jpg"]
  assert sorted(names, key=folder.natural_key) == [
      "1.jpg", "2.jpg", "10.jpg", "a.jpg", "b.jpg", "img9.png", "img11.png"]


def test_aligned_source_reads_halves_in_natural_order(tmp_path):
  _write_aligned(tmp_path / "train", ["10", "2", "1"])
  (tmp_path / "train" / "notes.txt").write_text("ignored")
  (tmp_path / "train" / "._2.png").write_bytes(b"macOS metadata, ignored")
  source = folder.AlignedFolderSource(tmp_path, "train")
  assert len(source) == 3
  assert [source[i]["name"] for i in range(3)] == ["1", "2", "10"]
  example = source[2]  # "10", written with index 0.
  assert example["a"].dtype == np.uint8 and example["a"].shape == (4, 6, 3)
  assert example["b"].shape == (4, 6, 3)
  assert (example["a"] == 0).all() and (example["b"] == 200).all()
  assert source[-1]["name"] == "10"
  with pytest.raises(IndexError):
    source[3]


def test_aligned_source_accepts_every_extension(tmp_path):
  split_dir = tmp_path / "val"
  split_dir.mkdir()
  for index, ext in enumerate([".jpg", ".jpeg", ".PNG", ".bmp", ".webp"]):
    Image.fromarray(_pair_pixels(index)).save(split_dir / f"{index}{ext}")
  source = folder.AlignedFolderSource(tmp_path, "val")
  assert source.names == ["0", "1", "2", "3", "4"]
  for index in range(5):
    assert source[index]["a"].shape == (4, 6, 3)


def test_source_is_thread_safe_and_picklable(tmp_path):
  _write_aligned(tmp_path / "train", [str(i) for i in range(8)])
  source = folder.AlignedFolderSource(tmp_path, "train")
  with futures.ThreadPoolExecutor(4) as pool:
    names = list(pool.map(lambda i: source[i]["name"], list(range(8)) * 4))
  assert names == [str(i) for i in range(8)] * 4
  clone = pickle.loads(pickle.dumps(source))
  np.testing.assert_array_equal(clone[5]["b"], source[5]["b"])


def test_missing_root_error(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"dataset folder .*nowhere does not exist"):
    folder.AlignedFolderSource(tmp_path / "nowhere", "train")


def test_missing_split_error_lists_splits(tmp_path):
  _write_aligned(tmp_path / "train", ["1"])
  _write_aligned(tmp_path / "val", ["1"])
  with pytest.raises(FileNotFoundError, match=r"test does not exist; .* has the splits train, val"):
    folder.AlignedFolderSource(tmp_path, "test")


def test_empty_split_error(tmp_path):
  (tmp_path / "train").mkdir()
  (tmp_path / "train" / "readme.txt").write_text("no images")
  with pytest.raises(FileNotFoundError, match=r"train holds no images"):
    folder.AlignedFolderSource(tmp_path, "train")


def test_aligned_on_paired_layout_points_to_paired(tmp_path):
  _write_paired(tmp_path / "train", ["1"], ["1"])
  with pytest.raises(FileNotFoundError, match="PairedFolderSource"):
    folder.AlignedFolderSource(tmp_path, "train")


def test_duplicate_stems_error(tmp_path):
  _write_aligned(tmp_path / "train", ["1"], ext=".png")
  _write_aligned(tmp_path / "train", ["1"], ext=".jpg")
  with pytest.raises(ValueError, match=r"differ only in extension.*1\."):
    folder.AlignedFolderSource(tmp_path, "train")


def test_odd_width_raises_by_default(tmp_path):
  (tmp_path / "train").mkdir()
  Image.fromarray(np.zeros((4, 7, 3), np.uint8)).save(tmp_path / "train" / "odd.png")
  source = folder.AlignedFolderSource(tmp_path, "train")
  with pytest.raises(images.BadImageError, match=r"odd\.png: width 7 is odd"):
    source[0]


def test_paired_source_matches_by_stem(tmp_path):
  _write_paired(tmp_path / "train", ["10", "2", "x"], ["x", "10", "2"])
  source = folder.PairedFolderSource(tmp_path, "train")
  assert source.names == ["2", "10", "x"]
  example = source[1]
  assert example["name"] == "10"
  assert (example["a"] == 0).all()  # A/10.png was written first.
  assert (example["b"] == 101).all()  # B/10.png was written second.
  assert example["a"].shape == (5, 3, 3)


def test_paired_unmatched_names_are_listed(tmp_path):
  _write_paired(tmp_path / "train", ["1", "2", "3"], ["1", "4"])
  with pytest.raises(ValueError, match=r"2 in A/ have no B/ image: 2, 3; 1 in B/ have no A/ image: 4"):
    folder.PairedFolderSource(tmp_path, "train")


def test_paired_missing_side_error(tmp_path):
  _write_aligned(tmp_path / "train", ["1"])
  with pytest.raises(FileNotFoundError, match=r"A does not exist.*AlignedFolderSource"):
    folder.PairedFolderSource(tmp_path, "train")


def test_detect_layout_and_factory(tmp_path):
  _write_aligned(tmp_path / "train", ["1"])
  _write_paired(tmp_path / "val", ["1"], ["1"])
  assert isinstance(folder.folder_source(tmp_path, "train"), folder.AlignedFolderSource)
  assert isinstance(folder.folder_source(tmp_path, "val"), folder.PairedFolderSource)


def test_bad_file_propagates_with_name_by_default(tmp_path):
  _write_aligned(tmp_path / "train", ["1", "3"])
  _truncate(tmp_path / "train" / "2.jpg")
  source = folder.AlignedFolderSource(tmp_path, "train")
  assert len(source) == 3
  with pytest.raises(images.BadImageError, match=r"2\.jpg: truncated"):
    source[1]


def test_skip_bad_counts_and_substitutes_deterministically(tmp_path):
  _write_aligned(tmp_path / "train", ["1", "3", "5"])
  _truncate(tmp_path / "train" / "2.jpg")  # Header fine, pixels cut: found at read time.
  (tmp_path / "train" / "4.png").write_bytes(b"garbage")  # Found by the header check.
  (tmp_path / "train" / "6.jpg").write_bytes(b"")  # Empty: found by the header check.
  Image.fromarray(np.zeros((4, 7, 3), np.uint8)).save(tmp_path / "train" / "7.png")  # Odd width.
  source = folder.AlignedFolderSource(tmp_path, "train", skip_bad=True)
  assert source.num_skipped == 3
  assert source.names == ["1", "2", "3", "5"]
  assert len(source) == 4
  assert source[1]["name"] == "3"  # 2.jpg is truncated: the next good example stands in.
  assert source.num_skipped == 4
  assert source.skipped == ["4", "6", "7", "2"]
  assert source[1]["name"] == "3"  # Same answer, no second count.
  assert source.num_skipped == 4
  assert [source[i]["name"] for i in range(4)] == ["1", "3", "3", "5"]


def test_skip_bad_wraps_around_and_paired(tmp_path):
  _write_paired(tmp_path / "train", ["1", "2"], ["1", "2"])
  _truncate(tmp_path / "train" / "B" / "2.png")
  source = folder.PairedFolderSource(tmp_path, "train", skip_bad=True)
  assert source[1]["name"] == "1"  # The last file is bad: wraps to the first.
  assert source.num_skipped == 1


def test_skip_bad_all_bad_raises(tmp_path):
  (tmp_path / "train").mkdir()
  (tmp_path / "train" / "1.jpg").write_bytes(b"junk")
  with pytest.raises(ValueError, match="all 1 images .* are unreadable"):
    folder.AlignedFolderSource(tmp_path, "train", skip_bad=True)
