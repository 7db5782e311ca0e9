"""The pix2pix networks, chosen by name as the authors' `--netG` / `--netD`.

Each network's module holds its Flax definition and its facts: the input sizes it takes
(`size_multiple`, `min_side`), the authors' state-dict layout (`torch_layout()`) and the
authors' name for it. Adding a network: its module, one entry below, its tests.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pix2pix_jax.models.patchgan import PatchDiscriminator, PixelDiscriminator
from pix2pix_jax.models.resnet import (ResnetBlock, ResnetGenerator, resnet_6blocks,
                                       resnet_9blocks)
from pix2pix_jax.models.unet import UNetGenerator, unet_128, unet_256

GENERATORS = {
    "unet_128": unet_128,
    "unet_256": unet_256,
    "unet": UNetGenerator,  # model.num_downs levels
    "resnet_9blocks": resnet_9blocks,
    "resnet_6blocks": resnet_6blocks,
}
DISCRIMINATORS = {
    "basic": functools.partial(PatchDiscriminator, n_layers=3),
    "n_layers": PatchDiscriminator,  # model.n_layers_d layers
    "pixel": PixelDiscriminator,
}


def _common(model_config, dtype) -> dict[str, Any]:
  """The fields every network takes from `config.model` (the authors' defaults where a saved
  config predates a key)."""
  return dict(norm=model_config.norm, dtype=dtype,
              init_type=model_config.get("init_type", "normal"),
              init_gain=model_config.get("init_gain", 0.02),
              conv_impl=model_config.get("conv_impl", "auto"))


def _from_config(entry, model_config, dtype) -> nn.Module:
  """A registry entry (a class, or a partial fixing some fields) built from `config.model`."""
  cls, fixed = ((entry.func, entry.keywords) if isinstance(entry, functools.partial)
                else (entry, {}))
  return cls.from_config(model_config, **_common(model_config, dtype)).clone(**fixed)


def make_generator(config, dtype=jnp.float32) -> nn.Module:
  """The generator `config.model.generator` names (checked by `config_check`)."""
  return _from_config(GENERATORS[config.model.generator], config.model, dtype)


def make_discriminator(config, dtype=jnp.float32) -> nn.Module:
  """The discriminator `config.model.discriminator` names (checked by `config_check`)."""
  return _from_config(DISCRIMINATORS[config.model.discriminator], config.model, dtype)


def size_multiple(config) -> int:
  """Input sides of the config's generator must be multiples of this."""
  return make_generator(config).size_multiple


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))


__all__ = ["DISCRIMINATORS", "GENERATORS", "PatchDiscriminator", "PixelDiscriminator",
           "ResnetBlock", "ResnetGenerator", "UNetGenerator", "count_params",
           "make_discriminator", "make_generator", "resnet_6blocks", "resnet_9blocks",
           "size_multiple", "unet_128", "unet_256"]
