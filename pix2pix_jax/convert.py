"""The authors' PyTorch checkpoints (`latest_net_G.pth`) ↔ Flax variables, both ways.

The key mapping comes from each network's `torch_layout()` (models/), which pairs every
parameterised torch module with the Flax module that plays its role; shapes are converted on
the way (Conv2d OIHW → HWIO, ConvTranspose2d IOHW → (kh, kw, I, O)). A checkpoint that does not
fit fails with `ConversionError` naming the first wrong key. Command line:
`python -m pix2pix_jax.convert --netG_pth latest_net_G.pth --config CONFIG --out WORKDIR`.
"""

from __future__ import annotations

import collections
import os
import io
import pathlib
import sys
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from etils import epath
from flax import traverse_util
from ml_collections import config_flags

from pix2pix_jax import cli, errors, models, storage
from pix2pix_jax.models.layout import LayerMap

NETWORKS = ("generator", "discriminator")


class ConversionError(errors.InputError):
  """A state dict that does not match the network it is converted for."""


_IGNORED_KEYS = {
    "batch_norm": ("num_batches_tracked",),
    "instance_norm": ("running_mean", "running_var", "num_batches_tracked"),
}


def _layout(module: nn.Module) -> list[LayerMap]:
  """The network's own account of the authors' layout (`torch_layout()` in its module)."""
  if not hasattr(module, "torch_layout"):
    raise ConversionError(f"no torch layout for {type(module).__name__}")
  return module.torch_layout()


def describe(module: nn.Module) -> str:
  """A one-line description of the architecture a state dict is checked against."""
  return module.describe() if hasattr(module, "describe") else type(module).__name__


# ---------------------------------------------------------------------------------------------
# Expected shapes, from the Flax module itself.
# ---------------------------------------------------------------------------------------------


def abstract_variables(module: nn.Module, in_channels: int) -> dict[str, Any]:
  """{'params': ..., 'batch_stats': ...} of ShapeDtypeStructs for `module` on `in_channels`."""
  size = max(getattr(module, "size_multiple", 1), module.min_side)
  x = jax.ShapeDtypeStruct((1, size, size, in_channels), jnp.float32)
  variables = jax.eval_shape(
      lambda x: module.init({"params": jax.random.key(0), "dropout": jax.random.key(0)}, x,
                            train=False), x)
  return {"params": dict(variables.get("params", {})),
          "batch_stats": dict(variables.get("batch_stats", {}))}


def _torch_shape(kind: str, flax_name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  if flax_name == "kernel":
    kh, kw, ci, co = shape
    return (co, ci, kh, kw) if kind == "conv" else (ci, co, kh, kw)
  return tuple(shape)


def _pairs(entry: LayerMap, flat_abstract: Mapping[tuple, Any]):
  """(torch key, flax collection, flax leaf path, expected flax shape) for one layer."""
  if entry.kind in ("conv", "conv_transpose"):
    names = (("weight", "kernel"), ("bias", "bias"))
    collections_ = ("params", "params")
  elif entry.kind == "batch_norm":
    names = (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"),
             ("running_var", "var"))
    collections_ = ("params", "params", "batch_stats", "batch_stats")
  else:  # instance_norm: no affine parameters, no running statistics
    return []
  out = []
  for (torch_name, flax_name), collection in zip(names, collections_):
    path = (collection, *entry.flax_path, flax_name)
    if path not in flat_abstract:
      if flax_name == "bias" and entry.kind != "batch_norm":
        out.append((f"{entry.torch_prefix}.{torch_name}", collection, path, None))
        continue
      raise ConversionError(f"internal: the Flax network has no {'/'.join(path)} for torch "
                            f"module {entry.torch_prefix}")
    out.append((f"{entry.torch_prefix}.{torch_name}", collection, path,
                tuple(flat_abstract[path].shape)))
  return out


# ---------------------------------------------------------------------------------------------
# torch → Flax
# ---------------------------------------------------------------------------------------------


def _to_numpy(value) -> np.ndarray:
  """A private copy: on CPU both `Tensor.numpy()` and `jnp.asarray` may share memory, and the
  source network's in-place updates (BatchNorm running statistics) must not leak into ours."""
  if hasattr(value, "detach"):  # a torch tensor; torch itself is never imported here
    value = value.detach().cpu().numpy()
  return np.array(value, copy=True)


def _strip_data_parallel(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  # nn.DataParallel saves keys as "module.<key>"; the authors unwrap it, users may not have.
  if state_dict and all(k.startswith("module.") for k in state_dict):
    return {k[len("module."):]: v for k, v in state_dict.items()}
  return dict(state_dict)


def state_dict_to_variables(state_dict: Mapping[str, Any], module: nn.Module,
                            in_channels: int) -> dict[str, Any]:
  """Converts a torch state dict for `module` (a Flax network of this package).

  Returns {'params': ..., 'batch_stats': ...} as nested dicts of float32 jax arrays.
  Raises ConversionError on the first key that is missing, unexpected or of the wrong shape.
  """
  arch = describe(module)
  hint = (f"The checkpoint does not match {arch}: check the network name, "
          "num_downs / n_blocks / n_layers, norm, use_dropout and the channel counts.")
  remaining = collections.OrderedDict(_strip_data_parallel(state_dict))
  flat_abstract = traverse_util.flatten_dict(abstract_variables(module, in_channels))
  flat: dict[tuple, jax.Array] = {}
  for entry in _layout(module):
    for key, collection, path, flax_shape in _pairs(entry, flat_abstract):
      if flax_shape is None:  # a conv without bias in this architecture
        if key in remaining:
          raise ConversionError(f"unexpected key {key!r} (this architecture's conv has no "
                                f"bias). {hint}")
        continue
      if key not in remaining:
        raise ConversionError(f"missing key {key!r} (for Flax {'/'.join(path)}). {hint}")
      value = _to_numpy(remaining.pop(key))
      expected = _torch_shape(entry.kind, path[-1], flax_shape)
      if tuple(value.shape) != expected:
        raise ConversionError(f"key {key!r} has shape {tuple(value.shape)}, expected "
                              f"{expected} (for Flax {'/'.join(path)}). {hint}")
      if path[-1] == "kernel":
        value = value.transpose((2, 3, 1, 0) if entry.kind == "conv" else (2, 3, 0, 1))
      flat[path] = jnp.asarray(value, jnp.float32)
    for name in _IGNORED_KEYS.get(entry.kind, ()):
      remaining.pop(f"{entry.torch_prefix}.{name}", None)
  if remaining:
    key = next(iter(remaining))
    raise ConversionError(f"unexpected key {key!r} with shape "
                          f"{tuple(_to_numpy(remaining[key]).shape)}. {hint}")
  unfilled = set(flat_abstract) - set(flat)
  if unfilled:
    raise ConversionError(f"internal: no torch key maps to Flax {'/'.join(min(unfilled))}")
  variables = traverse_util.unflatten_dict(flat)
  return {"params": variables.get("params", {}), "batch_stats": variables.get("batch_stats", {})}


def _network(config, network: str) -> tuple[nn.Module, int]:
  m = config.model
  if network == "generator":
    return models.make_generator(config), m.input_nc
  if network == "discriminator":
    return models.make_discriminator(config), m.input_nc + m.output_nc
  raise ValueError(f"unknown network {network!r}; choose one of {NETWORKS}")


def torch_state_dict_to_flax(state_dict: Mapping[str, Any], config,
                             network: str = "generator") -> dict[str, Any]:
  """The authors' `net_G` / `net_D` state dict → {'params', 'batch_stats'} for `config.model`.

  `network` is 'generator' (input_nc channels in) or 'discriminator' (input_nc + output_nc).
  """
  module, in_channels = _network(config, network)
  return state_dict_to_variables(state_dict, module, in_channels)


# Flax → torch (the authors' layout, e.g. to compare or to run their code on our weights)

StateDict = "collections.OrderedDict[str, np.ndarray]"


def variables_to_state_dict(variables: Mapping[str, Any], module: nn.Module, in_channels: int,
                            num_batches_tracked: int = 0) -> StateDict:
  """The reverse: Flax variables → the authors' state dict (numpy arrays, torch key order).

  `num_batches_tracked` (unused by the authors' fixed-momentum BatchNorm) is written as given.
  Wrap the values with `torch.from_numpy` to `load_state_dict` them.
  """
  flat_abstract = traverse_util.flatten_dict(abstract_variables(module, in_channels))
  flat = traverse_util.flatten_dict({"params": variables.get("params", {}),
                                     "batch_stats": variables.get("batch_stats", {})})
  extra = set(flat) - set(flat_abstract)
  if extra:
    raise ConversionError(f"unexpected Flax variable {'/'.join(min(extra))} for {describe(module)}")
  out = collections.OrderedDict()
  for entry in _layout(module):
    for key, _, path, flax_shape in _pairs(entry, flat_abstract):
      if flax_shape is None:
        continue
      if path not in flat:
        raise ConversionError(f"missing Flax variable {'/'.join(path)} for {describe(module)}")
      value = np.asarray(flat[path], np.float32)
      if value.shape != flax_shape:
        raise ConversionError(f"Flax variable {'/'.join(path)} has shape {value.shape}, "
                              f"expected {flax_shape} for {describe(module)}")
      if path[-1] == "kernel":
        value = value.transpose((3, 2, 0, 1) if entry.kind == "conv" else (2, 3, 0, 1))
      out[key] = np.array(value, np.float32, order="C")  # a writable copy
    if entry.kind == "batch_norm":
      out[f"{entry.torch_prefix}.num_batches_tracked"] = np.asarray(num_batches_tracked,
                                                                    np.int64)
  return out


def flax_to_torch_state_dict(variables: Mapping[str, Any], config, network: str = "generator",
                             num_batches_tracked: int = 0) -> StateDict:
  """{'params', 'batch_stats'} for `config.model` → the authors' state dict (numpy values)."""
  module, in_channels = _network(config, network)
  return variables_to_state_dict(variables, module, in_channels, num_batches_tracked)


def _import_torch(what: str):
  try:
    import torch
  except ImportError as e:
    raise errors.MissingExtraError(what, "PyTorch", "torch") from e
  return torch


def load_torch_state_dict(path: str) -> dict[str, Any]:
  """Reads a `.pth` state dict on the CPU without executing pickled code (torch required)."""
  source = storage.resolve(path, "--netG_pth")
  if not source.is_file():
    raise errors.PathNotFoundError(f"{path}: no such file; give the authors' state dict, e.g. "
                                   "latest_net_G.pth")
  torch = _import_torch("reading .pth files")
  try:
    state_dict = torch.load(io.BytesIO(source.read_bytes()) if storage.is_remote(source) else
                            path, map_location="cpu", weights_only=True)
  except OSError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # torch reports bad files variously
    raise ConversionError(f"{path}: not a PyTorch state dict torch can read "
                          f"({type(e).__name__}); give the .pth the authors' code saved") from e
  if not isinstance(state_dict, Mapping):
    raise ConversionError(f"{path} holds a {type(state_dict).__name__}, not a state dict")
  return dict(state_dict)


def save_torch_state_dict(state_dict: Mapping[str, Any], path) -> epath.Path:
  """Writes a state dict of numpy arrays as the authors' `.pth` (torch tensors; torch required).

  The file loads with `torch.load(path)` (also with weights_only=True) and then
  `net.load_state_dict(...)` into the authors' networks, as their `load_networks` does.
  """
  from pix2pix_jax import atomic
  torch = _import_torch("writing .pth files")
  tensors = collections.OrderedDict(
      (key, torch.from_numpy(np.array(value, copy=True))) for key, value in state_dict.items())
  path = epath.Path(path)
  with atomic.atomic_path(path) as temporary:
    torch.save(tensors, temporary)
  return path


def export_torch(config, out_dir, g_variables: Mapping[str, Any],
                 d_variables: Mapping[str, Any] | None = None,
                 num_batches_tracked: int = 0) -> list[epath.Path]:
  """OUT_DIR/latest_net_G.pth (and latest_net_D.pth with `d_variables`) in the authors' format:
  the file names their `test.py` loads from `--checkpoints_dir/--name`."""
  torch_dir = epath.Path(out_dir)
  written = [save_torch_state_dict(
      flax_to_torch_state_dict(g_variables, config, "generator", num_batches_tracked),
      torch_dir / "latest_net_G.pth")]
  if d_variables is not None:
    written.append(save_torch_state_dict(
        flax_to_torch_state_dict(d_variables, config, "discriminator", num_batches_tracked),
        torch_dir / "latest_net_D.pth"))
  return written


# ---------------------------------------------------------------------------------------------
# Command line: authors' .pth files → an Orbax checkpoint of this package
# ---------------------------------------------------------------------------------------------


def convert_checkpoint(config, net_g_pth: str, net_d_pth: str | None, out_dir: str,
                       step: int = 0) -> str:
  """Writes `out_dir/checkpoints/<step>` (the train loop's format) from the authors' files.

  The generator (and, when given, the discriminator) come from the .pth files; a missing
  discriminator is initialised from `config.seed`, and both optimiser states start fresh.
  The config is checked first (`config_check`), and an `out_dir` that already holds a run is
  refused, so that nothing of it is overwritten. Returns the checkpoint directory.
  """
  # Imported here so that the conversion functions need neither Orbax nor grain.
  from pix2pix_jax import checkpointing, config_check, state as state_lib

  config_check.check(config, mode="convert")
  out = storage.resolve(out_dir, "--out")
  if (out / "checkpoints").is_dir() and any((out / "checkpoints").iterdir()) or (
      out / "config.json").exists():
    raise errors.UsageError(f"--out {out_dir} already holds a run (checkpoints/ or "
                            "config.json); give a new directory, so that nothing is overwritten")

  g_vars = torch_state_dict_to_flax(load_torch_state_dict(net_g_pth), config, "generator")
  d_vars = None
  if net_d_pth:
    d_vars = torch_state_dict_to_flax(load_torch_state_dict(net_d_pth), config,
                                      "discriminator")
  crop = config.data.crop_size
  # The train loop's own state (both networks and optimisers), built as the loop builds it.
  built = state_lib.build(config, steps_per_epoch=1, image_shape=(crop, crop))
  g_tx, d_tx = built.g_tx, built.d_tx

  def build(g_vars, d_vars):
    # The initial state with the imported weights in place; under jit the random initialisers
    # of the replaced networks are dead code and never compiled.
    fresh = built.init()
    if d_vars is None:
      d_vars = {"params": fresh.d_params, "batch_stats": fresh.d_batch_stats}
    return fresh.replace(
        step=jnp.asarray(step, jnp.int32),
        g_params=g_vars["params"], g_batch_stats=g_vars["batch_stats"],
        g_opt_state=g_tx.init(g_vars["params"]),
        d_params=d_vars["params"], d_batch_stats=d_vars["batch_stats"],
        d_opt_state=d_tx.init(d_vars["params"]))

  state = jax.jit(build, out_shardings=built.state_sharding)(g_vars, d_vars)
  checkpointing.check_writable(out)
  config_dict = config.to_dict()
  # Marks the checkpoint as imported: training may resume from it (fine-tuning) without a saved
  # data position.
  config_dict[checkpointing.IMPORTED_KEY] = pathlib.Path(net_g_pth).name
  ckpt = checkpointing.Checkpointer(out / "checkpoints", config=config_dict)
  ckpt.save(step, state, force=True)
  ckpt.close()
  checkpointing.save_config_json(out, config_dict)
  return str(out / "checkpoints")


def run(argv) -> None:
  """Converts the files the parsed flags name; `argv` holds what the flags left."""
  from absl import logging
  if len(argv) > 1:
    raise errors.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  path = convert_checkpoint(FLAGS.config, FLAGS.netG_pth, FLAGS.netD_pth, FLAGS.out, FLAGS.step)
  logging.info("Wrote %s (G from %s, D %s)", path, FLAGS.netG_pth,
               f"from {FLAGS.netD_pth}" if FLAGS.netD_pth else
               f"initialised from seed {FLAGS.config.seed}")
  print(path)


def main(argv=None) -> int:
  """The command line (default sys.argv); returns the exit code."""
  return cli.run(run, argv, FLAGS)


# Flags of their own: --config and --step are also launch.py's (absl's global FLAGS).
FLAGS = cli.new_flag_values()
flags.DEFINE_string("netG_pth", None, "The authors' generator state dict (latest_net_G.pth).",
                    flag_values=FLAGS)
flags.DEFINE_string("netD_pth", None, "Optional: their discriminator (latest_net_D.pth).",
                    flag_values=FLAGS)
flags.DEFINE_string("out", None, "Run directory to create; the checkpoint goes to "
                    "OUT/checkpoints/STEP, the config to OUT/config.json.", flag_values=FLAGS)
flags.DEFINE_integer("step", 0, "Step number of the written checkpoint.", lower_bound=0,
                     flag_values=FLAGS)
config_flags.DEFINE_config_file("config", None, "Config the checkpoint was trained with (e.g. "
                                "configs/facades.py; override with --config.key=value).",
                                flag_values=FLAGS, lock_config=True)
flags.mark_flags_as_required(["netG_pth", "config", "out"], flag_values=FLAGS)

if __name__ == "__main__":
  sys.exit(main())
