"""Maps: aerial photo → map (AtoB; BtoA for map → aerial). Paper: 1,096 training images, 200 epochs, batch 1.

  python launch.py --config configs/maps.py --workdir runs/maps

The TFDS dataset `pix2pix/maps` is prepared on first use: from `--config.data.manual_dir=DIR`
holding the authors' `maps.tar.gz` or its extracted folder, otherwise downloaded.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.dataset = "maps"
  config.data.direction = "AtoB"
  config.batch_size = 1
  config.optim.n_epochs = 100
  config.optim.n_epochs_decay = 100
  config.sample_every_steps = 2000
  config.eval_every_steps = 20000
  config.checkpoint_every_steps = 4000
  return config
