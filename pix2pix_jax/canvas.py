"""The input side of a run as a page draws it: the dataset's brushes and the first input.

Shared by the Gradio demo (demo.py) and the web export (export/web_page.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from absl import logging

from pix2pix_jax.data import datasets, synthetic
from pix2pix_jax.pixels import to_rgb, to_uint8


# The three CMP classes the synthetic facades never draw (data/synthetic.py), in the colours of
# the authors' facades label maps (MATLAB jet(12)).
_CMP_ONLY = {"blind": (255, 255, 0), "deco": (255, 170, 0), "molding": (255, 85, 0)}
_CMP_ORDER = ("background", "wall", "window", "door", "cornice", "sill", "balcony", "blind",
              "deco", "molding", "pillar", "shop")  # CMP class ids 1..12


@dataclasses.dataclass(frozen=True)
class Palette:
  """The brushes of a dataset: `kind` is "labels" (strokes snapped), "edges" or "free"."""
  kind: str
  names: tuple[str, ...] = ()
  colours: tuple[tuple[int, int, int], ...] = ()

  @property
  def rgb(self) -> np.ndarray:
    return np.array(self.colours, np.uint8).reshape(-1, 3)

  @property
  def background(self) -> tuple[int, int, int]:
    """A blank canvas's colour: a label map's first class, else white paper."""
    return self.colours[0] if self.kind == "labels" else (255, 255, 255)

  def hex(self) -> list[str]:
    return ["#%02x%02x%02x" % c for c in self.colours]


FREE_PALETTE = Palette("free", ("red", "green", "blue", "black", "white"),
                       ((220, 40, 40), (40, 170, 60), (40, 80, 220), (0, 0, 0), (255, 255, 255)))


def palette_for(config) -> Palette:
  """The brushes for a run's input side (None config: an artifact alone, any colour)."""
  if config is None:
    return FREE_PALETTE
  dataset, direction = config.data.dataset, config.data.direction
  # Facades pairs are (photo A, label map B): the label map is the input only for BtoA.
  if dataset == "synthetic" and direction == "BtoA":
    return Palette("labels", synthetic.CLASS_NAMES, tuple(synthetic.FACADE_PALETTE.values()))
  if dataset == "facades" and direction == "BtoA":
    colours = {**synthetic.FACADE_PALETTE, **_CMP_ONLY}
    return Palette("labels", _CMP_ORDER, tuple(colours[name] for name in _CMP_ORDER))
  edges = dataset in datasets.AUTHORS and datasets.AUTHORS[dataset].edges
  if edges and direction == "AtoB":  # edge map A → photo B
    return Palette("edges", ("edge", "paper"), ((0, 0, 0), (255, 255, 255)))
  return FREE_PALETTE


def _validation_source(config):
  """The run's validation split, read only where it already is (never downloaded)."""
  from pix2pix_jax.data import pipeline
  d = config.data
  split = d.eval_split or "val"
  if d.dataset in datasets.AUTHORS:  # prepared TFDS data only: no download, no build
    from pix2pix_jax.data import tfds_builder
    return tfds_builder.TfdsSource(f"pix2pix/{d.dataset}", split, data_dir=d.tfds_data_dir or None)
  return pipeline.get_source(config, split)


def first_input(config, fixed_hw: tuple[int, int] | None, crop_size: int,
                size_multiple: int) -> tuple[np.ndarray, str]:
  """A validation input of the run (never downloaded), else a blank canvas of the palette's
  background; and where it came from. `fixed_hw`: the only size the generator takes, if any."""
  if config is not None:
    try:
      from pix2pix_jax.data import pipeline  # pylint: disable=g-import-not-at-top
      source = _validation_source(config)
      example = source[0]
      prepared = pipeline.Transform.from_config(config, train=False)(example, None)["A"]
      pixels = to_rgb(to_uint8(prepared))
      if fixed_hw is None or pixels.shape[:2] == fixed_hw:
        return pixels, f"validation input {example['name']}"
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("no validation input for the canvas (%s: %s); starting blank",
                      type(e).__name__, str(e).splitlines()[0] if str(e) else "")
  if fixed_hw is not None:
    height, width = fixed_hw
  elif config is not None and "crop" in config.data.preprocess:
    height = config.data.crop_size
    width = round(height * config.data.aspect_ratio) if "resize" in config.data.preprocess \
        else height
  else:
    height = width = crop_size
  m = size_multiple
  height, width = max(m, round(height / m) * m), max(m, round(width / m) * m)
  return np.full((height, width, 3), palette_for(config).background, np.uint8), "blank canvas"
