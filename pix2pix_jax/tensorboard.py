"""TensorBoard event files for scalars and images, written with tensorboardX (no TensorFlow).

Only one process should write: build `MetricWriter(logdir, enabled=jax.process_index() == 0)`
everywhere and call it unconditionally; a disabled writer does nothing and creates no files.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping

import numpy as np
from etils import epath

from pix2pix_jax import storage


class MetricWriter:
  """Writes scalars and uint8 images to TensorBoard event files under `logdir`."""

  def __init__(self, logdir, enabled: bool = True):
    self.logdir = logdir
    self.enabled = enabled
    self._writer = None
    self._parts = 0
    # Object storage has no append: events go to a local folder, uploaded by `sync` as new
    # files (TensorBoard reads every event file of a run's folder).
    self._local = None
    if enabled and storage.is_remote(logdir):
      self._local = tempfile.mkdtemp(prefix="pix2pix_tensorboard_")
    self._open()

  def _open(self) -> None:
    if not self.enabled:
      return
    # Imported here so that processes that never write need not load it.
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._parts += 1
    self._writer = SummaryWriter(logdir=self._local or str(self.logdir),
                                 filename_suffix=f".{os.getpid()}.{self._parts}")

  def sync(self) -> None:
    """Object storage: uploads the events written so far as one new file."""
    if self._local is not None and self._writer is not None:
      self._upload()
      self._open()

  def _upload(self) -> None:
    self._writer.close()
    for name in sorted(os.listdir(self._local)):
      local = os.path.join(self._local, name)
      (epath.Path(self.logdir) / name).write_bytes(pathlib.Path(local).read_bytes())
      os.remove(local)

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
      if self._local is not None:
        self._upload()
      self._writer.close()
      self._writer = None
    if self._local is not None:
      shutil.rmtree(self._local, ignore_errors=True)
      self._local = None

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
