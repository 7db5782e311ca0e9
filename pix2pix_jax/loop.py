"""The training loop: data → jitted train step → metrics, samples, evaluation, checkpoints.

The step itself is the pure `train.train_step`; process 0 writes the run's files
(`run_files`), every process takes part in checkpointing.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from etils import epath

from pix2pix_jax import (checkpointing, config_check, evaluate, finite, kernels, lock, losses,
                         parallel, platform, provenance, reference, run_files, signals,
                         state as state_lib, storage, train)
from pix2pix_jax.data import pipeline


def total_steps(config, steps_per_epoch: int) -> int:
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return int((config.optim.n_epochs + config.optim.n_epochs_decay) * steps_per_epoch)


def _format_eta(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


# jax.transfer_guard_device_to_host level of the loop's hot path: "allow"; the tests set
# "disallow" to prove that steps between log, sample, eval and checkpoint steps copy nothing
# back to the host.
HOT_PATH_TRANSFERS = "allow"

INIT_COMPILER_OPTIONS = {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}


class Experiment:
  """Everything a run builds once: `state.build`'s networks, optimisers, mesh and shardings,
  and the jitted functions."""

  def __init__(self, config: ml_collections.ConfigDict, num_train_examples: int, mesh=None,
               train_source=None):
    self.config = config
    self.steps_per_epoch = pipeline.steps_per_epoch(config, num_train_examples)
    self.total_steps = total_steps(config, self.steps_per_epoch)
    self.lr = state_lib.lr_schedule(config, self.steps_per_epoch)
    self.image_shape = pipeline.image_shape(config, train_source)
    built = state_lib.build(config, steps_per_epoch=self.steps_per_epoch,
                            image_shape=self.image_shape, mesh=mesh)
    self.generator, self.discriminator = built.generator, built.discriminator
    self.g_tx, self.d_tx = built.g_tx, built.d_tx
    self.mesh = built.mesh
    self.local_batch = parallel.local_batch_size(config.batch_size, self.mesh)
    self.state_sharding, self.abstract_state = built.state_sharding, built.abstract_state
    self._init = jax.jit(built.init, out_shardings=self.state_sharding)
    self.batch_sharding = parallel.data_sharding(self.mesh)
    step = train.bind_train_step(config, self.generator, self.discriminator, self.g_tx, self.d_tx)
    self.train_step = jax.jit(
        step, in_shardings=(self.state_sharding, self.batch_sharding),
        out_shardings=(self.state_sharding, parallel.replicated(self.mesh)),
        donate_argnums=(0,))
    self.sample = evaluate.make_sample_fn(self.generator, self.discriminator,
                                          config.loss.gan_mode, config.eval_mode)

  def init_state(self):
    # Compiled first and its freed memory handed back before it runs, so that compilation's
    # transient memory and the new state are never resident together (as for the step). XLA:CPU's
    # default schedule computes every parameter's random counters before any normal draw (a
    # large block of temporaries for unet_256); the memory-optimised one draws parameter by
    # parameter, with the same values and time (docs/benchmarks.md). Other backends ignore it.
    with platform.compile_log("the initialisation"):
      init = self._init.lower().compile(compiler_options=INIT_COMPILER_OPTIONS)
    platform.release_free_host_memory()
    state = jax.block_until_ready(init())
    platform.release_free_host_memory()
    return state

  def batch_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
    """Shape, dtype and sharding of the global training batches: uint8 images, as the input
    pipeline delivers them (`train_step` scales them on the devices)."""
    (h, w), m = self.image_shape, self.config.model
    return {key: jax.ShapeDtypeStruct((self.config.batch_size, h, w, channels), jnp.uint8,
                                      sharding=self.batch_sharding)
            for key, channels in (("A", m.input_nc), ("B", m.output_nc))}

  def compile_train_step(self):
    """`train_step` compiled ahead of time for `batch_spec()`, before any state exists.

    XLA's compilation of the step needs a lot of memory for a moment; compiled before the state
    is initialised or restored, and its freed memory handed back right after, that moment does not
    stack on top of the state and the step's buffers: the run's peak resident memory is then
    initialisation's or the step's (docs/benchmarks.md). The result takes exactly the arrays
    `train_step` takes.
    """
    with kernels.record_forms() as forms:
      lowered = self.train_step.lower(self.abstract_state, self.batch_spec())
    self.conv_forms = kernels.describe(forms, self.config.model.get("conv_impl", "auto"),
                                       self.mesh.devices.flat[0].platform)
    logging.info("Convolutions: %s", self.conv_forms)
    with platform.compile_log("the train step") as self.compile_record:
      compiled = lowered.compile()
    platform.release_free_host_memory()
    return compiled


@jax.jit
def _stacked(metrics: list[dict[str, jax.Array]]) -> dict[str, jax.Array]:
  return jax.tree.map(lambda *steps: jnp.stack(steps), *metrics)


def _host_metrics(pending: list[tuple[int, dict]]) -> list[tuple[int, dict[str, float]]]:
  """The metrics of a window of steps, on the host: one array per key comes back (stacked on
  the devices), not one per key and step (docs/benchmarks.md, "Loop overhead")."""
  stacked = jax.device_get(_stacked([m for _, m in pending]))
  return [(s, {k: float(v[i]) for k, v in stacked.items()}) for i, (s, _) in enumerate(pending)]


def _sample_batch(config, eval_source, train_source) -> dict[str, np.ndarray]:
  source = eval_source if eval_source is not None else train_source
  n = min(config.num_samples, len(source))
  return next(pipeline.eval_batches(config, source, n, limit=n))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming from `workdir` when it holds checkpoints); returns a short summary.

  SIGTERM or SIGINT (preemption, Ctrl-C) saves a checkpoint at the current step and returns
  normally with `summary["preempted"]` set; a NaN or Inf loss raises `finite.NonFiniteLossError`
  without saving past the last good checkpoint. An invalid config (`errors.ConfigError`), a
  model other than the checkpoints' (`checkpointing.ModelMismatchError`) or data that cannot
  be read fail before anything in `workdir` is created, changed or deleted.
  """
  config_check.check(config, mode="train", num_devices=jax.device_count(),
                     num_processes=jax.process_count())
  config_check.log_warnings(config)
  workdir_path = storage.resolve(workdir, "--workdir")
  main = parallel.is_main_process()
  if main:
    storage.check_bucket(workdir_path, "--workdir", write=True)
  # Signals are caught from the start, so that one during start-up or the last save is not
  # fatal.
  with lock.RunLock(workdir_path, enabled=main) as run_lock, signals.StopRequest() as stop, \
      contextlib.ExitStack() as cleanup:
    # One writer per run: a workdir another live run holds stops this launch here, before
    # anything is read or written (a new workdir is locked once it is created).
    if workdir_path.is_dir():
      run_lock.acquire()
    checkpointing.check_resumable(workdir_path / "checkpoints", config.to_dict())
    environment = provenance.record(config)
    provenance.check_resume(workdir_path / "checkpoints", environment,
                            strict=bool(config.get("require_identical_environment", False)))
    return _train(config, workdir_path, stop, cleanup, run_lock, environment)


def _train(config, workdir_path: epath.Path, stop: signals.StopRequest,
           cleanup: contextlib.ExitStack, run_lock: lock.RunLock,
           environment: dict) -> dict[str, Any]:
  main = parallel.is_main_process()
  logging.info("Environment: %s", provenance.summary(environment))
  provenance.check_hosts_agree(environment)
  if jax.process_count() > 1 and platform.is_per_host_cache(config):
    logging.warning("Each host keeps its own compilation cache, and JAX writes cache entries "
                    "from process 0 only: the other hosts compile again at every launch. Set "
                    "--config.compilation_cache_dir to a folder every host mounts "
                    "(docs/scaling.md).")
  # The data first: a run that cannot read it must not create or touch the workdir.
  train_source = pipeline.get_source(config, config.data.train_split)
  pipeline.check_split_fits_batch(train_source, config.batch_size)
  eval_source = None
  if config.data.eval_split:
    try:
      eval_source = pipeline.get_source(config, config.data.eval_split)
    except (FileNotFoundError, ValueError) as e:
      logging.warning("No evaluation split %r (%s); samples come from the training split.",
                      config.data.eval_split, str(e).splitlines()[0])
  logging.info("Training data: %d examples (%s)", len(train_source), train_source)
  sample_batch = _sample_batch(config, eval_source, train_source)
  if main:
    checkpointing.check_writable(workdir_path)
    run_lock.acquire()
    if (workdir_path / "checkpoints").is_dir():
      checkpointing.check_writable(workdir_path / "checkpoints")

  exp = Experiment(config, len(train_source), train_source=train_source)
  train_step = exp.compile_train_step()  # before the state exists: see compile_train_step
  ckpt = checkpointing.Checkpointer(workdir_path / "checkpoints",
                                    max_to_keep=config.max_to_keep,
                                    keep_every_steps=config.keep_every_steps,
                                    config=config.to_dict(), environment=environment)
  cleanup.callback(ckpt.close)  # however the run ends, a save still uploading completes
  # On accelerators each batch is placed on the devices one step ahead, while the previous
  # step runs (parallel.batch_placer).
  train_iter = pipeline.make_train_iterator(
      config, train_source, process_index=jax.process_index(),
      process_count=jax.process_count(), backend=jax.default_backend(),
      place=parallel.batch_placer(exp.batch_sharding))
  cleanup.callback(train_iter.close)  # stops worker processes, however the run ends
  if train_iter.num_workers:
    logging.info("Input pipeline: %d worker processes", train_iter.num_workers)
  restored = ckpt.restore_latest(exp.abstract_state, train_iter, set_aside_damaged=True)
  if restored is None:
    state, start = exp.init_state(), 0
    last_saved = None
    logging.info("Starting a new run in %s. %s", workdir_path, state_lib.describe(state))
  else:
    state, start = restored
    last_saved = start
    logging.info("Resumed from checkpoint %d in %s", start, workdir_path / "checkpoints")
    if start >= exp.total_steps:
      logging.info("Checkpoint %d is already at the end of the run (%d steps): nothing to train.",
                   start, exp.total_steps)
  outputs = run_files.RunFiles(workdir_path, config, enabled=main, environment=environment)
  sample_inputs = parallel.replicate_host_array(sample_batch["A"], exp.mesh)
  sample_key = jax.random.key(config.seed + 1)
  references, reference_label = (reference.reference_outputs(config, sample_batch["A"]) if main
                                 else (None, ""))

  def write_samples(step):
    out, heat = exp.sample(state, sample_inputs, sample_key)
    outputs.samples(step, sample_batch["A"], parallel.to_host(out), sample_batch["B"],
                    parallel.to_host(heat), references=references,
                    reference_label=reference_label)

  def run_eval(step):
    if eval_source is None:
      return
    batches = pipeline.eval_batches(config, eval_source, config.eval_batch_size)
    result = evaluate.evaluate(exp.generator, state.g_params, state.g_batch_stats, batches,
                               seed=config.seed, mode=config.eval_mode)
    record = {"kind": "eval", "step": step, "split": config.data.eval_split,
              "mode": result["mode"], "l1": result["l1"], "psnr": result["psnr"],
              "ssim": result["ssim"]}
    logging.info("eval @%d on %s (%s mode): L1 %.4f  PSNR %.2f dB  SSIM %.4f", step,
                 config.data.eval_split, result["mode"], result["l1"], result["psnr"],
                 result["ssim"])
    outputs.append(record)
    if main:
      evaluate.write_json(result, workdir_path / "eval" / f"step_{step:08d}.json")

  every = lambda n, s: n > 0 and s % n == 0
  pending: list[tuple[int, dict]] = []
  t_last, s_last = time.perf_counter(), start
  step = start
  while step < exp.total_steps:
    if stop.signal_name and step == start:
      # Stopped before the first step: the state is checkpoint `start` (or the fresh init).
      logging.warning("Received %s before the first step; exiting without training. "
                      "Relaunch the same command to resume.", stop.signal_name)
      break
    # The hot path: nothing here waits for the devices or copies from them (metrics stay on
    # the devices until a log step), so the host runs ahead and the devices never idle.
    with jax.transfer_guard_device_to_host(HOT_PATH_TRANSFERS):
      state, metrics = train_step(state, next(train_iter))
      step += 1
      pending.append((step, metrics))
      is_last = step == exp.total_steps
      checkpoint_now = every(config.checkpoint_every_steps, step) or is_last
      preempted = bool(stop.signal_name) or ckpt.reached_preemption(step)
    if step == start + 1:  # run once: give back what its first run's set-up freed
      jax.block_until_ready(state)
      platform.release_free_host_memory()
      outputs.start(start)
    if every(config.log_every_steps, step) or checkpoint_now or preempted:
      records = _host_metrics(pending)
      pending = []
      finite.check_losses(records, last_saved)
      now = time.perf_counter()
      rate = (step - s_last) / max(now - t_last, 1e-9)
      t_last, s_last = now, step
      s, m = records[-1]
      epoch = s / exp.steps_per_epoch
      lr = float(exp.lr(s - 1))
      outputs.append({"kind": "train", "step": s, "epoch": round(epoch, 4), **m, "lr": lr,
                      "steps_per_sec": rate})
      values = " ".join(f"{metric.label} {m[metric.key]:.{3 if metric.loss else 2}f}"
                        for metric in losses.METRICS)
      logging.info("step %d/%d (epoch %.2f) | %.2f steps/s, %.1f img/s | ETA %s | %s | lr %.2e",
                   s, exp.total_steps, epoch, rate, rate * config.batch_size,
                   _format_eta((exp.total_steps - s) / max(rate, 1e-9)), values, lr)
    if every(config.sample_every_steps, step) or is_last:
      write_samples(step)
    if every(config.eval_every_steps, step):
      run_eval(step)
    if every(config.sample_every_steps, step) or every(config.eval_every_steps, step) \
        or is_last:
      outputs.report()
    elif every(config.log_every_steps, step):
      outputs.flush()
    if checkpoint_now or preempted:
      run_lock.check()
      finite.check_state(state, step, last_saved)
      outputs.flush(force=True)
      ckpt.save(step, state, train_iter, force=True)
      last_saved = step
    if preempted:
      logging.warning("Received %s: saved checkpoint %d in %s; exiting. Relaunch the same "
                      "command to resume.", stop.signal_name or "preemption notice", step,
                      workdir_path / "checkpoints")
      break
  ckpt.close()
  if not outputs.started:  # nothing was trained (already at the end, or stopped at once)
    outputs.start(start)
  page = outputs.report()
  outputs.close()
  summary = {"step": step, "total_steps": exp.total_steps, "workdir": str(workdir_path),
             "report": page, "preempted": step < exp.total_steps}
  if main:
    logging.info("%s at step %d. Results page: %s | samples: %s | metrics: %s | checkpoints: "
                 "%s", "Stopped" if summary["preempted"] else "Done", step, page,
                 workdir_path / "samples", workdir_path / "metrics.jsonl",
                 workdir_path / "checkpoints")
  return summary
