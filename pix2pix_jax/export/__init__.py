"""A trained run's generator in other forms: each format one module, chosen by name.

Adding a format: its module (with `export(config, workdir, output, step, **options)`), one
entry in `FORMATS`, its tests.
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib

from pix2pix_jax import errors


@dataclasses.dataclass(frozen=True)
class Format:
  name: str
  module: str  # pix2pix_jax.export.<module>, imported when used
  suffix: str  # an --output with this ending picks the format; "" for a folder
  description: str


FORMATS = {f.name: f for f in (
    Format("jax", "jax_artifact", ".jax",
           "a jax.export artifact (StableHLO for cpu, cuda and tpu; needs jax and numpy)"),
    Format("onnx", "onnx_model", ".onnx", "an ONNX model for onnxruntime"),
    Format("pth", "torch_pth", "", "the authors' latest_net_G.pth, in a folder"),
    Format("web", "web_page", "", "a web page that runs the generator in the browser, a folder"),
)}
DEFAULT = "jax"


def format_of(output: str, name: str | None) -> Format:
  """--format, or the format --output's ending names (default: jax)."""
  suffix = pathlib.Path(output).suffix.lower()
  if name is None:
    by_suffix = [f for f in FORMATS.values() if f.suffix and f.suffix == suffix]
    if suffix == ".pth":
      raise errors.UsageError(f"--output {output}: for the authors' .pth files pass "
                              "--format=pth and a folder as --output (it receives "
                              "latest_net_G.pth)")
    name = by_suffix[0].name if by_suffix else DEFAULT
  if name not in FORMATS:
    raise errors.UsageError(f"unknown --format={name}; choose one of {tuple(FORMATS)}")
  chosen = FORMATS[name]
  if not chosen.suffix and suffix == ".pth":
    raise errors.UsageError(f"--format={name} writes a folder: --output {output} ends in .pth; "
                            "name the folder that receives latest_net_G.pth instead (e.g. "
                            "--output=exported_G)")
  return chosen


def module(name: str):
  """The module that writes format `name`."""
  return importlib.import_module(f"pix2pix_jax.export.{FORMATS[name].module}")


def __getattr__(name: str):
  # The jax.export artifact's loader and writer, as `pix2pix_jax.export.load_exported`.
  if name in ("load_exported", "export_generator", "ExportedGenerator"):
    return getattr(module("jax"), name)
  raise AttributeError(name)
