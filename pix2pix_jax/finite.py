"""What a run does when a loss or the state stops being finite: stop, and never save it."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from pix2pix_jax import errors, losses, parallel


class NonFiniteLossError(errors.Pix2pixError, FloatingPointError):
  """A loss became NaN or Inf; training stopped and the last good checkpoint is kept."""


def kept_checkpoint(last_saved: int | None) -> str:
  if last_saved is None:
    return "no checkpoint was saved"
  return f"checkpoint {last_saved} is the last good one (a relaunch resumes there)"


def check_losses(records: list[tuple[int, dict[str, float]]], last_saved: int | None) -> None:
  """Raises NonFiniteLossError at the first step whose losses are not all finite."""
  for step, metrics in records:
    bad = [m.key for m in losses.METRICS if m.loss and not math.isfinite(metrics[m.key])]
    if bad:
      raise NonFiniteLossError(
          f"non-finite loss at step {step}: " + ", ".join(f"{k}={metrics[k]}" for k in bad)
          + f". Training stopped; {kept_checkpoint(last_saved)}. Lower optim.lr, check the "
          "data, or use compute_dtype=float32.")


def _all_finite(tree) -> jax.Array:
  flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
           if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(flags)) if flags else jnp.bool_(True)


@jax.jit
def _finite_fields(state) -> dict[str, jax.Array]:
  return {f.name: _all_finite(getattr(state, f.name)) for f in dataclasses.fields(state)}


def check_state(state, step: int, last_saved: int | None) -> None:
  """A loss can be finite while the update it produced is not: never checkpoint NaN weights."""
  bad = [name for name, ok in _finite_fields(state).items() if not bool(parallel.to_host(ok))]
  if bad:
    raise NonFiniteLossError(
        f"non-finite values in {', '.join(bad)} after step {step}; not saving it. Training "
        f"stopped; {kept_checkpoint(last_saved)}. Lower optim.lr or check the data.")
