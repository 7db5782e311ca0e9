"""A run whose every path is in a bucket (gs://), end to end, against a GCS server on 127.0.0.1:
prepared data, folder data, the manual dir, the compilation cache, the reference column, the
test-time modes from --workdir alone; one writer per run; clear errors in seconds."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from etils import epath
from PIL import Image

from conftest import REPO_ROOT
from helpers import TINY_CONFIG, run_launch, tiny_config
from pix2pix_jax import metrics_log, storage

pytestmark = pytest.mark.slow
TRACEBACK = "Traceback (most recent call last)"


def _bucket(name: str) -> epath.Path:
  return epath.Path(f"gs://runs/{name}-{time.time_ns()}")


def _write_pairs(folder, count: int = 4, size: int = 32) -> None:
  rng = np.random.default_rng(0)
  for split in ("train", "val"):
    for i in range(count):
      pixels = rng.integers(0, 256, (size, 2 * size, 3), np.uint8)
      path = folder / split / f"{i}.png"
      path.parent.mkdir(parents=True, exist_ok=True)
      with path.open("wb") as f:
        Image.fromarray(pixels).save(f, format="PNG")


def _listing(path) -> list[str]:
  storage.invalidate_cache(path)
  return sorted(os.fspath(p.relative_to(path)) for p in storage.files(path))


def test_every_path_in_a_bucket_end_to_end(gcs, tmp_path):
  base = _bucket("e2e")
  pairs, prepared, workdir = base / "pairs", base / "tfds", base / "run"
  _write_pairs(pairs)
  # Prepared into the bucket (built locally, uploaded whole: array_record writes local files).
  result = subprocess.run(
      [sys.executable, "-m", "pix2pix_jax.data.prepare", "--dataset=folder", "--name=tiny",
       f"--source_dir={pairs}", f"--data_dir={prepared}"], cwd=REPO_ROOT,
      env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"is prepared at {prepared}/pix2pix_folder/tiny/1.0.0 (train 4, val 4" in result.stdout
  cache = base / "compilation_cache"
  common = ["--config.num_train_steps=4", "--config.checkpoint_every_steps=2",
            "--config.eval_every_steps=2", "--config.sample_every_steps=2",
            "--config.log_every_steps=1", "--config.tensorboard=True",
            f"--config.compilation_cache_dir={cache}"]
  # A first run reads the folder of pairs in the bucket; the second the prepared records, with
  # the first as its reference column.
  reference = base / "reference"
  run_launch(reference, "--config.data.dataset=folder", f"--config.data.data_dir={pairs}",
             "--config.num_train_steps=2", "--config.checkpoint_every_steps=2",
             "--config.eval_every_steps=0", "--config.sample_every_steps=0")
  result = run_launch(workdir, "--config.data.dataset=pix2pix_folder/tiny",
                      f"--config.data.tfds_data_dir={prepared}",
                      f"--config.report.reference_workdir={reference}", *common)
  assert f"Results page: {workdir}/index.html" in result.stderr
  assert "as the reference column" in result.stderr
  files = _listing(workdir)
  for name in ("config.json", "metrics.jsonl", "index.html", "plots/losses.png",
               "samples/step_00000004.png", "eval/step_00000004.json",
               "checkpoints/4/commit_success.txt"):
    assert name in files, (name, files)
  assert not [f for f in files if f.startswith(metrics_log.PARTS) or f == "run.lock"]
  assert any(f.startswith("tensorboard/events.out.tfevents") for f in files)
  steps = [json.loads(line)["step"] for line in metrics_log.read_lines(workdir)
           if json.loads(line)["kind"] == "train"]
  assert steps == [1, 2, 3, 4]
  assert _listing(cache), "the compilation cache is in the bucket"
  assert not os.path.exists(REPO_ROOT / "gs:"), "nothing went to a local folder named gs:"

  # The test-time modes with --workdir alone, their outputs in the bucket too.
  out = base / "translated"
  result = run_launch(workdir, "--mode=translate", f"--input={pairs / 'val'}",
                      f"--output={out}", config=None)
  assert "translated 4 image(s) with checkpoint 4" in result.stdout
  assert _listing(out) == ["0.png", "1.png", "2.png", "3.png"]
  run_launch(workdir, "--mode=eval", config=None)
  evaluated = json.loads((workdir / "eval" / "val_step4_paper.json").read_text())
  assert evaluated["num_images"] == 4
  run_launch(workdir, "--mode=export", f"--output={base / 'gen.onnx'}", config=None)
  assert (base / "gen.onnx").exists()
  result = run_launch(workdir, "--mode=summary", config=None)
  assert "| 4 |" in (workdir / "summary.md").read_text()


def test_prepared_from_a_manual_dir_in_a_bucket(gcs, tmp_path):
  from pix2pix_jax.data import prepare, tfds_builder
  manual = _bucket("manual")
  _write_pairs(manual / "facades", count=2)
  builder = prepare.prepare("facades", tmp_path / "data", manual_dir=os.fspath(manual),
                            allow_download=False)
  assert {s: i.num_examples for s, i in builder.info.splits.items()} == {"train": 2, "val": 2}
  assert len(tfds_builder.TfdsSource("pix2pix/facades", "val", tmp_path / "data")) == 2


def _hold(workdir, log_path) -> subprocess.Popen:
  """A training run that holds `workdir` until killed."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO_ROOT)}
  with open(log_path, "w") as log:
    process = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, str(REPO_ROOT / "launch.py"), f"--config={TINY_CONFIG}",
         f"--workdir={workdir}", "--config.num_train_steps=100000",
         "--config.checkpoint_every_steps=0", "--config.eval_every_steps=0",
         "--config.sample_every_steps=0", "--config.log_every_steps=100000"], cwd=REPO_ROOT,
        env=env, stdout=log, stderr=log)
  deadline = time.monotonic() + 300
  # Held, and past its first step (which writes config.json): from then on it writes nothing.
  while not all((epath.Path(workdir) / name).exists() for name in ("run.lock", "config.json")):
    storage.invalidate_cache(workdir)
    assert process.poll() is None and time.monotonic() < deadline, open(log_path).read()[-3000:]
    time.sleep(0.2)
  return process


@pytest.mark.parametrize("where", ["disk", "bucket"])
def test_a_second_launch_on_a_held_workdir_stops_at_once(where, tmp_path, request):
  if where == "bucket":
    request.getfixturevalue("gcs")
  workdir = tmp_path / "run" if where == "disk" else _bucket("held")
  holder = _hold(workdir, tmp_path / "holder.log")
  try:
    before = _listing(workdir)
    start = time.monotonic()
    second = run_launch(workdir, check=False)
    assert time.monotonic() - start < 30
    assert second.returncode == 2 and TRACEBACK not in second.stderr, second.stderr[-3000:]
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --workdir {workdir} is in use by another run (host "
                           f"{socket.gethostname()}, process {holder.pid}, since "), last
    assert last.endswith("stop that run, or give this one another --workdir"), last
    assert _listing(workdir) == before, "the second launch touched the workdir"
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  # A holder killed with kill -9 does not keep the run locked: its process is gone from this
  # host, so the next launch takes the workdir over at once and resumes (from scratch here).
  result = run_launch(workdir, "--config.num_train_steps=1", "--config.eval_every_steps=0",
                      "--config.sample_every_steps=0")
  assert "Done at step 1" in result.stderr


def test_bucket_errors_are_one_line_within_seconds(gcs, tmp_path):
  cases = [
      ("gs://no-such-bucket/run", {}, "the bucket gs://no-such-bucket does not exist"),
      ("s3://bucket/run", {}, "s3:// is not supported; use a local path or gs://BUCKET/PATH"),
      # An endpoint that does not answer: the probe gives up after PIX2PIX_STORAGE_TIMEOUT.
      ("gs://runs/unreachable", {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:9",
                                 "PIX2PIX_STORAGE_TIMEOUT": "3"}, "storage endpoint"),
  ]
  for workdir, env, message in cases:
    start = time.monotonic()
    result = run_launch(workdir, check=False, env_extra=env)
    assert time.monotonic() - start < 30
    assert result.returncode in (1, 2) and TRACEBACK not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: --workdir {workdir}") and message in last, last
  assert not _listing(epath.Path("gs://runs/unreachable"))
