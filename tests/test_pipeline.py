"""The input pipeline: the authors' transforms, determinism, sharding across processes, resume."""

import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from conftest import REAL_FACADES
from helpers import tiny_config
from pix2pix_jax import config_check
from pix2pix_jax.data import pipeline


class _GradientSource:
  """Examples whose A and B are the same ramp image (so any misaligned crop/flip shows)."""

  def __init__(self, n=8, h=40, w=40):
    self.n, self.h, self.w = n, h, w

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    i = int(i)
    if not 0 <= i < self.n:
      raise IndexError(i)
    y, x = np.mgrid[:self.h, :self.w]
    img = np.stack([x * 255 // self.w, y * 255 // self.h, np.full_like(x, i * 20)], -1)
    img = img.astype(np.uint8)
    return {"a": img, "b": 255 - img, "name": f"ex{i}"}


def _transform(**kw):
  args = dict(load_size=36, crop_size=32)
  args.update(kw)
  return pipeline.Transform(**args)


def test_same_crop_and_flip_for_a_and_b():
  t = _transform()
  source = _GradientSource()
  flips = 0
  for seed in range(20):
    out = t(source[seed % 8], np.random.default_rng(seed))
    assert out["A"].shape == out["B"].shape == (32, 32, 3)
    # B was 255 - A before the transform: the relation survives only if both got the same ops.
    np.testing.assert_allclose(out["A"], -out["B"], atol=0.02)
    flips += int(out["A"][0, 0, 0] > out["A"][0, -1, 0])
  assert 3 <= flips <= 17, "random flips should happen about half the time"
  assert out["A"].min() >= -1 and out["A"].max() <= 1 and out["A"].dtype == np.float32


def test_direction_swaps_input_and_target():
  source = _GradientSource()
  a2b = _transform(direction="AtoB")(source[0], None)
  b2a = _transform(direction="BtoA")(source[0], None)
  np.testing.assert_array_equal(a2b["A"], b2a["B"])
  np.testing.assert_array_equal(a2b["B"], b2a["A"])


def test_grayscale_channels():
  out = _transform(input_nc=1, output_nc=3)(_GradientSource()[0], None)
  assert out["A"].shape == (32, 32, 1) and out["B"].shape == (32, 32, 3)


@pytest.mark.parametrize("mode,shape", [("resize_and_crop", (32, 32)), ("crop", (32, 32)),
                                        ("scale_width", (36, 36)),
                                        ("scale_width_and_crop", (32, 32)), ("none", (40, 40))])
def test_preprocess_modes(mode, shape):
  out = _transform(preprocess=mode)(_GradientSource(h=40, w=40)[0], np.random.default_rng(0))
  assert out["A"].shape[:2] == shape


def test_none_mode_rounds_to_the_network_multiple():
  t = _transform(preprocess="none", size_multiple=32)
  assert t(_GradientSource(h=70, w=100)[0], None)["A"].shape[:2] == (64, 96)


def test_non_square_pairs_resize_to_aspect_ratio():
  # 288×432 halves (a 288×864 aligned image) trained at 256×512, as a seed project does.
  t = _transform(load_size=256, crop_size=256, aspect_ratio=2.0)
  out = t(_GradientSource(h=288, w=432)[0], np.random.default_rng(0))
  assert out["A"].shape == (256, 512, 3)
  config = tiny_config(**{"data.aspect_ratio": 2.0})
  assert pipeline.image_shape(config) == (32, 64)


def test_bad_settings_are_clear_errors():
  # The settings are checked with the rest of the config (config_check); the images here.
  with pytest.raises(ValueError, match="--config.data.direction=AB: must be one of AtoB, BtoA"):
    config_check.check(tiny_config(**{"data.direction": "AB"}))
  with pytest.raises(ValueError, match="--config.data.preprocess=zoom: must be one of"):
    config_check.check(tiny_config(**{"data.preprocess": "zoom"}))
  with pytest.raises(ValueError, match="smaller than the crop"):
    _transform(preprocess="crop", crop_size=64)(_GradientSource()[0], None)


def _rows(ds, n):
  return [ds[i] for i in range(n)]


def test_train_stream_is_deterministic_and_each_epoch_is_a_permutation():
  source, t = _GradientSource(n=8), _transform()
  make = lambda: pipeline.train_dataset(source, t, seed=3, global_batch=2)
  first, second = _rows(make(), 8), _rows(make(), 8)
  for x, y in zip(first, second):
    np.testing.assert_array_equal(x["A"], y["A"])
  # Blue channel encodes the example index: every epoch visits each example once.
  ids = lambda rows: sorted(int(round((r["B"][0, 0, 2] * -1 + 1) * 127.5 / 20))
                            for batch in rows for r in [dict(B=b) for b in batch["B"]])
  assert ids(first[:4]) == list(range(8)) and ids(first[4:8]) == list(range(8))


def test_processes_read_disjoint_rows_of_the_same_global_batches():
  source, t = _GradientSource(n=8), _transform()
  whole = pipeline.train_dataset(source, t, seed=1, global_batch=4)
  p0 = pipeline.train_dataset(source, t, seed=1, global_batch=4, process_index=0,
                              process_count=2)
  p1 = pipeline.train_dataset(source, t, seed=1, global_batch=4, process_index=1,
                              process_count=2)
  for b in range(5):
    joined = np.concatenate([p0[b]["A"], p1[b]["A"]])
    np.testing.assert_array_equal(joined, whole[b]["A"])


def test_iterator_state_resumes_at_the_next_batch():
  config = tiny_config()
  source = _GradientSource(n=8)
  it = pipeline.make_train_iterator(config, source)
  for _ in range(3):
    next(it)
  saved = it.get_state()
  expected = [next(it)["A"] for _ in range(3)]
  it2 = pipeline.make_train_iterator(config, source)
  it2.set_state(saved)
  for e in expected:
    np.testing.assert_array_equal(next(it2)["A"], e)


def _synthetic_iterator(num_workers, **kwargs):
  config = tiny_config(**{"data.num_workers": num_workers, "data.prefetch": 2})
  return pipeline.make_train_iterator(config, pipeline.get_source(config, "train"), **kwargs)


def _take(iterator, n):
  batches = [next(iterator) for _ in range(n)]
  return np.stack([np.concatenate([b["A"], b["B"]], -1) for b in batches])


def test_batches_and_positions_are_the_same_whatever_the_number_of_workers():
  # Worker processes read interleaved positions and the position is the whole state: a run
  # saved with two workers resumes in-process (and the other way round) on the same stream.
  expected = _take(_synthetic_iterator(0), 7)
  two = _synthetic_iterator(2)
  assert two.num_workers == 2
  np.testing.assert_array_equal(_take(two, 4), expected[:4])
  saved = two.get_state()
  two.close()
  assert saved == b'{\n    "next_index": 4\n}'  # grain's in-process iterator's format
  in_process = _synthetic_iterator(0)
  in_process.set_state(saved)
  np.testing.assert_array_equal(_take(in_process, 3), expected[4:])
  one = _synthetic_iterator(1)
  one.set_state({"next_index": 5})
  np.testing.assert_array_equal(_take(one, 2), expected[5:])
  one.close()


def test_placed_ahead_but_the_state_counts_the_batches_handed_out():
  placed = []

  def place(batch):
    placed.append(batch)
    return {"placed": len(placed)}

  iterator = _synthetic_iterator(0, place=place, ahead=1)
  assert [next(iterator)["placed"] for _ in range(3)] == [1, 2, 3]
  assert len(placed) == 4  # the next batch is already placed
  assert iterator.get_state() == b'{\n    "next_index": 3\n}'
  iterator.set_state(iterator.get_state())  # drops the batch placed ahead; reads it again
  assert next(iterator)["placed"] == 5
  np.testing.assert_array_equal(placed[4]["A"], placed[3]["A"])


def test_num_workers_auto_uses_processes_only_beside_accelerators():
  assert pipeline.resolve_num_workers("auto", "cpu") == 0
  assert 1 <= pipeline.resolve_num_workers("auto", "gpu") <= 8
  assert pipeline.resolve_num_workers("3", "tpu") == 3  # the text a saved config's override has
  for bad in (-1, "many", 1.5, True):
    with pytest.raises(ValueError, match=r"--config.data.num_workers must be 'auto' or an "):
      pipeline.resolve_num_workers(bad, "cpu")


def test_arrays_in_the_wanted_form_skip_pil_with_the_same_values():
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
  grey = rng.integers(0, 256, (6, 5), dtype=np.uint8)
  rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
  for image in (rgb, grey, rgba):
    for channels, mode in ((3, "RGB"), (1, "L")):
      np.testing.assert_array_equal(pipeline._channels(image, channels),
                                    np.asarray(Image.fromarray(image).convert(mode)))
  assert pipeline._channels(rgb, 3) is rgb and pipeline._channels(grey, 1) is grey


def test_too_small_split_is_a_clear_error():
  with pytest.raises(ValueError, match="fewer than one global batch of 4: use "
                                       "--config.batch_size=2 or less"):
    pipeline.train_dataset(_GradientSource(n=2), _transform(), seed=0, global_batch=4)


def test_eval_batches_keep_order_names_and_last_partial_batch():
  config = tiny_config()
  batches = list(pipeline.eval_batches(config, _GradientSource(n=5, h=32, w=32), 2))
  assert [len(b["name"]) for b in batches] == [2, 2, 1]
  assert [str(n) for b in batches for n in b["name"]] == [f"ex{i}" for i in range(5)]


def test_unknown_dataset_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown data.dataset 'imagenet'"):
    pipeline.get_source(tiny_config(**{"data.dataset": "imagenet"}), "train")


def test_folder_dataset_without_data_dir_is_a_clear_error():
  with pytest.raises(ValueError, match="--config.data.data_dir='': data.dataset=folder needs"):
    config_check.check(tiny_config(**{"data.dataset": "folder"}))


# ---- The authors' test protocol: which files, in which order ---------------------------------

# Names whose order differs between natural, stem and path sorting: '10' before '2', upper case
# before lower case, 'a-1.jpg' before 'a.jpg' ('-' < '.') but 'a.jpg' before 'a_1.jpg'.
PROTOCOL_NAMES = ["1.jpg", "2.jpg", "10.jpg", "100.png", "11.jpg", "B.jpg", "a.jpg", "a-1.jpg",
                  "a_1.png", "c.JPG", "img 3.jpg"]


def _authors_files(split_dir, num_test=float("inf"), max_dataset_size=float("inf")):
  """Their data/image_folder.make_dataset, AlignedDataset and test.py loop, written out.

  make_dataset truncates to max_dataset_size in os.walk's order; within a folder that is the
  file system's listing order, taken here as sorted (as on most file systems for a folder
  written in one go). AlignedDataset sorts the paths; test.py (batch 1, serial_batches) stops
  after num_test.
  """
  extensions = [".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".ppm", ".PPM", ".bmp", ".BMP",
                ".tif", ".TIF", ".tiff", ".TIFF"]
  images = []
  for root, _, fnames in sorted(os.walk(split_dir)):
    for fname in sorted(fnames):
      if any(fname.endswith(extension) for extension in extensions):
        images.append(os.path.join(root, fname))
  paths = sorted(images[:min(max_dataset_size, len(images))])
  return [pathlib.Path(p).stem for i, p in enumerate(paths) if i < num_test]


def _write_aligned(folder, names):
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for name in names:
    Image.fromarray(rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)).save(folder / name)


def _evaluated_names(config, split):
  source = pipeline.get_source(config, split)
  batches = pipeline.eval_batches(config, source, config.eval_batch_size, limit=config.num_test)
  return [str(name) for batch in batches for name in batch["name"]]


@pytest.fixture(scope="module")
def protocol_folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("protocol")
  _write_aligned(root / "test", PROTOCOL_NAMES)
  _write_aligned(root / "train", PROTOCOL_NAMES)
  return root


@pytest.mark.parametrize("num_test", [6, 50])
def test_eval_visits_the_files_the_authors_test_py_does(protocol_folder, num_test):
  config = tiny_config(**{"data.dataset": "folder", "data.data_dir": str(protocol_folder),
                          "num_test": num_test, "eval_batch_size": 1})
  expected = _authors_files(protocol_folder / "test", num_test=num_test)
  assert _evaluated_names(config, "test") == expected
  assert len(expected) == min(num_test, len(PROTOCOL_NAMES))


def test_prepared_tfds_folder_is_evaluated_in_the_authors_order_too(protocol_folder, tmp_path):
  from pix2pix_jax.data import prepare, tfds_builder
  builder = tfds_builder.Pix2pixFolder(config="protocol", data_dir=tmp_path)
  prepare.prepare_builder(builder, manual_dir=protocol_folder)
  config = tiny_config(**{"data.dataset": "pix2pix_folder/protocol",
                          "data.tfds_data_dir": str(tmp_path), "num_test": 8})
  assert _evaluated_names(config, "test") == _authors_files(protocol_folder / "test", 8)


def test_max_dataset_size_keeps_the_authors_first_files(protocol_folder):
  config = tiny_config(**{"data.dataset": "folder", "data.data_dir": str(protocol_folder),
                          "data.max_dataset_size": 4, "num_test": 0})
  source = pipeline.get_source(config, "train")
  assert len(source) == 4
  assert _evaluated_names(config, "train") == _authors_files(protocol_folder / "train",
                                                             max_dataset_size=4)
  batch = next(pipeline.make_train_iterator(config, source))  # the subset trains as a source
  assert batch["A"].shape == (config.batch_size, 32, 32, 3)
  with pytest.raises(ValueError, match=r"--config.data.max_dataset_size=-1: must be an integer "
                                       r">= 0 \(0 = all files\)"):
    config_check.check(tiny_config(**{"data.max_dataset_size": -1}))


@pytest.mark.skipif(not (REAL_FACADES / "val").is_dir(),
                    reason="the real CMP facades are not here: set PIX2PIX_FACADES_DIR")
def test_real_facades_val_first_50_as_the_authors():
  config = tiny_config(**{"data.dataset": "folder", "data.data_dir": str(REAL_FACADES),
                          "eval_batch_size": 1})
  assert config.num_test == 50  # the default, their --num_test
  expected = _authors_files(REAL_FACADES / "val", num_test=50)
  assert expected[:3] == ["1", "10", "100"]  # lexicographic, not natural
  assert _evaluated_names(config, "val") == expected
