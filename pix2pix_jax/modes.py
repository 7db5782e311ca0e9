"""Every mode of `launch.py --mode=...` in one table, with what of a config each one reads.

`run` names the function that does the mode; it takes (config, workdir) and, as keywords, the
launch flags it declares (`commands.run` passes only those). `reads` says which parts of a
config besides the model the mode uses, so that `config_check` checks just those. Adding a
mode: its function, one entry here, its tests.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

# What a mode may read of a config besides the model and the test-time settings.
DATA = "data"  # a dataset
TRAINING = "training"  # the loop's settings: batch, steps, intervals, checkpoints
OPTIMIZER = "optimizer"  # the optimisers and their schedule (and the initialisation)
EVALUATION = "evaluation"  # the authors' test protocol (num_test)


@dataclasses.dataclass(frozen=True)
class Mode:
  name: str
  help: str
  run: str  # "module:function"
  reads: frozenset = frozenset()
  launch: bool = True  # a mode of launch.py (convert has its own command line)
  own_config: bool = False  # loads its run itself (no config is resolved for it)

  def function(self) -> Callable:
    module, name = self.run.split(":")
    return getattr(importlib.import_module(module), name)


MODES = {m.name: m for m in (
    Mode("train", "train a new run, or resume the one in --workdir",
         "pix2pix_jax.loop:train_and_evaluate", frozenset({DATA, TRAINING, OPTIMIZER})),
    Mode("eval", "L1 / PSNR / SSIM of a checkpoint on a split, with its images and page",
         "pix2pix_jax.commands:run_eval", frozenset({DATA, EVALUATION})),
    Mode("translate", "images or folders through the generator",
         "pix2pix_jax.commands:run_translate"),
    Mode("export", "the generator in another format (--format)",
         "pix2pix_jax.commands:run_export"),
    Mode("summary", "both networks layer by layer, checkpoints, evaluation, config",
         "pix2pix_jax.commands:run_summary"),
    Mode("demo", "a local web page: draw an input, see the output",
         "pix2pix_jax.demo_app:serve", own_config=True),
    Mode("convert", "the authors' .pth files as a run (python -m pix2pix_jax.convert)",
         "pix2pix_jax.convert:convert_checkpoint", frozenset({OPTIMIZER}), launch=False),
)}
LAUNCH_MODES = tuple(name for name, mode in MODES.items() if mode.launch)
