"""Test-time generation (paper vs eval mode), split evaluation and the saved results."""

import jax
import numpy as np
import pytest
from PIL import Image

from helpers import tiny_config
from pix2pix_jax import evaluate, models, platform


@pytest.fixture(scope="module")
def generator():
  """An untrained 64-px U-Net with 6 levels: BatchNorm and (at level 4) dropout both act."""
  platform.configure()
  config = tiny_config(**{"model.num_downs": 6, "model.ngf": 4})
  g = models.make_generator(config)
  x = np.zeros((1, 64, 64, 3), np.float32)
  variables = g.init({"params": jax.random.key(0)}, x, train=False)
  # Running averages unlike any batch's statistics, as after training.
  stats = jax.tree.map(lambda v: v + 0.3, variables["batch_stats"])
  return g, variables["params"], stats


def _batches(n=4, batch_size=2, size=64):
  rng = np.random.default_rng(0)
  a = rng.uniform(-1, 1, (n, size, size, 3)).astype(np.float32)
  b = np.tanh(a[..., ::-1] * 2)
  names = [f"img{i}.jpg" for i in range(n)]
  return [{"A": a[i:i + batch_size], "B": b[i:i + batch_size], "name": names[i:i + batch_size]}
          for i in range(0, n, batch_size)]


def test_paper_mode_uses_dropout_and_batch_statistics(generator):
  g, params, stats = generator
  x = _batches()[0]["A"]
  gen = jax.jit(evaluate.generate, static_argnums=(0,), static_argnames=("mode",))
  key0, key1 = jax.random.key(0), jax.random.key(1)
  paper0 = np.asarray(gen(g, params, stats, x, key0, mode="paper"))
  eval_ = np.asarray(gen(g, params, stats, x, key0, mode="eval"))
  assert np.abs(paper0 - eval_).max() > 1e-2
  # Paper mode: the same key gives the same output, another key other dropout masks.
  np.testing.assert_array_equal(paper0, np.asarray(gen(g, params, stats, x, key0, mode="paper")))
  assert np.abs(paper0 - np.asarray(gen(g, params, stats, x, key1, mode="paper"))).max() > 1e-3
  # Eval mode ignores the key.
  np.testing.assert_array_equal(eval_, np.asarray(gen(g, params, stats, x, key1, mode="eval")))
  # Paper mode normalises with the statistics of the batch: an image's output depends on what
  # it is batched with; eval mode's does not.
  alone = np.asarray(gen(g, params, stats, x[:1], key0, mode="paper"))
  assert np.abs(alone[0] - paper0[0]).max() > 1e-3
  eval_alone = np.asarray(gen(g, params, stats, x[:1], key0, mode="eval"))
  np.testing.assert_allclose(eval_alone[0], eval_[0], atol=1e-5)


def test_unknown_mode_is_refused(generator):
  g, params, stats = generator
  with pytest.raises(ValueError, match="paper"):
    evaluate.generate(g, params, stats, np.zeros((1, 64, 64, 3), np.float32),
                      jax.random.key(0), mode="test")


def test_evaluate_reports_every_image_and_is_repeatable(generator):
  g, params, stats = generator
  seen = []
  result = evaluate.evaluate(g, params, stats, _batches(), seed=3, mode="paper",
                             on_batch=lambda batch, out, m: seen.append((batch["name"], out, m)))
  assert result["mode"] == "paper" and result["num_images"] == 4
  assert [r["name"] for r in result["per_image"]] == [f"img{i}.jpg" for i in range(4)]
  for record in result["per_image"]:
    assert set(record) == {"name", "l1", "psnr", "ssim"}
    assert 0 < record["l1"] < 2 and record["psnr"] > 0 and -1 <= record["ssim"] <= 1
  for key in ("l1", "psnr", "ssim"):
    assert result[key] == pytest.approx(np.mean([r[key] for r in result["per_image"]]))
  # The callback sees each batch with its outputs and per-image metrics.
  assert [list(names) for names, _, _ in seen] == [["img0.jpg", "img1.jpg"],
                                                   ["img2.jpg", "img3.jpg"]]
  assert seen[0][1].shape == (2, 64, 64, 3)
  assert seen[1][2]["l1"][1] == pytest.approx(result["per_image"][3]["l1"])
  # Dropout keys derive from the seed only: the same call gives the same numbers.
  again = evaluate.evaluate(g, params, stats, _batches(), seed=3, mode="paper")
  assert again["per_image"] == result["per_image"]
  other_seed = evaluate.evaluate(g, params, stats, _batches(), seed=4, mode="paper")
  assert other_seed["l1"] != result["l1"]


def test_empty_split_is_an_error(generator):
  g, params, stats = generator
  with pytest.raises(ValueError, match="empty"):
    evaluate.evaluate(g, params, stats, [], seed=0)


def test_saved_images_and_results_page(tmp_path):
  image = np.linspace(-1, 1, 2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
  evaluate.save_png(tmp_path / "out" / "x.png", image)
  pixels = np.asarray(Image.open(tmp_path / "out" / "x.png"))
  np.testing.assert_array_equal(pixels, evaluate.to_uint8(image))
  assert pixels[0, 0, 0] == 0 and pixels[-1, -1, -1] == 255
  evaluate.save_png(tmp_path / "grey.png", np.zeros((4, 4, 1), np.float32))
  assert Image.open(tmp_path / "grey.png").mode == "L"

  assert evaluate.file_stem("a/b/facade 1.jpg") == "facade 1"
  assert evaluate.file_stem("synthetic_00003") == "synthetic_00003"
  result = {"mode": "paper", "eval_batch_size": 1, "num_images": 1, "l1": 0.25, "psnr": 18.0,
            "ssim": 0.5, "per_image": [{"name": "<1>.jpg", "file": "<1>", "l1": 0.25,
                                        "psnr": 18.0, "ssim": 0.5}]}
  page = evaluate.write_results_page(tmp_path, result, title="val", grid="samples.png")
  text = page.read_text()
  for fragment in ('src="inputs/&lt;1&gt;.png"', 'src="&lt;1&gt;.png"',
                   'src="targets/&lt;1&gt;.png"', "0.2500", "18.00", "batch size 1",
                   'src="samples.png"'):
    assert fragment in text
