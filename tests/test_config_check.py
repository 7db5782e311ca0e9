"""The config's rules (config_check.py): every problem at once, each naming the key as typed,
its value and what is allowed; the shipped configs pass in every mode; the size rules agree
with what the networks accept (tests/test_configs.py checks the shipped configs)."""

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from helpers import tiny_config
from pix2pix_jax import config_check, errors, models, modes


def _modes_of(part):
  return [name for name, mode in modes.MODES.items() if part is None or part in mode.reads]


@pytest.mark.parametrize("key, part, rule", config_check.FIELD_RULES,
                         ids=[key for key, _, _ in config_check.FIELD_RULES])
def test_each_rule_names_the_key_its_value_and_what_is_allowed(key, part, rule):
  config = tiny_config().to_dict()
  *parents, leaf = key.split(".")
  node = config
  for parent in parents:
    node = node[parent]
  node[leaf] = None  # no rule accepts it
  found = config_check.problems(ml_collections.ConfigDict(config), mode=_modes_of(part)[0])
  assert found and found[0].startswith(f"--config.{key}=None: must be "), found


def test_every_problem_is_reported_at_once():
  config = tiny_config(**{"batch_size": 0, "optim.lr": -1.0, "model.norm": "group"})
  with pytest.raises(errors.ConfigError) as error:
    config_check.check(config)
  assert error.value.problems == [
      "--config.model.norm=group: must be one of batch, instance, none",
      "--config.optim.lr=-1.0: must be a number > 0 (Adam's learning rate, e.g. 0.0002)",
      "--config.batch_size=0: must be an integer >= 1 (the global batch over every device)"]
  assert str(error.value).splitlines()[0] == "the config has 3 problems:"
  assert isinstance(error.value, ValueError) and error.value.exit_code == 2


def test_training_settings_are_not_checked_at_test_time():
  config = tiny_config(**{"optim.lr": -1.0, "log_every_steps": -1, "num_test": -1})
  assert len(config_check.problems(config, mode="train")) == 2
  assert config_check.problems(config, mode="eval") == [
      "--config.num_test=-1: must be an integer >= 0 (0 = the whole split)"]
  for mode in ("translate", "export", "summary", "demo"):
    assert config_check.problems(config, mode=mode) == []
  # convert builds the optimisers the imported run will train with.
  assert config_check.problems(config, mode="convert") == [
      "--config.optim.lr=-1.0: must be a number > 0 (Adam's learning rate, e.g. 0.0002)"]


def test_a_config_saved_before_newer_keys_still_passes():
  config = tiny_config()
  for section, key in ((config, "num_test"), (config, "compilation_cache_dir"),
                       (config.model, "conv_impl"), (config.model, "init_type"),
                       (config.model, "init_gain"), (config.data, "num_workers"),
                       (config.data, "max_dataset_size")):
    del section[key]
  for mode in modes.MODES:
    assert config_check.problems(config, mode=mode) == []


def test_sizes_must_fit_the_generator():
  # 5 U-Net levels: multiples of 32; the crop no larger than the resize.
  assert config_check.problems(tiny_config(**{"data.crop_size": 48, "data.load_size": 48})) == [
      "--config.data.crop_size=48: the U-Net with 5 levels (model.generator=unet) needs sides "
      "that are multiples of 32, e.g. --config.data.crop_size=32"]
  assert config_check.problems(tiny_config(**{"data.crop_size": 64})) == [
      "--config.data.crop_size=64: must be <= --config.data.load_size=36 "
      "(data.preprocess=resize_and_crop scales to load_size, then crops)"]
  # Non-square crops: the width, crop_size × aspect_ratio, must fit too.
  found = config_check.problems(tiny_config(**{"data.aspect_ratio": 1.5}))
  assert found == ["--config.data.aspect_ratio=1.5: crops 32×48 pixels: the U-Net with 5 levels "
                   "(model.generator=unet) needs sides that are multiples of 32"]
  assert config_check.problems(tiny_config(**{"data.aspect_ratio": 2.0})) == []
  # The ResNet generators need multiples of 4, at least 8.
  resnet = {"model.generator": "resnet_6blocks", "data.crop_size": 30, "data.load_size": 30}
  assert "multiples of 4" in config_check.problems(tiny_config(**resnet))[0]


@pytest.mark.parametrize("num_downs", [1, 5])
@pytest.mark.parametrize("size", [8, 16, 24, 32, 40, 64])
def test_the_size_rule_agrees_with_the_unet(num_downs, size):
  config = tiny_config(**{"model.num_downs": num_downs, "data.crop_size": size,
                          "data.load_size": size, "model.discriminator": "pixel"})
  allowed = config_check.problems(config, mode="summary") == []
  generator = models.make_generator(config)
  try:
    jax.eval_shape(lambda: generator.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                          train=False))
    builds = True
  except ValueError:
    builds = False
  assert allowed == builds


@pytest.mark.parametrize("n_layers", [0, 1, 3])
@pytest.mark.parametrize("size", [8, 16, 24, 32, 48, 64])
def test_the_patchgan_rule_agrees_with_the_discriminator(n_layers, size):
  config = tiny_config(**{"model.discriminator": "n_layers", "model.n_layers_d": n_layers,
                          "model.generator": "resnet_6blocks", "data.crop_size": size,
                          "data.load_size": size})
  allowed = not any("PatchGAN" in p for p in config_check.problems(config, mode="summary"))
  discriminator = models.make_discriminator(config)
  try:
    out = jax.eval_shape(lambda: discriminator.init_with_output(
        jax.random.key(0), jnp.zeros((1, size, size, 6)), train=False)[0])
    builds = min(out.shape[1:]) >= 1
  except (ValueError, TypeError):
    builds = False
  assert allowed == builds


def test_the_batch_must_split_over_the_devices():
  found = config_check.problems(tiny_config(batch_size=3), num_devices=2)
  assert found == ["--config.batch_size=3: global batch 3 (config.batch_size) is not divisible "
                   "by the 2 devices it is sharded over; use a multiple of 2, e.g. "
                   "--config.batch_size=4"]
  assert config_check.problems(tiny_config(batch_size=4), num_devices=2) == []


def test_paths_that_must_exist(tmp_path):
  config = tiny_config(**{"data.dataset": "folder", "data.data_dir": str(tmp_path / "none")})
  assert config_check.problems(config) == [
      f"--config.data.data_dir={tmp_path / 'none'}: no such folder; give the folder of image "
      "pairs (holding train/ and val/)"]
  config.data.data_dir = str(tmp_path)
  assert config_check.problems(config) == []
  assert config_check.problems(config, mode="translate") == []  # test time reads no data


def test_surprising_settings_are_warnings():
  assert config_check.warnings(tiny_config(checkpoint_every_steps=0)) == [
      "checkpoint_every_steps=0: only the last step (and a preemption) is saved; a crash loses "
      "the whole run."]
  assert "not a multiple" in config_check.warnings(
      tiny_config(checkpoint_every_steps=3, keep_every_steps=4))[0]
  assert config_check.warnings(tiny_config()) == []
