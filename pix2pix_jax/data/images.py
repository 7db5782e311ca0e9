"""Decoding, splitting and encoding of pix2pix images with Pillow.

Decoders return the pixels the authors' loader trains on (`Image.open(path).convert('RGB')` in
their `data/aligned_dataset.py`) as (H, W, 3) uint8, except for inputs on which theirs silently
gives wrong pixels (see `decode_image`).
"""

from __future__ import annotations

import io
import os
import struct

import numpy as np
from etils import epath
from PIL import Image

from pix2pix_jax import errors, storage

# File extensions read as images wherever a folder is listed (training data, translate inputs).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
# Modes holding greyscale integers wider than 8 bits, scaled rather than clipped.
_WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_WIDE_GREY_MAX = 65535
# Errors Pillow raises on broken files: OSError for truncation and unknown
# formats, the others from individual format plugins on malformed headers.
_PILLOW_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def _open(path):
  """A local file, or an object in a bucket (gs://), for reading bytes."""
  return epath.Path(path).open("rb") if storage.is_remote(path) else open(path, "rb")


class BadImageError(errors.InputError):
  """An image file that cannot be used; the message names the file and the fix."""


def decode_image(data: bytes, name: str) -> np.ndarray:
  """Decodes encoded image bytes to RGB pixels, as the authors' `convert('RGB')` does.

  Two deliberate differences, for inputs on which theirs silently gives wrong pixels: 16-bit
  greyscale (`I;16*`, and `I`, which older Pillow uses for 16-bit PNGs) is scaled to 8 bits
  (`round(v / 257)`) instead of clipped at 255, which turns almost every pixel white; and a
  truncated or corrupt file raises `BadImageError` naming the file, not a bare `OSError`.

  Alpha is dropped, not composited, as `convert('RGB')` does: the colours stored under a
  transparent pixel are what the authors' models saw. EXIF orientation is ignored, as theirs
  is: for aligned A|B images only the stored layout has A on the left.

  Args:
    data: the file's bytes (JPEG, PNG, BMP, WebP or anything Pillow reads).
    name: the file's name or path, used in error messages only.

  Returns:
    np.uint8 array of shape (H, W, 3).

  Raises:
    BadImageError: the bytes are empty, not an image, truncated or corrupt.
  """
  if not data:
    raise BadImageError(
        f"{name}: the file is empty (0 bytes). Re-copy or re-download it, or delete it."
    )
  try:
    with Image.open(io.BytesIO(data)) as image:
      image.load()  # Image.open only reads the header; decoding finds truncation.
      return _to_rgb_uint8(image, name)
  except BadImageError:
    raise
  except Image.DecompressionBombError as e:
    raise BadImageError(
        f"{name}: refused as a possible decompression bomb ({e}). If the image is genuine, "
        "downscale it before use."
    ) from e
  except _PILLOW_DECODE_ERRORS as e:
    if isinstance(e, Image.UnidentifiedImageError):
      problem = "not an image in a format Pillow can read (wrong extension or garbage bytes)"
    elif "truncated" in str(e):
      problem = f"truncated ({e}); the file was probably cut short while copying or downloading"
    else:
      problem = f"corrupt ({type(e).__name__}: {e})"
    raise BadImageError(
        f"{name}: {problem}. Re-copy or re-download this file, or delete it."
    ) from e


def load_image(path: str | os.PathLike) -> np.ndarray:
  """Reads and decodes one image file; see `decode_image`."""
  try:
    with _open(path) as f:
      data = f.read()
  except OSError as e:
    raise BadImageError(f"{os.fspath(path)}: cannot be read ({e.strerror or e}); check that it "
                        "is a readable file") from e
  return decode_image(data, os.fspath(path))


def read_image_size(path: str | os.PathLike) -> tuple[int, int]:
  """Reads only the header of an image file.

  Cheap (no pixel decoding), so it catches empty, garbage and unknown files but
  not truncated pixel data, which only `load_image` finds.

  Returns:
    (width, height).

  Raises:
    BadImageError: the file is empty or not a readable image.
  """
  name = os.fspath(path)
  with _open(path) as f:  # Missing or unreadable files raise OSError as usual.
    if not f.read(1):
      raise BadImageError(
          f"{name}: the file is empty (0 bytes). Re-copy or re-download it, or delete it."
      )
    f.seek(0)
    try:
      with Image.open(f) as image:
        return image.size
    except _PILLOW_DECODE_ERRORS as e:
      raise BadImageError(
          f"{name}: not an image in a format Pillow can read ({e}). Re-copy or "
          "re-download this file, or delete it."
      ) from e


def _to_rgb_uint8(image: Image.Image, name: str) -> np.ndarray:
  """Converts a decoded Pillow image of any supported mode to (H, W, 3) uint8."""
  if image.mode in _WIDE_GREY_MODES:
    grey = np.asarray(image).astype(np.float64)
    grey = np.clip(np.rint(grey * (255.0 / _WIDE_GREY_MAX)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
  if image.mode == "F":
    raise BadImageError(
        f"{name}: floating-point images (mode F) have no defined 8-bit range. "
        "Re-export the file as 8-bit RGB (PNG or JPEG)."
    )
  if image.mode != "RGB":
    # Palette, 1-bit, L, CMYK, YCbCr and alpha modes: Pillow's conversion, the
    # authors' own, which drops alpha without compositing (see `decode_image`).
    image = image.convert("RGB")
  return np.array(image, dtype=np.uint8)


def split_aligned(image: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
  """Splits an aligned A|B image into its left (A) and right (B) halves.

  Args:
    image: (H, W, C) array, W even.
    name: the file's name, used in error messages only.

  Returns:
    (a, b), each (H, W // 2, C), views into `image`.

  Raises:
    BadImageError: the width is odd, so the halves cannot be told apart.
  """
  if image.ndim != 3:
    raise BadImageError(f"{name}: expected an (H, W, C) image, got shape {image.shape}.")
  check_aligned_width(image.shape[1], name)
  half = image.shape[1] // 2
  return image[:, :half], image[:, half:]


def check_aligned_width(width: int, name: str) -> None:
  """Raises BadImageError unless `width` splits into two equal A|B halves."""
  if width % 2:
    raise BadImageError(
        f"{name}: width {width} is odd, so it cannot be an aligned A|B pair (the photo A "
        "on the left half, B on the right, each half the same width). Re-create the "
        "pair with two halves of equal width, or use separate A/ and B/ folders."
    )


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
  """Encodes (H, W, 3) uint8 pixels as PNG (lossless).

  Level 1, not Pillow's default 6: much faster to write, for slightly larger files that
  decode as fast.
  """
  buffer = io.BytesIO()
  Image.fromarray(_check_rgb_uint8(image)).save(buffer, format="PNG", compress_level=compress_level)
  return buffer.getvalue()


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
  """Encodes (H, W, 3) uint8 pixels as JPEG (lossy)."""
  buffer = io.BytesIO()
  Image.fromarray(_check_rgb_uint8(image)).save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def _check_rgb_uint8(image: np.ndarray) -> np.ndarray:
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
    raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
  return np.ascontiguousarray(image)
