"""GAN objectives and the L1 term of pix2pix (the authors' `GANLoss` and `criterionL1`), and the
metrics the train step reports."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

GAN_MODES = ("vanilla", "lsgan", "wgangp")


@dataclasses.dataclass(frozen=True)
class Metric:
  """One value of the train step's metrics, as the log line, the plots and the page show it."""
  key: str  # in `train_step`'s metrics and in metrics.jsonl
  label: str
  loss: bool  # a term of an objective (its own plot; a NaN stops the run), else an accuracy
  log_scale: bool = False


# Every metric `train.train_step` returns, in the order they are shown.
METRICS = (
    Metric("g_gan", "G GAN", loss=True),
    Metric("g_l1", "G L1", loss=True, log_scale=True),
    Metric("d_real", "D real", loss=True),
    Metric("d_fake", "D fake", loss=True),
    Metric("d_acc_real", "D acc real", loss=False),
    Metric("d_acc_fake", "D acc fake", loss=False),
)


def gan_loss(logits: jax.Array, target_is_real: bool, gan_mode: str) -> jax.Array:
  """Mean GAN loss over every patch of every example.

  vanilla: binary cross-entropy with logits (the paper); lsgan: least squares (Mao et al.);
  wgangp: the Wasserstein critic loss, -mean for real and +mean for fake.
  """
  if gan_mode == "vanilla":
    labels = jnp.ones_like(logits) if target_is_real else jnp.zeros_like(logits)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))
  if gan_mode == "lsgan":
    target = 1.0 if target_is_real else 0.0
    return jnp.mean(jnp.square(logits - target))
  if gan_mode == "wgangp":
    return -jnp.mean(logits) if target_is_real else jnp.mean(logits)
  raise ValueError(f"unknown gan_mode {gan_mode!r}; choose one of {GAN_MODES}")


def l1_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
  return jnp.mean(jnp.abs(prediction.astype(jnp.float32) - target.astype(jnp.float32)))


def real_accuracy(logits: jax.Array, target_is_real: bool, gan_mode: str) -> jax.Array:
  """Fraction of patches the discriminator classifies correctly.

  The decision threshold is 0 for logits (vanilla, wgangp) and 0.5 for lsgan outputs.
  """
  threshold = 0.5 if gan_mode == "lsgan" else 0.0
  says_real = logits > threshold
  return jnp.mean(says_real if target_is_real else ~says_real)


def gradient_penalty(critic: Callable[[jax.Array], tuple[jax.Array, Any]], real: jax.Array,
                     fake: jax.Array, alpha: jax.Array) -> tuple[jax.Array, Any]:
  """WGAN-GP penalty (Gulrajani et al. 2017) as the authors' `cal_gradient_penalty('mixed')`,
  before its λ.

  mean over examples of (‖∇ₓ Σ D(x̂) + 1e-16‖₂ - 1)² at x̂ = α·real + (1-α)·fake, one α per
  example (`alpha`, shape (N,)), the gradient taken over every element of x̂ (for pix2pix: all
  channels of the (input, output) pair) and 1e-16 added to each of its elements inside the norm,
  as theirs. `critic(x)` returns (D's outputs, aux); returns (penalty, aux).
  """
  alpha = alpha.astype(real.dtype).reshape((-1,) + (1,) * (real.ndim - 1))
  interpolates = alpha * real + (1.0 - alpha) * fake

  def summed(x):
    outputs, aux = critic(x)
    return jnp.sum(outputs), aux

  grads, aux = jax.grad(summed, has_aux=True)(interpolates)
  norms = jnp.linalg.norm(grads.reshape(grads.shape[0], -1) + 1e-16, axis=1)
  return jnp.mean(jnp.square(norms - 1.0)), aux
