"""Winograd minimal filtering for the 4×4 convolutions, with hand-written gradients.

Stride 2 is F(2×2, 2×2) after space-to-depth, stride 1 is F(2×2, 4×4), and the transposed
convolution is the stride-2 one's adjoint: fewer matrix products per output tile, forward and
backward. Transforms are plain XLA:CPU fusions and gradients hand-written (`custom_vjp`), as
autodiff's transposes of the transforms are slow. `kernels.cpu.use_winograd` picks them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _pad_axis(a: jax.Array, axis: int, before: int, after: int) -> jax.Array:
  widths = [(0, 0)] * a.ndim
  widths[axis] = (before, after)
  return jnp.pad(a, widths)


def _stack(arrays: list[jax.Array], axis: int = 0) -> jax.Array:
  """`jnp.stack` as a sum of padded arrays: XLA:CPU fuses pads with their producers and
  consumers (and their gradients are slices), where it materialises every operand of a
  concatenate and then copies them once more."""
  out = None
  for i, a in enumerate(arrays):
    a = _pad_axis(jnp.expand_dims(a, axis), axis, i, len(arrays) - 1 - i)
    out = a if out is None else out + a
  return out


def _f22_input(z: jax.Array, axis: int) -> list[jax.Array]:
  """Winograd F(2, 2) input transform along `axis`, laid out there as (tiles + 1, 2, ...).

  Tile t reads d0, d1, d2 = z[t, 0], z[t, 1], z[t + 1, 0] and gives d0 - d1, d1, d2 - d1.
  """
  t = z.shape[axis] - 1
  d0 = jax.lax.slice_in_dim(jax.lax.index_in_dim(z, 0, axis + 1, keepdims=False), 0, t, 1, axis)
  d1 = jax.lax.slice_in_dim(jax.lax.index_in_dim(z, 1, axis + 1, keepdims=False), 0, t, 1, axis)
  d2 = jax.lax.slice_in_dim(jax.lax.index_in_dim(z, 0, axis + 1, keepdims=False), 1, t + 1, 1,
                            axis)
  return [d0 - d1, d1, d2 - d1]


def _f22_input_t(du: list[list[jax.Array]], t_axis: int, u_axis: int) -> jax.Array:
  """Transpose of `_f22_input` along two axes: du[i][j] (row transform i, column j) → x's.

  Per dimension, d0 of tile t collects du0[t] + du2[t - 1] (it is d2 of the tile before) and
  d1 collects du1 - du0 - du2. Every pad here has one consumer, so XLA makes one fusion.
  """
  def split(a):  # a[i]: transform i's cotangent (an array, or a list over columns)
    combine = lambda a0, a1, a2: a1 - a0 - a2
    if isinstance(a[0], list):
      return [[(a[0], 0), (a[2], 1)], [([combine(*z) for z in zip(*a)], 0)]]
    return [[(a[0], 0), (a[2], 1)], [(combine(*a), 0)]]

  rows = split(du)
  blocks = []
  for d in range(2):
    blocks.append([])
    for e in range(2):
      out = None
      for row, st in rows[d]:
        # `row` is a list over the column transform j of row-combined arrays.
        for col, su in split(row)[e]:
          term = _pad_axis(_pad_axis(col, t_axis, st, 1 - st), u_axis, su, 1 - su)
          out = term if out is None else out + term
      blocks[d].append(out)
  return _stack([_stack(blocks[d], u_axis + 1) for d in range(2)], t_axis + 1)


# The 9 transformed positions are kept as a list of 9 separate arrays, (tiles, K) each: XLA:CPU
# writes 9 plain fusions at memory speed, and one stacked (9, tiles, K) array (slice updates,
# pads or a concatenate) is slower (docs/benchmarks.md, section "Levers tried on the training
# step"); 9 dots run as fast as one batched dot.
Positions = list[jax.Array]


def _winograd_tiles(x: jax.Array) -> Positions:
  """(N, H, W, C) → U, 9 × (N·H/4·W/4, 4C): the transformed 6×6-pixel tiles (stride 4)."""
  n, h, w, c = x.shape
  th, tw = h // 4, w // 4
  # Padded row 4t + 2d + p is row p of block row 2t + d: per dimension the axes (tile, d, p).
  xp = jnp.pad(x, ((0, 0), (1, 3), (1, 3), (0, 0))).reshape(n, th + 1, 2, 2, tw + 1, 2, 2, c)
  rows = _f22_input(xp, 1)                                    # (n, th, p, tw + 1, 2, q, c)
  return [col.transpose(0, 1, 3, 2, 4, 5).reshape(n * th * tw, 4 * c)   # (tiles, (p, q, c))
          for r in rows for col in _f22_input(r, 3)]


def _winograd_tiles_t(du: Positions, shape: tuple[int, ...]) -> jax.Array:
  """Transpose of `_winograd_tiles`: U's cotangent → x's."""
  n, h, w, c = shape
  th, tw = h // 4, w // 4
  du = [d.reshape(n, th, tw, 2, 2, c).transpose(0, 1, 3, 2, 4, 5) for d in du]
  xp = _f22_input_t([du[3 * i:3 * i + 3] for i in range(3)], 1, 3)
  xp = xp.reshape(n, h + 4, w + 4, c)
  return xp[:, 1:h + 1, 1:w + 1]


# F(2, 2): G, the filter transform (rows g0, g0 + g1, g1), applied along both sub-kernel axes,
# and Aᵀ, the output transform (rows m0 + m1, m1 + m2).
_G = np.array([[1, 0], [1, 1], [0, 1]], np.float32)
_GG = np.kron(_G, _G)                                         # (9, 4): (i, j) ← (a, b)
_AT = np.array([[1, 1, 0], [0, 1, 1]], np.float32)


def _combine(coefficients: np.ndarray, arrays: list[jax.Array]) -> jax.Array:
  """Σ c·a over the non-zero coefficients (±1 as additions)."""
  out = None
  for c, a in zip(coefficients, arrays):
    if c != 0:
      term = a if c == 1 else -a if c == -1 else a * np.float32(c)
      out = term if out is None else out + term
  return out


def _tap_transform(matrix: np.ndarray, taps: jax.Array) -> jax.Array:
  """(P, T) constant × the T leading taps of `taps` (…, K, N) → (P, K, N).

  One (P, T) × (T, K·N) matrix product: for the large decoder and bottleneck kernels faster on
  XLA:CPU than the same sums written elementwise (exact for 0/1 coefficients).
  """
  v = jnp.dot(jnp.asarray(matrix, taps.dtype), taps.reshape(matrix.shape[1], -1),
              precision=jax.lax.Precision.HIGHEST)
  return v.reshape(matrix.shape[0], *taps.shape[-2:])


def _f22_filter(k: jax.Array) -> jax.Array:
  """(2, 2, K, N) sub-kernel taps (a, b) → V, (9, K, N)."""
  return _tap_transform(_GG, k)


def _f22_filter_t(dv: Positions) -> jax.Array:
  """Transpose of `_f22_filter`: 9 × (K, N) → (2, 2, K, N)."""
  dk = [[dv[3 * i] + dv[3 * i + 1], dv[3 * i + 1] + dv[3 * i + 2]] for i in range(3)]
  return _stack([_stack([dk[0][b] + dk[1][b] for b in range(2)]),
                 _stack([dk[1][b] + dk[2][b] for b in range(2)])])


def _winograd_filter(kernel: jax.Array) -> jax.Array:
  """HWIO (4, 4, C, O) → V, (9, 4C, O): the 2×2 space-to-depth kernel, transformed."""
  c, cout = kernel.shape[2:]
  k = kernel.reshape(2, 2, 2, 2, c, cout).transpose(0, 2, 1, 3, 4, 5)   # (a, b, p, q, c, o)
  return _f22_filter(k.reshape(2, 2, 4 * c, cout))


def _winograd_filter_t(dv: Positions) -> jax.Array:
  c, cout = dv[0].shape[0] // 4, dv[0].shape[1]
  dk = _f22_filter_t(dv).reshape(2, 2, 2, 2, c, cout)              # (a, b, p, q, c, o)
  return dk.transpose(0, 2, 1, 3, 4, 5).reshape(4, 4, c, cout)


def _output_transform(at: np.ndarray, m: Positions, n: int, th: int, tw: int) -> jax.Array:
  """M, k² × (N·th·tw, O) → Y = Aᵀ·M·A, (N, 2th, 2tw, O), for a (2, k) output transform."""
  k = at.shape[1]
  m = [a.reshape(n, th, tw, -1) for a in m]
  rows = [[_combine(at[r], m[j::k]) for j in range(k)] for r in range(2)]
  y = [[_combine(at[s], rows[r]) for s in range(2)] for r in range(2)]  # y[r][s]: (2t + r, 2u + s)
  y = _stack([_stack(y[r], 3) for r in range(2)], 2)
  return y.reshape(n, 2 * th, 2 * tw, -1)


def _winograd_output(m: Positions, n: int, th: int, tw: int) -> jax.Array:
  """M, 9 × (N·th·tw, O) → Y, (N, 2th, 2tw, O): rows and columns m0 + m1, m1 + m2."""
  return _output_transform(_AT, m, n, th, tw)


def _winograd_output_t(dy: jax.Array) -> Positions:
  n, ho, wo, cout = dy.shape
  dy = dy.reshape(n, ho // 2, 2, wo // 2, 2, cout)
  rows = [dy[:, :, 0], dy[:, :, 0] + dy[:, :, 1], dy[:, :, 1]]    # (n, th, tw, 2, cout)
  return [col.reshape(-1, cout) for r in rows
          for col in (r[..., 0, :], r[..., 0, :] + r[..., 1, :], r[..., 1, :])]


def _dot(a: jax.Array, b: jax.Array, contract: tuple[int, int]) -> jax.Array:
  return jax.lax.dot_general(
      a, b, (((contract[0],), (contract[1],)), ((), ())),
      preferred_element_type=jnp.float32 if a.dtype == jnp.float32 else None)


def _products(u: Positions, v: jax.Array) -> Positions:
  """M = U·V: each transformed position's matrix product, (tiles, K) × (K, O)."""
  return [_dot(u_i, v[i], (1, 0)) for i, u_i in enumerate(u)]


def _products_vt(dm: Positions, v: jax.Array) -> Positions:
  """dM·Vᵀ, U's cotangent."""
  return [_dot(dm_i, v[i], (1, 1)) for i, dm_i in enumerate(dm)]


def _products_ut(u: Positions, dm: Positions) -> Positions:
  """Uᵀ·dM, V's cotangent: a contraction over the tiles."""
  return [_dot(u_i, dm_i, (0, 0)) for u_i, dm_i in zip(u, dm)]


@jax.custom_vjp
def conv4x4_winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-2 4×4 conv as space-to-depth + Winograd F(2×2, 2×2); needs H and W divisible by 4.

  Padded by 1, the input's 2×2 blocks become 4·Cin channels and the conv a 2×2 stride-1 one with
  K[a, b, (p, q, c)] = W[2a + p, 2b + q, c]. F(2×2, 2×2) computes each 2×2 output tile with 9
  products instead of 16: U = BᵀdB with rows (d0 - d1, d1, d2 - d1), V = GgGᵀ with rows (g0,
  g0 + g1, g1), Y = Aᵀ(U·V)A with rows (m0 + m1, m1 + m2). All coefficients are ±1, so the
  result rounds like a sum of a few more terms (`tests/test_kernels.py`). The gradient is
  Winograd-shaped too (dU = dM·Vᵀ, dV = Uᵀ·dM, then the transposed transforms), written out by
  hand so that each transform is one XLA fusion.
  """
  return _conv4x4_winograd_fwd(x, kernel)[0]


def _conv4x4_winograd_fwd(x, kernel):
  n, h, w, _ = x.shape
  u, v = _winograd_tiles(x), _winograd_filter(kernel)
  return _winograd_output(_products(u, v), n, h // 4, w // 4).astype(x.dtype), (u, v)


def _conv4x4_winograd_bwd(res, dy):
  u, v = res
  n, ho, wo, _ = dy.shape
  shape = (n, 2 * ho, 2 * wo, u[0].shape[-1] // 4)
  dm = _winograd_output_t(dy)
  return _winograd_tiles_t(_products_vt(dm, v), shape), _winograd_filter_t(_products_ut(u, dm))


conv4x4_winograd.defvjp(_conv4x4_winograd_fwd, _conv4x4_winograd_bwd)


# Stride 1: Winograd F(2×2, 4×4) directly on the 4×4 kernel. Output tile (t, u) is rows and
# columns 2t, 2t + 1 (2u, 2u + 1), read from the 5×5 window of the padded input at (2t, 2u). With
# the interpolation points 0, 1, -1, 2 and ∞ (Lavin & Gray's construction), one dimension's 2
# outputs take 5 products instead of 8: Bᵀ (5×5, integer coefficients) transforms the window, G
# (5×4) the filter and Aᵀ (2×5) the 5 products back: 25 matrix products of contraction Cin per
# 2×2 tile instead of 64.
_S1_AT = np.array([[1, 1, 1, 1, 0], [0, 1, -1, 2, 1]], np.float32)
_S1_G = np.array([[1 / 2, 0, 0, 0], [-1 / 2, -1 / 2, -1 / 2, -1 / 2],
                  [-1 / 6, 1 / 6, -1 / 6, 1 / 6], [1 / 6, 1 / 3, 2 / 3, 4 / 3], [0, 0, 0, 1]])
_S1_BT = np.array([[2, -1, -2, 1, 0], [0, -2, -1, 1, 0], [0, 2, -3, 1, 0], [0, -1, 0, 1, 0],
                   [0, 2, -1, -2, 1]], np.float32)
_S1_GG = np.kron(_S1_G, _S1_G).astype(np.float32)             # (25, 16): (i, j) ← (kh, kw)


def _s1_input(z: jax.Array, axis: int) -> list[jax.Array]:
  """Bᵀ along `axis` (length 2(T + 2)) → 5 arrays with T tiles there: tile t reads 2t .. 2t + 4."""
  t = z.shape[axis] // 2 - 2
  blocks = z.reshape(z.shape[:axis] + (t + 2, 2) + z.shape[axis + 1:])
  window = []
  for k in range(5):  # padded row 2t + k is row k % 2 of block t + k // 2
    rows = jax.lax.index_in_dim(blocks, k % 2, axis + 1, keepdims=False)
    window.append(jax.lax.slice_in_dim(rows, k // 2, k // 2 + t, axis=axis))
  return [_combine(_S1_BT[i], window) for i in range(5)]


def _s1_input_t(du: list[jax.Array], axis: int) -> jax.Array:
  """Transpose of `_s1_input`: window row k of tile t collects Σ_i Bᵀ[i, k]·du_i[t]."""
  z = [_combine(_S1_BT[:, k], du) for k in range(5)]
  even = _pad_axis(z[0], axis, 0, 2) + _pad_axis(z[2], axis, 1, 1) + _pad_axis(z[4], axis, 2, 0)
  odd = _pad_axis(z[1], axis, 0, 2) + _pad_axis(z[3], axis, 1, 1)
  out = _stack([even, odd], axis + 1)
  return out.reshape(out.shape[:axis] + (-1,) + out.shape[axis + 2:])


def _s1_tiles(size: int) -> int:
  """2-pixel output tiles along an axis of `size` input pixels: ceil((size - 1) / 2)."""
  return size // 2


def _s1_winograd_tiles(x: jax.Array) -> Positions:
  """(N, H, W, C) → U, 25 × (N·T·T', C)."""
  n, h, w, c = x.shape
  th, tw = _s1_tiles(h), _s1_tiles(w)
  # Padded by 1 before and to 2(T + 2) rows after (the extra rows meet only dropped outputs).
  xp = jnp.pad(x, ((0, 0), (1, 2 * th + 3 - h), (1, 2 * tw + 3 - w), (0, 0)))
  return [col.reshape(n * th * tw, c) for r in _s1_input(xp, 1) for col in _s1_input(r, 2)]


def _s1_winograd_tiles_t(du: Positions, shape: tuple[int, ...]) -> jax.Array:
  n, h, w, c = shape
  th, tw = _s1_tiles(h), _s1_tiles(w)
  du = [d.reshape(n, th, tw, c) for d in du]
  xp = _s1_input_t([_s1_input_t(du[5 * i:5 * i + 5], 2) for i in range(5)], 1)
  return xp[:, 1:h + 1, 1:w + 1]


def _s1_winograd_filter(kernel: jax.Array) -> jax.Array:
  """HWIO (4, 4, C, O) → V = G·W·Gᵀ, (25, C, O)."""
  return _tap_transform(_S1_GG, kernel)


def _s1_winograd_filter_t(dv: Positions) -> jax.Array:
  return _tap_transform(_S1_GG.T, jnp.stack(dv)).reshape(4, 4, *dv[0].shape)


def _s1_winograd_output_t(dy: jax.Array) -> Positions:
  n, ho, wo, cout = dy.shape
  dy = dy.reshape(n, ho // 2, 2, wo // 2, 2, cout)
  cols = [[_combine(_S1_AT[:, j], [dy[:, :, r, :, 0], dy[:, :, r, :, 1]]) for j in range(5)]
          for r in range(2)]
  return [_combine(_S1_AT[:, i], [cols[0][j], cols[1][j]]).reshape(-1, cout)
          for i in range(5) for j in range(5)]


@jax.custom_vjp
def conv4x4_s1_winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-1 4×4 conv with padding 1 (output (H - 1)×(W - 1)) as Winograd F(2×2, 4×4).

  25 matrix products per 2×2 output tile instead of 64, forward and backward; the transforms'
  coefficients are small integers (input, output) and sixths (filter, one matrix product), so
  the result rounds like a sum of a few more terms. The gradient is written by hand, as for
  `conv4x4_winograd`.
  """
  return _conv4x4_s1_winograd_fwd(x, kernel)[0]


def _conv4x4_s1_winograd_fwd(x, kernel):
  n, h, w, _ = x.shape
  u, v = _s1_winograd_tiles(x), _s1_winograd_filter(kernel)
  y = _output_transform(_S1_AT, _products(u, v), n, _s1_tiles(h), _s1_tiles(w))[:, :h - 1, :w - 1]
  return y.astype(x.dtype), (u, v, x.shape[1:3])


def _conv4x4_s1_winograd_bwd(res, dy):
  u, v, (h, w) = res
  n, ho, wo, _ = dy.shape
  th, tw = _s1_tiles(h), _s1_tiles(w)
  dm = _s1_winograd_output_t(jnp.pad(dy, ((0, 0), (0, 2 * th - ho), (0, 2 * tw - wo), (0, 0))))
  du, dv = _products_vt(dm, v), _products_ut(u, dm)
  return _s1_winograd_tiles_t(du, (n, h, w, u[0].shape[-1])), _s1_winograd_filter_t(dv)


conv4x4_s1_winograd.defvjp(_conv4x4_s1_winograd_fwd, _conv4x4_s1_winograd_bwd)


# Transposed. PyTorch's ConvTranspose2d(k=4, s=2, p=1) is the adjoint (the input gradient) of the
# stride-2 Conv2d(k=4, p=1) whose HWIO kernel is ours with its channel axes swapped. So its
# forward pass is `conv4x4_winograd`'s input-gradient path (output transform transposed, dM·Vᵀ,
# input transform transposed), and its gradient is `conv4x4_winograd`'s forward pass on dy,
# whose transformed tiles also give the kernel gradient: the same 9 products per 2×2 input tile,
# ±1 coefficients, every transform one fusion.

@jax.custom_vjp
def conv_transpose4x4_winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """PyTorch `ConvTranspose2d(k=4, s=2, p=1)` as the adjoint of `conv4x4_winograd`; H, W even.

  ``kernel[kh, kw, ci, co] == torch_weight[ci, co, kh, kw]``; output (N, 2H, 2W, Cout).
  """
  return _conv_transpose4x4_winograd_fwd(x, kernel)[0]


def _transposed_filter(kernel: jax.Array) -> jax.Array:
  """(4, 4, Cin, Cout) → Vᵀ, (9, Cin, 4·Cout) with columns (p, q, Cout): `_winograd_filter` of
  the adjoint conv's kernel, transposed, laid out without moving Cout from the last axis."""
  cin, cout = kernel.shape[2:]
  k = kernel.reshape(2, 2, 2, 2, cin, cout).transpose(0, 2, 4, 1, 3, 5)  # (a, b, ci, p, q, co)
  return _f22_filter(k.reshape(2, 2, cin, 4 * cout))


def _transposed_filter_t(dvt: Positions) -> jax.Array:
  cin, cout = dvt[0].shape[0], dvt[0].shape[1] // 4
  dk = _f22_filter_t(dvt).reshape(2, 2, cin, 2, 2, cout)           # (a, b, ci, p, q, co)
  return dk.transpose(0, 3, 1, 4, 2, 5).reshape(4, 4, cin, cout)


def _conv_transpose4x4_winograd_fwd(x, kernel):
  n, h, w, _ = x.shape
  m = _winograd_output_t(x)                                   # 9 × (N·h/2·w/2, Cin)
  vt = _transposed_filter(kernel)                             # (9, Cin, 4·Cout)
  y = _winograd_tiles_t(_products(m, vt), (n, 2 * h, 2 * w, kernel.shape[-1]))
  return y.astype(x.dtype), (m, vt)


def _conv_transpose4x4_winograd_bwd(res, dy):
  m, vt = res
  n, h, w, _ = dy.shape
  u = _winograd_tiles(dy)                                     # 9 × (N·h/4·w/4, 4·Cout)
  dx = _winograd_output(_products_vt(u, vt), n, h // 4, w // 4)
  return dx.astype(dy.dtype), _transposed_filter_t(_products_ut(m, u))


conv_transpose4x4_winograd.defvjp(_conv_transpose4x4_winograd_fwd,
                                  _conv_transpose4x4_winograd_bwd)
