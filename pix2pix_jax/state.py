"""The immutable training state, the optimisers, and the one builder of a run's networks.

`build` is where the networks, the abstract state and its shardings are constructed, for every
caller: the training loop (with optimisers: the whole `TrainState`), test time (without: only
the networks' `Weights`, the subset of a checkpoint a restore reads), `convert` and the tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from pix2pix_jax import models, parallel

LR_POLICIES = ("linear", "step", "cosine", "constant")
# config.compute_dtype: the dtype the networks compute in (parameters always stay float32).
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Weights(flax.struct.PyTreeNode):
  """Both networks' parameters and batch statistics: what test time needs of a `TrainState`.

  The field names are the train state's, so this is a partial view of a saved state: restoring
  it reads these subtrees of a checkpoint and never the optimiser's.
  """
  g_params: Any
  g_batch_stats: Any
  d_params: Any
  d_batch_stats: Any


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
  (periodic past n_epochs, as torch's); constant. The optim fields are checked by
  `config_check`.
  """
  o = config.optim
  base = float(o.lr)
  if steps_per_epoch < 1:
    raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
  factor_of = {
      "linear": lambda t: 1.0 - jnp.maximum(0.0, t + 1 - o.n_epochs) / float(o.n_epochs_decay + 1),
      "step": lambda t: 0.1 ** jnp.floor(t / o.lr_decay_iters),
      "cosine": lambda t: 0.5 * (1 + jnp.cos(jnp.pi * t / float(o.n_epochs))),
      "constant": jnp.ones_like,
  }[o.lr_policy]

  def schedule(step):
    # The scheduler's count after the step at the start of the 1-based epoch T = e + 1.
    t = (jnp.asarray(step) // steps_per_epoch + 1).astype(jnp.float32)
    # Past the scheduled epochs (e.g. num_train_steps set longer) the rate stays at zero.
    return base * jnp.maximum(factor_of(t), 0.0)

  return schedule


def make_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
  """Adam as the authors configure it (β1 0.5, β2 0.999, eps 1e-8) on the chosen schedule."""
  o = config.optim
  return optax.adam(lr_schedule(config, steps_per_epoch), b1=o.beta1, b2=o.beta2, eps=1e-8)


def _init_keys(config) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(generator, discriminator, train-step) keys, all from `config.seed`."""
  return tuple(jax.random.split(jax.random.key(config.seed), 3))


def init_weights(config, generator, discriminator, image_shape: tuple[int, int],
                 input_nc: int, output_nc: int) -> Weights:
  """Both networks' initial variables from `config.seed` (pure)."""
  g_key, d_key, _ = _init_keys(config)
  h, w = image_shape
  x = jnp.zeros((1, h, w, input_nc), jnp.float32)
  g_vars = generator.init({"params": g_key, "dropout": g_key}, x, train=False)
  pair = jnp.zeros((1, h, w, input_nc + output_nc), jnp.float32)
  d_vars = discriminator.init({"params": d_key}, pair, train=False)
  return Weights(g_params=g_vars["params"], g_batch_stats=g_vars.get("batch_stats", {}),
                 d_params=d_vars["params"], d_batch_stats=d_vars.get("batch_stats", {}))


def create_train_state(config, generator, discriminator, g_tx, d_tx,
                       image_shape: tuple[int, int], input_nc: int, output_nc: int
                       ) -> TrainState:
  """Initialises both networks from `config.seed` (pure: jit it with out_shardings)."""
  weights = init_weights(config, generator, discriminator, image_shape, input_nc, output_nc)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      rng=jax.random.key_data(_init_keys(config)[2]),
      g_params=weights.g_params,
      g_batch_stats=weights.g_batch_stats,
      g_opt_state=g_tx.init(weights.g_params),
      d_params=weights.d_params,
      d_batch_stats=weights.d_batch_stats,
      d_opt_state=d_tx.init(weights.d_params),
  )


def compute_dtype(config):
  """The networks' compute dtype (`config.compute_dtype`); parameters always stay float32."""
  return COMPUTE_DTYPES[config.compute_dtype]


def default_image_shape(config) -> tuple[int, int]:
  """(H, W) the networks are built at when no data says otherwise: the training crop.

  Parameter shapes do not depend on the image size (both networks are fully convolutional),
  so test time never opens a data split to learn it.
  """
  return config.data.crop_size, config.data.crop_size


@dataclasses.dataclass(frozen=True)
class Built:
  """A run's networks with the pure initialiser, abstract shape and sharding of its state.

  `state` is a `TrainState` when built with optimisers (training, convert), else `Weights`
  (test time: no optimiser, schedule or train step exists).
  """
  generator: nn.Module
  discriminator: nn.Module
  mesh: jax.sharding.Mesh
  init: Callable[[], Any]  # pure: () -> the initial state (TrainState or Weights)
  abstract_state: Any  # ShapeDtypeStructs carrying `state_sharding`
  state_sharding: Any
  g_tx: optax.GradientTransformation | None = None
  d_tx: optax.GradientTransformation | None = None


def build(config, *, steps_per_epoch: int | None = None,
          image_shape: tuple[int, int] | None = None, mesh=None,
          dtype=None) -> Built:
  """Builds the networks of `config.model`, the abstract state and its shardings.

  Args:
    config: the run's config.
    steps_per_epoch: for training: builds both optimisers on the learning-rate schedule and the
      state is a `TrainState`. None (test time): no optimiser; the state is `Weights`.
    image_shape: (H, W) to initialise at (default: `default_image_shape`).
    mesh: devices to shard over (default: every device, `parallel.make_mesh`).
    dtype: compute dtype of the networks (default: `compute_dtype(config)`).
  """
  dtype = compute_dtype(config) if dtype is None else dtype
  generator = models.make_generator(config, dtype)
  discriminator = models.make_discriminator(config, dtype)
  image_shape = default_image_shape(config) if image_shape is None else tuple(image_shape)
  m = config.model
  g_tx = d_tx = None
  if steps_per_epoch is None:
    init = lambda: init_weights(config, generator, discriminator, image_shape, m.input_nc,
                                m.output_nc)
  else:
    g_tx = make_optimizer(config, steps_per_epoch)
    d_tx = make_optimizer(config, steps_per_epoch)
    init = lambda: create_train_state(config, generator, discriminator, g_tx, d_tx,
                                      image_shape, m.input_nc, m.output_nc)
  mesh = parallel.make_mesh() if mesh is None else mesh
  shapes = jax.eval_shape(init)
  sharding = parallel.state_shardings(shapes, mesh)
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          shapes, sharding)
  return Built(generator=generator, discriminator=discriminator, mesh=mesh, init=init,
               abstract_state=abstract, state_sharding=sharding, g_tx=g_tx, d_tx=d_tx)


def describe(state: TrainState) -> str:
  return (f"G: {models.count_params(state.g_params):,} parameters, "
          f"D: {models.count_params(state.d_params):,} parameters")
