"""CMP Facades, label map → photo (BtoA), the paper's setting: 256 px, batch 1, 200 epochs.

  python launch.py --config configs/facades.py --workdir runs/facades

The data is the TFDS dataset `pix2pix/facades`, prepared on first use (array_record, no
TensorFlow): from `data.manual_dir` when it holds the authors' tarball or extracted folder
(defaults to ../shared/data/facades when that exists beside the checkout), otherwise downloaded
from the authors' server. 400 training images → 80,000 steps; about a day on 2 CPU cores.
"""

import os

from configs import default

_LOCAL_FACADES = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                 "facades"))


def get_config():
  config = default.for_dataset("facades", "BtoA", batch_size=1, n_epochs=100,
                               n_epochs_decay=100)
  config.data.manual_dir = _LOCAL_FACADES if os.path.isdir(_LOCAL_FACADES) else ""
  return config
