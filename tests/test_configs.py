"""Every shipped config loads, is valid, and keeps the paper's settings."""

import importlib.util

import pytest

from conftest import REPO_ROOT
from pix2pix_jax import config_check, modes

# saved.py is a run's own config (--config=configs/saved.py:WORKDIR; tests/test_launch.py).
CONFIGS = sorted(p.stem for p in (REPO_ROOT / "configs").glob("*.py")
                 if p.stem not in ("__init__", "saved"))


def _load(name, *args):
  spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "configs" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(*args)


def test_saved_config_needs_a_run():
  with pytest.raises(ValueError, match=r"--config=configs/saved.py:WORKDIR"):
    _load("saved")
  with pytest.raises(FileNotFoundError, match="no checkpoints in"):
    _load("saved", str(REPO_ROOT / "no_such_run"))


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_valid(name):
  config = _load(name)
  for mode in modes.MODES:  # every rule of every mode, one device
    assert config_check.problems(config, mode=mode, num_devices=1) == [], mode


@pytest.mark.parametrize("name,direction,batch,epochs", [
    ("facades", "BtoA", 1, 200), ("maps", "AtoB", 1, 200), ("cityscapes", "BtoA", 1, 200),
    ("edges2shoes", "AtoB", 4, 15), ("edges2handbags", "AtoB", 4, 15),
    ("night2day", "BtoA", 4, 17)])  # day → night: the authors' night2day A is night
def test_paper_settings(name, direction, batch, epochs):
  config = _load(name)
  assert config.data.dataset == name
  assert (config.data.direction, config.batch_size) == (direction, batch)
  assert config.optim.n_epochs + config.optim.n_epochs_decay == epochs
  assert (config.data.load_size, config.data.crop_size) == (286, 256)
  assert config.model.generator == "unet_256" and config.loss.lambda_l1 == 100


def test_default_is_the_paper():
  config = _load("default")
  assert (config.optim.lr, config.optim.beta1, config.optim.beta2) == (2e-4, 0.5, 0.999)
  assert config.loss.gan_mode == "vanilla" and config.model.norm == "batch"
  assert config.model.use_dropout and config.model.dropout_rate == 0.5
  assert not config.data.no_flip and config.eval_mode == "paper"
  # The authors' options: init_weights('normal', 0.02), --num_test 50, --max_dataset_size inf;
  # their Pix2PixModel adds no gradient penalty to wgangp.
  assert (config.model.init_type, config.model.init_gain) == ("normal", 0.02)
  assert (config.num_test, config.data.max_dataset_size, config.loss.lambda_gp) == (50, 0, 0)
