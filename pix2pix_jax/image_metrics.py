"""Per-image quality metrics for generated images: L1 here, PSNR and SSIM from dm-pix.

Each takes (B, H, W, C) batches in [-1, 1] (the generator's tanh range), is jitted (`data_range`
may be traced) and returns one value per image, shape (B,): callers reduce over the batch and
hosts, so a dataset's mean is a mean over images whatever the batch size.
"""

from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp

# Wang et al. 2004, section III-C.
SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# Images in [-1, 1] span a range of 2.
DEFAULT_DATA_RANGE = 2.0


def _check_pair(pred: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
  pred = jnp.asarray(pred)
  target = jnp.asarray(target)
  if pred.shape != target.shape:
    raise ValueError(f"pred shape {pred.shape} differs from target shape {target.shape}")
  if pred.ndim != 4:
    raise ValueError(f"expected images shaped (B, H, W, C), got shape {pred.shape}")
  # Compute in float32 even for bfloat16 inputs: PSNR and SSIM need the precision.
  return pred.astype(jnp.float32), target.astype(jnp.float32)


@jax.jit
def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Mean absolute error per image, in the images' units. Returns shape (B,)."""
  pred, target = _check_pair(pred, target)
  return jnp.mean(jnp.abs(pred - target), axis=(1, 2, 3))


@jax.jit
def psnr(pred: jax.Array, target: jax.Array,
         data_range: float = DEFAULT_DATA_RANGE) -> jax.Array:
  """Peak signal-to-noise ratio in dB per image; +inf for identical images. Shape (B,).

  10·log10(L² / MSE) with L = `data_range` (2 for [-1, 1]).
  """
  pred, target = _check_pair(pred, target)
  # dm-pix assumes a range of 1: dividing both images by L gives MSE / L², the same PSNR.
  return dm_pix.psnr(pred / data_range, target / data_range)


@jax.jit
def ssim(pred: jax.Array, target: jax.Array,
         data_range: float = DEFAULT_DATA_RANGE) -> jax.Array:
  """Structural similarity per image; 1 for identical images. Shape (B,) float32.

  Wang et al. 2004 as scikit-image's `structural_similarity(..., data_range=2, channel_axis=-1,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)` computes it (a test keeps the
  two equal): an 11×11 Gaussian window with σ 1.5, K1 = 0.01, K2 = 0.03, population moments,
  only window positions fully inside the image, averaged over positions and channels. Images
  smaller than 11 pixels on a side use a window of min(H, W) pixels with the same σ
  (scikit-image refuses them).
  """
  pred, target = _check_pair(pred, target)
  _, height, width, _ = pred.shape
  return dm_pix.ssim(pred, target, max_val=data_range,
                     filter_size=min(SSIM_WINDOW_SIZE, height, width), filter_sigma=SSIM_SIGMA,
                     k1=SSIM_K1, k2=SSIM_K2)
