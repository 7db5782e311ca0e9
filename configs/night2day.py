"""Day → night (BtoA), the paper's task. Paper: 17,823 training images, batch 4, 17 epochs
(here 9 constant + 8 decaying).

  python launch.py --config configs/night2day.py --workdir runs/night2day

The authors' night2day pairs hold the night photo as A and the day photo as B; their dataset
notes train the paper's day → night with --direction BtoA, as here.

The TFDS dataset `pix2pix/night2day` is prepared on first use: from `--config.data.manual_dir=DIR`
holding the authors' `night2day.tar.gz` or its extracted folder, otherwise downloaded.
"""

from configs import default


def get_config():
  return default.for_dataset("night2day", "BtoA", batch_size=4, n_epochs=9, n_epochs_decay=8)
