"""Maps: aerial photo → map (AtoB; BtoA for map → aerial). Paper: 1,096 training images, 200 epochs, batch 1.

  python launch.py --config configs/maps.py --workdir runs/maps

The TFDS dataset `pix2pix/maps` is prepared on first use: from `--config.data.manual_dir=DIR`
holding the authors' `maps.tar.gz` or its extracted folder, otherwise downloaded.
"""

from configs import default


def get_config():
  return default.for_dataset("maps", "AtoB", batch_size=1, n_epochs=100, n_epochs_decay=100)
