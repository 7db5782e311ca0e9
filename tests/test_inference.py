"""Loading a trained run for test time (`inference.py`), evaluating and translating with it
(`commands.py`, launch modes)."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import REAL_FACADES, REPO_ROOT
from helpers import run_launch, tiny_config
from pix2pix_jax import checkpointing, commands, inference, platform, state as state_lib
from pix2pix_jax.data import images as images_lib

# Two steps of the tiny config, a checkpoint after each, periodic evaluation at step 2.
TRAIN_OVERRIDES = {"num_train_steps": 2, "checkpoint_every_steps": 1, "eval_every_steps": 2,
                   "sample_every_steps": 2, "log_every_steps": 1}
VAL_NAMES = [f"synthetic_{i:05d}" for i in range(8)]  # the tiny config's val split


def train_tiny_run(tmp_path_factory) -> pathlib.Path:
  """The tiny run, trained once per session (other modules reuse it from disk)."""
  workdir = tmp_path_factory.getbasetemp() / "tiny_trained_run"
  if not (workdir / "checkpoints" / "2").is_dir():
    from pix2pix_jax import loop
    platform.configure()
    loop.train_and_evaluate(tiny_config(**TRAIN_OVERRIDES), str(workdir))
  return workdir


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  return train_tiny_run(tmp_path_factory)


@pytest.fixture(scope="module")
def translator(trained_run):
  platform.configure()
  return inference.load(trained_run)


@pytest.fixture(scope="module")
def cli_eval(trained_run):
  """`launch.py --mode=eval` on the latest checkpoint, paper mode (the default)."""
  result = run_launch(trained_run, "--mode=eval")
  return trained_run / "eval", result.stdout


def _rgb(seed, height, width, channels=3):
  return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


# ---------------------------------------------------------------------------- evaluation

@pytest.mark.slow
def test_eval_cli_writes_metrics_images_and_page(cli_eval):
  eval_dir, stdout = cli_eval
  result = json.loads((eval_dir / "val_step2_paper.json").read_text())
  assert (result["split"], result["step"], result["mode"]) == ("val", 2, "paper")
  assert result["eval_batch_size"] == 2 and result["num_images"] == 8
  assert [r["name"] for r in result["per_image"]] == VAL_NAMES
  for record in result["per_image"]:
    assert set(record) == {"name", "file", "l1", "psnr", "ssim"}
    assert 0 < record["l1"] < 2 and record["psnr"] > 0 and -1 <= record["ssim"] <= 1
  for key in ("l1", "psnr", "ssim"):
    assert result[key] == pytest.approx(np.mean([r[key] for r in result["per_image"]]))
  assert "eval val @ step 2 (paper mode, batch 2)" in stdout
  assert f"{result['l1']:.4f}" in stdout and "synthetic_00007" in stdout

  # The periodic evaluation during training computed exactly the same numbers.
  periodic = json.loads((eval_dir / "step_00000002.json").read_text())
  assert periodic["mode"] == "paper"
  assert [(r["l1"], r["psnr"], r["ssim"]) for r in periodic["per_image"]] == \
      [(r["l1"], r["psnr"], r["ssim"]) for r in result["per_image"]]

  images_dir = eval_dir / "val_step2_paper"
  for name in VAL_NAMES:
    for sub in ("", "inputs/", "targets/"):
      assert Image.open(images_dir / f"{sub}{name}.png").size == (32, 32)
  grid = Image.open(images_dir / "samples.png")
  assert grid.info.get("pix2pix_columns") == "input,output,target,heatmap"
  page = (images_dir / "index.html").read_text()
  assert page.count("<tr><th>synthetic_") == 8
  assert 'src="inputs/synthetic_00003.png"' in page and 'src="samples.png"' in page


@pytest.mark.slow
def test_translator_reproduces_the_evaluated_outputs(cli_eval, trained_run):
  # Saved inputs are exact (uint8 data); batching and dropout keys follow evaluate().
  images_dir = cli_eval[0] / "val_step2_paper"
  inputs = np.stack([np.asarray(Image.open(images_dir / "inputs" / f"{n}.png"))
                     for n in VAL_NAMES])
  translator = inference.load(trained_run, batch_size=2)
  outputs = translator(inputs)
  for name, out in zip(VAL_NAMES, outputs):
    np.testing.assert_array_equal(out, np.asarray(Image.open(images_dir / f"{name}.png")))


def test_eval_mode_at_an_older_step(trained_run, translator):
  config = commands.resolve_config("eval", str(trained_run), tiny_config(eval_mode="eval", num_test=5),
                                   step=1)
  result = commands.run_eval(config, str(trained_run), step=1)
  assert (result["step"], result["mode"]) == (1, "eval")
  # num_test: the first files in the authors' order, as their test.py --num_test.
  assert [r["name"] for r in result["per_image"]] == VAL_NAMES[:5]
  saved = json.loads((trained_run / "eval" / "val_step1_eval.json").read_text())
  assert saved["per_image"] == result["per_image"]
  assert pathlib.Path(result["page"]).is_file()
  with pytest.raises(ValueError, match=r"no checkpoint 7 .*\[1, 2\]"):
    commands.resolve_config("eval", str(trained_run), step=7)
  with pytest.raises(ValueError, match=r"no checkpoint 7 .*\[1, 2\]"):
    commands.run_eval(config, str(trained_run), step=7)


def test_paper_and_eval_modes_differ(trained_run, translator):
  x = np.stack([_rgb(1, 32, 32), _rgb(2, 32, 32)])
  eval_translator = inference.load(trained_run, mode="eval")
  assert translator.mode == "paper" and translator.step == 2
  paper, conventional = translator(x), eval_translator(x)
  assert np.abs(paper.astype(int) - conventional.astype(int)).max() > 2
  np.testing.assert_array_equal(paper, translator(x))  # same seed → same output
  older = inference.load(trained_run, step=1)
  assert older.step == 1 and not np.array_equal(older(x), paper)


def test_missing_run_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoints in .*nothing"):
    inference.load(tmp_path / "nothing")
  assert not (tmp_path / "nothing").exists()


# ---------------------------------------------------------------------------- the run's config

def test_run_config_is_the_saved_one_with_test_time_fields_on_top(trained_run):
  saved = inference.run_config(trained_run)
  assert saved.num_train_steps == 2 and saved.eval_every_steps == 2  # the training overrides
  # A given config's test-time fields apply; its training fields do not.
  given = tiny_config(eval_mode="eval", eval_batch_size=1, seed=5,
                      **{"data.eval_split": "train", "optim.lr": 0.5, "batch_size": 8})
  config = inference.run_config(trained_run, given)
  assert (config.eval_mode, config.eval_batch_size, config.seed) == ("eval", 1, 5)
  assert config.data.eval_split == "train"
  assert (config.optim.lr, config.batch_size, config.num_train_steps) == (
      saved.optim.lr, saved.batch_size, 2)
  # A different model is refused, naming what differs.
  with pytest.raises(checkpointing.CheckpointError,
                     match=r"different model:\n  model.ngf: checkpoint has 8, config has 16"):
    inference.run_config(trained_run, tiny_config(**{"model.ngf": 16}))


def test_restoring_builds_no_optimiser_schedule_step_or_data(trained_run, translator,
                                                             monkeypatch):
  from pix2pix_jax import train
  from pix2pix_jax.data import pipeline

  def refuse(*args, **kwargs):
    raise AssertionError("test time built part of the training set-up")

  for module, name in [(state_lib, "make_optimizer"), (state_lib, "lr_schedule"),
                       (state_lib, "create_train_state"), (train, "bind_train_step"),
                       (pipeline, "get_source"), (pipeline, "image_shape")]:
    monkeypatch.setattr(module, name, refuse)
  built, weights, step = inference.restore(inference.run_config(trained_run), trained_run)
  assert step == 2 and built.g_tx is None and built.d_tx is None
  assert isinstance(weights, state_lib.Weights)  # parameters and statistics, nothing else
  x = _rgb(0, 32, 32)
  np.testing.assert_array_equal(inference.load(trained_run)(x), translator(x))


def test_partial_restore_reads_exactly_the_saved_networks(trained_run):
  # The checkpoint holds the whole TrainState; restoring it whole (as training does) and
  # restoring only the networks give the same arrays.
  config = inference.run_config(trained_run)
  full = state_lib.build(config, steps_per_epoch=1)
  ckpt = checkpointing.Checkpointer(trained_run / "checkpoints", config=config.to_dict())
  state, step = ckpt.restore_latest(full.abstract_state)
  ckpt.close()
  _, weights, partial_step = inference.restore(config, trained_run)
  assert step == partial_step == 2
  for name in ("g_params", "g_batch_stats", "d_params", "d_batch_stats"):
    expected, got = getattr(state, name), getattr(weights, name)
    assert jax.tree.structure(expected) == jax.tree.structure(got), name
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
      np.testing.assert_array_equal(a, b, err_msg=name)


_FRESH_PROCESS = """
import sys
import numpy as np
from pix2pix_jax import inference
out = inference.load(sys.argv[1])(np.zeros((32, 32, 3), np.uint8))
assert out.shape == (32, 32, 3), out.shape
print(sorted(m for m in sys.modules if m.startswith("pix2pix_jax")))
"""


def test_test_time_never_imports_the_training_loop(trained_run):
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, str(trained_run)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  imported = eval(result.stdout.strip().splitlines()[-1])  # pylint: disable=eval-used
  assert "pix2pix_jax.inference" in imported
  assert "pix2pix_jax.loop" not in imported and "pix2pix_jax.train" not in imported, imported


# ---------------------------------------------------------------------------- translation

def test_translator_inputs_dtypes_channels_and_aligned_pairs(translator):
  rgb = _rgb(0, 32, 32)
  out = translator(rgb)
  assert out.shape == (32, 32, 3) and out.dtype == np.uint8
  floats = translator(rgb[None].astype(np.float32) * (2 / 255) - 1)
  assert floats.dtype == np.float32 and floats.shape == (1, 32, 32, 3)
  assert -1 <= floats.min() and floats.max() <= 1
  np.testing.assert_array_equal(translator(np.concatenate([rgb, _rgb(5, 32, 32, 1)], -1)), out)
  grey = _rgb(3, 32, 32, 1)
  np.testing.assert_array_equal(translator(grey), translator(np.repeat(grey, 3, -1)))
  # An authors' A|B image: the input half is B (the right one) for direction BtoA.
  assert translator.direction == "BtoA"
  pair = np.concatenate([_rgb(9, 32, 32), rgb], axis=1)
  np.testing.assert_array_equal(translator(pair, aligned=True), out)
  # Multiples of 2**num_downs (32) go through at their own size; others are resized.
  assert translator(_rgb(4, 64, 96)).shape == (64, 96, 3)
  assert translator(_rgb(4, 40, 24)).shape == (32, 32, 3)
  assert translator(_rgb(4, 40, 24), resize="multiple").shape == (32, 32, 3)
  assert translator(_rgb(4, 70, 100), resize="multiple").shape == (64, 96, 3)
  with pytest.raises(ValueError, match=r"image 0: 24×40 pixels.*multiples of 32"):
    translator(_rgb(4, 40, 24), resize="none")


@pytest.mark.slow
def test_translate_cli_writes_matching_names(trained_run, tmp_path):
  src = tmp_path / "in"
  src.mkdir()
  Image.fromarray(_rgb(0, 32, 32)).save(src / "a.png")
  Image.fromarray(_rgb(1, 24, 40)).save(src / "b.jpg")  # resized to the 32-px crop
  Image.fromarray(_rgb(2, 64, 64, 1)[..., 0]).save(src / "c.png")  # grey, fully convolutional
  Image.fromarray(_rgb(3, 32, 32, 4)).save(src / "d.png")
  (src / "notes.txt").write_text("not an image")
  out = tmp_path / "out"
  result = run_launch(trained_run, "--mode=translate", f"--input={src}", f"--output={out}")
  assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png", "d.png"]
  sizes = {p.name: Image.open(p).size for p in out.iterdir()}
  assert sizes == {"a.png": (32, 32), "b.png": (32, 32), "c.png": (64, 64), "d.png": (32, 32)}
  assert "translated 4 image(s)" in result.stdout


def test_translate_files_errors_name_the_file(translator, tmp_path):
  odd = tmp_path / "odd.png"
  Image.fromarray(_rgb(0, 40, 24)).save(odd)
  with pytest.raises(ValueError, match=r"odd\.png: 24×40 pixels.*multiples of 32"):
    translator.translate_files([odd], tmp_path / "out", resize="none")
  good, broken = tmp_path / "good.png", tmp_path / "broken.jpg"
  Image.fromarray(_rgb(0, 32, 32)).save(good)
  broken.write_bytes(good.read_bytes()[:60])
  with pytest.raises(images_lib.BadImageError, match=r"broken\.jpg"):
    translator.translate_files([good, broken], tmp_path / "out")
  assert not (tmp_path / "out").exists()  # nothing written when an input is bad
  Image.fromarray(_rgb(0, 32, 32)).save(tmp_path / "good.jpg")
  with pytest.raises(ValueError, match=r"both be written to good\.png"):
    translator.translate_files([good, tmp_path / "good.jpg"], tmp_path / "out")
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="holds no images"):
    inference.list_inputs(tmp_path / "empty")


@pytest.mark.real_data
@pytest.mark.skipif(not REAL_FACADES.is_dir(),
                    reason="the real CMP facades are not here: set PIX2PIX_FACADES_DIR")
def test_translate_an_authors_aligned_facade(translator, tmp_path):
  path = REAL_FACADES / "val" / "1.jpg"
  written = translator.translate_files([path], tmp_path, aligned=True)
  assert [p.name for p in written] == ["1.png"]
  # The 256×256 label-map half is a multiple of 32: translated at its own size.
  assert Image.open(written[0]).size == (256, 256)
