"""The generator as a jax.export artifact, run without the model code in a fresh process."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from helpers import run_launch
from pix2pix_jax import export, inference, platform
from test_inference import train_tiny_run

# Runs in a fresh interpreter: loads artifacts, runs them, proves no model code was imported.
_LOADER = """
import sys
import numpy as np
from pix2pix_jax.export import load_exported
inputs = dict(np.load(sys.argv[1]))
generators = {"paper": load_exported(sys.argv[2]), "eval": load_exported(sys.argv[3])}
outputs = {key: generators[key.split("/")[0]](x, seed=7) for key, x in inputs.items()}
leaked = [m for m in ("flax", "optax", "pix2pix_jax.models", "pix2pix_jax.inference")
          if m in sys.modules]
assert not leaked, leaked
np.savez(sys.argv[4], **outputs)
"""


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  return train_tiny_run(tmp_path_factory)


def _inputs_for(meta: dict, mode: str) -> dict[str, np.ndarray]:
  """Inputs the artifact accepts: other batch sizes and image sizes when they are symbolic."""
  rng = np.random.default_rng(0)
  shape = meta["in_shapes"][0]
  batch = shape.split("[")[1].split(",")[0]
  k = 3 if batch == "b" else 2 * int(batch)
  inputs = {f"{mode}/crop": rng.uniform(-1, 1, (k, 32, 32, 3)).astype(np.float32),
            f"{mode}/uint8": rng.integers(0, 256, (k, 32, 32, 3), dtype=np.uint8)}
  if "32*h" in shape:  # symbolic H and W: other multiples of 32, not square
    inputs[f"{mode}/wide"] = rng.uniform(-1, 1, (k, 32, 64, 3)).astype(np.float32)
    inputs[f"{mode}/tall"] = rng.uniform(-1, 1, (1 if batch == "b" else k, 96, 64, 3)
                                         ).astype(np.float32)
  return inputs


@pytest.mark.slow
def test_export_round_trip_is_exact_in_a_fresh_process(trained_run, tmp_path):
  paper_path = tmp_path / "gen.jax"
  run_launch(trained_run, "--mode=export", f"--output={paper_path}")
  paper_meta = json.loads((tmp_path / "gen.jax.json").read_text())
  assert paper_meta["mode"] == "paper" and paper_meta["step"] == 2
  assert paper_meta["size_multiple"] == 32 and "cpu" in paper_meta["platforms"]
  # The most general shapes the layers allow (see export.py): b × 32h × 32w, else the crop
  # size, else also the batch fixed (to eval_batch_size, 2 in the tiny config).
  assert paper_meta["in_shapes"][0] in ("float32[b,32*h,32*w,3]", "float32[b,32,32,3]",
                                        "float32[2,32,32,3]")
  assert paper_meta["in_shapes"][1:] == ["int32[]", "int32[]"]

  platform.configure()
  eval_translator = inference.load(trained_run, mode="eval")
  eval_path = export.export_generator(eval_translator, tmp_path / "gen_eval.jax")
  eval_meta = json.loads((tmp_path / "gen_eval.jax.json").read_text())

  inputs = {**_inputs_for(paper_meta, "paper"), **_inputs_for(eval_meta, "eval")}
  np.savez(tmp_path / "inputs.npz", **inputs)
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
  subprocess.run([sys.executable, "-c", _LOADER, str(tmp_path / "inputs.npz"), str(paper_path),
                  str(eval_path), str(tmp_path / "outputs.npz")],
                 env=env, cwd=tmp_path, check=True, timeout=300)
  got = dict(np.load(tmp_path / "outputs.npz"))

  # The in-process generator with the artifact's batching: bitwise the same outputs.
  translators = {"paper": inference.load(trained_run, mode="paper"), "eval": eval_translator}
  metas = {"paper": paper_meta, "eval": eval_meta}
  for key, x in inputs.items():
    mode = key.split("/")[0]
    translator = translators[mode]
    batch = metas[mode]["in_shapes"][0].split("[")[1].split(",")[0]
    translator.batch_size = len(x) if batch == "b" else int(batch)
    np.testing.assert_array_equal(got[key], translator(x, seed=7), err_msg=key)
  # Paper mode keeps dropout and batch statistics: it is not the eval-mode function.
  assert np.abs(got["paper/crop"] - got["eval/crop"]).max() > 1e-2


def test_loader_errors(trained_run, tmp_path):
  platform.configure()
  translator = inference.load(trained_run, mode="eval")
  translator.batch_size = 2
  path = export.export_generator(translator, tmp_path / "g.jax", platforms=("cpu",),
                                 symbolic_batch=False)
  assert json.loads((tmp_path / "g.jax.json").read_text())["in_shapes"][0] == \
      "float32[2,32,32,3]"
  gen = export.load_exported(path)
  assert gen(np.zeros((4, 32, 32, 3), np.float32)).shape == (4, 32, 32, 3)
  with pytest.raises(ValueError, match="exported for 32×32 images only"):
    gen(np.zeros((2, 64, 32, 3), np.float32))
  with pytest.raises(ValueError, match="batches of exactly 2"):
    gen(np.zeros((3, 32, 32, 3), np.float32))
  with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
    gen(np.zeros((1, 32, 32, 1), np.float32))
  bad = tmp_path / "bad.jax"
  bad.write_bytes(b"not an artifact")
  with pytest.raises(ValueError, match="bad.jax: not a jax.export artifact"):
    export.load_exported(bad)
