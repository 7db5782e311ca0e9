"""Process 0's files in a run's workdir (a folder or a bucket): config.json, metrics.jsonl,
TensorBoard events, samples and the results page."""

from __future__ import annotations

import json
import time

from etils import epath

from pix2pix_jax import atomic, checkpointing, metrics_log, provenance

# Object storage: TensorBoard's events are uploaded as a new file at most this often (seconds).
TENSORBOARD_UPLOAD_S = 60


class RunFiles:
  """Process 0's files in the workdir. Nothing is written before `start`."""

  def __init__(self, workdir: epath.Path, config, enabled: bool, environment: dict | None = None):
    self.workdir, self.config, self.enabled = workdir, config, enabled
    self.environment = environment
    self.metrics = metrics_log.MetricsLog(workdir)
    self.samples_dir = workdir / "samples"
    self.writer = None
    self.started = False
    self._uploaded_at = time.monotonic()

  def start(self, step: int) -> None:
    """Saves config.json, drops metric lines past `step` (a resumed run redoes them) and opens
    the writers. Called once the run has trained a step (or has nothing to train), so that a
    launch that fails before leaves the workdir as it was."""
    self.started = True
    if not self.enabled:
      return
    checkpointing.save_config_json(self.workdir, self.config.to_dict())
    if self.environment is not None:  # one record per launch
      name = self.environment["time"].replace(":", "") + f"_{self.environment['host']}.json"
      with atomic.atomic_path(self.workdir / provenance.ENVIRONMENT_DIR / name) as temporary:
        temporary.write_text(json.dumps(self.environment, indent=1, sort_keys=True))
    self.metrics.truncate_after(step)
    if self.config.tensorboard:
      from pix2pix_jax.tensorboard import MetricWriter
      self.writer = MetricWriter(self.workdir / "tensorboard")

  def append(self, record: dict) -> None:
    if not self.enabled:
      return
    self.metrics.append(record)
    if self.writer is not None:
      prefix = "train" if record["kind"] == "train" else f"eval_{record.get('mode', '')}"
      self.writer.write_scalars(record["step"], {
          f"{prefix}/{k}": v for k, v in record.items()
          if isinstance(v, (int, float)) and k != "step"})

  def flush(self, force: bool = False) -> None:
    """Makes what was appended visible (on object storage: one new object per flush, at most
    every few seconds unless `force`d, as before a checkpoint: a resume keeps what it saw)."""
    if not self.enabled:
      return
    self.metrics.flush(force=force)
    if self.writer is not None and time.monotonic() - self._uploaded_at > TENSORBOARD_UPLOAD_S:
      self.writer.sync()
      self._uploaded_at = time.monotonic()

  def samples(self, step: int, inputs, outputs, targets, heatmaps, prefix: str = "", *,
              references=None, reference_label: str = "") -> None:
    if not self.enabled:
      return
    from pix2pix_jax import report
    path = self.samples_dir / f"{prefix}step_{step:08d}.png"
    grid = report.save_sample_grid(path, inputs, outputs, targets, heatmaps,
                                   references=references, reference_label=reference_label)
    if self.writer is not None:
      self.writer.write_images(step, {"samples": grid})

  def report(self) -> str | None:
    if not self.enabled:
      return None
    from pix2pix_jax import report
    self.metrics.flush()
    return report.write_report(self.workdir)

  def close(self) -> None:
    if not self.enabled:
      return
    self.metrics.close()
    if self.writer is not None:
      self.writer.close()
