"""Draws docs/update_order.png: the order of one train step, recorded from the step itself.

  python -m bench.update_order_figure [--out docs/update_order.png]

Traces `train.train_step` (with `jax.eval_shape`, nothing is computed) on the quickstart's
networks, with stand-ins that note every network call (and whether D got the state's parameters
or updated ones), every optimiser update and the call of G's `jax.vjp` pullback, and draws that
sequence: the figure cannot drift from the code.
"""

from __future__ import annotations

import argparse
from unittest import mock

import jax
import numpy as np

from bench.common import REPO
from configs import quickstart

COLOURS = {"G": "#4c72b0", "D": "#dd8452", "Adam": "#8c8c8c"}


class _Recorded:
  """A network or optimiser stand-in that notes its calls in `events`, then runs the real one."""

  def __init__(self, real, name: str, events: list):
    self.real, self.name, self.events = real, name, events

  def apply(self, variables, x, **kwargs):
    self.events.append((self.name, jax.tree.leaves(variables["params"])[0]))
    return self.real.apply(variables, x, **kwargs)

  def update(self, updates, state, params=None):
    self.events.append(("Adam", self.name))
    return self.real.update(updates, state, params)


def record_step() -> list[tuple[str, str]]:
  """(actor, label) of each thing one train step does, in order."""
  from pix2pix_jax import parallel, state as state_lib, train
  from pix2pix_jax.data import pipeline
  config = quickstart.get_config()
  built = state_lib.build(config, steps_per_epoch=1,
                          mesh=parallel.make_mesh(jax.devices()[:1]))
  events: list = []
  real_vjp = jax.vjp

  def recording_vjp(fn, *primals, has_aux=False):
    outputs, pullback, *aux = real_vjp(fn, *primals, has_aux=has_aux)

    def recorded_pullback(cotangent):
      events.append(("G", "backward"))
      return pullback(cotangent)

    return (outputs, recorded_pullback, *aux)

  step = train.bind_train_step(config, _Recorded(built.generator, "G", events),
                               _Recorded(built.discriminator, "D", events),
                               _Recorded(built.g_tx, "G", events),
                               _Recorded(built.d_tx, "D", events))
  h = w = config.data.crop_size
  batch = {k: jax.ShapeDtypeStruct((config.batch_size, h, w, 3), np.uint8) for k in "AB"}
  with mock.patch.object(jax, "vjp", recording_vjp):
    jax.eval_shape(step, jax.eval_shape(built.init), batch)
  given = next(p for name, p in events if name == "D")
  # The pairs D judges, in train.py's order (the trace records the calls and their parameters).
  pairs = iter(["(A, fake.detach())", "(A, B)", "(A, fake)"])
  order = []
  for actor, detail in events:
    if actor == "Adam":
      order.append(("Adam", f"Adam step\non {detail}"))
    elif actor == "G" and isinstance(detail, str):
      order.append(("G", "G's gradient\nthrough the\nsaved forward"))
    elif actor == "G":
      order.append(("G", "fake = G(A)\nforward, once"))
    else:
      which = "given" if detail is given else "updated"
      order.append(("D", f"D{next(pairs, '')}\n{which} D"))
  return order


def draw(order: list[tuple[str, str]], path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.patches import FancyBboxPatch
  width, gap = 1.55, 0.35
  fig, ax = plt.subplots(figsize=(len(order) * (width + gap) * 0.95, 1.9), dpi=110)
  for i, (actor, label) in enumerate(order):
    x = i * (width + gap)
    ax.add_patch(FancyBboxPatch((x, 0), width, 1, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=COLOURS[actor], edgecolor="none", alpha=0.9))
    ax.text(x + width / 2, 0.5, label, ha="center", va="center", color="white", fontsize=9)
    ax.text(x + width / 2, 1.12, str(i + 1), ha="center", va="bottom", fontsize=8,
            color="#444444")
    if i:
      ax.annotate("", xy=(x - 0.02, 0.5), xytext=(x - gap + 0.02, 0.5),
                  arrowprops=dict(arrowstyle="->", color="#444444"))
  ax.set_xlim(-0.1, len(order) * (width + gap) - gap + 0.1)
  ax.set_ylim(-0.1, 1.35)
  ax.axis("off")
  fig.tight_layout(pad=0.2)
  fig.savefig(path)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default=str(REPO / "docs" / "update_order.png"))
  args = parser.parse_args()
  order = record_step()
  for i, (actor, label) in enumerate(order, 1):
    print(i, actor, label.replace("\n", " "))
  draw(order, args.out)
  print("wrote", args.out)


if __name__ == "__main__":
  main()
