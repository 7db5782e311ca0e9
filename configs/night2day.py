"""Night → day (AtoB). Paper: 17,823 training images, batch 4, 17 epochs (here 9 constant + 8 decaying).

  python launch.py --config configs/night2day.py --workdir runs/night2day

The TFDS dataset `pix2pix/night2day` is prepared on first use: from `--config.data.manual_dir=DIR`
holding the authors' `night2day.tar.gz` or its extracted folder, otherwise downloaded.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.dataset = "night2day"
  config.data.direction = "AtoB"
  config.batch_size = 4
  config.optim.n_epochs = 9
  config.optim.n_epochs_decay = 8
  config.sample_every_steps = 2000
  config.eval_every_steps = 20000
  config.checkpoint_every_steps = 4000
  return config
