"""The pure train step and the optimiser schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import l1_curve, synthetic_batch, tiny_config
from pix2pix_jax import config_check, losses, state as state_lib, train


def _setup(config, steps_per_epoch=8):
  built = state_lib.build(config, steps_per_epoch=steps_per_epoch)
  state = jax.jit(built.init)()
  step = jax.jit(train.bind_train_step(config, built.generator, built.discriminator, built.g_tx,
                                       built.d_tx))
  return state, step


def _fixed_batch():
  rng = np.random.default_rng(0)
  a = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  # A learnable mapping: B is a smooth function of A.
  return {"A": jnp.asarray(a), "B": jnp.tanh(2 * jnp.asarray(a[..., ::-1]))}


@pytest.fixture(scope="module")
def tiny():
  config = tiny_config()
  state, step = _setup(config)
  return config, state, step


def test_one_step_changes_every_network_and_gives_finite_metrics(tiny):
  config, state, step = tiny
  new_state, metrics = step(state, _fixed_batch())
  assert int(new_state.step) == 1
  assert set(metrics) == {"g_gan", "g_l1", "d_real", "d_fake", "d_acc_real", "d_acc_fake"}
  assert all(np.isfinite(float(v)) for v in metrics.values())
  for name in ("g_params", "d_params", "g_batch_stats", "d_batch_stats"):
    before, after = jax.tree.leaves(getattr(state, name)), jax.tree.leaves(getattr(new_state, name))
    changed = [not np.array_equal(a, b) for a, b in zip(before, after)]
    assert all(changed), f"{name}: {changed.count(False)} leaves unchanged after a step"


def test_l1_drops_on_a_fixed_batch():
  state, step = _setup(tiny_config(**{"optim.lr_policy": "constant"}))
  l1, _ = l1_curve(step, state, synthetic_batch())
  assert np.mean(l1[-5:]) < 0.85 * np.mean(l1[:5]), l1


def test_step_is_deterministic(tiny):
  config, state, step = tiny
  batch = _fixed_batch()
  s1, m1 = step(state, batch)
  s2, m2 = step(state, batch)
  for a, b in zip(jax.tree.leaves((s1, m1)), jax.tree.leaves((s2, m2))):
    np.testing.assert_array_equal(a, b)


def test_dropout_key_depends_on_step():
  config6 = tiny_config(**{"model.num_downs": 6})
  # With dropout levels present, the same state at different step numbers gives different fakes.
  built = state_lib.build(config6, steps_per_epoch=8, image_shape=(64, 64))
  step6 = jax.jit(train.bind_train_step(config6, built.generator, built.discriminator,
                                        built.g_tx, built.d_tx))
  batch = {k: jnp.concatenate([v, v], axis=1).repeat(2, axis=2)[:, :64, :64]
           for k, v in _fixed_batch().items()}
  st6 = jax.jit(built.init)()
  _, m_a = step6(st6, batch)
  _, m_b = step6(st6.replace(step=st6.step + 1), batch)
  assert float(m_a["g_l1"]) != float(m_b["g_l1"])


@pytest.mark.parametrize("gan_mode,lambda_gp", [("lsgan", 0.0), ("wgangp", 0.0), ("wgangp", 10.0)])
def test_other_gan_modes_train(gan_mode, lambda_gp):
  config = tiny_config(**{"loss.gan_mode": gan_mode, "loss.lambda_gp": lambda_gp})
  state, step = _setup(config)
  state, metrics = step(state, _fixed_batch())
  assert all(np.isfinite(float(v)) for v in metrics.values())


def test_negative_gradient_penalty_weight_is_a_clear_error():
  config = tiny_config(**{"loss.gan_mode": "wgangp", "loss.lambda_gp": -1.0})
  with pytest.raises(ValueError, match=r"--config.loss.lambda_gp=-1.0: must be a number >= 0"):
    config_check.check(config)


def test_gan_losses_values():
  logits = jnp.array([0.0, 2.0])
  np.testing.assert_allclose(losses.gan_loss(logits, True, "vanilla"),
                             np.mean(np.log1p(np.exp(-np.array([0.0, 2.0])))), rtol=1e-6)
  np.testing.assert_allclose(losses.gan_loss(logits, False, "lsgan"), (0 + 4) / 2)
  np.testing.assert_allclose(losses.gan_loss(logits, True, "wgangp"), -1.0)
  with pytest.raises(ValueError, match="unknown gan_mode"):
    losses.gan_loss(logits, True, "hinge")


def test_gradient_penalty_of_a_linear_critic():
  # D(x) = sum(w·x) has gradient w everywhere: penalty = (‖w‖ - 1)², whatever α.
  w = jnp.full((1, 2, 2, 1), 0.5)  # ‖w‖ = 1 → zero penalty
  critic = lambda x: (jnp.sum(w * x, axis=(1, 2, 3)), "aux")
  real, alpha = jnp.ones((3, 2, 2, 1)), jnp.array([0.1, 0.5, 0.9])
  penalty, aux = losses.gradient_penalty(critic, real, -real, alpha)
  assert float(penalty) < 1e-10 and aux == "aux"
  critic2 = lambda x: (jnp.sum(2 * w * x, axis=(1, 2, 3)), None)
  np.testing.assert_allclose(losses.gradient_penalty(critic2, real, -real, alpha)[0], 1.0,
                             rtol=1e-5)


def test_linear_schedule_matches_the_authors_lambda_rule():
  config = tiny_config(**{"optim.n_epochs": 3, "optim.n_epochs_decay": 4, "optim.lr": 1.0})
  schedule = state_lib.lr_schedule(config, steps_per_epoch=10)
  # Authors' master (scheduler stepped at the start of each epoch): the 1-based epoch T trains at
  # 1 - max(0, T + 1 - n_epochs) / (n_epochs_decay + 1); the last epoch runs at 0.
  for epoch in range(1, 8):
    expected = 1.0 - max(0, epoch + 1 - 3) / 5
    for step in ((epoch - 1) * 10, epoch * 10 - 1):
      np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-6)


@pytest.mark.parametrize("policy", ["linear", "step", "cosine"])
def test_every_epochs_learning_rate_equals_torch_schedulers_driven_as_train_py(policy):
  # The authors' get_scheduler (models/networks.py) on torch's own schedulers, driven as their
  # master train.py does: scheduler.step() at the start of every epoch, before its iterations.
  torch = pytest.importorskip("torch")
  n_epochs, n_epochs_decay, decay_iters, steps_per_epoch, lr = 4, 3, 2, 3, 2e-4
  config = tiny_config(**{"optim.lr_policy": policy, "optim.lr": lr, "optim.n_epochs": n_epochs,
                          "optim.n_epochs_decay": n_epochs_decay,
                          "optim.lr_decay_iters": decay_iters})
  schedule = state_lib.lr_schedule(config, steps_per_epoch)
  optimizer = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=lr)
  epoch_count = 1  # their --epoch_count
  if policy == "linear":
    lambda_rule = lambda epoch: 1.0 - max(0, epoch + epoch_count - n_epochs) / float(
        n_epochs_decay + 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lambda_rule)
  elif policy == "step":
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=decay_iters, gamma=0.1)
  else:
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_epochs,
                                                           eta_min=0)
  expected, ours = [], []
  for epoch in range(epoch_count, n_epochs + n_epochs_decay + 1):
    optimizer.step()  # (the previous epoch's last iteration; keeps torch's order check quiet)
    scheduler.step()  # model.update_learning_rate(), at the start of the epoch
    expected += [optimizer.param_groups[0]["lr"]] * steps_per_epoch
    first = (epoch - epoch_count) * steps_per_epoch
    ours += [float(schedule(step)) for step in range(first, first + steps_per_epoch)]
  np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-12)
  if policy == "linear":
    assert expected[-1] == 0.0  # the last epoch trains at lr 0 in theirs


@pytest.mark.parametrize("policy", ["linear", "step", "cosine", "constant"])
def test_learning_rate_never_negative_past_the_schedule(policy):
  config = tiny_config(**{"optim.lr_policy": policy, "optim.n_epochs": 1,
                          "optim.n_epochs_decay": 1, "optim.lr_decay_iters": 1})
  schedule = state_lib.lr_schedule(config, steps_per_epoch=4)
  assert min(float(schedule(s)) for s in range(0, 100, 3)) >= 0.0


def test_step_and_cosine_schedules():
  config = tiny_config(**{"optim.lr_policy": "step", "optim.lr_decay_iters": 2, "optim.lr": 1.0})
  schedule = state_lib.lr_schedule(config, steps_per_epoch=5)
  # StepLR stepped at the start of each epoch: epoch T (1-based) at 0.1^floor(T / 2).
  np.testing.assert_allclose([float(schedule(s)) for s in (0, 4, 5, 14, 15)],
                             [1, 1, 0.1, 0.1, 0.01], rtol=1e-5)
  config = tiny_config(**{"optim.lr_policy": "cosine", "optim.lr": 1.0, "optim.n_epochs": 4})
  schedule = state_lib.lr_schedule(config, steps_per_epoch=5)
  # CosineAnnealingLR(T_max=n_epochs): epoch T at (1 + cos(pi T / 4)) / 2, zero at T = 4.
  np.testing.assert_allclose([float(schedule(s)) for s in (0, 15, 19)],
                             [(1 + np.cos(np.pi / 4)) / 2, 0, 0], atol=1e-6)
  with pytest.raises(ValueError, match="--config.optim.lr_policy=plateau: must be one of linear"):
    config_check.check(tiny_config(**{"optim.lr_policy": "plateau"}))


@pytest.mark.parametrize("overrides", [{}, {"model.input_nc": 1, "data.direction": "AtoB"}])
def test_ahead_of_time_step_takes_the_pipelines_batches_and_equals_the_jitted_step(overrides):
  # The training loop compiles the step from `batch_spec()` before any state exists; the
  # pipeline's batches must match that spec, and the result must be the jitted step's, bit
  # for bit.
  from pix2pix_jax import loop, parallel
  from pix2pix_jax.data import pipeline
  config = tiny_config(**overrides)
  source = pipeline.get_source(config, config.data.train_split)
  exp = loop.Experiment(config, len(source))
  compiled = exp.compile_train_step()
  local = next(pipeline.make_train_iterator(config, source))
  batch = parallel.global_batch({"A": local["A"], "B": local["B"]}, exp.batch_sharding)
  for key, spec in exp.batch_spec().items():
    assert (batch[key].shape, batch[key].dtype) == (spec.shape, spec.dtype)
  assert batch["A"].shape[-1] == config.model.input_nc
  ahead = compiled(exp.init_state(), batch)
  jitted = exp.train_step(exp.init_state(), batch)
  for a, b in zip(jax.tree.leaves(ahead), jax.tree.leaves(jitted)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_uint8_batches_are_scaled_on_the_devices_exactly_as_on_the_host():
  # The pipeline hands the step uint8 images; the step's result equals the step on the same
  # images scaled to [-1, 1] on the host, bit for bit.
  from pix2pix_jax import loop
  from pix2pix_jax.data import pipeline
  from pix2pix_jax.train import unit_range
  every_value = np.arange(256, dtype=np.uint8)
  np.testing.assert_array_equal(np.asarray(jax.jit(unit_range)(every_value)),
                                pipeline.to_unit_range(every_value))
  config = tiny_config()
  exp = loop.Experiment(config, 16)
  rng = np.random.default_rng(0)
  uint8 = {k: rng.integers(0, 256, v.shape, dtype=np.uint8) for k, v in exp.batch_spec().items()}
  scaled = {k: pipeline.to_unit_range(v) for k, v in uint8.items()}
  from_uint8 = exp.train_step(exp.init_state(), uint8)
  from_float = exp.train_step(exp.init_state(), scaled)
  for a, b in zip(jax.tree.leaves(from_uint8), jax.tree.leaves(from_float)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
