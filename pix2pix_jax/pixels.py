"""Pixels and the networks' range: uint8 [0, 255] ↔ float32 [-1, 1], one conversion each way."""

from __future__ import annotations

import numpy as np


def to_unit_range(pixels) -> np.ndarray:
  """uint8 pixels → float32 in [-1, 1], the authors' ToTensor + Normalize(0.5, 0.5)."""
  return np.asarray(pixels).astype(np.float32) * (2.0 / 255.0) - 1.0


def to_uint8(images) -> np.ndarray:
  """Floats in [-1, 1] → uint8 pixels (rounded; the authors' tensor2im truncates instead)."""
  images = np.nan_to_num(np.asarray(images, dtype=np.float32))
  return np.round((np.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def to_rgb(pixels) -> np.ndarray:
  """(..., C) pixels with C in {1, 3} → (..., 3), grey repeated: how pages show an image."""
  pixels = np.asarray(pixels)
  return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


# `to_unit_range` of every uint8 value: the train step scales uint8 batches on the devices by
# this table, so that it gets exactly the host's float32 values on any backend.
UNIT_RANGE_OF_UINT8 = to_unit_range(np.arange(256, dtype=np.uint8))
UNIT_RANGE_OF_UINT8.setflags(write=False)
