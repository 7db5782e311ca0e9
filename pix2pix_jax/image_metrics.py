"""Per-image quality metrics for generated images: L1, PSNR and SSIM.

All functions take batches of images shaped (B, H, W, C) with values in [-1, 1]
(the generator's tanh range), are pure `jax.numpy`, jitted (and can be used
inside other jitted functions; `data_range` may be traced), and return
one value per image, shape (B,). Reduce over the batch (and over hosts) in the
caller, so that the dataset mean is a mean over images whatever the batch size.

SSIM follows Wang et al., "Image quality assessment: from error visibility to
structural similarity", IEEE TIP 2004, with the constants used by
`skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)` and `tf.image.ssim`:

- an 11x11 Gaussian window with sigma 1.5, normalised to sum 1;
- K1 = 0.01, K2 = 0.03, C1 = (K1 L)^2, C2 = (K2 L)^2 with L = `data_range`;
- local means, variances and covariance are population (biased) moments;
- 'valid' filtering: only window positions fully inside the image count;
- the SSIM map is averaged over all valid positions and all channels
  (equal weight per channel, as TF's mean of per-channel means).

Images smaller than 11 pixels on a side use a window of min(H, W) pixels with
the same sigma (skimage and TF refuse such images instead).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

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
  """Peak signal-to-noise ratio in dB per image: 10 log10(L^2 / MSE).

  Identical images have MSE 0 and get +inf (as skimage and `tf.image.psnr`);
  a caller that averages over a dataset should decide how to treat them.

  Returns:
    Shape (B,) float32.
  """
  pred, target = _check_pair(pred, target)
  mse = jnp.mean(jnp.square(pred - target), axis=(1, 2, 3))
  # Written as a difference of logs so that MSE 0 gives +inf without a warning.
  return 20.0 * jnp.log10(data_range) - 10.0 * jnp.log10(mse)


def gaussian_window(size: int, sigma: float = SSIM_SIGMA) -> np.ndarray:
  """Normalised 1-D Gaussian of `size` taps centred on the middle (also for even sizes)."""
  coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  window = np.exp(-(coords ** 2) / (2.0 * sigma ** 2))
  return (window / window.sum()).astype(np.float32)


def _filter_valid(maps: jax.Array, window: np.ndarray) -> jax.Array:
  """Separable 'valid' filtering of every channel of `maps` (B, H, W, K) by `window`.

  Written as a weighted sum of shifted slices rather than a depthwise convolution:
  XLA fuses it into one elementwise loop per axis, ~10x faster than a grouped
  convolution on CPU, and it is exact float32 arithmetic on every backend.
  """
  size = window.shape[0]
  for axis in (1, 2):
    length = maps.shape[axis] - size + 1
    maps = sum(float(weight) * jax.lax.slice_in_dim(maps, tap, tap + length, axis=axis)
               for tap, weight in enumerate(window))
  return maps


@jax.jit
def ssim(pred: jax.Array, target: jax.Array,
         data_range: float = DEFAULT_DATA_RANGE) -> jax.Array:
  """Structural similarity per image (see the module docstring for the definition).

  Returns:
    Shape (B,) float32; 1 for identical images.
  """
  pred, target = _check_pair(pred, target)
  _, height, width, _ = pred.shape
  window = gaussian_window(min(SSIM_WINDOW_SIZE, height, width))
  c1 = (SSIM_K1 * data_range) ** 2
  c2 = (SSIM_K2 * data_range) ** 2

  # Filter the five local moments in one depthwise convolution.
  maps = jnp.concatenate(
      [pred, target, pred * pred, target * target, pred * target], axis=-1)
  filtered = _filter_valid(maps, window)
  mu_p, mu_t, e_pp, e_tt, e_pt = jnp.split(filtered, 5, axis=-1)
  var_p = e_pp - mu_p * mu_p
  var_t = e_tt - mu_t * mu_t
  cov_pt = e_pt - mu_p * mu_t

  numerator = (2.0 * mu_p * mu_t + c1) * (2.0 * cov_pt + c2)
  denominator = (mu_p * mu_p + mu_t * mu_t + c1) * (var_p + var_t + c2)
  ssim_map = numerator / denominator
  return jnp.mean(ssim_map, axis=(1, 2, 3))
