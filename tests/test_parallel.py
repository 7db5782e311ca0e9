"""parallel.py: batch-split errors, global-batch BatchNorm, sharding-independent dropout, the same
training on 1, 2, 4 and 8 devices (from host or placed batches), checkpoints that move between
device counts, and bfloat16.

Device counts other than 1 need a fresh process (`--xla_force_host_platform_device_count`):
`_sharded_worker` runs in a subprocess with 8 fake CPU devices and builds meshes over the first
1, 2, 4 and 8 of them; the checkpoint tests launch launch.py with different device counts.
"""

from __future__ import annotations

import json
import os
import re
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import l1_curve, run_launch, synthetic_batch, tiny_config
from pix2pix_jax import parallel

# Runs on different device counts differ only in the order of floating-point reductions (the
# global batch is split across devices); a given device count is bit-reproducible. Measured
# (docs/scaling.md): at most 1.7e-4 per step trained on any train-state leaf (parameters, Adam
# moments, BatchNorm statistics; the largest in the PatchGAN's stride-1 conv, whose Winograd
# F(2×2, 4×4) weight gradient rounds ~5× coarser than a direct one) and 1.2e-3 of the norm of
# the parameter update. Adam divides by the gradient's RMS, so an element whose gradient is ~0 up
# to rounding can move by up to 2·lr in a step in either direction: the absolute bound is loose,
# the relative one is tight. A wrong computation (other dropout masks, rows on the wrong device)
# changes the update by ~100%.
STATE_ATOL_PER_STEP = 4e-4  # absolute, per step trained: 2·lr at the default lr
UPDATE_RTOL = 0.01  # ‖θ_n − θ_1‖ / ‖θ_1 − θ_start‖ for the parameters θ of both networks
METRICS_RTOL = 1e-4  # losses and accuracies of each step (means over the global batch)

WORKER_DEVICES = 8
WORKER_STEPS = 3


# ---------------------------------------------------------------------------- in-process

@pytest.mark.parametrize("args, message", [
    ((6, 4), "global batch 6 (config.batch_size) is not divisible by the 4 devices it is "
             "sharded over; use a multiple of 4, e.g. --config.batch_size=8"),
    ((1, 8), "use a multiple of 8, e.g. --config.batch_size=8"),
    ((8, 4, 3, 2), "global batch 8 (config.batch_size) is not divisible by 3 processes"),
    ((8, 4, 2, 3), "per-process batch 4 (config.batch_size 8 / 2 processes) is not divisible "
                   "by this process's 3 local devices"),
    ((0, 1), "config.batch_size must be positive, got 0"),
])
def test_batch_split_errors_say_what_to_change(args, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    parallel.check_batch_split(*args)


@pytest.mark.parametrize("args, local", [((8, 8), 8), ((8, 4, 2), 4), ((16, 8, 2, 4), 8),
                                         ((1, 1), 1)])
def test_batch_split_gives_rows_per_process(args, local):
  assert parallel.check_batch_split(*args) == local


def test_global_batch_on_one_device():
  mesh = parallel.make_mesh()
  assert mesh.axis_names == (parallel.DATA_AXIS,)
  assert parallel.local_batch_size(2, mesh) == 2
  rows = np.arange(2 * 3, dtype=np.float32).reshape(2, 3)
  batch = parallel.global_batch({"A": rows}, parallel.data_sharding(mesh))
  assert batch["A"].shape == (2, 3)
  np.testing.assert_array_equal(parallel.to_host(batch["A"]), rows)
  # One CPU process: the loop hands the step host arrays (see the 8-device worker below).
  assert parallel.batch_placer(parallel.data_sharding(mesh)) is None


def test_timeouts_come_from_the_environment(monkeypatch):
  monkeypatch.setenv("PIX2PIX_HEARTBEAT_TIMEOUT", "7")
  assert parallel._timeout("PIX2PIX_HEARTBEAT_TIMEOUT") == 7
  monkeypatch.setenv("PIX2PIX_HEARTBEAT_TIMEOUT", "soon")
  with pytest.raises(ValueError, match="PIX2PIX_HEARTBEAT_TIMEOUT='soon'"):
    parallel._timeout("PIX2PIX_HEARTBEAT_TIMEOUT")
  monkeypatch.delenv("PIX2PIX_HEARTBEAT_TIMEOUT")
  assert parallel._timeout("PIX2PIX_HEARTBEAT_TIMEOUT") == 100


def test_partial_multiprocess_flags_fail_clearly():
  with pytest.raises(ValueError, match="needs --coordinator_address=HOST:PORT, --num_processes"):
    parallel.maybe_initialize_distributed("", num_processes=2, process_id=0)
  with pytest.raises(ValueError, match="process_id in"):
    parallel.maybe_initialize_distributed("127.0.0.1:1", num_processes=2, process_id=2)
  assert not parallel.maybe_initialize_distributed()


# ---------------------------------------------------------------------------- 8 fake devices

def _worker_config():
  # 64 px and 6 levels: the smallest U-Net with a dropout level (levels 4 … num_downs-2).
  return tiny_config(**{"batch_size": 8, "model.num_downs": 6, "data.load_size": 72,
                        "data.crop_size": 64})


def _max_abs_diff(a, b) -> float:
  diffs = [float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)) if np.size(x)]
  return max(diffs, default=0.0)


def _norm(tree) -> float:
  return float(np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64)))
                           for x in jax.tree.leaves(tree))))


def relative_update_difference(params, reference, start) -> float:
  """‖params − reference‖ / ‖reference − start‖: how much of the update differs."""
  sub = lambda a, b: jax.tree.map(lambda x, y: np.asarray(x, np.float64) - y, a, b)
  return _norm(sub(params, reference)) / _norm(sub(reference, start))


def _sharded_worker(out_path: str) -> None:
  """Runs in a process with 8 CPU devices; writes the measured differences as JSON."""
  import flax.linen as nn
  from pix2pix_jax import layers, loop, platform
  from pix2pix_jax.data import pipeline

  platform.configure()
  assert jax.device_count() == WORKER_DEVICES, jax.devices()
  results = {}
  meshes = {n: parallel.make_mesh(jax.devices()[:n]) for n in (1, 2, 4, 8)}
  rng = np.random.default_rng(0)

  # BatchNorm in train mode over a batch whose quarters have different means and spreads: per-
  # device statistics would be far from the global ones.
  x = (rng.normal(size=(8, 4, 4, 3)) * np.repeat([1, 2, 3, 4], 2)[:, None, None, None]
       + np.repeat([-3, -1, 1, 3], 2)[:, None, None, None]).astype(np.float32)
  bn = layers.BatchNorm()
  bn_vars = bn.init(jax.random.key(0), x, use_running_average=False)

  def bn_train(variables, x):
    y, updates = bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
    return y, updates["batch_stats"]

  bn_out = {}
  for n in (1, 4):
    f = jax.jit(bn_train, in_shardings=(parallel.replicated(meshes[n]),
                                        parallel.data_sharding(meshes[n])))
    xs = jax.device_put(x, parallel.data_sharding(meshes[n]))
    bn_out[n] = jax.device_get(f(bn_vars, xs))
  x64 = x.astype(np.float64)
  mean, var = x64.mean((0, 1, 2)), x64.var((0, 1, 2))
  scale, bias = (np.asarray(bn_vars["params"][k], np.float64) for k in ("scale", "bias"))
  reference_y = (x64 - mean) / np.sqrt(var + bn.epsilon) * scale + bias
  quarter_means = [x64[2 * i:2 * i + 2].mean((0, 1, 2)) for i in range(4)]
  results["bn"] = {
      "sharded_vs_one_device": _max_abs_diff(bn_out[4], bn_out[1]),
      "output_vs_float64_global": _max_abs_diff(bn_out[4][0], reference_y),
      "running_mean_vs_global": _max_abs_diff(bn_out[4][1]["mean"], 0.1 * mean),
      "per_device_mean_spread": float(np.max(np.ptp(quarter_means, axis=0))),
  }

  # Dropout masks: the same bits whatever the sharding of the array they are drawn for.
  dropout = nn.Dropout(0.5, deterministic=False)
  ones = np.ones((8, 8, 8, 16), np.float32)
  masks = {}
  for n, mesh in meshes.items():
    f = jax.jit(lambda v, key: dropout.apply({}, v, rngs={"dropout": key}),
                in_shardings=(parallel.data_sharding(mesh), None),
                out_shardings=parallel.data_sharding(mesh))
    masks[n] = np.asarray(f(ones, jax.random.key(3)))
  results["dropout"] = {"mismatches": {n: int(np.sum(masks[n] != masks[1])) for n in masks},
                        "kept_fraction": float(np.mean(masks[1] > 0))}

  # The train step: the same global batches from the real pipeline, K steps on each mesh.
  config = _worker_config()
  source = pipeline.get_source(config, "train")
  batches = []
  it = pipeline.make_train_iterator(config, source)
  for _ in range(WORKER_STEPS):
    local = next(it)
    batches.append({"A": local["A"], "B": local["B"]})
  start = None
  finals, metrics = {}, {}
  for n, mesh in meshes.items():
    exp = loop.Experiment(config, len(source), mesh=mesh)
    if start is None:
      start = jax.device_get(exp.init_state())
    state = jax.device_put(start, exp.state_sharding)
    step_metrics = []
    for batch in batches:
      state, m = exp.train_step(state, parallel.global_batch(batch, exp.batch_sharding))
      step_metrics.append({k: float(v) for k, v in jax.device_get(m).items()})
    finals[n], metrics[n] = jax.device_get(state), step_metrics
  # On one CPU process the loop hands the step host arrays (parallel.batch_placer), which the
  # compiled step shards over the 8 devices itself: the same step, bit for bit.
  exp = loop.Experiment(config, len(source), mesh=meshes[8])
  from_host = exp.train_step(jax.device_put(start, exp.state_sharding), batches[0])
  placed = exp.train_step(jax.device_put(start, exp.state_sharding),
                          parallel.global_batch(batches[0], exp.batch_sharding))
  results["host_batches"] = {
      "placer_is_none": parallel.batch_placer(exp.batch_sharding) is None,
      "identical": all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(from_host),
                                                            jax.tree.leaves(placed)))}
  params = lambda st: {"g": st.g_params, "d": st.d_params}
  results["train"] = {
      str(n): {
          "state": _max_abs_diff(finals[n], finals[1]),
          "update": relative_update_difference(params(finals[n]), params(finals[1]),
                                               params(start)),
          "metrics_rel": max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-6)
                             for a, b in zip(metrics[n], metrics[1]) for k in b),
      } for n in finals}
  results["steps"] = WORKER_STEPS
  pathlib.Path(out_path).write_text(json.dumps(results, indent=1))


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
  out = tmp_path_factory.mktemp("sharded") / "results.json"
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={WORKER_DEVICES}")
  result = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True,
                          text=True, timeout=900)
  if result.returncode:
    raise AssertionError(f"worker failed ({result.returncode}):\n{result.stderr[-4000:]}")
  results = json.loads(out.read_text())
  print(json.dumps(results, indent=1))
  return results


@pytest.mark.slow
def test_batchnorm_uses_the_global_batch(sharded):
  bn = sharded["bn"]
  assert bn["per_device_mean_spread"] > 1.0  # per-device statistics would be visibly wrong
  assert bn["sharded_vs_one_device"] < 1e-5, bn
  assert bn["output_vs_float64_global"] < 1e-4, bn
  assert bn["running_mean_vs_global"] < 1e-5, bn


@pytest.mark.slow
def test_dropout_masks_do_not_depend_on_sharding(sharded):
  d = sharded["dropout"]
  assert 0.4 < d["kept_fraction"] < 0.6, d
  assert all(v == 0 for v in d["mismatches"].values()), d


@pytest.mark.slow
def test_host_batches_train_like_placed_ones_on_8_cpu_devices(sharded):
  assert sharded["host_batches"] == {"placer_is_none": True, "identical": True}


@pytest.mark.slow
def test_train_step_is_the_same_on_1_2_4_8_devices(sharded):
  train, steps = sharded["train"], sharded["steps"]
  for n, diff in train.items():
    assert diff["state"] <= STATE_ATOL_PER_STEP * steps, (n, diff)
    assert diff["update"] <= UPDATE_RTOL, (n, diff)
    assert diff["metrics_rel"] <= METRICS_RTOL, (n, diff)


# ---------------------------------------------------------------------------- launch.py runs

RUN_STEPS = 4


def run_overrides(steps: int = RUN_STEPS, checkpoint_every: int = 2) -> tuple[str, ...]:
  # A constant learning rate: with 2 steps per epoch, the tiny config's linear schedule (stepped
  # at the start of each epoch, as the authors') is 0 from step 3: nothing would be compared.
  return (f"--config.num_train_steps={steps}", "--config.batch_size=8",
          f"--config.checkpoint_every_steps={checkpoint_every}", "--config.eval_every_steps=0",
          "--config.log_every_steps=1", "--config.optim.lr_policy=constant")


RUN_OVERRIDES = run_overrides()


def continuous_run(base: pathlib.Path, devices: int) -> pathlib.Path:
  """launch.py from scratch to RUN_STEPS on `devices` devices (once per test session)."""
  workdir = base / f"continuous_{devices}dev"
  if not (workdir / "checkpoints" / str(RUN_STEPS)).is_dir():
    run_launch(workdir, *RUN_OVERRIDES, devices=devices)
  return workdir


def load_state(workdir: pathlib.Path, step: int) -> dict:
  """A checkpoint's train state as nested dicts of numpy arrays, whatever mesh wrote it."""
  import orbax.checkpoint as ocp
  path = workdir / "checkpoints" / str(step) / "state"
  with ocp.PyTreeCheckpointer() as checkpointer:
    tree = checkpointer.metadata(path).item_metadata.tree
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    return checkpointer.restore(path, restore_args=restore_args)


def assert_states_close(state: dict, reference: dict, base: dict, what: str) -> dict:
  """Checks two final states against the tolerances; `base` is where both were RUN_STEPS - 2
  steps earlier (for the relative size of the update)."""
  assert jax.tree.structure(state) == jax.tree.structure(reference), what
  params = lambda st: {"g": st["g_params"], "d": st["d_params"]}
  diff = {"state": _max_abs_diff(state, reference),
          "update": relative_update_difference(params(state), params(reference), params(base))}
  assert diff["state"] <= STATE_ATOL_PER_STEP * RUN_STEPS, f"{what}: {diff}"
  assert diff["update"] <= UPDATE_RTOL, f"{what}: {diff}"
  return diff


def _resume_on(source: pathlib.Path, workdir: pathlib.Path, devices: int, *, drop: tuple,
               steps: int, resumed_from: int) -> pathlib.Path:
  """Copies a run, drops checkpoints `drop` and continues it to `steps` on `devices` devices,
  saving every step."""
  shutil.copytree(source, workdir)
  for step in drop:
    shutil.rmtree(workdir / "checkpoints" / str(step))
  result = run_launch(workdir, *run_overrides(steps, checkpoint_every=1), devices=devices)
  assert f"Resumed from checkpoint {resumed_from}" in result.stderr, result.stderr[-2000:]
  assert f"{devices} local / {devices} global" in result.stderr
  return workdir


@pytest.mark.slow
def test_checkpoints_move_between_device_counts(tmp_path_factory):
  # 1 → 8 → 1: step 3 on 8 devices from a checkpoint saved on one, then step 4 on one device
  # from the checkpoint saved on 8. The pipeline, the sharding and both restores must agree
  # with the uninterrupted run on one device.
  base = tmp_path_factory.getbasetemp()
  one = continuous_run(base, 1)
  eight = _resume_on(one, base / "resume_1_to_8", 8, drop=(RUN_STEPS,), steps=3, resumed_from=2)
  back = _resume_on(eight, base / "resume_8_to_1", 1, drop=(), steps=RUN_STEPS, resumed_from=3)
  diff = assert_states_close(load_state(back, RUN_STEPS), load_state(one, RUN_STEPS),
                             load_state(one, 2), "1 then 8 then 1 devices")
  print(json.dumps(diff, indent=1))


# ---------------------------------------------------------------------------- mixed precision

def test_bfloat16_compute_trains_with_float32_state():
  from pix2pix_jax import state as state_lib, train
  config = tiny_config(**{"optim.lr_policy": "constant"})
  # Parameters do not depend on the compute dtype: build them with the float32 networks.
  state = jax.jit(state_lib.build(config, steps_per_epoch=8).init)()
  built = state_lib.build(tiny_config(**{"optim.lr_policy": "constant",
                                         "compute_dtype": "bfloat16"}), steps_per_epoch=8)
  generator = built.generator
  step = jax.jit(train.bind_train_step(config, generator, built.discriminator, built.g_tx,
                                       built.d_tx))
  batch = synthetic_batch()
  l1, state = l1_curve(step, state, batch)
  assert np.isfinite(l1).all(), l1
  assert np.mean(l1[-5:]) < 0.85 * np.mean(l1[:5]), l1
  # Parameters, Adam moments and BatchNorm statistics stay float32; only the compute is bf16.
  dtypes = {leaf.dtype for leaf in jax.tree.leaves(state)
            if jnp.issubdtype(leaf.dtype, jnp.floating)}
  assert dtypes == {jnp.dtype(jnp.float32)}, dtypes
  hidden = generator.apply({"params": state.g_params, "batch_stats": state.g_batch_stats},
                           batch["A"], train=False, capture_intermediates=True)[1]
  kinds = {x.dtype for x in jax.tree.leaves(hidden["intermediates"])}
  assert jnp.dtype(jnp.bfloat16) in kinds, kinds


if __name__ == "__main__":
  _sharded_worker(sys.argv[1])
