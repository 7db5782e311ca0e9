"""launch.py end to end in subprocesses: outputs, resume, config overrides, errors, and a
trained run used by the test-time modes with its workdir alone."""

import json

import numpy as np
import pytest
from PIL import Image

from helpers import run_launch

pytestmark = pytest.mark.slow


def _train_steps(workdir):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [json.loads(l)["step"] for l in lines if json.loads(l)["kind"] == "train"]


def _compile_line(result) -> str:
  return next(line for line in result.stderr.splitlines() if "Compiled the train step" in line)


def test_launch_trains_writes_outputs_and_resumes(tmp_path):
  workdir = tmp_path / "run"
  # A cache of this test's own; every program is written to it, however fast it compiles.
  cache = (f"--config.compilation_cache_dir={tmp_path / 'cache'}",)
  env = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
  # What a user's CPU run compiles: model.conv_impl=auto, i.e. the CPU forms.
  result = run_launch(workdir, "--config.num_train_steps=3", "--config.model.conv_impl=auto",
                      *cache, env_extra=env)
  assert "(compilation cache miss)" in _compile_line(result)
  assert (workdir / "checkpoints" / "3").is_dir()
  assert (workdir / "samples" / "step_00000003.png").is_file()
  assert (workdir / "index.html").is_file()
  assert (workdir / "config.json").is_file()
  assert _train_steps(workdir) == [2, 3]
  assert "Results page" in result.stderr and str(workdir) in result.stderr

  # Relaunching with a longer schedule continues from step 3 instead of restarting, and reads
  # the compiled train step from the cache.
  result = run_launch(workdir, "--config.num_train_steps=6", "--config.model.conv_impl=auto",
                      *cache, env_extra=env)
  assert "Resumed from checkpoint 3" in result.stderr
  assert "(compilation cache hit)" in _compile_line(result)
  assert _train_steps(workdir) == [2, 3, 4, 6]
  assert (workdir / "checkpoints" / "6").is_dir()
  eval_lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()
                if json.loads(l)["kind"] == "eval"]
  assert [e["step"] for e in eval_lines] == [3, 6]
  assert all(0 < e["ssim"] <= 1 and e["psnr"] > 0 for e in eval_lines)


def test_misspelt_config_key_fails_clearly(tmp_path):
  result = run_launch(tmp_path / "run", "--config.model.ngff=4", check=False)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.splitlines()[-1] == (
      "error: --config.model.ngff=4: no such config key (config.model has no field 'ngff'); "
      "did you mean --config.model.ngf?")
  assert not (tmp_path / "run").exists()


def test_missing_data_dir_fails_clearly(tmp_path):
  result = run_launch(tmp_path / "run", "--config.data.dataset=folder",
                      f"--config.data.data_dir={tmp_path / 'nowhere'}", check=False)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert result.stderr.splitlines()[-1] == (
      f"error: --config.data.data_dir={tmp_path / 'nowhere'}: no such folder; give the folder "
      "of image pairs (holding train/ and val/)")
  assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- a run, used

def _write_folder_dataset(root, seed=0):
  """train/ and val/ of aligned A|B pairs (32×64: a 32-px crop beside its target)."""
  rng = np.random.default_rng(seed)
  for split, count in (("train", 4), ("val", 2)):
    (root / split).mkdir(parents=True)
    for i in range(count):
      Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(
          root / split / f"{i}.png")


def test_a_folder_run_is_used_with_its_workdir_alone(tmp_path):
  data, workdir = tmp_path / "pairs", tmp_path / "run"
  _write_folder_dataset(data)
  # Trained with overrides of the data and the model, which later commands do not repeat.
  run_launch(workdir, "--config.data.dataset=folder", f"--config.data.data_dir={data}",
             "--config.data.direction=AtoB", "--config.model.ngf=4", "--config.num_train_steps=2",
             "--config.checkpoint_every_steps=2", "--config.eval_every_steps=2",
             "--config.batch_size=4")
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["batch_size"] == 4 and saved["model"]["ngf"] == 4

  # Translate, evaluate, export and summarise with --workdir alone.
  out = tmp_path / "translated"
  result = run_launch(workdir, "--mode=translate", f"--input={data / 'val'}",
                      f"--output={out}", config=None)
  assert "translated 2 image(s) with checkpoint 2" in result.stdout
  assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png"]
  assert Image.open(out / "0.png").size == (64, 32)  # 64×32 is a multiple of 32: own size
  result = run_launch(workdir, "--mode=eval", config=None)
  evaluated = json.loads((workdir / "eval" / "val_step2_paper.json").read_text())
  assert evaluated["num_images"] == 2 and evaluated["direction"] == "AtoB"
  run_launch(workdir, "--mode=export", f"--output={tmp_path / 'gen.jax'}", config=None)
  assert json.loads((tmp_path / "gen.jax.json").read_text())["step"] == 2
  result = run_launch(workdir, "--mode=summary", config=None)
  summary = (workdir / "summary.md").read_text()
  assert summary in result.stdout
  for text in ("| down_0 | Conv4x4 | 1×16×16×4 | 192 |", "| 2 |", '"ngf": 4',
               "| val | paper | 2 | 2 |", f"| {evaluated['l1']:.4f} |"):
    assert text in summary, text

  # A config with another model is refused, naming the difference; a test-time field applies.
  result = run_launch(workdir, "--mode=eval", check=False)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert "different model" in result.stderr
  assert "model.ngf: checkpoint has 4, config has 8" in result.stderr
  # With --workdir alone the run's saved config is the config: its fields are overridden
  # directly, as a user types them.
  run_launch(workdir, "--mode=eval", "--split=val", f"--config.data.data_dir={data}",
             "--config.eval_mode=eval", config=None)
  assert json.loads((workdir / "eval" / "val_step2_eval.json").read_text())["mode"] == "eval"

  # Relaunching training without --config resumes the run with its saved config.
  result = run_launch(workdir, config=None)
  assert "with its saved config" in result.stderr
  assert "Resumed from checkpoint 2" in result.stderr and "nothing to train" in result.stderr
  # ... and trains longer with one field of it changed.
  result = run_launch(workdir, "--config.num_train_steps=3", config=None)
  assert "Resumed from checkpoint 2" in result.stderr
  assert (workdir / "checkpoints" / "3").is_dir()
  assert json.loads((workdir / "config.json").read_text())["model"]["ngf"] == 4


def test_training_without_a_config_or_a_run_says_to_pass_one(tmp_path):
  result = run_launch(tmp_path / "new", config=None, check=False)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  last = result.stderr.splitlines()[-1]
  assert last.startswith("error: --workdir") and "no run to resume" in last
  assert "pass --config" in last
