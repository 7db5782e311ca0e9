"""Synthetic facades: procedural label-map/photo pairs that need no download.

Each example is a random facade layout painted as a CMP Facades label map and rendered as a
"photo", so a small U-Net learns labels → photo quickly and the quickstart and tests train end
to end offline. As in the authors' aligned facades images, "a" is the photo and "b" the label
map (the paper's direction for facades is BtoA).
"""

from __future__ import annotations

import colorsys
import operator

import numpy as np

# Colours of the CMP Facades classes as the pix2pix authors' facades images show them: CMP class
# k (1-based: background, facade, window, door, cornice, sill, balcony, blind, deco, molding,
# pillar, shop) is drawn in MATLAB's jet(12)[k - 1] * 255. We generate the nine classes below;
# blind (255, 255, 0), deco (255, 170, 0) and molding (255, 85, 0) are never drawn.
FACADE_PALETTE: dict[str, tuple[int, int, int]] = {
    "background": (0, 0, 170),  # sky, neighbouring buildings: dark blue
    "wall": (0, 0, 255),  # CMP "facade": blue
    "window": (0, 85, 255),
    "door": (0, 170, 255),
    "cornice": (0, 255, 255),
    "sill": (85, 255, 170),
    "balcony": (170, 255, 85),
    "pillar": (255, 0, 0),
    "shop": (170, 0, 0),
}
CLASS_NAMES: tuple[str, ...] = tuple(FACADE_PALETTE)
PALETTE_RGB = np.array(list(FACADE_PALETTE.values()), dtype=np.uint8)  # (classes, 3), by id
PALETTE_RGB.setflags(write=False)

MIN_IMAGE_SIZE = 16

(_BACKGROUND, _WALL, _WINDOW, _DOOR, _CORNICE, _SILL, _BALCONY, _PILLAR, _SHOP) = (
    CLASS_NAMES.index(name)
    for name in (
        "background", "wall", "window", "door", "cornice", "sill", "balcony", "pillar", "shop"
    )
)


class SyntheticFacades:
  """Random-access source of synthetic facades pairs.

  Every example is a pure function of ``(seed, index)`` through
  ``np.random.default_rng([seed, index])``, so the source is deterministic, thread-safe and
  random access, as ``grain.MapDataset.source`` expects.

  Args:
    num_examples: number of examples; indices run over ``[0, num_examples)``.
    image_size: side of the square images in pixels (at least 16).
    seed: dataset seed; with the index it fixes every example.
  """

  def __init__(self, num_examples: int, image_size: int = 256, seed: int = 0):
    if num_examples < 0:
      raise ValueError(f"num_examples must be non-negative, got {num_examples}")
    if image_size < MIN_IMAGE_SIZE:
      raise ValueError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
    self.num_examples = int(num_examples)
    self.image_size = int(image_size)
    self.seed = int(seed)

  def __len__(self) -> int:
    return self.num_examples

  @property
  def names(self) -> list[str]:
    """Every example's "name", in index order (without rendering any)."""
    return [_example_name(index) for index in range(self.num_examples)]

  def __getitem__(self, index: int) -> dict:
    """Returns ``{"a": photo, "b": label map, "name": ...}``; images are uint8 (S, S, 3)."""
    index = operator.index(index)
    if index < 0:
      index += self.num_examples
    if not 0 <= index < self.num_examples:
      raise IndexError(
          f"index {index} out of range for SyntheticFacades of {self.num_examples} examples"
      )
    rng = np.random.default_rng([self.seed, index])
    photo, label_map = render_facade(rng, self.image_size)
    return {"a": photo, "b": label_map, "name": _example_name(index)}

  def __repr__(self) -> str:
    return (
        f"SyntheticFacades(num_examples={self.num_examples}, "
        f"image_size={self.image_size}, seed={self.seed})"
    )

  def rendered(self) -> "RenderedFacades":
    """Every example rendered now, once, and served from memory (the same arrays)."""
    return RenderedFacades(self)


class RenderedFacades:
  """A `SyntheticFacades` source rendered once into two uint8 arrays.

  Training visits every example once per epoch: rendering each facade again at every visit costs
  far more than its augmentation, so a run renders its splits once and augments from memory
  (`pipeline.get_source`). Examples are bit-identical to the lazy source's.
  """

  def __init__(self, source: SyntheticFacades):
    self.source = source
    n, size = len(source), source.image_size
    self.photos = np.empty((n, size, size, 3), np.uint8)
    self.label_maps = np.empty((n, size, size, 3), np.uint8)
    for index in range(n):
      example = source[index]
      self.photos[index], self.label_maps[index] = example["a"], example["b"]
    self.photos.setflags(write=False)
    self.label_maps.setflags(write=False)

  def __len__(self) -> int:
    return len(self.photos)

  @property
  def names(self) -> list[str]:
    return self.source.names

  def __getitem__(self, index: int) -> dict:
    index = operator.index(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"index {index} out of range for {self!r}")
    index %= len(self)
    return {"a": self.photos[index], "b": self.label_maps[index],
            "name": _example_name(index)}

  def __repr__(self) -> str:
    return f"{self.source!r}, rendered"


def _example_name(index: int) -> str:
  return f"synthetic_{index:05d}"


def render_facade(rng: np.random.Generator, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Draws one facade from ``rng``.

  Returns:
    ``(photo, label_map)``, both uint8 of shape (image_size, image_size, 3).
  """
  canvas = _sample_layout(rng, image_size)
  photo = _render_photo(canvas, rng)
  return photo, PALETTE_RGB[canvas.classes]


class _Canvas:
  """Class ids, plus where each pixel lies inside the element that painted it last."""

  def __init__(self, size: int):
    self.size = size
    self.classes = np.full((size, size), _BACKGROUND, dtype=np.uint8)
    self.u = np.zeros((size, size), np.float32)  # 0 at the element's left, 1 at its right
    self.v = np.zeros((size, size), np.float32)  # 0 at its top, 1 at its bottom
    self.edge = np.zeros((size, size), np.float32)  # pixels to the element's nearest border
    self.window_width = 1.0  # pixels; frames and mullions scale with it
    self._coords = np.arange(size, dtype=np.float32)

  def paint(self, class_id: int, top: float, bottom: float, left: float, right: float):
    """Paints the rectangle [top, bottom) x [left, right), rounded to pixels, clipped."""
    top, bottom, left, right = (int(np.rint(c)) for c in (top, bottom, left, right))
    y0, y1 = max(top, 0), min(bottom, self.size)
    x0, x1 = max(left, 0), min(right, self.size)
    if y1 <= y0 or x1 <= x0:
      return
    # Positions come from the unclipped rectangle so an element cut by the border keeps
    # its look (a cornice running off the image is still a cornice seen partly).
    ys = self._coords[y0:y1] - top
    xs = self._coords[x0:x1] - left
    height, width = bottom - top, right - left
    edge_y = np.minimum(ys, height - 1 - ys)
    edge_x = np.minimum(xs, width - 1 - xs)
    self.classes[y0:y1, x0:x1] = class_id
    self.u[y0:y1, x0:x1] = ((xs + 0.5) / width)[None, :]
    self.v[y0:y1, x0:x1] = ((ys + 0.5) / height)[:, None]
    self.edge[y0:y1, x0:x1] = np.minimum(edge_y[:, None], edge_x[None, :])


def _sample_layout(rng: np.random.Generator, size: int) -> _Canvas:
  """Random facade layout: one wall, floors of windows, ground floor with door or shop."""
  canvas = _Canvas(size)
  facade_top = size * rng.uniform(0.03, 0.18)
  if rng.random() < 0.5:
    left, right = 0.0, float(size)
  else:
    left, right = size * rng.uniform(0.0, 0.08), size * (1.0 - rng.uniform(0.0, 0.08))
  width = right - left
  canvas.paint(_WALL, facade_top, size, left, right)

  roof_height = max(1.0, size * rng.uniform(0.015, 0.035))
  overhang = size * 0.01
  canvas.paint(_CORNICE, facade_top, facade_top + roof_height, left - overhang, right + overhang)
  body_top = facade_top + roof_height

  # Floors: equal upper floors and a taller ground floor, as on Haussmann-style blocks.
  num_floors = min(int(rng.integers(3, 7)), max(2, int(size - body_top) // 6))
  ground_ratio = rng.uniform(1.1, 1.5)
  floor_height = (size - body_top) / (num_floors - 1 + ground_ratio)
  floor_tops = body_top + floor_height * np.arange(num_floors)
  ground_top = floor_tops[-1]

  num_columns = min(int(rng.integers(3, 8)), max(2, int(width) // 5))
  bay = width / num_columns
  centres = left + bay * (np.arange(num_columns) + 0.5)
  # Mostly upright windows, from narrow casements to squarer modern ones. Sizes are whole
  # pixels so that every window of a building rasterises identically (same frame, mullion).
  window_height = _whole_pixels(floor_height * rng.uniform(0.45, 0.72))
  window_width = _whole_pixels(
      min(bay * rng.uniform(0.35, 0.7), window_height * rng.uniform(0.45, 1.1))
  )
  window_lefts = np.rint(centres - window_width / 2)
  window_offset = (floor_height - window_height) * rng.uniform(0.3, 0.6)
  canvas.window_width = window_width

  if rng.random() < 0.35:
    pillar_width = max(1.0, (bay - window_width) * rng.uniform(0.3, 0.6))
    # Pilasters at every bay boundary, or only at the two corners.
    step = 1 if rng.random() < 0.6 else num_columns
    pillar_bottom = ground_top if rng.random() < 0.5 else size
    for boundary in left + bay * np.arange(0, num_columns + 1, step):
      x0 = np.clip(boundary - pillar_width / 2, left, right - pillar_width)
      canvas.paint(_PILLAR, body_top, pillar_bottom, x0, x0 + pillar_width)

  band_height = max(1.0, floor_height * rng.uniform(0.05, 0.1))
  bands_between_floors = rng.random() < 0.6
  for floor in range(1, num_floors):
    if bands_between_floors or (floor == num_floors - 1 and rng.random() < 0.8):
      y = floor_tops[floor]
      canvas.paint(_CORNICE, y - band_height, y, left - overhang, right + overhang)

  has_sills = rng.random() < 0.7
  sill_height = _whole_pixels(floor_height * rng.uniform(0.04, 0.08))
  sill_overhang = _whole_pixels(window_width * 0.12)
  balcony_floors = np.zeros(num_floors - 1, dtype=bool)
  if rng.random() < 0.45:
    balcony_floors = rng.random(num_floors - 1) < 0.5
    balcony_floors[rng.integers(num_floors - 1)] = True
  balcony_full_width = rng.random() < 0.3
  balcony_height = _whole_pixels(window_height * rng.uniform(0.25, 0.4))

  for floor in range(num_floors - 1):
    window_top = np.rint(floor_tops[floor] + window_offset)
    window_bottom = window_top + window_height
    for x0 in window_lefts:
      x1 = x0 + window_width
      canvas.paint(_WINDOW, window_top, window_bottom, x0, x1)
      if balcony_floors[floor] and not balcony_full_width:
        reach = 2 * sill_overhang
        canvas.paint(_BALCONY, window_bottom - balcony_height, window_bottom + sill_height,
                     x0 - reach, x1 + reach)
      elif has_sills:
        canvas.paint(_SILL, window_bottom, window_bottom + sill_height,
                     x0 - sill_overhang, x1 + sill_overhang)
    if balcony_floors[floor] and balcony_full_width:
      canvas.paint(_BALCONY, window_bottom - balcony_height, window_bottom + sill_height,
                   left + bay * 0.15, right - bay * 0.15)

  ground_height = size - ground_top
  door_width = _whole_pixels(min(bay * 0.8, max(window_width * 1.2, 2.0)))
  door_left = np.rint(centres[int(rng.integers(num_columns))] - door_width / 2)
  door_top = ground_top + ground_height * rng.uniform(0.12, 0.3)
  if rng.random() < 0.45:
    margin = bay * rng.uniform(0.05, 0.3)
    canvas.paint(_SHOP, door_top, size, left + margin, right - margin)
    if rng.random() < 0.5:
      canvas.paint(_DOOR, door_top, size, door_left, door_left + door_width)
  else:
    window_top = np.rint(ground_top + ground_height * rng.uniform(0.15, 0.3))
    window_bottom = window_top + _whole_pixels(ground_height * rng.uniform(0.4, 0.55))
    for x0 in window_lefts:
      x1 = x0 + window_width
      if x1 <= door_left or x0 >= door_left + door_width:
        canvas.paint(_WINDOW, window_top, window_bottom, x0, x1)
        if has_sills:
          canvas.paint(_SILL, window_bottom, window_bottom + sill_height,
                       x0 - sill_overhang, x1 + sill_overhang)
    canvas.paint(_DOOR, door_top, size, door_left, door_left + door_width)
  return canvas


def _whole_pixels(length: float) -> float:
  return float(max(1, int(np.rint(length))))


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
  return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), dtype=np.float32)


def _mix(colour_a: np.ndarray, colour_b: np.ndarray, amount: float) -> np.ndarray:
  return (1.0 - amount) * colour_a + amount * colour_b


def _wall_colour(rng: np.random.Generator) -> tuple[np.ndarray, bool]:
  """Plausible facade materials: beige render, brick, grey stone/concrete, white render."""
  material = rng.choice(4, p=[0.35, 0.25, 0.2, 0.2])
  if material == 0:
    return _hsv(rng.uniform(0.07, 0.12), rng.uniform(0.15, 0.35), rng.uniform(0.72, 0.9)), False
  if material == 1:
    return _hsv(rng.uniform(-0.01, 0.04), rng.uniform(0.45, 0.65), rng.uniform(0.5, 0.68)), True
  if material == 2:
    return _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.06), rng.uniform(0.52, 0.72)), False
  return _hsv(rng.uniform(0.08, 0.15), rng.uniform(0.0, 0.06), rng.uniform(0.85, 0.95)), False


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
  """Bilinearly upsampled (cells+1)^2 Gaussian noise: soft stains and uneven render."""
  coarse = rng.standard_normal((cells + 1, cells + 1), dtype=np.float32)
  position = np.linspace(0.0, cells, size, dtype=np.float32)
  # Hat-function weights: (size, cells + 1), each row mixes the two nearest coarse samples.
  knots = np.arange(cells + 1, dtype=np.float32)
  weights = np.maximum(0.0, 1.0 - np.abs(position[:, None] - knots))
  return weights @ coarse @ weights.T


def _render_photo(canvas: _Canvas, rng: np.random.Generator) -> np.ndarray:
  """Renders a photo-like uint8 image of the layout with random per-building style.

  The photo is a fixed function of the layout and a few style parameters (wall material, glass,
  frames, light) plus mild noise: simple enough for a small U-Net to learn quickly.
  """
  size = canvas.size
  classes, u, v, edge = canvas.classes, canvas.u, canvas.v, canvas.edge
  ramp = (np.arange(size, dtype=np.float32) + 0.5) / size  # 0 at the top/left, 1 at bottom/right

  wall, is_brick = _wall_colour(rng)
  trim = _mix(wall, _hsv(0.1, 0.08, 0.95), rng.uniform(0.3, 0.7))
  glass = _hsv(rng.uniform(0.53, 0.62), rng.uniform(0.15, 0.4), rng.uniform(0.1, 0.2))
  frame = [_hsv(0.1, 0.05, 0.92), _hsv(0.07, 0.6, 0.25), _hsv(0.0, 0.0, 0.2)][rng.integers(3)]
  door = [_hsv(0.07, 0.6, 0.3), _hsv(0.38, 0.45, 0.22), _hsv(0.99, 0.6, 0.3)][rng.integers(3)]
  metal = _hsv(0.6, 0.1, rng.uniform(0.08, 0.2))
  sign = _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.5, 0.8), rng.uniform(0.3, 0.7))
  interior = _hsv(rng.uniform(0.08, 0.14), rng.uniform(0.3, 0.5), rng.uniform(0.35, 0.55))
  if rng.random() < 0.7:  # clear sky, else overcast
    sky_top = _hsv(rng.uniform(0.55, 0.62), rng.uniform(0.3, 0.55), rng.uniform(0.75, 0.95))
  else:
    sky_top = _hsv(0.6, rng.uniform(0.0, 0.08), rng.uniform(0.7, 0.88))
  sky_bottom = _mix(sky_top, np.ones(3, np.float32), 0.45)

  flat_colours = np.zeros((len(CLASS_NAMES), 3), np.float32)
  flat_colours[[_WALL, _CORNICE, _SILL, _PILLAR, _DOOR]] = [
      wall, trim, trim, _mix(wall, trim, 0.5), door
  ]
  photo = flat_colours[classes]  # (S, S, 3), refined class by class below

  def select(class_id):
    mask = classes == class_id
    return mask, u[mask], v[mask], edge[mask]

  mask = classes == _BACKGROUND
  rows = np.broadcast_to(ramp[:, None], mask.shape)[mask]
  photo[mask] = _mix(sky_top, sky_bottom, rows[:, None])

  # Brick bond: mortar courses and staggered joints, drawn only where a brick spans 3+ pixels.
  brick_height = int(round(size * rng.uniform(0.014, 0.02)))
  if is_brick and brick_height >= 3:
    brick_width = 2 * brick_height + int(rng.integers(0, brick_height + 1))
    ys, xs = np.nonzero(classes == _WALL)
    course = ys // brick_height
    stagger = (course % 2) * (brick_width // 2)
    joint = (ys % brick_height == 0) | ((xs + stagger) % brick_width == 0)
    photo[ys[joint], xs[joint]] = _mix(wall, _hsv(0.08, 0.1, 0.75), 0.6)

  # Glass: lighter at the top where it reflects the sky, a diagonal glint, frames and mullions.
  mask, wu, wv, wedge = select(_WINDOW)
  shade = (1.4 - 0.8 * wv)[:, None]
  glint = ((wu + 0.6 * wv + rng.uniform(0.0, 1.0)) % 1.0) < rng.uniform(0.1, 0.25)
  pixels = glass * shade + 0.08 * glint[:, None]
  # Frames and mullions scale with the window, vanishing when it is only a few pixels wide.
  frame_fraction, mullion_width, transom_height = rng.uniform([0.04, 0.03, 0.02], [0.1, 0.06, 0.04])
  has_mullion, has_transom = rng.random(2) < [0.7, 0.5]
  window_width = canvas.window_width
  frame_pixels = np.rint(window_width * frame_fraction) if window_width >= 8 else 0.0
  bars = wedge < frame_pixels
  if window_width >= 10 and has_mullion:
    bars |= np.abs(wu - 0.5) < mullion_width
  if window_width >= 10 and has_transom:
    bars |= np.abs(wv - 0.3) < transom_height
  pixels[bars] = frame
  photo[mask] = pixels

  mask, du, dv, dedge = select(_DOOR)
  pixels = np.broadcast_to(door, (du.size, 3)).copy()
  pixels[(np.abs(du - 0.5) < 0.03) | (np.abs(dv - 0.55) < 0.015)] *= 0.6  # panel grooves
  pixels[dv < 0.18] = glass * 1.3  # fanlight
  pixels[dedge < frame_pixels] = trim
  photo[mask] = pixels

  # Shop front: sign band, lit interior behind dark-framed panes.
  mask, su, sv, sedge = select(_SHOP)
  sign_height = rng.uniform(0.15, 0.25)
  panes = int(rng.integers(2, 6))
  pixels = _mix(interior, glass, np.clip(1.2 - sv, 0.0, 1.0)[:, None])
  pixels[((su * panes) % 1.0 < 0.06) | (sedge < frame_pixels)] = metal
  pixels[sv < sign_height] = sign
  photo[mask] = pixels

  # Mouldings lit from above: bright top face, dark underside.
  for class_id in (_CORNICE, _SILL):
    mask, _, mv, _ = select(class_id)
    photo[mask] *= (1.2 - 0.45 * mv)[:, None]

  mask, pu, _, _ = select(_PILLAR)
  photo[mask] *= (0.8 + 0.35 * np.sin(np.pi * pu))[:, None]

  # Balconies: iron railing (top rail and bars) in front of the dim recess, on a stone slab;
  # some buildings have solid stone parapets instead.
  mask, bu, bv, _ = select(_BALCONY)
  if rng.random() < 0.6:
    bar_period = max(2, int(round(size * rng.uniform(0.015, 0.03))))
    xs = np.nonzero(mask)[1]
    pixels = np.broadcast_to(wall * 0.45, (bu.size, 3)).copy()
    pixels[(bv < 0.15) | (xs % bar_period == 0)] = metal
    pixels[bv > 0.8] = trim
  else:
    pixels = trim * (1.1 - 0.3 * bv)[:, None]
  photo[mask] = pixels

  # Soft shadows cast downwards by cornices, sills and balconies.
  overhang = np.isin(classes, (_CORNICE, _SILL, _BALCONY)).astype(np.float32)
  shadow = np.zeros_like(overhang)
  reach = max(1, int(round(size * 0.02)))
  for step in range(1, reach + 1):
    shadow[step:] = np.maximum(shadow[step:], overhang[:-step] * (1.0 - (step - 1) / reach))
  receives = (overhang == 0) & (classes != _BACKGROUND)
  light = 1.0 - rng.uniform(0.2, 0.45) * shadow * receives

  # Light falls off towards the street and across the facade; stains; sensor noise.
  light *= (1.0 + rng.uniform(0.0, 0.35) * (0.5 - ramp))[:, None]
  light *= (1.0 + rng.uniform(-0.15, 0.15) * (ramp - 0.5))[None, :]
  light *= 1.0 + rng.uniform(0.02, 0.07) * _smooth_noise(rng, size, 6)
  light[classes == _BACKGROUND] = 1.0
  photo *= light[..., None]
  photo += rng.uniform(0.01, 0.025) * rng.standard_normal((size, size, 1), dtype=np.float32)
  photo *= rng.uniform(0.95, 1.05, size=3).astype(np.float32)  # white balance
  return (np.clip(photo, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
