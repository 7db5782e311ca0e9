"""Edges → shoes (AtoB). Paper: 50k training images, batch 4, 15 epochs (here 8 constant + 7 decaying).

  python launch.py --config configs/edges2shoes.py --workdir runs/edges2shoes

The TFDS dataset `pix2pix/edges2shoes` is prepared on first use: from `--config.data.manual_dir=DIR`
holding the authors' `edges2shoes.tar.gz` or its extracted folder, otherwise downloaded.
"""

from configs import default


def get_config():
  return default.for_dataset("edges2shoes", "AtoB", batch_size=4, n_epochs=8, n_epochs_decay=7)
