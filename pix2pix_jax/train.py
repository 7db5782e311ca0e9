"""One pure pix2pix training step: the D update, then the G update, in the authors' order.

`train_step` follows the authors' `Pix2PixModel.optimize_parameters` exactly, down to the batch
statistics each network pass uses and updates.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from pix2pix_jax import losses, pixels
from pix2pix_jax.state import TrainState

Metrics = dict[str, jax.Array]


def train_step(state: TrainState, batch: dict[str, jax.Array], *, generator: nn.Module,
               discriminator: nn.Module, g_tx: optax.GradientTransformation,
               d_tx: optax.GradientTransformation, gan_mode: str, lambda_l1: float,
               lambda_gp: float = 0.0) -> tuple[TrainState, Metrics]:
  """Returns the next state and this step's metrics. Pure: jit it once.

  As the authors' `Pix2PixModel.optimize_parameters`:
  1. fake_B = G(real_A), in train mode (batch statistics, dropout).
  2. D update on the detached fake pair and the real pair; loss
     ½[GAN(D(A, fake), 0) + GAN(D(A, B), 1)] (+ λ_GP times the authors' gradient penalty on the
     two pairs, for wgangp with λ_GP > 0).
  3. G update through the *updated* D: GAN(D(A, fake), 1) + λ·‖fake_B - real_B‖₁.
  D runs three times in train mode (fake, real, fake; with the penalty a fourth pass after the
  real one), each on its own batch statistics, and its running statistics are updated each
  time, exactly as in PyTorch. G's forward pass is computed once and reused for its gradient
  through `jax.vjp`.

  `batch["A"]` (input) and `batch["B"]` (target) are NHWC images: uint8 as the input pipeline
  reads them, or float32 already in [-1, 1].
  """
  real_a, real_b = unit_range(batch["A"]), unit_range(batch["B"])
  step_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
  dropout_key, gp_key = jax.random.split(step_key)

  def g_forward(g_params):
    fake_b, updates = generator.apply(
        {"params": g_params, "batch_stats": state.g_batch_stats}, real_a, train=True,
        rngs={"dropout": dropout_key}, mutable=["batch_stats"])
    return fake_b, updates.get("batch_stats", {})

  fake_b, g_vjp, g_batch_stats = jax.vjp(g_forward, state.g_params, has_aux=True)

  def d_apply(d_params, d_stats, pair):
    logits, updates = discriminator.apply(
        {"params": d_params, "batch_stats": d_stats}, pair, train=True, mutable=["batch_stats"])
    return logits, updates.get("batch_stats", {})

  # ---- Discriminator update on (real_A, fake_B.detach()) and (real_A, real_B).
  fake_pair = jnp.concatenate([real_a, jax.lax.stop_gradient(fake_b)], axis=-1)
  real_pair = jnp.concatenate([real_a, real_b], axis=-1)

  def d_loss_fn(d_params):
    pred_fake, stats = d_apply(d_params, state.d_batch_stats, fake_pair)
    pred_real, stats = d_apply(d_params, stats, real_pair)
    d_fake = losses.gan_loss(pred_fake, False, gan_mode)
    d_real = losses.gan_loss(pred_real, True, gan_mode)
    loss = 0.5 * (d_fake + d_real)
    if gan_mode == "wgangp" and lambda_gp > 0:
      # The authors' cal_gradient_penalty on the whole pairs D judges, one α per example. Its D
      # pass runs in train mode after the real one and updates the running statistics, as a
      # third netD call does in PyTorch. (Their Pix2PixModel never calls it: λ_GP = 0.)
      alpha = jax.random.uniform(gp_key, (real_pair.shape[0],))
      critic = lambda pair: d_apply(d_params, stats, pair)
      penalty, stats = losses.gradient_penalty(critic, real_pair, fake_pair, alpha)
      loss = loss + lambda_gp * penalty
    return loss, (pred_real, pred_fake, d_real, d_fake, stats)

  d_grads, (pred_real, pred_fake, d_real, d_fake, d_batch_stats) = jax.grad(
      d_loss_fn, has_aux=True)(state.d_params)
  d_updates, d_opt_state = d_tx.update(d_grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  # ---- Generator update through the updated discriminator.
  def g_loss_fn(fake):
    pred, stats = d_apply(d_params, d_batch_stats, jnp.concatenate([real_a, fake], axis=-1))
    g_gan = losses.gan_loss(pred, True, gan_mode)
    g_l1 = lambda_l1 * losses.l1_loss(fake, real_b)
    return g_gan + g_l1, (g_gan, g_l1, stats)

  d_fake_grad, (g_gan, g_l1, d_batch_stats) = jax.grad(g_loss_fn, has_aux=True)(fake_b)
  (g_grads,) = g_vjp(d_fake_grad)
  g_updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)

  new_state = state.replace(
      step=state.step + 1, g_params=g_params, g_batch_stats=g_batch_stats,
      g_opt_state=g_opt_state, d_params=d_params, d_batch_stats=d_batch_stats,
      d_opt_state=d_opt_state)
  metrics = {
      "g_gan": g_gan,
      "g_l1": g_l1,
      "d_real": d_real,
      "d_fake": d_fake,
      "d_acc_real": losses.real_accuracy(pred_real, True, gan_mode),
      "d_acc_fake": losses.real_accuracy(pred_fake, False, gan_mode),
  }
  return new_state, metrics


def unit_range(images: jax.Array) -> jax.Array:
  """uint8 images → float32 in [-1, 1] by the host's own table (bit-identical to scaling before
  the transfer, on any backend); float images are returned unchanged."""
  if images.dtype != jnp.uint8:
    return images
  return jnp.asarray(pixels.UNIT_RANGE_OF_UINT8)[images]


def bind_train_step(config, generator, discriminator, g_tx, d_tx):
  """`train_step` with the static settings of `config` bound (jit the result)."""
  return functools.partial(
      train_step, generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
      gan_mode=config.loss.gan_mode, lambda_l1=float(config.loss.lambda_l1),
      lambda_gp=float(config.loss.lambda_gp))
