"""Process 0's files in a run's workdir: config.json, metrics.jsonl, TensorBoard events,
samples and the results page."""

from __future__ import annotations

import json
import pathlib

import numpy as np

from pix2pix_jax import atomic, checkpointing


class RunFiles:
  """Process 0's files in the workdir: config.json, metrics.jsonl, TensorBoard events,
  samples, page. Nothing is written before `start`."""

  def __init__(self, workdir: pathlib.Path, config, enabled: bool):
    self.workdir, self.config, self.enabled = workdir, config, enabled
    self.metrics_path = workdir / "metrics.jsonl"
    self.samples_dir = workdir / "samples"
    self.writer = None
    self.started = False

  def start(self, step: int) -> None:
    """Saves config.json, drops metric lines past `step` (a resumed run redoes them) and opens
    the writers. Called once the run has trained a step (or has nothing to train), so that a
    launch that fails before leaves the workdir as it was."""
    self.started = True
    if not self.enabled:
      return
    checkpointing.save_config_json(self.workdir, self.config.to_dict())
    self.truncate_after(step)
    self.samples_dir.mkdir(parents=True, exist_ok=True)
    if self.config.tensorboard:
      from pix2pix_jax.tensorboard import MetricWriter
      self.writer = MetricWriter(str(self.workdir / "tensorboard"))

  def append(self, record: dict) -> None:
    if not self.enabled:
      return
    with open(self.metrics_path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self.writer is not None:
      prefix = "train" if record["kind"] == "train" else f"eval_{record.get('mode', '')}"
      self.writer.write_scalars(record["step"], {
          f"{prefix}/{k}": v for k, v in record.items()
          if isinstance(v, (int, float)) and k != "step"})

  def truncate_after(self, step: int) -> None:
    """On resume, drop metric lines logged after the restored step (they will be redone)."""
    if not self.enabled or not self.metrics_path.exists():
      return
    kept = []
    for line in self.metrics_path.read_text().splitlines():
      try:
        if json.loads(line).get("step", 0) <= step:
          kept.append(line)
      except json.JSONDecodeError:
        continue  # a line cut short by a kill
    with atomic.atomic_path(self.metrics_path) as temporary:
      temporary.write_text("".join(l + "\n" for l in kept))

  def samples(self, step: int, inputs, outputs, targets, heatmaps, prefix: str = "", *,
              references=None, reference_label: str = "") -> None:
    if not self.enabled:
      return
    from pix2pix_jax import report
    path = self.samples_dir / f"{prefix}step_{step:08d}.png"
    report.save_sample_grid(str(path), inputs, outputs, targets, heatmaps, references=references,
                            reference_label=reference_label)
    if self.writer is not None:
      from PIL import Image
      self.writer.write_images(step, {"samples": np.asarray(Image.open(path).convert("RGB"))})

  def report(self) -> str | None:
    if not self.enabled:
      return None
    from pix2pix_jax import report
    return report.write_report(str(self.workdir))

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()
