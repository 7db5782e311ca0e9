"""launch.py end to end in subprocesses: outputs, resume, config overrides and errors."""

import json

import pytest

from helpers import run_launch

pytestmark = pytest.mark.slow


def _train_steps(workdir):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [json.loads(l)["step"] for l in lines if json.loads(l)["kind"] == "train"]


def test_launch_trains_writes_outputs_and_resumes(tmp_path):
  workdir = tmp_path / "run"
  result = run_launch(workdir, "--config.num_train_steps=3")
  assert (workdir / "checkpoints" / "3").is_dir()
  assert (workdir / "samples" / "step_00000003.png").is_file()
  assert (workdir / "index.html").is_file()
  assert (workdir / "config.json").is_file()
  assert _train_steps(workdir) == [2, 3]
  assert "Results page" in result.stderr and str(workdir) in result.stderr

  # Relaunching with a longer schedule continues from step 3 instead of restarting.
  result = run_launch(workdir, "--config.num_train_steps=6")
  assert "Resumed from checkpoint 3" in result.stderr
  assert _train_steps(workdir) == [2, 3, 4, 6]
  assert (workdir / "checkpoints" / "6").is_dir()
  eval_lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()
                if json.loads(l)["kind"] == "eval"]
  assert [e["step"] for e in eval_lines] == [3, 6]
  assert all(0 < e["ssim"] <= 1 and e["psnr"] > 0 for e in eval_lines)


def test_config_override_is_applied(tmp_path):
  workdir = tmp_path / "run"
  run_launch(workdir, "--config.num_train_steps=1", "--config.batch_size=4",
             "--config.model.ngf=4")
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["batch_size"] == 4 and saved["model"]["ngf"] == 4


def test_misspelt_config_key_fails_clearly(tmp_path):
  result = run_launch(tmp_path / "run", "--config.model.ngff=4", check=False)
  assert result.returncode != 0
  assert "ngff" in result.stderr
  assert not (tmp_path / "run").exists()


def test_missing_data_dir_fails_clearly(tmp_path):
  result = run_launch(tmp_path / "run", "--config.data.dataset=folder",
                      f"--config.data.data_dir={tmp_path / 'nowhere'}", check=False)
  assert result.returncode != 0
  assert "nowhere" in result.stderr
