"""Tests for pix2pix_jax/atomic.py: a destination is the old content or the complete new one."""

import pytest

from pix2pix_jax import atomic


def test_file_appears_only_when_complete(tmp_path):
  path = tmp_path / "new" / "dir" / "page.html"  # Missing parents are created.
  with atomic.atomic_path(path) as temporary:
    temporary.write_text("half")
    assert not path.exists()  # A reader sees nothing yet ...
    temporary.write_text("whole")
  assert path.read_text() == "whole"  # ... then the complete file.
  assert sorted(p.name for p in path.parent.iterdir()) == ["page.html"]


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
  path = tmp_path / "config.json"
  path.write_text("previous")
  with pytest.raises(RuntimeError, match="disk full"):
    with atomic.atomic_path(path) as temporary:
      temporary.write_text("partial")
      raise RuntimeError("disk full")
  assert path.read_text() == "previous"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_temporary_left_by_a_killed_writer_is_replaced(tmp_path):
  path = tmp_path / "metrics.jsonl"
  (tmp_path / "metrics.jsonl.tmp").write_text("left by a killed process")
  with atomic.atomic_path(path) as temporary:
    assert not temporary.exists()
    with open(temporary, "a") as f:  # Appending would keep stale bytes if not cleared.
      f.write("fresh")
  assert path.read_text() == "fresh"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_folder_is_renamed_into_place_or_removed(tmp_path):
  destination = tmp_path / "facades"
  (tmp_path / "facades.tmp" / "old").mkdir(parents=True)  # An interrupted extraction.
  with pytest.raises(ValueError):
    with atomic.atomic_path(destination) as partial:
      partial.mkdir()
      (partial / "1.jpg").write_bytes(b"x")
      raise ValueError("truncated archive")
  assert not destination.exists() and not (tmp_path / "facades.tmp").exists()

  with atomic.atomic_path(destination) as partial:
    partial.mkdir()
    (partial / "1.jpg").write_bytes(b"x")
  assert [p.name for p in destination.iterdir()] == ["1.jpg"]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["facades"]
