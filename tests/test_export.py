"""The generator as a jax.export artifact: any batch and size, run without the model code."""

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

# (batch, height, width) per mode: batches of 1, 3 and 8, two sizes (each shape compiles twice).
SHAPES = {"paper": [(1, 32, 32), (3, 32, 64), (8, 32, 32)], "eval": [(3, 32, 64)]}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  return train_tiny_run(tmp_path_factory)


@pytest.mark.slow
def test_one_artifact_takes_any_batch_and_size_in_a_fresh_process(trained_run, tmp_path):
  paper_path = tmp_path / "gen.jax"
  run_launch(trained_run, "--mode=export", f"--output={paper_path}", config=None)
  paper_meta = json.loads((tmp_path / "gen.jax.json").read_text())
  assert paper_meta["mode"] == "paper" and paper_meta["step"] == 2
  assert paper_meta["size_multiple"] == 32
  assert set(paper_meta["platforms"]) == {"cpu", "cuda", "tpu"}
  # Symbolic batch and sides: never a fixed-shape fallback.
  assert paper_meta["in_shapes"] == ["float32[b,32*h,32*w,3]", "int32[]", "int32[]"]
  assert "refused_shapes" not in paper_meta

  platform.configure()
  eval_translator = inference.load(trained_run, mode="eval")
  eval_path = export.export_generator(eval_translator, tmp_path / "gen_eval.jax",
                                      platforms=("cpu",))
  assert json.loads((tmp_path / "gen_eval.jax.json").read_text())["mode"] == "eval"

  rng = np.random.default_rng(0)
  inputs = {}
  for mode in ("paper", "eval"):
    for n, h, w in SHAPES[mode]:
      inputs[f"{mode}/{n}x{h}x{w}"] = rng.uniform(-1, 1, (n, h, w, 3)).astype(np.float32)
  inputs["eval/uint8"] = rng.integers(0, 256, (3, 32, 64, 3), dtype=np.uint8)
  inputs["eval/3x32x64"] = inputs["paper/3x32x64"]
  np.savez(tmp_path / "inputs.npz", **inputs)
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
  subprocess.run([sys.executable, "-c", _LOADER, str(tmp_path / "inputs.npz"), str(paper_path),
                  str(eval_path), str(tmp_path / "outputs.npz")],
                 env=env, cwd=tmp_path, check=True, timeout=300)
  got = dict(np.load(tmp_path / "outputs.npz"))

  # The in-process generator on the same batch: equal to float rounding (the artifact's CPU
  # forms are those of one 32×32 image, the in-process ones those of each shape), and bit for
  # bit where the forms are the same.
  translators = {"paper": inference.load(trained_run, mode="paper"), "eval": eval_translator}
  for key, x in inputs.items():
    translator = translators[key.split("/")[0]]
    translator.batch_size = len(x)
    expected = translator(x, seed=7)
    assert got[key].shape == expected.shape, key
    if x.dtype == np.uint8:
      assert np.abs(got[key].astype(int) - expected).max() <= 1, key
    elif key.endswith("/1x32x32"):
      np.testing.assert_array_equal(got[key], expected, err_msg=key)
    else:
      np.testing.assert_allclose(got[key], expected, rtol=0, atol=1e-5, err_msg=key)
  # Paper mode keeps dropout and batch statistics: it is not the eval-mode function.
  assert np.abs(got["paper/3x32x64"] - got["eval/3x32x64"]).max() > 1e-2


def test_refused_shapes_name_the_shape_and_the_rule(trained_run, tmp_path):
  platform.configure()
  translator = inference.load(trained_run, mode="eval")
  path = export.export_generator(translator, tmp_path / "g.jax", platforms=("cpu",))
  gen = export.load_exported(path)
  assert gen.batch is None and gen.image_size is None and gen.size_multiple == 32
  assert gen(np.zeros((32, 64, 3), np.uint8)).shape == (32, 64, 3)  # one (H, W, C) image
  with pytest.raises(ValueError, match=r"image size 40×32 .*multiples of 32 \(32, 64, 96"):
    gen(np.zeros((2, 32, 40, 3), np.float32))
  with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
    gen(np.zeros((1, 32, 32, 1), np.float32))
  with pytest.raises(ValueError, match="no images"):
    gen(np.zeros((0, 32, 32, 3), np.float32))
  bad = tmp_path / "bad.jax"
  bad.write_bytes(b"not an artifact")
  with pytest.raises(ValueError, match="bad.jax: not a jax.export artifact"):
    export.load_exported(bad)


@pytest.mark.slow
def test_cli_exports_onnx_and_the_authors_pth(trained_run, tmp_path):
  """--format onnx (from the extension) and pth, with --workdir alone; both equal the run's
  eval-mode generator at batches of 1, 3 and 8 and two sizes."""
  ort = pytest.importorskip("onnxruntime", reason="the onnx extra (CI installs it)")
  torch = pytest.importorskip("torch", reason="the torch extra (CI installs it)")
  from tests import torch_reference
  result = run_launch(trained_run, "--mode=export", f"--output={tmp_path / 'gen.onnx'}",
                      "--config.eval_mode=eval", config=None)
  assert "(eval mode)" in result.stdout and "gen.onnx: ONNX" in result.stdout
  result = run_launch(trained_run, "--mode=export", "--format=pth",
                      f"--output={tmp_path / 'pth'}", "--with_discriminator", config=None)
  assert sorted(p.name for p in (tmp_path / "pth").iterdir()) == ["latest_net_D.pth",
                                                                   "latest_net_G.pth"]
  assert f"--checkpoints_dir {tmp_path} --name pth --model pix2pix" in result.stdout

  platform.configure()
  translator = inference.load(trained_run, mode="eval")
  session = ort.InferenceSession(str(tmp_path / "gen.onnx"), providers=["CPUExecutionProvider"])
  net = torch_reference.define_G(3, 3, 8, "unet", "batch", use_dropout=True, num_downs=5)
  net.load_state_dict(torch.load(tmp_path / "pth" / "latest_net_G.pth", weights_only=True),
                      strict=True)
  net.eval()
  rng = np.random.default_rng(1)
  for n, h, w in [(1, 32, 32), (3, 32, 64), (8, 32, 32)]:
    x = rng.uniform(-1, 1, (n, h, w, 3)).astype(np.float32)
    translator.batch_size = n
    expected = translator(x).transpose(0, 3, 1, 2)
    got = session.run(None, {"images": x.transpose(0, 3, 1, 2)})[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4, err_msg=f"onnx {n}x{h}x{w}")
    with torch.no_grad():
      got = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4, err_msg=f"pth {n}x{h}x{w}")


def test_export_format_from_the_flag_or_the_extension(trained_run, tmp_path):
  from pix2pix_jax import commands, export
  assert export.format_of("gen.onnx", None).name == "onnx"
  assert export.format_of("gen.jax", None).name == "jax"
  assert export.format_of("exported", "pth").name == "pth"
  with pytest.raises(ValueError, match="pass --format=pth and a folder"):
    export.format_of("latest_net_G.pth", None)
  with pytest.raises(ValueError, match="--format=pth writes a folder"):
    export.format_of("G.pth", "pth")
  with pytest.raises(ValueError, match="--with_discriminator applies to --format=pth only"):
    commands.run_export(None, str(trained_run), str(tmp_path / "g.jax"),
                        with_discriminator=True)
