"""Tests for pix2pix_jax/data/images.py: every kind of input a dataset folder may hold."""

import io

import numpy as np
import pytest
from PIL import Image

from pix2pix_jax.data import images


def _rgb(height=8, width=12, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _save(image: Image.Image, path, **kwargs):
  image.save(path, **kwargs)
  return path


def test_rgb_png_decodes_exactly(tmp_path):
  pixels = _rgb()
  path = _save(Image.fromarray(pixels), tmp_path / "x.png")
  decoded = images.load_image(path)
  assert decoded.dtype == np.uint8 and decoded.shape == (8, 12, 3)
  np.testing.assert_array_equal(decoded, pixels)


def test_truncated_jpeg_raises_naming_file(tmp_path):
  data = images.encode_jpeg(_rgb(64, 64))
  path = tmp_path / "cut.jpg"
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(images.BadImageError, match=r"cut\.jpg: truncated.*re-download"):
    images.load_image(path)


def test_garbage_bytes_raise_naming_file(tmp_path):
  path = tmp_path / "garbage.png"
  path.write_bytes(b"this is not an image" * 10)
  with pytest.raises(images.BadImageError, match=r"garbage\.png: not an image"):
    images.load_image(path)


def test_corrupt_png_body_raises(tmp_path):
  data = bytearray(images.encode_png(_rgb(32, 32)))
  data[60:120] = b"\x00" * 60  # Inside the IDAT chunk: header still parses.
  with pytest.raises(images.BadImageError, match=r"broken\.png: .*Re-copy"):
    images.decode_image(bytes(data), "broken.png")


def test_empty_file_raises(tmp_path):
  path = tmp_path / "empty.jpg"
  path.write_bytes(b"")
  with pytest.raises(images.BadImageError, match=r"empty\.jpg: the file is empty"):
    images.load_image(path)


def test_bad_image_error_is_value_error():
  assert issubclass(images.BadImageError, ValueError)


def test_rgba_png_drops_alpha_like_the_authors(tmp_path):
  rgba = np.concatenate([_rgb(), np.zeros((8, 12, 1), np.uint8)], axis=2)  # Fully transparent.
  path = _save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "alpha.png")
  decoded = images.load_image(path)
  np.testing.assert_array_equal(decoded, rgba[:, :, :3])  # Stored colours, not composited.
  np.testing.assert_array_equal(decoded, np.asarray(Image.open(path).convert("RGB")))


def test_la_png_becomes_grey_rgb(tmp_path):
  grey = _rgb()[:, :, 0]
  la = np.stack([grey, np.full_like(grey, 7)], axis=2)
  path = _save(Image.fromarray(la, mode="LA"), tmp_path / "la.png")
  decoded = images.load_image(path)
  for channel in range(3):
    np.testing.assert_array_equal(decoded[:, :, channel], grey)


def test_greyscale_and_one_bit_become_rgb(tmp_path):
  grey = _rgb()[:, :, 0]
  decoded = images.load_image(_save(Image.fromarray(grey), tmp_path / "l.png"))
  np.testing.assert_array_equal(decoded, np.repeat(grey[:, :, None], 3, axis=2))
  bits = Image.fromarray(grey > 127).convert("1")
  decoded = images.load_image(_save(bits, tmp_path / "bits.bmp"))
  np.testing.assert_array_equal(decoded[:, :, 0], np.where(grey > 127, 255, 0))


def test_cmyk_jpeg_becomes_rgb(tmp_path):
  pixels = np.full((16, 16, 3), (200, 40, 90), np.uint8)
  path = _save(Image.fromarray(pixels).convert("CMYK"), tmp_path / "cmyk.jpg", quality=100)
  assert Image.open(path).mode == "CMYK"
  decoded = images.load_image(path)
  assert decoded.shape == (16, 16, 3)
  np.testing.assert_allclose(decoded.astype(int), pixels.astype(int), atol=6)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
  levels = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)  # 0, 1, 128, 255 in 8 bits.
  path = _save(Image.fromarray(levels), tmp_path / "deep.png")
  assert Image.open(path).mode.startswith("I")
  decoded = images.load_image(path)
  assert decoded.shape == (1, 4, 3)
  np.testing.assert_array_equal(decoded[0, :, 0], [0, 1, 128, 255])
  np.testing.assert_array_equal(decoded[:, :, 0], decoded[:, :, 2])


def test_palette_png_uses_palette_colours(tmp_path):
  indices = np.array([[0, 1], [2, 1]], np.uint8)
  palette_image = Image.fromarray(indices, mode="P")
  palette_image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
  palette_image.info["transparency"] = 1  # Dropped, like the authors' convert('RGB').
  path = _save(palette_image, tmp_path / "palette.png")
  decoded = images.load_image(path)
  np.testing.assert_array_equal(decoded[0, 0], [255, 0, 0])
  np.testing.assert_array_equal(decoded[0, 1], [0, 255, 0])
  np.testing.assert_array_equal(decoded[1, 0], [0, 0, 255])


def test_exif_orientation_is_ignored(tmp_path):
  pixels = _rgb(8, 16)
  exif = Image.Exif()
  exif[0x0112] = 6  # "Rotate 90 CW to display": the authors do not apply it.
  path = _save(Image.fromarray(pixels), tmp_path / "rotated.jpg", exif=exif, quality=100)
  assert images.load_image(path).shape == (8, 16, 3)


def test_split_aligned_halves():
  pixels = _rgb(4, 10)
  a, b = images.split_aligned(pixels, "pair.jpg")
  np.testing.assert_array_equal(a, pixels[:, :5])
  np.testing.assert_array_equal(b, pixels[:, 5:])


def test_split_aligned_odd_width_names_file_and_width():
  with pytest.raises(images.BadImageError, match=r"odd\.jpg: width 11 is odd"):
    images.split_aligned(_rgb(4, 11), "odd.jpg")


def test_encode_png_round_trips_and_jpeg_is_close():
  pixels = _rgb(16, 16)
  np.testing.assert_array_equal(images.decode_image(images.encode_png(pixels), "x"), pixels)
  smooth = np.full((16, 16, 3), 120, np.uint8)
  decoded = images.decode_image(images.encode_jpeg(smooth), "x")
  np.testing.assert_allclose(decoded.astype(int), 120, atol=2)
  with pytest.raises(ValueError, match="uint8"):
    images.encode_png(pixels.astype(np.float32))
  assert Image.open(io.BytesIO(images.encode_jpeg(pixels))).format == "JPEG"
