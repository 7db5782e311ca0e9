"""The reference column of the sample grids: another run's generator on the same inputs."""

from __future__ import annotations

import pathlib

import jax
import numpy as np
from absl import logging


def reference_outputs(config, inputs: np.ndarray) -> tuple[np.ndarray | None, str]:
  """`report.reference_workdir`'s generator on the sample inputs, and a label saying whose.

  The reference (e.g. the authors' model imported with `convert`) does not change while we
  train, so it runs once, in this run's test-time mode on the whole sample batch, as our
  samples do. The results page is a side effect: a reference that cannot be used is reported
  and left out, never a reason to stop training.
  """
  workdir = config.get("report", {}).get("reference_workdir", "")
  if not workdir:
    return None, ""
  if jax.process_count() > 1:
    logging.warning("report.reference_workdir is ignored in multi-process runs.")
    return None, ""
  from pix2pix_jax import inference  # only needed with a reference
  try:
    translator = inference.load(workdir, mode=config.eval_mode, seed=config.seed + 1,
                                batch_size=len(inputs))
    outputs = translator(inputs, resize="none")
  except (FileNotFoundError, ValueError, KeyError) as e:
    logging.warning("report.reference_workdir=%s is left out of the sample grids: %s", workdir,
                    str(e).splitlines()[0])
    return None, ""
  label = f"{pathlib.Path(workdir).absolute().name}, step {translator.step}"
  logging.info("Sample grids show the outputs of %s (step %d) as the reference column.",
               workdir, translator.step)
  return outputs, label
