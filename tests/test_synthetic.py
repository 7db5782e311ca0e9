"""Tests for pix2pix_jax/data/synthetic.py: the offline synthetic facades source."""

import pickle
from concurrent import futures

import grain
import numpy as np
import pytest

from pix2pix_jax.data import synthetic
from pix2pix_jax.data.synthetic import SyntheticFacades


def _class_mask(label_map, name):
  return np.all(label_map == synthetic.FACADE_PALETTE[name], axis=-1)


@pytest.mark.parametrize("image_size", [16, 32, 48, 64, 100])
def test_shapes_dtypes_and_name(image_size):
  source = SyntheticFacades(num_examples=3, image_size=image_size, seed=0)
  example = source[2]
  assert len(source) == 3
  assert set(example) == {"a", "b", "name"}
  for key in ("a", "b"):
    assert example[key].shape == (image_size, image_size, 3)
    assert example[key].dtype == np.uint8
  assert example["name"] == "synthetic_00002"


def test_same_seed_and_index_give_identical_arrays():
  first = SyntheticFacades(10, 32, seed=7)[4]
  again = SyntheticFacades(10, 32, seed=7)[4]
  np.testing.assert_array_equal(first["a"], again["a"])
  np.testing.assert_array_equal(first["b"], again["b"])


def test_different_indices_and_seeds_differ():
  source = SyntheticFacades(10, 32, seed=0)
  other_seed = SyntheticFacades(10, 32, seed=1)
  photos = [source[i]["a"] for i in range(5)] + [other_seed[0]["a"]]
  labels = [source[i]["b"] for i in range(5)] + [other_seed[0]["b"]]
  for i in range(len(photos)):
    for j in range(i):
      assert not np.array_equal(photos[i], photos[j]), (i, j)
      assert not np.array_equal(labels[i], labels[j]), (i, j)


def test_reads_in_any_order_and_from_threads_agree():
  source = SyntheticFacades(8, 32, seed=3)
  in_order = [source[i]["a"] for i in range(8)]
  with futures.ThreadPoolExecutor(4) as pool:
    threaded = list(pool.map(lambda i: source[i]["a"], reversed(range(8))))[::-1]
  for expected, got in zip(in_order, threaded):
    np.testing.assert_array_equal(expected, got)


def test_does_not_touch_global_random_state():
  np.random.seed(0)
  expected = np.random.random()
  np.random.seed(0)
  SyntheticFacades(2, 32)[1]
  assert np.random.random() == expected


def test_label_map_holds_only_palette_colours_and_covers_the_classes():
  source = SyntheticFacades(40, 32, seed=0)
  palette = {tuple(int(c) for c in colour) for colour in synthetic.PALETTE_RGB}
  seen = set()
  for i in range(len(source)):
    colours = {tuple(c) for c in np.unique(source[i]["b"].reshape(-1, 3), axis=0).tolist()}
    assert colours <= palette, colours - palette
    seen |= colours
  # Every generated class shows up somewhere in 40 buildings.
  assert seen == palette


def test_palette_matches_the_cmp_colours():
  assert synthetic.FACADE_PALETTE["background"] == (0, 0, 170)
  assert synthetic.FACADE_PALETTE["wall"] == (0, 0, 255)
  assert synthetic.FACADE_PALETTE["window"] == (0, 85, 255)
  assert len(set(synthetic.FACADE_PALETTE.values())) == len(synthetic.FACADE_PALETTE)
  assert synthetic.CLASS_NAMES[0] == "background"


@pytest.mark.parametrize("image_size", [32, 64])
def test_photo_follows_the_label_map(image_size):
  # Glass is rendered darker than any wall material: the median photo brightness over window
  # pixels (frames included) sits well below that over wall pixels in every building.
  source = SyntheticFacades(30, image_size, seed=5)
  for i in range(len(source)):
    example = source[i]
    brightness = example["a"].astype(np.float32).mean(axis=-1)
    window = np.median(brightness[_class_mask(example["b"], "window")])
    wall = np.median(brightness[_class_mask(example["b"], "wall")])
    assert wall - window > 15, (i, wall, window)


def test_index_checks_and_numpy_indices():
  source = SyntheticFacades(5, 32, seed=0)
  np.testing.assert_array_equal(source[np.int64(3)]["a"], source[3]["a"])
  np.testing.assert_array_equal(source[-1]["b"], source[4]["b"])
  assert source[-5]["name"] == "synthetic_00000"
  for bad in (5, 100, -6):
    with pytest.raises(IndexError):
      source[bad]
  with pytest.raises(TypeError):
    source[1.5]


def test_rejects_bad_arguments():
  with pytest.raises(ValueError, match="image_size"):
    SyntheticFacades(4, image_size=8)
  with pytest.raises(ValueError, match="num_examples"):
    SyntheticFacades(-1)


def test_pickles_for_worker_processes():
  source = SyntheticFacades(4, 32, seed=9)
  restored = pickle.loads(pickle.dumps(source))
  np.testing.assert_array_equal(restored[2]["a"], source[2]["a"])


def test_works_as_a_grain_source():
  source = SyntheticFacades(6, 32, seed=4)
  dataset = grain.MapDataset.source(source)
  assert len(dataset) == 6
  np.testing.assert_array_equal(dataset[3]["a"], source[3]["a"])
  batch = next(iter(dataset.shuffle(seed=0).batch(3).to_iter_dataset()))
  assert batch["a"].shape == (3, 32, 32, 3)
  assert batch["b"].dtype == np.uint8


def test_rendered_once_equals_the_lazy_source():
  source = SyntheticFacades(5, 32, seed=3)
  rendered = source.rendered()
  assert len(rendered) == 5 and rendered.names == source.names
  for index in (0, 4, -1, np.int64(2)):
    lazy, kept = source[index], rendered[index]
    assert kept["name"] == lazy["name"]
    np.testing.assert_array_equal(kept["a"], lazy["a"])
    np.testing.assert_array_equal(kept["b"], lazy["b"])
  with pytest.raises(IndexError):
    rendered[5]
  with pytest.raises(ValueError):  # the rendered arrays are shared, never written
    rendered[0]["a"][0, 0] = 0
  restored = pickle.loads(pickle.dumps(rendered))
  np.testing.assert_array_equal(restored[1]["b"], source[1]["b"])
