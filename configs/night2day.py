"""Night → day (AtoB). Paper: 17,823 training images, batch 4, 17 epochs (here 9 constant + 8 decaying).

  python launch.py --config configs/night2day.py --workdir runs/night2day

The TFDS dataset `pix2pix/night2day` is prepared on first use: from `--config.data.manual_dir=DIR`
holding the authors' `night2day.tar.gz` or its extracted folder, otherwise downloaded.
"""

from configs import default


def get_config():
  return default.for_dataset("night2day", "AtoB", batch_size=4, n_epochs=9, n_epochs_decay=8)
