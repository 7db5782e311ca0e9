"""A run described (`launch.py --mode=summary`): both networks layer by layer, the run's
checkpoints, its latest evaluation and its config, as Markdown.

The per-layer tables are read from the networks themselves, abstractly (`jax.eval_shape`:
nothing is computed or allocated): each module's path, type, output shape for one input at the
training crop, and the parameters it holds itself, as the Keras summaries users know. Batch
statistics (BatchNorm's running means and variances) are counted apart, as Keras counts them
non-trainable.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from etils import epath
from flax import traverse_util

from pix2pix_jax import checkpointing, metrics_log, models, provenance, storage


@dataclasses.dataclass(frozen=True)
class Layer:
  path: str  # e.g. "down_1_norm", "block_0/conv_0"
  kind: str  # the module's class, e.g. "Conv4x4"
  output_shape: tuple[int, ...]
  params: int  # parameters held by this module itself (not by its submodules)
  batch_stats: int


def _own_counts(collection: Any) -> dict[tuple[str, ...], int]:
  counts: dict[tuple[str, ...], int] = {}
  for path, leaf in traverse_util.flatten_dict(dict(collection or {})).items():
    counts[path[:-1]] = counts.get(path[:-1], 0) + int(leaf.size)
  return counts


def layer_table(module: nn.Module, variables: dict[str, Any],
                input_shape: tuple[int, ...]) -> list[Layer]:
  """Every submodule `module` calls on a float32 input of `input_shape`, in call order.

  `variables` is {'params': ..., 'batch_stats': ...} of arrays or ShapeDtypeStructs. A module
  containing others is listed before them; the rows' parameters add up to all of `params`.
  """
  order: list[tuple[tuple[str, ...], str]] = []

  def capture(mdl: nn.Module, method_name: str) -> bool:
    if method_name != "__call__":
      return False
    order.append((tuple(mdl.path), type(mdl).__name__))
    return True

  def run(variables, x):
    _, state = module.apply(variables, x, train=False, capture_intermediates=capture,
                            mutable=["intermediates"])
    return state["intermediates"]

  x = jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32)
  outputs = traverse_util.flatten_dict(jax.eval_shape(run, variables, x))
  params = _own_counts(variables.get("params"))
  stats = _own_counts(variables.get("batch_stats"))
  # A module's calls are recorded as they return (children first); list it at its first child.
  first_seen: dict[tuple[str, ...], int] = {}
  for i, (path, _) in enumerate(order):
    for k in range(len(path) + 1):
      first_seen.setdefault(path[:k], i)
  rows = []
  for path, kind in sorted(dict(order).items(), key=lambda pk: (first_seen[pk[0]], len(pk[0]))):
    if not path and not params.get(()) and not stats.get(()):
      continue  # the network itself, holding no variables of its own
    out = outputs.get((*path, "__call__"))
    shape = tuple(jax.tree.leaves(out)[0].shape) if out is not None else ()
    rows.append(Layer("/".join(path) or "(itself)", kind, shape, params.get(path, 0),
                      stats.get(path, 0)))
  return rows


# ---------------------------------------------------------------------------- Markdown

def _shape(shape: tuple[int, ...]) -> str:
  return "×".join(str(d) for d in shape) if shape else "-"


def network_section(title: str, module: nn.Module, variables: dict[str, Any],
                    input_shape: tuple[int, ...]) -> tuple[str, int]:
  """A Markdown table of one network and its totals; returns (markdown, parameter count)."""
  rows = layer_table(module, variables, input_shape)
  total = models.count_params(variables.get("params", {}))
  stats = models.count_params(variables.get("batch_stats", {}))
  lines = [f"## {title}", "",
           f"Output shapes for one {_shape(tuple(input_shape))} input (batch × H × W × C).", "",
           "| layer | type | output shape | parameters |", "|---|---|---|---:|"]
  lines += [f"| {r.path} | {r.kind} | {_shape(r.output_shape)} | {r.params:,} |" for r in rows]
  lines += [f"| **total** | | | **{total:,}** |", "",
            f"Parameters: {total:,} (trained). Batch statistics: {stats:,} (running means and "
            "variances, not trained).", ""]
  return "\n".join(lines), total


def _size(num_bytes: int) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if num_bytes < 1024 or unit == "GiB":
      return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
    num_bytes /= 1024
  raise AssertionError("unreachable")


def checkpoints_section(workdir: epath.Path) -> str:
  directory = workdir / "checkpoints"
  steps = checkpointing.saved_steps(directory)
  lines = ["## Checkpoints", ""]
  if not steps:
    return "\n".join(lines + [f"None in {directory}.", ""])
  lines += [f"In {directory}:", "", "| step | size | written |", "|---:|---:|---|"]
  for step in steps:
    path = directory / str(step)
    stats = [f.stat() for f in storage.files(path)]
    size = sum(s.length for s in stats)
    written = datetime.datetime.fromtimestamp(max(s.mtime for s in stats))
    lines.append(f"| {step} | {_size(size)} | {written:%Y-%m-%d %H:%M} |")
  return "\n".join(lines + [""])


def latest_evaluations(workdir: epath.Path) -> list[dict[str, Any]]:
  """The newest evaluation per (split, mode): from training (metrics.jsonl) or --mode=eval."""
  records = []
  for line in metrics_log.read_lines(workdir):
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue  # a line cut short by a kill
    if isinstance(record, dict) and record.get("kind") == "eval":
      periodic = workdir / "eval" / f"step_{record['step']:08d}.json"
      try:  # the image count is in the evaluation's own file
        record["num_images"] = json.loads(periodic.read_text())["num_images"]
      except (OSError, KeyError, ValueError):
        pass
      records.append({**record, "source": "training"})
  for path in sorted((workdir / "eval").glob("*.json")):
    try:
      result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
      continue
    if {"split", "step", "mode"} <= set(result):  # written by --mode=eval
      records.append({**result, "source": f"eval/{path.name}"})
  latest: dict[tuple[str, str], dict[str, Any]] = {}
  for record in records:  # later records of the same step (--mode=eval) win
    key = (str(record.get("split")), str(record.get("mode")))
    if key not in latest or record["step"] >= latest[key]["step"]:
      latest[key] = record
  return [latest[k] for k in sorted(latest)]


def evaluation_section(workdir: epath.Path) -> str:
  lines = ["## Latest evaluation", ""]
  evaluations = latest_evaluations(workdir)
  if not evaluations:
    return "\n".join(lines + ["None yet: `launch.py --mode=eval --workdir ...`, or "
                              "`eval_every_steps` during training.", ""])
  lines += ["| split | mode | step | images | L1 | PSNR (dB) | SSIM | from |",
            "|---|---|---:|---:|---:|---:|---:|---|"]
  for r in evaluations:
    lines.append(f"| {r.get('split')} | {r.get('mode')} | {r['step']} | "
                 f"{r.get('num_images', '')} | {r['l1']:.4f} | {r['psnr']:.2f} | "
                 f"{r['ssim']:.4f} | {r['source']} |")
  return "\n".join(lines + [""])


def environment_section(workdir: epath.Path) -> str:
  """What made the newest checkpoint, and each launch's record (`provenance.record`)."""
  lines = ["## Environment", ""]
  directory = workdir / "checkpoints"
  steps = checkpointing.saved_steps(directory)
  saved = checkpointing.read_saved_environment(directory, steps[-1]) if steps else None
  if saved:
    lines += [f"Checkpoint {steps[-1]} was made with {provenance.summary(saved)}.", ""]
  elif steps:
    lines += [f"Checkpoint {steps[-1]} has no record (saved before records existed).", ""]
  launches = workdir / provenance.ENVIRONMENT_DIR
  records = sorted(p.name for p in launches.iterdir()) if launches.is_dir() else []
  for name in records:
    rec = json.loads((launches / name).read_text())
    lines.append(f"* {rec.get('time')} on {rec.get('host')}: {provenance.summary(rec)}")
  return "\n".join(lines + [""])


def config_section(config) -> str:
  text = json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)
  return "\n".join(["## Config", "", "```json", text, "```", ""])
