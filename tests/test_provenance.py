"""A run remembers what made it (provenance.py): the record on start and at each resume, with
every checkpoint; a resume under another environment warns, or stops with the strict setting."""

import json
import shutil

import pytest

from helpers import tiny_config
from pix2pix_jax import checkpointing, loop, provenance


def _train(workdir, steps, **overrides):
  config = tiny_config(num_train_steps=steps, checkpoint_every_steps=2, eval_every_steps=0,
                       sample_every_steps=0, **overrides)
  return loop.train_and_evaluate(config, str(workdir))


def test_the_record_names_code_libraries_devices_and_numerics():
  record = provenance.record(tiny_config())
  assert len(record["code"]["source_sha256"]) == 64
  assert {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "tensorflow-datasets",
          "numpy", "pillow"} <= set(record["packages"])
  assert record["platform"] == "cpu" and record["device_count"] >= 1
  assert record["process_count"] == 1
  assert set(record["numerics"]) == {"XLA_FLAGS", "matmul_precision", "deterministic",
                                     "compute_dtype", "conv_impl"}
  assert record["data"] == {"dataset": "synthetic", "direction": "BtoA", "num_synthetic": 16}
  # The host, the time and the Python version do not decide the numbers.
  other = {**record, "host": "elsewhere", "time": "then", "python": "3.99"}
  assert provenance.differences(record, other) == []
  changed = json.loads(json.dumps(record))
  changed["packages"]["jaxlib"] = "0.0.1"
  changed["device_count"] = 8
  assert provenance.differences(record, changed) == [
      f"devices: {record['device_count']} cpu (cpu) → 8 cpu (cpu)",
      f"jaxlib: {record['packages']['jaxlib']} → 0.0.1"]


def test_a_run_records_its_environment_on_start_on_resume_and_in_every_checkpoint(tmp_path):
  workdir = tmp_path / "run"
  _train(workdir, 2)
  launches = sorted((workdir / "environment").iterdir())
  assert len(launches) == 1
  saved = checkpointing.read_saved_environment(workdir / "checkpoints", 2)
  assert saved["packages"] == provenance.package_versions()
  assert provenance.differences(saved, json.loads(launches[0].read_text())) == []
  _train(workdir, 4)
  assert len(list((workdir / "environment").iterdir())) == 2
  assert checkpointing.read_saved_environment(workdir / "checkpoints", 4) is not None
  page = (workdir / "index.html").read_text()
  assert "<summary>environment (" in page and "source_sha256" in page


def test_a_resume_elsewhere_warns_or_with_the_strict_setting_stops(tmp_path, monkeypatch,
                                                                    caplog):
  workdir = tmp_path / "run"
  _train(workdir, 2)
  versions = provenance.package_versions()
  monkeypatch.setattr(provenance, "package_versions",
                      lambda: {**versions, "jaxlib": "0.0.1-simulated"})
  before = sorted(p.name for p in (workdir / "checkpoints").iterdir())
  with pytest.raises(provenance.EnvironmentChangedError) as error:
    _train(workdir, 4, require_identical_environment=True)
  message = str(error.value)
  assert message.startswith("checkpoint 2 was made with ")
  assert "the resumed run would not be bit-identical to an uninterrupted run" in message
  assert f"jaxlib: {versions['jaxlib']} → 0.0.1-simulated" in message
  assert error.value.exit_code == 2
  assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == before
  with caplog.at_level("WARNING"):
    _train(workdir, 4)
  warning = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
  assert "training goes on, but is not bit-identical to an uninterrupted run" in warning
  assert f"jaxlib: {versions['jaxlib']} → 0.0.1-simulated" in warning


def test_a_checkpoint_from_before_records_resumes_with_a_note(tmp_path, caplog):
  workdir = tmp_path / "run"
  _train(workdir, 2)
  shutil.rmtree(workdir / "checkpoints" / "2" / "environment")
  assert checkpointing.read_saved_environment(workdir / "checkpoints", 2) is None
  with caplog.at_level("INFO"):
    summary = _train(workdir, 4)
  assert summary["step"] == 4
  assert any("has no record of the environment" in r.getMessage() for r in caplog.records)
