"""Training parity with the authors' PyTorch code on the real CMP facades.

  python -m bench.parity [--steps 400] [--no_dropout_steps 200] [--crop_size 64]
                         [--num_downs 6] [--ngf 32] [--update_docs]

Both implementations start from the same weights (the PyTorch reference's init, converted) and
see the same batches: facades train, label map → photo (BtoA), batch 1, the authors' jitter
scaled to the crop (resize to crop·286/256, random crop, random flip; drawn once with numpy and
fed to both). PyTorch runs the authors' networks and `optimize_parameters`
(`tests/torch_reference.py`); JAX runs this package's jitted `train_step`. They alternate step by
step on the same CPU.

Dropout (the paper's setting) draws different masks in the two frameworks, and GAN training
amplifies any difference, so trajectories are compared statistically: loss curves, the losses
averaged over windows, the relative distance between the two weight vectors, and L1 on the 100
val images at the end (eval mode: running averages, no dropout; paper mode: dropout and batch
statistics). A second, shorter run without dropout starts the two identical up to float32
round-off and shows how fast the game amplifies it.

Writes docs/parity.png and the part of docs/parity.md below its `GENERATED_MARKER` with
--update_docs (the list of deliberate differences above it is kept), else only prints the
numbers.
Needs torch (pip install '.[torch]') and the facades folder named by PIX2PIX_FACADES_DIR.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from PIL import Image

from bench.common import FACADES, REPO
from configs import default
from pix2pix_jax import convert, models, state as state_lib, train
from tests import torch_reference

LOSSES = ("g_gan", "g_l1", "d_real", "d_fake")


# ---- Data: identical numpy batches for both implementations --------------------------------


def load_split(split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
  """(inputs, targets) as float32 NHWC in [-1, 1], each half resized to size×size (bicubic)."""
  paths = sorted((FACADES / split).glob("*.jpg"), key=lambda p: int(p.stem))
  if not paths:
    raise FileNotFoundError(f"no facades in {FACADES / split}")
  inputs, targets = [], []
  for path in paths:
    image = Image.open(path).convert("RGB")
    w, h = image.size
    photo, labels = image.crop((0, 0, w // 2, h)), image.crop((w // 2, 0, w, h))  # A | B
    for half, out in ((labels, inputs), (photo, targets)):  # BtoA: labels in, photo out
      out.append(np.asarray(half.resize((size, size), Image.BICUBIC), np.float32))
  to_unit = lambda x: np.stack(x) / 127.5 - 1.0  # noqa: E731
  return to_unit(inputs), to_unit(targets)


def jittered_batches(inputs, targets, steps: int, crop: int, seed: int):
  """The authors' random crop and flip of images already resized to crop·286/256, one example
  per step, reshuffled every epoch."""
  load = inputs.shape[1]
  rng = np.random.default_rng(seed)
  order: list[int] = []
  for _ in range(steps):
    if not order:
      order = list(rng.permutation(len(inputs)))
    i = order.pop()
    y, x = rng.integers(0, load - crop + 1, size=2)
    a = inputs[i, y:y + crop, x:x + crop]
    b = targets[i, y:y + crop, x:x + crop]
    if rng.random() < 0.5:
      a, b = a[:, ::-1], b[:, ::-1]
    yield np.ascontiguousarray(a[None]), np.ascontiguousarray(b[None])


def _nchw(x: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


# ---- The two trainers -------------------------------------------------------------------------


class TorchTrainer:
  """The authors' networks and Pix2PixModel.optimize_parameters (`tests/torch_reference.py`)."""

  def __init__(self, config):
    m, o = config.model, config.optim
    self.net_g = torch_reference.define_G(m.input_nc, m.output_nc, m.ngf, m.generator, m.norm,
                                          m.use_dropout, num_downs=m.num_downs)
    self.net_d = torch_reference.define_D(m.input_nc + m.output_nc, m.ndf, m.discriminator,
                                          m.n_layers_d, m.norm)
    self.opt_g = torch.optim.Adam(self.net_g.parameters(), lr=o.lr, betas=(o.beta1, o.beta2))
    self.opt_d = torch.optim.Adam(self.net_d.parameters(), lr=o.lr, betas=(o.beta1, o.beta2))
    self.gan_loss = torch_reference.GANLoss(config.loss.gan_mode)
    self.lambda_l1 = config.loss.lambda_l1

  def step(self, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    self.net_g.train()
    self.net_d.train()
    return torch_reference.authors_step(self.net_g, self.net_d, self.opt_g, self.opt_d,
                                        self.gan_loss, _nchw(a), _nchw(b), self.lambda_l1)

  def generate(self, a: np.ndarray, paper_mode: bool) -> np.ndarray:
    # Paper mode updates BatchNorm running statistics: use a throwaway copy.
    net = copy.deepcopy(self.net_g).train() if paper_mode else self.net_g.eval()
    with torch.no_grad():
      return net(_nchw(a)).numpy().transpose(0, 2, 3, 1)


class JaxTrainer:
  """This package's state and jitted train step, started from the reference's weights."""

  def __init__(self, config, torch_trainer: TorchTrainer, steps_per_epoch: int):
    self.config = config
    self.generator = models.make_generator(config)
    self.discriminator = models.make_discriminator(config)
    g_tx = state_lib.make_optimizer(config, steps_per_epoch)
    d_tx = state_lib.make_optimizer(config, steps_per_epoch)
    crop, m = config.data.crop_size, config.model
    g_vars = convert.torch_state_dict_to_flax(torch_trainer.net_g.state_dict(), config)
    d_vars = convert.torch_state_dict_to_flax(torch_trainer.net_d.state_dict(), config,
                                              "discriminator")

    def build(g_vars, d_vars):
      fresh = state_lib.create_train_state(config, self.generator, self.discriminator, g_tx,
                                           d_tx, (crop, crop), m.input_nc, m.output_nc)
      return fresh.replace(
          g_params=g_vars["params"], g_batch_stats=g_vars["batch_stats"],
          g_opt_state=g_tx.init(g_vars["params"]), d_params=d_vars["params"],
          d_batch_stats=d_vars["batch_stats"], d_opt_state=d_tx.init(d_vars["params"]))

    self.state = jax.jit(build)(g_vars, d_vars)
    self.train_step = jax.jit(
        train.bind_train_step(config, self.generator, self.discriminator, g_tx, d_tx),
        donate_argnums=(0,))

    def generate(state, a, key, paper_mode):
      variables = {"params": state.g_params, "batch_stats": state.g_batch_stats}
      if paper_mode:
        return self.generator.apply(variables, a, train=True, rngs={"dropout": key},
                                    mutable=["batch_stats"])[0]
      return self.generator.apply(variables, a, train=False)

    self._generate = jax.jit(generate, static_argnums=3)

  def step(self, a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    self.state, metrics = self.train_step(self.state, {"A": jnp.asarray(a), "B": jnp.asarray(b)})
    return {k: float(metrics[k]) for k in LOSSES}

  def generate(self, a: np.ndarray, paper_mode: bool, index: int) -> np.ndarray:
    key = jax.random.fold_in(jax.random.key(self.config.seed + 1), index)
    return np.asarray(self._generate(self.state, jnp.asarray(a), key, paper_mode))


def weight_distance(jax_trainer: JaxTrainer, torch_trainer: TorchTrainer, config,
                    initial: np.ndarray) -> float:
  """‖θ_jax − θ_torch‖ / ‖θ_torch − θ_0‖ over G's parameters: 0 = identical trajectories,
  ~1.4 = as far apart as two independent runs that moved equally far from θ_0."""
  ours = _flat_vector(jax_trainer.state.g_params)
  theirs = _flat_vector(convert.torch_state_dict_to_flax(torch_trainer.net_g.state_dict(),
                                                         config)["params"])
  return float(np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs - initial), 1e-30))


def _flat_vector(params) -> np.ndarray:
  leaves = jax.tree_util.tree_leaves_with_path(params)
  return np.concatenate([np.asarray(v, np.float64).ravel() for _, v in sorted(
      leaves, key=lambda kv: jax.tree_util.keystr(kv[0]))])


def val_l1(generate, inputs: np.ndarray, targets: np.ndarray) -> float:
  errors = [np.mean(np.abs(generate(inputs[i:i + 1], i) - targets[i:i + 1]))
            for i in range(len(inputs))]
  return float(np.mean(errors))


# ---- Report -----------------------------------------------------------------------------------


def smooth(values, window: int) -> np.ndarray:
  values = np.asarray(values, np.float64)
  if len(values) < window:
    return values
  kernel = np.ones(window) / window
  return np.convolve(values, kernel, mode="valid")


def plot(history: dict, distances: list, window: int, path: pathlib.Path, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 5, figsize=(22, 4))
  for ax, name in zip(axes, LOSSES):
    for impl, style in (("torch", "-"), ("jax", "--")):
      curve = smooth(history[impl][name], window)
      steps = np.arange(len(curve)) + window
      ax.plot(steps, curve, style, label=f"{impl} (mean of {window})")
    ax.set_title(name)
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
  steps, values = zip(*distances) if distances else ((), ())
  axes[-1].plot(steps, values, "o-")
  axes[-1].set_title("‖θ_jax − θ_torch‖ / ‖θ_torch − θ₀‖ (G)")
  axes[-1].set_xlabel("step")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def window_means(history: dict, steps: int, windows: int = 4) -> list[tuple[str, dict]]:
  edges = np.linspace(0, steps, windows + 1).astype(int)
  rows = []
  for lo, hi in zip(edges[:-1], edges[1:]):
    row = {impl: {k: float(np.mean(history[impl][k][lo:hi])) for k in LOSSES}
           for impl in ("torch", "jax")}
    rows.append((f"{lo + 1}–{hi}", row))
  return rows


def _window_table(windows) -> list[str]:
  """Markdown rows of the mean losses per window of steps, both implementations."""
  lines = ["| steps | impl | G GAN | G L1 (×100) | D real | D fake |", "|---|---|---|---|---|---|"]
  for span, row in windows:
    for impl in ("torch", "jax"):
      v = row[impl]
      lines.append(f"| {span} | {impl} | {v['g_gan']:.3f} | {v['g_l1']:.2f} | "
                   f"{v['d_real']:.3f} | {v['d_fake']:.3f} |")
  return lines


def _distance_table(distances) -> list[str]:
  return ["| step | " + " | ".join(str(s) for s, _ in distances) + " |",
          "|---|" + "---|" * len(distances),
          "| distance | " + " | ".join(f"{d:.3g}" for _, d in distances) + " |"]


# docs/parity.md: hand-written above this line, written by `write_markdown` below it.
GENERATED_MARKER = "<!-- Everything below is written by bench/parity.py --update_docs. -->"


def write_markdown(path: pathlib.Path, args, summary: dict, png_name: str) -> None:
  """Replaces what follows `GENERATED_MARKER` in `path` with this run's tables."""
  text = path.read_text() if path.exists() else ""
  head = text[:text.index(GENERATED_MARKER)] if GENERATED_MARKER in text else ""
  lines = [
      head.rstrip() + "\n" if head.strip() else "",
      GENERATED_MARKER,
      "",
      "## Training side by side with the authors' PyTorch code",
      "",
      "Produced by `python -m bench.parity "
      + " ".join(summary["argv"]) + "`: both implementations start from the same weights "
      "(the PyTorch reference's N(0, 0.02) init, converted with `pix2pix_jax.convert`) and "
      "train on the same batches of the real CMP facades (train split, label map → photo, "
      "batch 1, the authors' resize-crop-flip jitter scaled to the crop size), alternating step "
      "by step on the same CPU. PyTorch runs the authors' networks and update order "
      "(`tests/torch_reference.py`); JAX runs `pix2pix_jax.train.train_step`.",
      "",
      f"Setting: {summary['crop_size']} px, U-Net num_downs={args.num_downs}, ngf={args.ngf}, "
      f"basic PatchGAN ndf={args.ngf}, BatchNorm, dropout on (the paper), "
      f"Adam 2e-4 (0.5, 0.999), "
      f"λ_L1 = 100, {summary['steps']} steps, seed {args.seed}. Machine: {summary['machine']}.",
      "",
      f"![loss curves]({png_name})",
      "",
      "### Losses, averaged over windows of steps",
      "",
      *_window_table(summary["windows"]),
      "",
      "### Validation L1 after training (100 val images, output vs photo, [-1, 1] scale)",
      "",
      "| impl | eval mode (running stats, no dropout) | paper mode (batch stats, dropout) |",
      "|---|---|---|",
  ]
  for impl in ("torch", "jax"):
    lines.append(f"| {impl} | {summary['val_l1'][impl]['eval']:.4f} | "
                 f"{summary['val_l1'][impl]['paper']:.4f} |")
  lines += [
      "",
      "### Distance between the two generators' weights",
      "",
      "‖θ_jax − θ_torch‖ / ‖θ_torch − θ₀‖: 0 means identical trajectories; two unrelated runs "
      "that moved equally far from the shared start would give about 1.4. With dropout the two "
      "frameworks draw different masks from the first step, and Adam's first update (about "
      "lr·sign(g) per weight) turns that into a large distance at once; the loss curves and "
      "the validation L1 are the comparison that matters here.",
      "",
      *_distance_table(summary["distances"]),
      "",
      f"Time per step (interleaved, same {summary['cpus']}-core CPU): PyTorch "
      f"{summary['sec_per_step']['torch'] * 1e3:.0f} ms, JAX "
      f"{summary['sec_per_step']['jax'] * 1e3:.0f} ms (after compilation). These are "
      "incidental: both ran interleaved in one process on a shared, busy machine; throughput "
      "is measured by the other benchmarks in bench/.",
      "",
      summary["reading"],
      "",
  ]
  nd = summary.get("no_dropout")
  if nd:
    lines += [
        f"### Without dropout ({nd['steps']} steps)",
        "",
        "Dropout off in both, everything else equal: the two trajectories start identical up "
        "to float32 round-off, which the adversarial game then amplifies.",
        "",
        *_distance_table(nd["distances"]),
        "",
        *_window_table(nd["windows"]),
    ]
    lines += ["", "Validation L1 (eval mode / paper mode): " + ", ".join(
        f"{impl} {nd['val_l1'][impl]['eval']:.4f} / {nd['val_l1'][impl]['paper']:.4f}"
        for impl in ("torch", "jax")) + ".", ""]
  path.write_text("\n".join(lines))


def make_config(args, dropout: bool):
  config = default.get_config()
  config.seed = args.seed
  m = config.model
  m.generator, m.num_downs, m.ngf, m.ndf = "unet", args.num_downs, args.ngf, args.ngf
  m.use_dropout = dropout
  config.data.crop_size = args.crop_size
  config.batch_size = 1
  return config


def run(config, args, steps: int, train_data, val_data) -> dict:
  """Trains both implementations side by side; returns histories, distances, val L1, times."""
  torch.manual_seed(args.seed)
  torch_trainer = TorchTrainer(config)
  jax_trainer = JaxTrainer(config, torch_trainer, steps_per_epoch=len(train_data[0]))
  initial = _flat_vector(convert.torch_state_dict_to_flax(torch_trainer.net_g.state_dict(),
                                                          config)["params"])
  history = {impl: {k: [] for k in LOSSES} for impl in ("torch", "jax")}
  seconds = {"torch": 0.0, "jax": 0.0}
  distances = [(0, 0.0)]
  batches = jittered_batches(*train_data, steps, args.crop_size, args.seed)
  for step, (a, b) in enumerate(batches, start=1):
    for impl, trainer in (("torch", torch_trainer), ("jax", jax_trainer)):
      start = time.perf_counter()
      losses = trainer.step(a, b)
      if step > 1:  # the first JAX step compiles
        seconds[impl] += time.perf_counter() - start
      for k in LOSSES:
        history[impl][k].append(losses[k])
    if step % args.distance_every == 0 or step in (1, 10) or step == steps:
      distances.append((step, weight_distance(jax_trainer, torch_trainer, config, initial)))
      print(f"step {step}: " + "  ".join(
          f"{k} {history['torch'][k][-1]:.3f}/{history['jax'][k][-1]:.3f}" for k in LOSSES)
          + f"  distance {distances[-1][1]:.3g}", flush=True)
  val_in, val_tg = val_data
  val = {
      "torch": {"eval": val_l1(lambda x, i: torch_trainer.generate(x, False), val_in, val_tg),
                "paper": val_l1(lambda x, i: torch_trainer.generate(x, True), val_in, val_tg)},
      "jax": {"eval": val_l1(lambda x, i: jax_trainer.generate(x, False, i), val_in, val_tg),
              "paper": val_l1(lambda x, i: jax_trainer.generate(x, True, i), val_in, val_tg)},
  }
  return {"history": history, "distances": distances, "val_l1": val, "steps": steps,
          "windows": window_means(history, steps),
          "sec_per_step": {k: v / max(steps - 1, 1) for k, v in seconds.items()}}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=400)
  parser.add_argument("--no_dropout_steps", type=int, default=200,
                      help="steps of the second, dropout-free run (0 = skip it)")
  parser.add_argument("--crop_size", type=int, default=64)
  parser.add_argument("--num_downs", type=int, default=6)
  parser.add_argument("--ngf", type=int, default=32, help="also used as ndf")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--distance_every", type=int, default=50)
  parser.add_argument("--update_docs", action="store_true")
  args = parser.parse_args()

  train_data = load_split("train", round(args.crop_size * 286 / 256))
  val_data = load_split("val", args.crop_size)
  result = run(make_config(args, dropout=True), args, args.steps, train_data, val_data)
  no_dropout = None
  if args.no_dropout_steps:
    no_dropout = run(make_config(args, dropout=False), args, args.no_dropout_steps, train_data,
                     val_data)
  last = result["windows"][-1][1]
  val = result["val_l1"]
  relative = {k: abs(last["jax"][k] - last["torch"][k]) / max(abs(last["torch"][k]), 1e-9)
              for k in LOSSES}
  reading = (
      "Reading: over the last window the mean losses differ by "
      + ", ".join(f"{k} {relative[k]:.0%}" for k in LOSSES)
      + " (relative); validation L1 differs by "
      f"{abs(val['jax']['eval'] - val['torch']['eval']):.4f} (eval mode) and "
      f"{abs(val['jax']['paper'] - val['torch']['paper']):.4f} (paper mode).")
  summary = {
      "argv": sys.argv[1:], "crop_size": args.crop_size, **result,
      "machine": f"{platform.processor() or platform.machine()}, "
                 f"torch {torch.__version__}, jax {jax.__version__}",
      "cpus": torch.get_num_threads(), "reading": reading, "no_dropout": no_dropout,
  }
  print(json.dumps({k: v for k, v in summary.items()
                    if k not in ("windows", "history", "no_dropout")}, indent=1))
  if no_dropout:
    print("without dropout: distances", no_dropout["distances"], "val", no_dropout["val_l1"])
  print(reading)
  if args.update_docs:
    docs = REPO / "docs"
    docs.mkdir(exist_ok=True)
    title = (f"pix2pix parity on facades ({args.crop_size} px, num_downs={args.num_downs}, "
             f"ngf={args.ngf}, dropout on)")
    plot(result["history"], result["distances"], max(args.steps // 20, 1),
         docs / "parity.png", title)
    write_markdown(docs / "parity.md", args, summary, "parity.png")
    print(f"wrote {docs / 'parity.png'} and {docs / 'parity.md'}")


if __name__ == "__main__":
  from pix2pix_jax import cli
  raise SystemExit(cli.call(main))
