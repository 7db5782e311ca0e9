"""CMP Facades, label map → photo (BtoA), the paper's setting: 256 px, batch 1, 200 epochs.

  python launch.py --config configs/facades.py --workdir runs/facades

Reads the authors' aligned format from `data.data_dir` (default: ../shared/data/facades when it
exists beside the checkout), otherwise prepares the TFDS `facades` dataset (downloading it).
"""

import os

from configs import default

_LOCAL_FACADES = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "facades")


def get_config():
  config = default.get_config()
  config.data.dataset = "facades"
  config.data.direction = "BtoA"
  config.data.data_dir = os.path.normpath(_LOCAL_FACADES) if os.path.isdir(_LOCAL_FACADES) else ""
  config.optim.n_epochs = 100
  config.optim.n_epochs_decay = 100
  config.log_every_steps = 100
  config.sample_every_steps = 2000
  config.eval_every_steps = 20000
  config.checkpoint_every_steps = 4000
  return config
