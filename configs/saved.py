"""The config saved with a run, to change a few of its fields from the command line:

  python launch.py --mode=eval --workdir runs/mine \
      --config=configs/saved.py:runs/mine --config.eval_mode=eval
  python launch.py --workdir runs/mine \
      --config=configs/saved.py:runs/mine --config.num_train_steps=40000   # train longer

(Without --config the test-time modes and a relaunch use the saved config as it is.)
"""

from pix2pix_jax import inference


def get_config(workdir: str = ""):
  if not workdir:
    raise ValueError("name the run: --config=configs/saved.py:WORKDIR")
  return inference.saved_config(workdir)
