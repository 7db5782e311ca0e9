"""Every mistake a user can type, at every entry point: the output ends in one `error: ...`
block naming the culprit and the fix, the exit code says what happened (2: the command is
wrong, 1: the run failed), no traceback is printed, and an existing run's workdir is left
exactly as it was (hashed before and after).

Most rows call the entry points' `main(argv)` in this process; a few run them as real
subprocesses to prove the exit codes. A property test throws random values at the numeric
config fields: every launch either starts or stops with such a message.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pathlib
import sys
import urllib.error

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st
from PIL import Image

from helpers import TINY_CONFIG, run_launch, tiny_config
import launch
from pix2pix_jax import cli, convert, errors
from pix2pix_jax import modes as pix2pix_modes
from pix2pix_jax.data import prepare, tfds_builder

TRACEBACK = "Traceback (most recent call last)"


# ---------------------------------------------------------------------------- fixtures

def tree_hash(root: pathlib.Path) -> str:
  """Hash of every path, file content and link under `root`."""
  digest = hashlib.sha256()
  for path in sorted(root.rglob("*")):
    digest.update(str(path.relative_to(root)).encode())
    if path.is_symlink():
      digest.update(os.readlink(path).encode())
    elif path.is_file():
      digest.update(path.read_bytes())
  return digest.hexdigest()


@pytest.fixture(scope="module", autouse=True)
def _keep_environment():
  """The in-process launches set XLA_FLAGS and absl's verbosity; later modules get them back."""
  saved = os.environ.get("XLA_FLAGS")
  yield
  if saved is None:
    os.environ.pop("XLA_FLAGS", None)
  else:
    os.environ["XLA_FLAGS"] = saved


def write_run(workdir: pathlib.Path) -> None:
  """A run directory as training leaves it at step 2 (the tiny config, ngf 8): checkpoint 2
  with its config, config.json, metrics, a sample grid and the page. The state is zeros, so
  that no program is compiled: every row fails before it would train."""
  import jax
  import jax.numpy as jnp
  from pix2pix_jax import checkpointing, report, state as state_lib
  config = tiny_config(num_train_steps=2)
  abstract = state_lib.build(config, steps_per_epoch=8).abstract_state
  state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), abstract).replace(
      step=jnp.asarray(2, jnp.int32))
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints", config=config.to_dict())
  ckpt.save(2, state, force=True)
  ckpt.close()
  checkpointing.save_config_json(workdir, config.to_dict())
  (workdir / "metrics.jsonl").write_text("".join(
      f'{{"kind": "train", "step": {s}, "g_gan": 0.7, "g_l1": 0.5, "d_real": 0.7, '
      f'"d_fake": 0.7, "d_acc_real": 0.5, "d_acc_fake": 0.5, "lr": 0.0002}}\n' for s in (1, 2)))
  grid = np.zeros((1, 32, 32, 3), np.float32)
  report.save_sample_grid(workdir / "samples" / "step_00000002.png", grid, grid, grid,
                          np.zeros((1, 2, 2), np.float32))
  report.write_report(str(workdir))


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
  """A run at step 2, and the files the rows point at."""
  base = tmp_path_factory.mktemp("errors")
  run = base / "run"
  write_run(run)
  empty = base / "empty"
  empty.mkdir()
  rng = np.random.default_rng(0)
  inputs = base / "inputs"
  inputs.mkdir()
  Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(inputs / "good.png")
  images = {}
  for name, data in (("garbage.png", b"this is not an image"), ("empty.png", b"")):
    (base / name).write_bytes(data)
    images[name] = base / name
  Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(base / "whole.jpg")
  (base / "cut.jpg").write_bytes((base / "whole.jpg").read_bytes()[:400])
  Image.fromarray(rng.integers(0, 256, (24, 40, 3), np.uint8)).save(base / "odd.png")
  (base / "dangling.png").symlink_to(base / "nowhere.png")
  (base / "locked.png").write_bytes((inputs / "good.png").read_bytes())
  (base / "locked.png").chmod(0)
  # A folder dataset whose training split holds an image that is not one.
  (base / "pairs" / "train").mkdir(parents=True)
  for name in ("1.png", "2.png"):
    (base / "pairs" / "train" / name).write_bytes(b"garbage")
  # ... and one whose second image is cut short: its header passes, reading it fails.
  (base / "cutpairs" / "train").mkdir(parents=True)
  aligned = rng.integers(0, 256, (32, 64, 3), np.uint8)
  Image.fromarray(aligned).save(base / "cutpairs" / "train" / "1.jpg")
  Image.fromarray(aligned).save(base / "cutpairs" / "train" / "2.jpg")
  whole = (base / "cutpairs" / "train" / "2.jpg").read_bytes()
  (base / "cutpairs" / "train" / "2.jpg").write_bytes(whole[:len(whole) // 2])
  (base / "file").write_text("a regular file")
  (base / "broken.py").write_text("def get_config():\n  return dict(seed=0\n")
  (base / "gen.jax").write_bytes(b"not an artifact")
  # The authors' generator with one input channel, and a file torch cannot read.
  import torch
  import torch_reference
  grey = torch_reference.UnetGenerator(1, 3, num_downs=5, ngf=8)
  torch.save(grey.state_dict(), base / "grey_G.pth")
  torch.save([1, 2, 3], base / "list.pth")
  return {"run": run, "tiny": TINY_CONFIG, "base": base, "empty": empty, "inputs": inputs,
          "new": base / "new_run"}


def _format(args, paths):
  return [a.format(**{k: str(v) for k, v in paths.items()}) for a in args]


# ---------------------------------------------------------------------------- the table

ENTRY_POINTS = {"launch": launch.main, "prepare": prepare.main, "convert": convert.main}
TINY = "--config={tiny}"


def row(mode, args, code, culprit, fix, *, entry="launch", setup=None, new=False, marks=()):
  """One bad invocation: `args` ({run}, {tiny}, ... are paths), the exit code, text naming the
  culprit (anywhere in the error block) and the fix (in its last line). `new`: the command
  names {new}, a workdir that must still not exist afterwards."""
  return pytest.param(entry, args, code, culprit, fix, setup, new, id=f"{mode}-{len(ROWS)}",
                      marks=marks)


def _not_installed(monkeypatch, module: str):
  """`import module` fails as it does where the optional extra is not installed."""
  monkeypatch.setitem(sys.modules, module, None)


def _no_web_runtime(monkeypatch):
  """As on a machine where onnxruntime-web was never fetched."""
  from pix2pix_jax.export import web_page  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(web_page, "runtime_dir", lambda: pathlib.Path("/nonexistent/runtime"))
  monkeypatch.setattr(web_page, "_npm_dist", lambda: pathlib.Path("/nonexistent/npm"))


def _no_network(monkeypatch):
  def fail(url, destination):
    raise urllib.error.URLError("no route to host")
  monkeypatch.setattr(tfds_builder, "download", fail)


ROWS = []
for mode, args, code, culprit, fix, kw in [
    # ---- train: values out of range, wrong choices, sizes, paths (on the trained run)
    ("train", [TINY, "--config.batch_size=0"], 2, "--config.batch_size=0", "integer >= 1", {}),
    ("train", [TINY, "--config.model.ngf=0"], 2, "--config.model.ngf=0", "in [1, 4096]", {}),
    ("train", [TINY, "--config.optim.lr=-1"], 2, "--config.optim.lr=-1.0", "number > 0", {}),
    ("train", [TINY, "--config.optim.beta1=1.0"], 2, "--config.optim.beta1=1.0", "[0, 1)", {}),
    ("train", [TINY, "--config.optim.beta2=-0.5"], 2, "--config.optim.beta2", "[0, 1)", {}),
    ("train", [TINY, "--config.loss.lambda_l1=-100"], 2, "--config.loss.lambda_l1", ">= 0", {}),
    ("train", [TINY, "--config.loss.lambda_gp=-1"], 2, "--config.loss.lambda_gp", ">= 0", {}),
    ("train", [TINY, "--config.optim.n_epochs=-1"], 2, "--config.optim.n_epochs=-1", ">= 0", {}),
    ("train", [TINY, "--config.num_train_steps=0"], 2, "--config.num_train_steps=0", "or -1",
     {}),
    ("train", [TINY, "--config.log_every_steps=-5"], 2, "--config.log_every_steps=-5",
     "integer >= 0", {}),
    ("train", [TINY, "--config.model.dropout_rate=1.5"], 2, "dropout_rate=1.5", "[0, 1)", {}),
    ("train", [TINY, "--config.seed=-1"], 2, "--config.seed=-1", "[0, 4294967295]", {}),
    ("train", [TINY, "--config.model.norm=group"], 2, "--config.model.norm=group",
     "batch, instance, none", {}),
    ("train", [TINY, "--config.loss.gan_mode=hinge"], 2, "gan_mode=hinge",
     "vanilla, lsgan, wgangp", {}),
    ("train", [TINY, "--config.model.generator=unet_512"], 2, "generator=unet_512",
     "unet_256", {}),
    ("train", [TINY, "--config.model.discriminator=global"], 2, "discriminator=global",
     "basic, n_layers, pixel", {}),
    ("train", [TINY, "--config.data.direction=AB"], 2, "direction=AB", "AtoB, BtoA", {}),
    ("train", [TINY, "--config.data.preprocess=zoom"], 2, "preprocess=zoom",
     "resize_and_crop", {}),
    ("train", [TINY, "--config.optim.lr_policy=plateau"], 2, "lr_policy=plateau", "cosine", {}),
    ("train", [TINY, "--config.model.init_type=uniform"], 2, "init_type=uniform",
     "orthogonal", {}),
    ("train", [TINY, "--config.compute_dtype=float16"], 2, "compute_dtype=float16",
     "bfloat16", {}),
    ("train", [TINY, "--config.model.conv_impl=cudnn"], 2, "conv_impl=cudnn", "cpu_tuned", {}),
    ("train", [TINY, "--config.data.crop_size=48"], 2, "--config.data.crop_size=48",
     "multiples of 32, e.g. --config.data.crop_size=32", {}),
    ("train", [TINY, "--config.data.crop_size=64"], 2, "--config.data.crop_size=64",
     "<= --config.data.load_size=36", {}),
    ("train", [TINY, "--config.model.num_downs=7"], 2, "--config.data.crop_size=32",
     "multiples of 128", {}),
    ("train", [TINY, "--config.model.input_nc=2"], 2, "--config.model.input_nc=2",
     "1 (grey) or 3 (RGB)", {}),
    ("train", [TINY, "--config.data.num_synthetic=1"], 2, "num_synthetic=1",
     "--config.batch_size=2", {}),
    ("train", [TINY, "--config.data.dataset=folder", "--config.data.data_dir={base}/nowhere"],
     2, "nowhere", "no such folder", {}),
    ("train", [TINY, "--config.data.dataset=imagenet"], 2, "dataset=imagenet", "facades", {}),
    ("train", [TINY, "--config.batch_size=0", "--config.optim.lr=0", "--config.model.ndf=-8"],
     2, "--config.model.ndf=-8: must be an integer in [1, 4096]",
     "--config.batch_size=0: must be an integer >= 1", {}),
    # ---- train: misspelt keys, wrong types, flags, config files
    ("train", [TINY, "--config.model.ngff=4"], 2, "--config.model.ngff=4",
     "did you mean --config.model.ngf?", {}),
    ("train", [TINY, "--config.optim.learning_rate=1e-3"], 2, "learning_rate",
     "config.optim has beta1, beta2, lr,", {}),
    ("train", [TINY, "--config.optim.lr=fast"], 2, "--config.optim.lr=fast", "a number", {}),
    ("train", [TINY, "--config.batch_size=2.5"], 2, "--config.batch_size=2.5", "an integer", {}),
    ("train", [TINY, "--config.data.no_flip=maybe"], 2, "--config.data.no_flip=maybe",
     "True or False", {}),
    ("train", [TINY, "--workdirr={new}"], 2, "--workdirr", "did you mean --workdir?", {}),
    ("train", [TINY, "--mode=trian"], 2, "--mode=trian", "train|eval", {}),
    ("train", [TINY, "extra_argument"], 2, "extra_argument", "--name=value", {}),
    ("train", ["--config={base}/nothere.py"], 2, "nothere.py", "configs/facades.py", {}),
    ("train", ["--config={base}"], 2, "--config=", "configs/facades.py", {}),
    ("train", ["--config={base}/broken.py"], 2, 'broken.py", line 2', "SyntaxError", {}),
    ("train", ["--config=configs/saved.py"], 2, "configs/saved.py",
     "--config=configs/saved.py:WORKDIR", {}),
    ("train", ["--config=configs/saved.py:{empty}"], 2, "no checkpoints", "--workdir", {}),
    # With --workdir alone an override changes the run's saved config: not its model.
    ("train", ["--config.model.ngf=4"], 2, "model.ngf: checkpoint has 8, config has 4",
     "fresh --workdir", {}),
    # ---- train: a run that cannot resume or start
    ("train", [TINY, "--config.model.ngf=4"], 2, "model.ngf: checkpoint has 8, config has 4",
     "leave out --config", {}),
    ("train", [], 2, "--workdir", "pass --config", {"new": True}),
    ("train", [TINY, "--workdir="], 2, "--workdir is required", "--workdir", {}),
    ("train", ["--config=configs/facades.py", "--config.data.tfds_data_dir={base}/tfds",
               "--config.data.manual_dir={base}/manual"], 1, "facades.tar.gz",
     "--config.data.manual_dir=", {"setup": _no_network, "new": True}),
    ("train", [TINY, "--config.data.dataset=pix2pix_folder/nothere",
               "--config.data.tfds_data_dir={base}/tfds"], 1, "no prepared dataset",
     "prepare", {}),
    ("train", [TINY, "--config.data.dataset=folder", "--config.data.data_dir={base}/pairs",
               "--config.data.eval_split="], 1, "1.png: not an image",
     "--config.data.skip_bad_images=True", {"new": True}),
    # Found while training, in a worker process: the same one block.
    ("train", [TINY, "--config.data.dataset=folder", "--config.data.data_dir={base}/cutpairs",
               "--config.data.eval_split=", "--config.data.num_workers=2"], 1,
     "2.jpg: truncated", "--config.data.skip_bad_images=True", {"new": True}),
    # ---- eval
    ("eval", ["--mode=eval", "--step=99"], 2, "no checkpoint 99", "--step=N", {}),
    ("eval", ["--mode=eval", TINY, "--config.model.ngf=4"], 2, "model.ngf: checkpoint has 8",
     "Leave out --config", {}),
    ("eval", ["--mode=eval", TINY, "--config.model.input_nc=1"], 2, "model.input_nc",
     "Leave out --config", {}),
    ("eval", ["--mode=eval", "--config=configs/saved.py:{run}", "--config.eval_mode=bogus"], 2,
     "--config.eval_mode=bogus", "paper, eval", {}),
    ("eval", ["--mode=eval", "--config=configs/saved.py:{run}", "--config.num_test=-1"], 2,
     "--config.num_test=-1", "0 = the whole split", {}),
    ("eval", ["--mode=eval", "--config=configs/saved.py:{run}",
              "--config.eval_batch_size=0"], 2, "eval_batch_size=0", "integer >= 1", {}),
    ("eval", ["--mode=eval", "--config=configs/saved.py:{run}", "--config.data.dataset=folder",
              "--config.data.data_dir={base}/nowhere"], 2, "nowhere", "no such folder", {}),
    ("eval", ["--mode=eval", "--workdir={empty}"], 2, "no checkpoints in", "train first", {}),
    # ---- translate
    ("translate", ["--mode=translate", "--output={base}/out"], 2, "--input", "--output", {}),
    ("translate", ["--mode=translate", "--input={base}/nothing", "--output={base}/out"], 2,
     "nothing", "neither an image file nor a folder", {}),
    ("translate", ["--mode=translate", "--input={empty}", "--output={base}/out"], 2, "empty",
     "holds no images", {}),
    ("translate", ["--mode=translate", "--input={base}/dangling.png", "--output={base}/out"],
     2, "dangling.png", "neither an image file nor a folder", {}),
    ("translate", ["--mode=translate", "--input={base}/garbage.png", "--output={base}/out"], 1,
     "garbage.png", "not an image", {}),
    ("translate", ["--mode=translate", "--input={base}/empty.png", "--output={base}/out"], 1,
     "empty.png", "the file is empty", {}),
    ("translate", ["--mode=translate", "--input={base}/cut.jpg", "--output={base}/out"], 1,
     "cut.jpg", "Re-copy or re-download", {}),
    ("translate", ["--mode=translate", "--input={base}/odd.png", "--output={base}/out",
                   "--resize=none"], 1, "odd.png: 40×24", "resize='multiple'", {}),
    ("translate", ["--mode=translate", "--input={inputs}", "--output={base}/out",
                   "--resize=shrink"], 2, "--resize=shrink", "crop_size|multiple|none", {}),
    ("translate", ["--mode=translate", "--input={inputs}", "--output={base}/out", "--step=7"],
     2, "no checkpoint 7", "available steps: [2]", {}),
    # ---- export, summary
    ("export", ["--mode=export"], 2, "--output", "--output=gen.jax", {}),
    ("export", ["--mode=export", "--output={base}/g.onnx"], 1,
     "--format=onnx needs the onnx package", 'pip install -e ".[onnx]"',
     {"setup": lambda monkeypatch: _not_installed(monkeypatch, "onnx")}),
    ("export", ["--mode=export", "--output={base}/page", "--format=web"], 1,
     "--format=web needs the onnx package", 'pip install -e ".[onnx]"',
     {"setup": lambda monkeypatch: _not_installed(monkeypatch, "onnx")}),
    ("export", ["--mode=export", "--output={base}/page", "--format=web"], 1,
     "--format=web needs onnxruntime-web", "python -m pix2pix_jax.export.web_page --fetch_runtime",
     {"setup": _no_web_runtime}),
    ("export", ["--mode=export", "--output={base}/pth", "--format=pth"], 1, "needs PyTorch",
     'pip install -e ".[torch]"',
     {"setup": lambda monkeypatch: _not_installed(monkeypatch, "torch")}),
    ("export", ["--mode=export", "--output={base}/g.jax", "--step=1"], 2, "no checkpoint 1",
     "--step=N", {}),
    ("export", ["--mode=export", "--output={base}/g.jax", TINY, "--config.model.ndf=4"], 2,
     "model.ndf", "Leave out --config", {}),
    ("summary", ["--mode=summary", TINY, "--config.model.ngf=16"], 2, "model.ngf",
     "Leave out --config", {}),
    ("summary", ["--mode=summary", "--workdir={new}", TINY, "--config.model.norm=group"], 2,
     "--config.model.norm=group", "batch, instance, none", {"new": True}),
    ("summary", ["--mode=summary", "--workdir={empty}"], 2, "no checkpoints in",
     "train first", {}),
    # ---- demo (nothing is served: each row fails before)
    ("demo", ["--mode=demo", "--workdir="], 2, "--workdir", "--artifact", {}),
    ("demo", ["--mode=demo", "--workdir=", "--artifact={base}/missing.jax"], 2, "missing.jax",
     "--mode=export", {}),
    ("demo", ["--mode=demo", "--workdir=", "--artifact={base}/gen.jax"], 1, "gen.jax",
     "not a jax.export artifact", {}),
    ("demo", ["--mode=demo", "--step=5"], 2, "no checkpoint 5", "--step=N", {}),
    ("demo", ["--mode=demo", "--workdir={empty}"], 2, "no checkpoints in", "train first", {}),
    # ---- prepare
    ("prepare", [], 2, "--dataset", "folder", {"entry": "prepare"}),
    ("prepare", ["--dataset=fcades"], 2, "--dataset=fcades", "facades|maps", {"entry": "prepare"}),
    ("prepare", ["--dataset=folder", "--name=mine"], 2, "--source_dir", "--name",
     {"entry": "prepare"}),
    ("prepare", ["--dataset=folder", "--name=mine", "--source_dir={base}/nowhere"], 2,
     "nowhere", "no such folder", {"entry": "prepare"}),
    ("prepare", ["--dataset=folder", "--name=My-Data", "--source_dir={base}/pairs",
                 "--data_dir={base}/tfds"], 2, "My-Data", "lower-case letters",
     {"entry": "prepare"}),
    ("prepare", ["--dataset=facades", "--nodownload", "--manual_dir={empty}",
                 "--data_dir={base}/tfds"], 1, "facades.tar.gz", "--manual_dir",
     {"entry": "prepare"}),
    ("prepare", ["--dataset=maps", "--manual_dir={empty}", "--data_dir={base}/tfds"], 1,
     "maps.tar.gz", "--manual_dir", {"entry": "prepare", "setup": _no_network}),
    ("prepare", ["--dataset=facades", "--data_dirr={base}/tfds"], 2, "--data_dirr",
     "did you mean --data_dir?", {"entry": "prepare"}),
    # ---- convert
    ("convert", ["--config={tiny}", "--out={new}"], 2, "--netG_pth is required", "latest_net_G",
     {"entry": "convert", "new": True}),
    ("convert", ["--netG_pth={base}/none.pth", "--config={tiny}", "--out={new}"], 2,
     "none.pth", "no such file", {"entry": "convert", "new": True}),
    ("convert", ["--netG_pth={base}", "--config={tiny}", "--out={new}"], 2, "errors",
     "latest_net_G.pth", {"entry": "convert", "new": True}),
    ("convert", ["--netG_pth={base}/file", "--config={tiny}", "--out={new}"], 1, "file",
     "not a PyTorch state dict", {"entry": "convert", "new": True}),
    ("convert", ["--netG_pth={base}/list.pth", "--config={tiny}", "--out={new}"], 1, "list.pth",
     "not a state dict", {"entry": "convert", "new": True}),
    ("convert", ["--netG_pth={base}/grey_G.pth", "--config={tiny}", "--out={new}"], 1,
     "model.model.0.weight", "(8, 1, 4, 4)", {"entry": "convert", "new": True}),
    ("convert", ["--netG_pth={base}/grey_G.pth", "--config={tiny}", "--out={run}"], 2,
     "already holds a run", "new directory", {"entry": "convert"}),
    ("convert", ["--netG_pth={base}/grey_G.pth", "--config={tiny}", "--out={new}",
                 "--config.model.ngf=0"], 2, "--config.model.ngf=0", "in [1, 4096]",
     {"entry": "convert", "new": True}),
]:
  if kw.get("entry", "launch") == "launch" and not any(a.startswith("--workdir") for a in args):
    args = [*args, "--workdir={new}" if kw.get("new") else "--workdir={run}"]
  ROWS.append(row(mode, args, code, culprit, fix, entry=kw.get("entry", "launch"),
                  setup=kw.get("setup"), new=kw.get("new", False)))
# Unreadable files, where permissions apply (root reads everything).
def _unreadable_as_for_a_user(monkeypatch):
  """locked.png has mode 000; root may read it anyway, so opening it fails as for any user."""
  from pix2pix_jax.data import images

  def open_as_user(path, *args, **kwargs):
    if str(path).endswith("locked.png"):
      raise PermissionError(13, "Permission denied", str(path))
    return open(path, *args, **kwargs)

  monkeypatch.setattr(images, "open", open_as_user, raising=False)


ROWS.append(row("translate", ["--mode=translate", "--input={base}/locked.png",
                              "--output={base}/out", "--workdir={run}"], 1, "locked.png",
                "cannot be read", setup=_unreadable_as_for_a_user))


def error_block(stderr: str) -> list[str]:
  """The last `error:` line and the indented lines after it (which must end the output)."""
  lines = stderr.rstrip("\n").splitlines()
  starts = [i for i, line in enumerate(lines) if line.startswith("error: ")]
  assert starts, f"no error line in:\n{stderr[-3000:]}"
  block = lines[starts[-1]:]
  assert all(not l or l.startswith("  ") for l in block[1:]), f"the error is not last:\n{stderr}"
  return block


@pytest.mark.parametrize("entry, args, code, culprit, fix, setup, new", ROWS)
def test_a_bad_invocation_ends_in_one_clear_error(paths, capfd, monkeypatch, entry, args, code,
                                                   culprit, fix, setup, new):
  if setup is not None:
    setup(monkeypatch)
  monkeypatch.setattr("pix2pix_jax.demo_app.launch", _never_serve, raising=False)
  before = tree_hash(paths["run"])
  argv = [entry, *_format(args, paths)]
  assert ENTRY_POINTS[entry](argv) == code
  out, err = capfd.readouterr()
  assert TRACEBACK not in out + err and "internal frames" not in out + err
  block = error_block(err)
  assert culprit in "\n".join(block), block
  assert fix in block[-1], block
  assert tree_hash(paths["run"]) == before, "the trained run was changed"
  if new:
    assert not paths["new"].exists()


def _never_serve(*args, **kwargs):
  raise AssertionError("the demo was about to serve a bad invocation")


def test_the_table_covers_every_entry_point_and_mode():
  modes = [p.id.rsplit("-", 1)[0] for p in ROWS]
  assert len(ROWS) >= 40
  for mode in (*pix2pix_modes.MODES, "prepare"):
    assert mode in modes, mode


# ---------------------------------------------------------------------------- as subprocesses

def test_real_exit_codes_and_last_lines(paths, tmp_path):
  """The exit codes are the process's, and the last line of stderr is the message."""
  result = run_launch(paths["run"], "--config.batch_size=0", check=False)
  assert result.returncode == 2 and TRACEBACK not in result.stderr
  assert result.stderr.splitlines()[-1] == ("error: --config.batch_size=0: must be an integer "
                                            ">= 1 (the global batch over every device)")
  # A run that fails: no prepared data (nothing is downloaded for pix2pix_folder/NAME).
  result = run_launch(tmp_path / "new", "--config.data.dataset=pix2pix_folder/absent",
                      f"--config.data.tfds_data_dir={tmp_path / 'tfds'}", check=False)
  assert result.returncode == 1 and TRACEBACK not in result.stderr
  assert result.stderr.splitlines()[-1].startswith("error: no prepared dataset "
                                                   "pix2pix_folder/absent")
  assert not (tmp_path / "new").exists()


def test_the_batch_must_divide_over_the_devices(tmp_path):
  result = run_launch(tmp_path / "run", "--config.batch_size=3", devices=2, check=False)
  assert result.returncode == 2 and TRACEBACK not in result.stderr
  assert "--config.batch_size=3" in result.stderr.splitlines()[-1]
  assert "use a multiple of 2, e.g. --config.batch_size=4" in result.stderr.splitlines()[-1]
  assert not (tmp_path / "run").exists()


def test_traceback_on_request(paths, tmp_path, capfd, monkeypatch):
  argv = ["launch.py", f"--workdir={paths['run']}", "--mode=eval", "--step=99"]
  assert launch.main([*argv, "--traceback"]) == 2
  err = capfd.readouterr().err
  assert TRACEBACK in err and err.splitlines()[-1].startswith("error: no checkpoint 99")
  monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
  assert convert.main(["convert", f"--netG_pth={tmp_path / 'no.pth'}",
                       f"--config={TINY_CONFIG}", f"--out={tmp_path / 'out'}"]) == 2
  err = capfd.readouterr().err
  assert TRACEBACK in err
  assert err.splitlines()[-1].startswith(f"error: {tmp_path / 'no.pth'}: no such file")


# ---------------------------------------------------------------------------- unexpected errors

def test_an_unexpected_error_keeps_its_traceback(paths, monkeypatch):
  from pix2pix_jax import commands

  def broken(*args, **kwargs):
    raise KeyError("a bug")
  monkeypatch.setattr(commands, "run", broken)
  with pytest.raises(KeyError, match="a bug"):
    launch.main(["launch.py", f"--workdir={paths['run']}", "--mode=eval"])


def test_which_errors_are_expected():
  assert cli.exit_code(errors.ConfigError(["--config.x=1: must be 2"])) == 2
  assert cli.exit_code(errors.DataNotFoundError("no data")) == 1
  assert cli.exit_code(FileNotFoundError(2, "No such file or directory", "x.png")) == 1
  assert cli.exit_code(RuntimeError("a bug")) is None
  try:
    np.zeros(3).reshape(2)  # a ValueError from a library is a bug of ours, not a user's
  except ValueError as e:
    assert cli.exit_code(e) is None
  try:
    from pix2pix_jax import inference
    inference.list_inputs("/nonexistent/input.png")
  except FileNotFoundError as e:
    assert cli.exit_code(e) == 2
  assert cli.message(errors.ConfigError(["--config.a=1: x", "--config.b=2: y"])) == (
      "error: the config has 2 problems:\n  --config.a=1: x\n  --config.b=2: y")


def test_flags_parse_again_in_one_process(paths, capfd):
  """Row after row, each parse starts from the defaults: no value or key of a previous one
  leaks into the next."""
  argv = ["launch.py", f"--workdir={paths['run']}", "--mode=eval"]
  assert launch.main([*argv, "--step=99"]) == 2
  assert launch.main([*argv, TINY.format(tiny=TINY_CONFIG), "--config.model.ngff=1"]) == 2
  assert launch.main([*argv, "--config=configs/saved.py:" + str(paths["run"]),
                      "--config.eval_mode=bogus"]) == 2
  capfd.readouterr()
  assert launch.main([*argv, "--config=configs/saved.py:" + str(paths["run"]),
                      "--config.eval_mode=bogus"]) == 2  # the same override, defined again
  assert "--config.eval_mode=bogus" in capfd.readouterr().err
  assert launch.FLAGS.step is None and launch.FLAGS.mode == "eval"


# ---------------------------------------------------------------------------- random values

# Numeric config fields, with values from the plausible to the absurd.
NUMERIC_FIELDS = {
    "batch_size": "int", "seed": "int", "num_train_steps": "int", "log_every_steps": "int",
    "sample_every_steps": "int", "eval_every_steps": "int", "checkpoint_every_steps": "int",
    "max_to_keep": "int", "keep_every_steps": "int", "num_samples": "int",
    "eval_batch_size": "int", "num_test": "int", "data.load_size": "int",
    "data.crop_size": "int", "data.aspect_ratio": "float", "data.num_synthetic": "int",
    "data.max_dataset_size": "int", "data.num_threads": "int", "data.prefetch": "int",
    "model.num_downs": "int", "model.ngf": "int", "model.ndf": "int", "model.n_layers_d": "int",
    "model.dropout_rate": "float", "model.init_gain": "float", "model.input_nc": "int",
    "model.output_nc": "int", "loss.lambda_l1": "float", "loss.lambda_gp": "float",
    "optim.lr": "float", "optim.beta1": "float", "optim.beta2": "float",
    "optim.n_epochs": "int", "optim.n_epochs_decay": "int", "optim.lr_decay_iters": "int",
}
_INTS = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 8, 16, 24, 32, 36, 64, -1]),
                  st.integers(-10, 100), st.integers(-2**70, 2**70))
# Fields whose valid values cost memory at the start (images rendered at that size, that many):
# valid values stay small here, invalid ones may be huge.
_SMALL_INTS = {
    "data.load_size": st.one_of(st.integers(-8, 160), st.sampled_from([16385, 2**70])),
    "data.crop_size": st.one_of(st.integers(-8, 160), st.sampled_from([16385, 2**70])),
    "data.num_synthetic": st.one_of(st.integers(-3, 12), st.sampled_from([-2**70])),
}
_FLOATS = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2e-4, -1.0]), st.floats(-10, 10),
                    st.floats(allow_nan=True, allow_infinity=True))
_TEXT = st.sampled_from(["", "abc", "1e400", "0x10", "None", "True"])


@st.composite
def overrides(draw):
  keys = draw(st.lists(st.sampled_from(sorted(NUMERIC_FIELDS)), min_size=1, max_size=3,
                       unique=True))
  values = {}
  for key in keys:  # mostly a value of the field's type, sometimes the other type or text
    kind = draw(st.sampled_from(["same"] * 8 + ["other", "text"]))
    ints = NUMERIC_FIELDS[key] == "int"
    if kind == "text":
      values[key] = draw(_TEXT)
    elif (kind == "same") == ints:
      values[key] = str(draw(_SMALL_INTS.get(key, _INTS)))
    else:
      values[key] = repr(draw(_FLOATS))
  return values


def _start(config, workdir, stop, cleanup, run_lock, environment):
  """The start of a training run without its compilation: data, networks, schedule, batch."""
  from pix2pix_jax import loop
  from pix2pix_jax.data import pipeline
  source = pipeline.get_source(config, config.data.train_split)
  pipeline.check_split_fits_batch(source, config.batch_size)
  exp = loop.Experiment(config, len(source), train_source=source)
  float(exp.lr(0))
  example = pipeline.Transform.from_config(config, train=True)(source[0],
                                                                 np.random.default_rng(0))
  assert example["A"].shape[:2] == exp.image_shape
  return {"step": 0}


@hypothesis.settings(max_examples=60, deadline=None, derandomize=True, database=None,
                     suppress_health_check=[hypothesis.HealthCheck.too_slow])
@hypothesis.given(overrides())
def test_random_values_start_or_stop_with_a_message(tmp_path_factory, values):
  workdir = tmp_path_factory.getbasetemp() / "hypothesis_run"
  argv = ["launch.py", f"--config={TINY_CONFIG}", f"--workdir={workdir}",
          "--config.data.num_synthetic=4", "--config.data.num_threads=1",
          *[f"--config.{k}={v}" for k, v in values.items()]]
  from pix2pix_jax import loop
  stderr = io.StringIO()
  with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(stderr):
    mp.setattr(loop, "_train", _start)
    code = launch.main(argv)
  assert code in (0, 2), (values, stderr.getvalue()[-2000:])
  if code == 2:
    text = stderr.getvalue()
    assert TRACEBACK not in text
    message = "\n".join(error_block(text))
    assert any(f"--config.{key}" in message for key in values), (values, message)
  assert not workdir.exists()
