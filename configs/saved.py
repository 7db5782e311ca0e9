"""The config saved with a run, to change a few of its fields from the command line.

launch.py uses it by itself when --config.* overrides come with --workdir and no --config:

  python launch.py --mode=eval --workdir runs/mine --config.eval_mode=eval
  python launch.py --workdir runs/mine --config.num_train_steps=40000   # train longer

are `--config=configs/saved.py:runs/mine` with those overrides. (Without overrides the
test-time modes and a relaunch use the saved config as it is.)
"""

from pix2pix_jax import inference


def get_config(workdir: str = ""):
  if not workdir:
    raise ValueError("name the run: --config=configs/saved.py:WORKDIR")
  return inference.saved_config(workdir)
