"""CMP Facades, label map → photo (BtoA), the paper's setting: 256 px, batch 1, 200 epochs.

  python launch.py --config configs/facades.py --workdir runs/facades

The data is the TFDS dataset `pix2pix/facades`, prepared on first use (array_record, no
TensorFlow): from `data.manual_dir` when it holds the authors' tarball or extracted folder
(default: the PIX2PIX_FACADES_DIR environment variable, if set), otherwise downloaded from the
authors' server. 400 training images → 80,000 steps (docs/results.md has measured times).
"""

import os

from configs import default

# Where a local copy of the authors' facades (folder or facades.tar.gz) lives, if any.
FACADES_DIR_ENV = "PIX2PIX_FACADES_DIR"


def get_config():
  config = default.for_dataset("facades", "BtoA", batch_size=1, n_epochs=100,
                               n_epochs_decay=100)
  config.data.manual_dir = os.environ.get(FACADES_DIR_ENV, "")
  return config
