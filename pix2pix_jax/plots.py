"""Training curves: metrics.jsonl read back robustly, and the results page's plots.

Plots use matplotlib's object-oriented API on an explicit Agg canvas, imported only when a plot
is drawn: importing this module (or the report) never loads matplotlib or touches the caller's
pyplot state.
"""

from __future__ import annotations

import json
import math

import numpy as np

from pix2pix_jax import atomic, losses, metrics_log

EVAL_FIELDS = (("l1", "L1 \u2193"), ("psnr", "PSNR dB \u2191"), ("ssim", "SSIM \u2191"))
_MAX_PLOTTED_POINTS = 3000


# ----------------------------------------------------------------------------
# Metrics.

def read_metrics(workdir) -> tuple[list[dict], list[dict]]:
  """Reads a run's metrics.jsonl into (train records, eval records), each sorted by step.

  Lines that are not complete JSON objects with a numeric "step" (such as a line
  still being written) are skipped. When a resumed run logs a step again, the
  later record wins and the earlier run's records from that step on are dropped,
  so that curves do not fold back on themselves.
  """
  lines = metrics_log.read_lines(workdir)
  train, evals = [], {}
  for line in lines:
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if not isinstance(record, dict) or not isinstance(record.get("step"), (int, float)):
      continue
    if record.get("kind") == "eval":
      series = evals.setdefault((str(record.get("split")), str(record.get("mode"))), [])
    elif record.get("kind", "train") == "train":
      series = train
    else:
      continue
    while series and series[-1]["step"] >= record["step"]:
      series.pop()
    series.append(record)
  eval_records = sorted((r for series in evals.values() for r in series), key=lambda r: r["step"])
  return train, eval_records


def _values(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
  """Steps and float values of `key`, NaN where missing or not finite."""
  steps = np.array([r["step"] for r in records], dtype=np.float64)
  values = np.full(len(records), np.nan)
  for i, record in enumerate(records):
    value = record.get(key)
    if isinstance(value, (int, float)) and math.isfinite(value):
      values[i] = value
  return steps, values


def ema(values: np.ndarray, decay: float) -> np.ndarray:
  """Bias-corrected exponential moving average (as TensorBoard smooths); skips NaN."""
  smoothed = np.full(len(values), np.nan)
  average, weight = 0.0, 0.0
  for i, value in enumerate(values):
    if not math.isnan(value):
      average = decay * average + (1.0 - decay) * value
      weight = decay * weight + (1.0 - decay)
    if weight > 0:
      smoothed[i] = average / weight
  return smoothed


def _ema_decay(count: int) -> float:
  # Averages over ~1/30 of the curve: smooth for long runs, faithful for short ones.
  return min(0.99, max(0.0, 1.0 - 30.0 / max(count, 1)))


# ----------------------------------------------------------------------------
# Plots.

def _new_figure(rows: int, cols: int, size: tuple[float, float]):
  # The object-oriented API with an explicit Agg canvas: no pyplot, no global
  # backend switch, so importing or calling this never affects the caller's plots.
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  figure = Figure(figsize=size, dpi=100, layout="constrained")
  FigureCanvasAgg(figure)
  axes = figure.subplots(rows, cols, squeeze=False).ravel()
  for ax in axes:
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("step")
  return figure, axes


def _save_figure(figure, path: str) -> None:
  with atomic.atomic_path(path) as temporary:
    figure.savefig(temporary, format="png")


def _plot_raw_and_ema(ax, steps, values, label, colour, log_scale=False):
  """Draws the raw curve faintly and its EMA on top; clips the view to robust limits."""
  finite = np.isfinite(values)
  if not finite.any():
    ax.text(0.5, 0.5, f"no {label} values", ha="center", va="center", transform=ax.transAxes)
    return
  smoothed = ema(values, _ema_decay(int(finite.sum())))
  # Smooth on every point but draw at most ~_MAX_PLOTTED_POINTS: long runs stay cheap to plot.
  stride = max(1, len(steps) // _MAX_PLOTTED_POINTS)
  ax.plot(steps[::stride], values[::stride], color=colour, alpha=0.25, linewidth=0.8)
  ax.plot(steps[::stride], smoothed[::stride], color=colour, linewidth=1.8, label=f"{label} (EMA)")
  log_scale = log_scale and bool(np.all(values[finite] > 0))
  if log_scale:
    ax.set_yscale("log")
  # Percentile limits keep a few early spikes from flattening the rest of the curve.
  low, high = np.percentile(values[finite], [1, 99])
  low, high = min(low, np.nanmin(smoothed)), max(high, np.nanmax(smoothed))
  if high > low:
    if log_scale:
      ax.set_ylim(low / 1.1, high * 1.1)
    else:
      margin = 0.05 * (high - low)
      ax.set_ylim(low - margin, high + margin)


def plot_losses(train: list[dict], path: str) -> None:
  panels = [m for m in losses.METRICS if m.loss]
  rows = (len(panels) + 1) // 2
  figure, axes = _new_figure(rows, 2, (11.6, 3.25 * rows))
  colours = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
  for ax, metric, colour in zip(axes, panels, colours * len(panels)):
    steps, values = _values(train, metric.key)
    _plot_raw_and_ema(ax, steps, values, metric.label, colour, log_scale=metric.log_scale)
    ax.set_title(metric.label + (" (log scale)" if ax.get_yscale() == "log" else ""))
  figure.suptitle("losses: raw (faint) and EMA")
  _save_figure(figure, path)


def plot_accuracy(train: list[dict], path: str) -> None:
  figure, axes = _new_figure(1, 1, (11.6, 3.8))
  ax = axes[0]
  accuracies = [m for m in losses.METRICS if not m.loss]
  for metric, colour in zip(accuracies, ("tab:green", "tab:red", "tab:blue", "tab:orange")):
    steps, values = _values(train, metric.key)
    _plot_raw_and_ema(ax, steps, values, metric.label, colour)
  ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
  ax.set_ylim(-0.02, 1.02)
  ax.set_ylabel("fraction classified correctly")
  ax.set_title("discriminator accuracy: raw (faint) and EMA")
  ax.legend(loc="lower right")
  _save_figure(figure, path)


def _eval_series(evals: list[dict]) -> dict[tuple[str, str], list[dict]]:
  series = {}
  for record in evals:
    series.setdefault((str(record.get("split")), str(record.get("mode"))), []).append(record)
  return series


def plot_eval(evals: list[dict], path: str) -> None:
  figure, axes = _new_figure(1, 3, (11.6, 3.6))
  for (split, mode), records in sorted(_eval_series(evals).items()):
    for ax, (key, label) in zip(axes, EVAL_FIELDS):
      steps, values = _values(records, key)
      ax.plot(steps, values, marker="o", markersize=3, label=f"{split}, {mode} mode")
      ax.set_title(label)
  axes[0].legend(fontsize="small")
  _save_figure(figure, path)
