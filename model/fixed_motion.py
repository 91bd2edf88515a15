"""Integer motion ops of the dense motion network: grid, heatmaps, sparse flows, flow.

Formats (stated in docs/numerics.md, "Motion"):
- keypoints arrive from the bitstream as integers with KP_FRAC_BITS fraction bits
  (the stream's step must be 2^-KP_FRAC_BITS for the integer decoder);
- every normalised coordinate (grid, motions, flow) is a signed integer with
  COORD_FRAC_BITS fraction bits, -1/+1 being the centres of the first/last pixel;
- Gaussian heatmaps come from a table indexed by the squared distance, and the
  heatmap difference is int8 with scale 2^-HEAT_FRAC_BITS;
- the softmax mask is unsigned with 8 fraction bits (model.fixed_ops).
NumPy only; rounding is model.fixed's round half up throughout.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from model.fixed import round_float, round_shift, saturate

IntArray = npt.NDArray[np.int64]

KP_FRAC_BITS = 8
COORD_FRAC_BITS = 14
HEAT_FRAC_BITS = 7  # int8 heatmap difference, value = q / 2^7
DIST_FRAC_BITS = 14  # squared distance resolution of the Gaussian table
MASK_FRAC_BITS = 8


def grid_axis(size: int) -> IntArray:
    """round_half_up(2^G · (2j/(size-1) - 1)) for j in 0..size-1, exactly in integers."""
    if size < 2:
        raise ValueError(f"grid_axis: size must be at least 2, got {size}")
    j = np.arange(size, dtype=np.int64)
    numerator = (2 * j - (size - 1)) << COORD_FRAC_BITS  # value · (size - 1)
    # floor(n / d + 1/2) = floor((2n + d) / (2d)) for d > 0
    return (2 * numerator + (size - 1)) // (2 * (size - 1))


def keypoints_to_coords(kp_q: npt.ArrayLike) -> IntArray:
    """Bitstream keypoints (KP_FRAC_BITS) → coordinate format (COORD_FRAC_BITS), exact."""
    return np.asarray(kp_q, dtype=np.int64) << (COORD_FRAC_BITS - KP_FRAC_BITS)


def gaussian_table(variance: float) -> IntArray:
    """T[i] = round_half_up(2^HEAT_FRAC_BITS · exp(-0.5 · i·2^-DIST_FRAC_BITS / variance)).

    The table ends where entries round to 0; larger distances read 0. The table,
    not exp, is the contract (the hardware stores it).
    """
    limit = 2 * variance * math.log(2 ** (HEAT_FRAC_BITS + 1))  # value < 1/2 beyond
    length = math.ceil(limit * 2**DIST_FRAC_BITS) + 1
    d2 = np.arange(length, dtype=np.float64) / 2**DIST_FRAC_BITS
    values = np.exp(-0.5 * d2 / variance) * 2**HEAT_FRAC_BITS
    table = round_float(values)
    return table[: int(np.flatnonzero(table).max()) + 1]


def gaussians(
    kp: npt.ArrayLike, size: int, table: npt.ArrayLike, axis: npt.ArrayLike | None = None
) -> IntArray:
    """(K, size, size) Gaussian values (HEAT_FRAC_BITS) around keypoints kp (K, 2) in coords.

    `axis` is the grid axis, `grid_axis(size)` unless given (hardware holds it loaded)."""
    kp = np.asarray(kp, dtype=np.int64)
    axis = grid_axis(size) if axis is None else np.asarray(axis, dtype=np.int64)
    dx = axis[None, None, :] - kp[:, 0, None, None]
    dy = axis[None, :, None] - kp[:, 1, None, None]
    d2 = dx * dx + dy * dy  # 2·COORD_FRAC_BITS fraction bits
    index = round_shift(d2, 2 * COORD_FRAC_BITS - DIST_FRAC_BITS)
    t = np.asarray(table, dtype=np.int64)
    return np.where(index < len(t), t[np.minimum(index, len(t) - 1)], 0)


def heatmaps(
    kp_driving: npt.ArrayLike,
    kp_source: npt.ArrayLike,
    size: int,
    table: npt.ArrayLike,
    axis: npt.ArrayLike | None = None,
) -> IntArray:
    """(K+1, size, size) int8: zero background, then Gaussian(driving) − Gaussian(source)."""
    diff = gaussians(kp_driving, size, table, axis) - gaussians(kp_source, size, table, axis)
    zeros = np.zeros((1, size, size), dtype=np.int64)
    return np.concatenate([zeros, saturate(diff, 8)])


def sparse_motions(kp_driving: npt.ArrayLike, kp_source: npt.ArrayLike, size: int) -> IntArray:
    """(K+1, size, size, 2) source coordinates: identity, then grid − kp_d + kp_s (translation)."""
    axis = grid_axis(size)
    grid = np.stack(np.broadcast_arrays(axis[None, :], axis[:, None]), axis=-1)  # (H, W, [x, y])
    offset = np.asarray(kp_source, dtype=np.int64) - np.asarray(kp_driving, dtype=np.int64)
    moved = grid[None] + offset[:, None, None, :]
    return np.concatenate([grid[None], moved])


def compose_flow(mask: npt.ArrayLike, motions: npt.ArrayLike) -> IntArray:
    """(H, W, 2) dense flow Σ_k mask_k · motion_k, back to COORD_FRAC_BITS (round half up)."""
    m = np.asarray(mask, dtype=np.int64)  # (K+1, H, W), MASK_FRAC_BITS
    total = (m[..., None] * np.asarray(motions, dtype=np.int64)).sum(axis=0)
    return round_shift(total, MASK_FRAC_BITS)


#: Fraction bits of Jacobian entries as the bitstream carries them (step 2^-6).
JAC_IN_FRAC_BITS = 6
#: Fraction bits of the composed per-keypoint affine J_s · J_d⁻¹.
JAC_FRAC_BITS = 14
#: |J| entries are limited to ±2^JAC_LIMIT_BITS (a degenerate driving Jacobian
#: would otherwise ask for an unbounded affine; the float model produces inf/NaN).
JAC_LIMIT_BITS = 4


def _div_round(numerator: IntArray, denominator: IntArray) -> IntArray:
    """round_half_up(n / d) for integers, d ≠ 0, any signs: floor((2n + d) / 2d) with d > 0."""
    sign = np.where(denominator < 0, -1, 1)
    n, d = numerator * sign, denominator * sign
    return (2 * n + d) // (2 * d)


def compose_jacobians(jac_source_q: npt.ArrayLike, jac_driving_q: npt.ArrayLike) -> IntArray:
    """(K, 2, 2) J = J_s · J_d⁻¹ with JAC_FRAC_BITS, from bitstream Jacobians (6 fraction bits).

    J_d⁻¹ = adj(J_d) / det(J_d): J = (J_s · adj(J_d)) / det(J_d), one integer
    division per entry, rounded half up; entries saturate to ±2^JAC_LIMIT_BITS, and
    a singular J_d (det = 0) yields the identity (no motion from that keypoint).
    """
    js = np.asarray(jac_source_q, dtype=np.int64)
    jd = np.asarray(jac_driving_q, dtype=np.int64)
    a, b, c, d = jd[:, 0, 0], jd[:, 0, 1], jd[:, 1, 0], jd[:, 1, 1]
    det = a * d - b * c  # 2·6 fraction bits
    adj = np.stack([np.stack([d, -b], -1), np.stack([-c, a], -1)], -2)  # 6 fraction bits
    num = np.einsum("kij,kjl->kil", js, adj)  # 12 fraction bits
    # J = num / det carries 0 fraction bits; scale the numerator for JAC_FRAC_BITS.
    safe = np.where(det == 0, 1, det)[:, None, None]
    jac = _div_round(num << JAC_FRAC_BITS, np.broadcast_to(safe, num.shape))
    limit = 1 << (JAC_LIMIT_BITS + JAC_FRAC_BITS)
    jac = np.clip(jac, -limit, limit)
    identity = np.eye(2, dtype=np.int64) << JAC_FRAC_BITS
    return np.where((det == 0)[:, None, None], identity, jac)


def affine_motions(
    kp_driving: npt.ArrayLike,
    kp_source: npt.ArrayLike,
    jac: npt.ArrayLike,
    size: int,
    axis: npt.ArrayLike | None = None,
) -> IntArray:
    """(K+1, size, size, 2): identity, then J_k · (grid − kp_d,k) + kp_s,k (FOMM's first order).

    `axis` is the grid axis, `grid_axis(size)` unless given."""
    axis = grid_axis(size) if axis is None else np.asarray(axis, dtype=np.int64)
    grid = np.stack(np.broadcast_arrays(axis[None, :], axis[:, None]), axis=-1)  # (H, W, 2)
    rel = grid[None] - np.asarray(kp_driving, dtype=np.int64)[:, None, None, :]  # (K, H, W, 2)
    moved = np.einsum("kij,khwj->khwi", np.asarray(jac, dtype=np.int64), rel)
    moved = round_shift(moved, JAC_FRAC_BITS) + np.asarray(kp_source, np.int64)[:, None, None]
    return np.concatenate([grid[None], moved])
