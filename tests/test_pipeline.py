"""The input pipeline: the authors' transforms, determinism, sharding across processes, resume."""

import numpy as np
import pytest

from helpers import tiny_config
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
  with pytest.raises(ValueError, match="data.direction"):
    _transform(direction="AB")
  with pytest.raises(ValueError, match="data.preprocess"):
    _transform(preprocess="zoom")
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


def test_too_small_split_is_a_clear_error():
  with pytest.raises(ValueError, match="fewer than one global batch"):
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
  with pytest.raises(ValueError, match="data_dir"):
    pipeline.get_source(tiny_config(**{"data.dataset": "folder"}), "train")
