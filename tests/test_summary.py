"""The run summary (`summary.py`, `--mode=summary`): per-layer tables and their totals."""

import json

import pytest

from configs import default
from helpers import tiny_config
from pix2pix_jax import commands, state as state_lib, summary


def _tables(config):
  built = state_lib.build(config)
  w, m = built.abstract_state, config.model
  h, wd = state_lib.default_image_shape(config)
  g = summary.layer_table(built.generator, {"params": w.g_params, "batch_stats": w.g_batch_stats},
                          (1, h, wd, m.input_nc))
  d = summary.layer_table(built.discriminator,
                          {"params": w.d_params, "batch_stats": w.d_batch_stats},
                          (1, h, wd, m.input_nc + m.output_nc))
  return g, d


def test_paper_networks_add_up_to_the_authors_counts():
  generator, discriminator = _tables(default.get_config())
  assert sum(r.params for r in generator) == 54_413_955
  assert sum(r.params for r in discriminator) == 2_768_705
  first, last = generator[0], generator[-1]
  assert (first.path, first.kind, first.output_shape, first.params) == (
      "down_0", "Conv4x4", (1, 128, 128, 64), 4 * 4 * 3 * 64)
  assert (last.path, last.output_shape, last.params) == ("up_0", (1, 256, 256, 3), 6_147)
  assert [r.path for r in generator].index("down_7") < [r.path for r in generator].index("up_7")
  assert discriminator[-1].output_shape == (1, 30, 30, 1)  # the 70×70 PatchGAN's 30×30 logits
  assert sum(r.batch_stats for r in generator) == 2 * sum(
      r.output_shape[-1] for r in generator if r.kind == "BatchNorm")


def test_nested_modules_are_listed_before_their_layers():
  generator, _ = _tables(tiny_config(**{"model.generator": "resnet_6blocks"}))
  paths = [r.path for r in generator]
  block = paths.index("block_0")
  assert paths[block + 1:block + 3] == ["block_0/conv_0", "block_0/norm_0"]
  assert generator[block].params == 0  # its layers hold the parameters
  assert paths.index("block_0/conv_1") < paths.index("block_1")


def test_summary_of_a_config_before_training(tmp_path, capsys):
  workdir = tmp_path / "new"
  config = commands.resolve_config("summary", str(workdir), default.get_config())
  path = commands.run_summary(config, str(workdir))
  text = path.read_text()
  assert path == workdir / "summary.md" and text in capsys.readouterr().out
  assert "| **total** | | | **54,413,955** |" in text
  assert "| **total** | | | **2,768,705** |" in text
  assert f"None in {workdir / 'checkpoints'}." in text and "## Latest evaluation" in text
  config_json = text.split("```json\n")[1].split("```")[0]
  assert json.loads(config_json) == config.to_dict()
  with pytest.raises(FileNotFoundError, match="no checkpoints in"):
    commands.resolve_config("summary", str(workdir))
