"""Tests for pix2pix_jax/image_metrics.py: equal to scikit-image, per image, known values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import metrics as skimage_metrics

from pix2pix_jax import image_metrics


def _image_pairs(height=32, width=48, channels=3):
  """Three (pred, target) pairs from mild to heavy noise on a smooth target, float32 in [-1, 1]."""
  rng = np.random.default_rng(2017)
  yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
  phases = rng.uniform(0, 2 * np.pi, size=channels)
  target = np.stack([np.sin(6 * xx + 4 * yy + p) * 0.8 for p in phases], axis=-1)
  target = np.clip(target + 0.1 * rng.standard_normal(target.shape), -1, 1)
  preds = [np.clip(target + s * rng.standard_normal(target.shape), -1, 1) for s in (0.05, 0.3, 1.0)]
  return np.stack(preds).astype(np.float32), np.stack([target] * 3).astype(np.float32)


def _reference_ssim(pred, target, data_range=2.0, window_size=11, sigma=1.5):
  """Wang et al. 2004 SSIM written out position by position, in float64, for any window size
  (scikit-image refuses images smaller than its 11-pixel window)."""
  pred = pred.astype(np.float64)
  target = target.astype(np.float64)
  c1 = (0.01 * data_range) ** 2
  c2 = (0.03 * data_range) ** 2
  coords = np.arange(window_size) - (window_size - 1) / 2
  g = np.exp(-coords ** 2 / (2 * sigma ** 2))
  weights = np.outer(g, g) / np.outer(g, g).sum()
  height, width, channels = pred.shape
  values = []
  for c in range(channels):
    for i in range(height - window_size + 1):
      for j in range(width - window_size + 1):
        x = pred[i:i + window_size, j:j + window_size, c]
        y = target[i:i + window_size, j:j + window_size, c]
        mu_x = np.sum(weights * x)
        mu_y = np.sum(weights * y)
        var_x = np.sum(weights * (x - mu_x) ** 2)
        var_y = np.sum(weights * (y - mu_y) ** 2)
        cov = np.sum(weights * (x - mu_x) * (y - mu_y))
        values.append((2 * mu_x * mu_y + c1) * (2 * cov + c2)
                      / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)))
  return float(np.mean(values))


def _skimage_ssim(pred, target):
  """The definition the project documents, computed by scikit-image in float64."""
  return skimage_metrics.structural_similarity(
      pred.astype(np.float64), target.astype(np.float64), data_range=2.0, channel_axis=-1,
      gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def _skimage_psnr(pred, target):
  return skimage_metrics.peak_signal_noise_ratio(target.astype(np.float64),
                                                 pred.astype(np.float64), data_range=2.0)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("height,width", [(32, 48), (64, 64)])
def test_equal_to_scikit_image(channels, height, width):
  pred, target = _image_pairs(height, width, channels)
  ssim = np.asarray(jax.jit(image_metrics.ssim)(pred, target))
  psnr = np.asarray(jax.jit(image_metrics.psnr)(pred, target))
  l1 = np.asarray(jax.jit(image_metrics.l1)(pred, target))
  assert ssim.shape == psnr.shape == l1.shape == (3,)

  np.testing.assert_allclose(ssim, [_skimage_ssim(p, t) for p, t in zip(pred, target)], atol=2e-5)
  np.testing.assert_allclose(psnr, [_skimage_psnr(p, t) for p, t in zip(pred, target)], rtol=1e-5)
  np.testing.assert_allclose(l1, np.abs(pred.astype(np.float64) - target).mean(axis=(1, 2, 3)),
                             rtol=1e-5)
  # More noise must mean worse on every metric.
  assert ssim[0] > ssim[1] > ssim[2]
  assert psnr[0] > psnr[1] > psnr[2]
  assert l1[0] < l1[1] < l1[2]


def test_identical_images():
  _, target = _image_pairs()
  assert np.allclose(image_metrics.ssim(target, target), 1.0, atol=1e-6)
  assert np.all(np.isposinf(image_metrics.psnr(target, target)))
  assert np.all(image_metrics.l1(target, target) == 0.0)


def test_known_values_for_constant_images():
  # A constant offset of 0.5 in [-1, 1]: MSE 0.25 -> PSNR 10 log10(4 / 0.25) = 12.04 dB,
  # and SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) with zero variances.
  pred = jnp.full((1, 16, 16, 3), 0.25)
  target = jnp.full((1, 16, 16, 3), -0.25)
  c1 = (0.01 * 2.0) ** 2
  np.testing.assert_allclose(image_metrics.psnr(pred, target), [10 * np.log10(16)], rtol=1e-6)
  np.testing.assert_allclose(image_metrics.l1(pred, target), [0.5], rtol=1e-6)
  expected_ssim = (2 * 0.25 * -0.25 + c1) / (2 * 0.25 ** 2 + c1)
  np.testing.assert_allclose(image_metrics.ssim(pred, target), [expected_ssim], rtol=1e-5)


def test_values_are_per_image():
  pred, target = _image_pairs()
  full = image_metrics.ssim(pred, target)
  for i in range(pred.shape[0]):
    np.testing.assert_allclose(image_metrics.ssim(pred[i:i + 1], target[i:i + 1]), full[i:i + 1],
                               atol=1e-6)


def test_small_images_use_a_smaller_window():
  pred, target = _image_pairs(height=8, width=12, channels=1)
  ssim = np.asarray(image_metrics.ssim(pred, target))
  # The window shrinks to min(H, W) = 8, so only 1 x 5 positions are valid.
  reference = [_reference_ssim(p, t, window_size=8) for p, t in zip(pred, target)]
  np.testing.assert_allclose(ssim, reference, atol=2e-5)


def test_bfloat16_inputs_are_computed_in_float32():
  pred, target = _image_pairs()
  ssim = image_metrics.ssim(jnp.asarray(pred, jnp.bfloat16), jnp.asarray(target, jnp.bfloat16))
  assert ssim.dtype == jnp.float32
  np.testing.assert_allclose(ssim, [_skimage_ssim(p, t) for p, t in zip(pred, target)],
                             atol=2e-2)


def test_shape_errors():
  with pytest.raises(ValueError, match="differs"):
    image_metrics.l1(jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 8, 1)))
  with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
    image_metrics.psnr(jnp.zeros((8, 8, 3)), jnp.zeros((8, 8, 3)))
