"""The immutable training state and how it is built: both networks, both optimisers."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from pix2pix_jax import models

LR_POLICIES = ("linear", "step", "cosine", "constant")


class TrainState(flax.struct.PyTreeNode):
  """Everything a training step reads and writes. A pytree: checkpointed and sharded whole."""
  step: jax.Array
  rng: jax.Array  # root key (raw uint32 key data); per-step keys are fold_in(rng, step)
  g_params: Any
  g_batch_stats: Any
  g_opt_state: Any
  d_params: Any
  d_batch_stats: Any
  d_opt_state: Any


def lr_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """The authors' learning-rate policies, evaluated per step but constant within an epoch.

  Their current `train.py` steps the scheduler at the *start* of every epoch, so the 1-based
  epoch T trains at the policy's value for T (0-based epoch e: T = e + 1):
  linear: `1 - max(0, T + 1 - n_epochs) / (n_epochs_decay + 1)` (LambdaLR): the decay starts in
  epoch n_epochs and the last scheduled epoch runs at lr 0;
  step: ×0.1 every `lr_decay_iters` epochs (StepLR, so epoch lr_decay_iters is the first decayed);
  cosine: `CosineAnnealingLR(T_max=n_epochs, eta_min=0)`, i.e. `(1 + cos(π T / n_epochs)) / 2`
  (periodic past n_epochs, as torch's); constant.
  """
  o = config.optim
  base, policy = float(o.lr), o.lr_policy
  if policy not in LR_POLICIES:
    raise ValueError(f"unknown optim.lr_policy {policy!r}; choose one of {LR_POLICIES}")
  if steps_per_epoch < 1:
    raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")

  def schedule(step):
    # The scheduler's count after the step at the start of the 1-based epoch T = e + 1.
    t = (jnp.asarray(step) // steps_per_epoch + 1).astype(jnp.float32)
    if policy == "linear":
      factor = 1.0 - jnp.maximum(0.0, t + 1 - o.n_epochs) / float(o.n_epochs_decay + 1)
    elif policy == "step":
      factor = 0.1 ** jnp.floor(t / o.lr_decay_iters)
    elif policy == "cosine":
      factor = 0.5 * (1 + jnp.cos(jnp.pi * t / float(o.n_epochs)))
    else:
      factor = jnp.ones_like(t)
    # Past the scheduled epochs (e.g. num_train_steps set longer) the rate stays at zero.
    return base * jnp.maximum(factor, 0.0)

  return schedule


def make_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """Adam as the authors configure it (β1 0.5, β2 0.999, eps 1e-8) on the chosen schedule."""
  o = config.optim
  return optax.adam(lr_schedule(config, steps_per_epoch), b1=o.beta1, b2=o.beta2, eps=1e-8)


def create_train_state(config, generator, discriminator, g_tx, d_tx,
                       image_shape: tuple[int, int], input_nc: int, output_nc: int
                       ) -> TrainState:
  """Initialises both networks from `config.seed` (pure: jit it with out_shardings)."""
  root = jax.random.key(config.seed)
  g_key, d_key, step_key = jax.random.split(root, 3)
  h, w = image_shape
  x = jnp.zeros((1, h, w, input_nc), jnp.float32)
  g_vars = generator.init({"params": g_key, "dropout": g_key}, x, train=False)
  pair = jnp.zeros((1, h, w, input_nc + output_nc), jnp.float32)
  d_vars = discriminator.init({"params": d_key}, pair, train=False)
  g_params, d_params = g_vars["params"], d_vars["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      rng=jax.random.key_data(step_key),
      g_params=g_params,
      g_batch_stats=g_vars.get("batch_stats", {}),
      g_opt_state=g_tx.init(g_params),
      d_params=d_params,
      d_batch_stats=d_vars.get("batch_stats", {}),
      d_opt_state=d_tx.init(d_params),
  )


def describe(state: TrainState) -> str:
  return (f"G: {models.count_params(state.g_params):,} parameters, "
          f"D: {models.count_params(state.d_params):,} parameters")
