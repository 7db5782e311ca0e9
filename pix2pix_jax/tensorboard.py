"""TensorBoard event files for scalars and images, written with tensorboardX (no TensorFlow).

Only one process should write: build `MetricWriter(logdir, enabled=jax.process_index() == 0)`
everywhere and call it unconditionally; a disabled writer does nothing and creates no files.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class MetricWriter:
  """Writes scalars and uint8 images to TensorBoard event files under `logdir`."""

  def __init__(self, logdir, enabled: bool = True):
    self.logdir = logdir
    self.enabled = enabled
    self._writer = None
    if enabled:
      # Imported here so that processes that never write need not load it.
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

      self._writer = SummaryWriter(logdir=str(logdir))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    """Logs each value (Python, numpy or 0-d jax numbers) under its name at `step`."""
    if self._writer is None:
      return
    for name, value in scalars.items():
      self._writer.add_scalar(name, float(np.asarray(value)), global_step=int(step))

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """Logs uint8 images shaped (H, W, C), C in {1, 3, 4}, under their names at `step`."""
    if self._writer is None:
      return
    for name, image in images.items():
      image = np.asarray(image)
      if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image {name!r} must be uint8 (H, W, C) with C in {{1, 3, 4}}, "
                         f"got {image.dtype} {image.shape}")
      self._writer.add_image(name, image, global_step=int(step), dataformats="HWC")

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
