"""Cityscapes: semantic labels → photo (BtoA). Paper: 2,975 training images, 200 epochs, batch 1.

  python launch.py --config configs/cityscapes.py --workdir runs/cityscapes \
      --config.data.manual_dir=DIR

Cityscapes cannot be downloaded automatically (its licence needs a login). Download
gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip from the Cityscapes site, combine them
into the authors' aligned format with their datasets/prepare_cityscapes_dataset.py (photo on the
left, colour label map on the right; folders train/ and val/), and point data.manual_dir at the
result (or at a cityscapes.tar.gz of it). See `pix2pix_jax/data/tfds_builder.py` for the details.
"""

from configs import default


def get_config():
  return default.for_dataset("cityscapes", "BtoA", batch_size=1, n_epochs=100, n_epochs_decay=100)
