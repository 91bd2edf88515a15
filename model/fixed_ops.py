"""Integer reference of the decoder's non-convolution ops: warp, LUTs, channel softmax.

NumPy only (no torch), vectorised, and built on the rounding and saturation rules
of `model.fixed` (round half up, two's-complement saturation). Every formula here
is stated, with its widths, in docs/numerics.md; the hardware reproduces
these functions bit for bit.

- `normalized_to_pixels`: grid coordinates in [-1, 1] (align_corners=True) →
  fixed-point pixel coordinates, one rounding.
- `grid_sample_fixed`, `grid_sample_fixed_mul`: bilinear backward warp with zero
  padding (`grid_sample(..., "bilinear", "zeros", align_corners=True)`), the
  second fused with a multiply by an unsigned occlusion map.
- `make_lut`, `apply_lut`, `sigmoid_lut`: 256-entry tables for int8 inputs; the
  table values are the contract, not the float function they were built from.
- `exp_lut`, `softmax_channels_fixed`: softmax over channels with an exp table,
  an exact channel sum and one integer reciprocal per pixel.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from model.fixed import checked_ints, int_range, round_float, round_shift, saturate

IntArray = npt.NDArray[np.int64]

#: Input width of every table (int8 activations) and its number of entries.
LUT_IN_BITS = 8
LUT_SIZE = 1 << LUT_IN_BITS
#: Occlusion maps are unsigned 8-bit.
OCC_BITS = 8
#: Fraction bits of the decoder's warp pixel coordinates (≤ 1 LSB of torch,
#: docs/numerics.md); the warp engine's widths follow from it.
PIXEL_FRAC_BITS = 8
#: Softmax outputs are unsigned 8-bit.
SOFTMAX_OUT_BITS = 8


# --------------------------------------------------------------------------- checks


def _in(value: int, name: str, lo: int, hi: int) -> int:
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")
    return int(value)


def _saturate_unsigned(x: npt.ArrayLike, bits: int) -> IntArray:
    """Clamp to the unsigned `bits`-bit range 0 .. 2^bits - 1."""
    return np.clip(np.asarray(x, dtype=np.int64), 0, (1 << bits) - 1)


# --------------------------------------------------------------------------- coordinates


def normalized_to_pixels(
    coords_q: npt.ArrayLike, coord_frac_bits: int, size: int, pixel_frac_bits: int
) -> IntArray:
    """Normalised grid coordinates (align_corners=True) → fixed-point pixel coordinates.

    coords_q holds signed integers c with value c / 2^Fc (Fc = coord_frac_bits),
    -1 and +1 being the centres of the first and last pixel along an axis of
    `size` pixels. The pixel coordinate (c/2^Fc + 1)·(size - 1)/2 is returned
    with Fp = pixel_frac_bits fraction bits, rounded once, half up:

        p = round_shift((c + 2^Fc)·(size - 1), Fc + 1 - Fp)      if Fp ≤ Fc + 1
        p = (c + 2^Fc)·(size - 1) · 2^(Fp - Fc - 1)              otherwise (exact)

    Values outside [-1, 1] map linearly outside [0, size - 1]; nothing is clamped
    here (the warp reads zeros there). size = 1 maps everything to 0, as PyTorch does.
    """
    fc = _in(coord_frac_bits, "coord_frac_bits", 0, 48)
    fp = _in(pixel_frac_bits, "pixel_frac_bits", 0, 48)
    size = _in(size, "size", 1, 1 << 24)
    c = checked_ints(coords_q, "coords_q", -(1 << 62), (1 << 62) - 1)
    # Bound the exact product in Python integers before forming it in int64.
    peak = (int(np.abs(c).max()) if c.size else 0) + (1 << fc)
    if peak * (size - 1) << max(0, fp - fc - 1) >= 1 << 62:
        raise ValueError("normalized_to_pixels: exact product exceeds 62 bits; narrow the inputs")
    product = (c + (1 << fc)) * (size - 1)
    shift = fc + 1 - fp
    if shift >= 0:
        return round_shift(product, shift)
    return np.left_shift(product, -shift)


# --------------------------------------------------------------------------- bilinear warp


def bilinear_taps(
    px: npt.ArrayLike, py: npt.ArrayLike, pixel_frac_bits: int
) -> tuple[IntArray, IntArray, IntArray, IntArray, IntArray, IntArray]:
    """Top-left tap and the four integer weights of a bilinear sample.

    With F = pixel_frac_bits: x0 = px >> F (floor), fx = px & (2^F - 1), likewise y;
    w00 = (2^F - fx)(2^F - fy), w01 = fx(2^F - fy), w10 = (2^F - fx)fy, w11 = fx·fy.
    The weights are ≥ 0 and sum to 2^(2F). Returns (x0, y0, w00, w01, w10, w11),
    where w01 weights tap (y0, x0 + 1) and w10 weights tap (y0 + 1, x0).
    """
    f = _in(pixel_frac_bits, "pixel_frac_bits", 1, 15)
    px = checked_ints(px, "px", -(1 << 62), (1 << 62) - 1)
    py = checked_ints(py, "py", -(1 << 62), (1 << 62) - 1)
    one = 1 << f
    x0, fx = px >> f, px & (one - 1)
    y0, fy = py >> f, py & (one - 1)
    gx, gy = one - fx, one - fy
    return x0, y0, gx * gy, fx * gy, gx * fy, fx * fy


def _warp_acc(features: npt.ArrayLike, px: npt.ArrayLike, py: npt.ArrayLike, f: int) -> IntArray:
    """acc = Σ w·v over the four taps (int64, exact), taps outside the image reading 0."""
    feats = np.asarray(features)
    if feats.ndim != 3:
        raise ValueError(f"features must be (C, H, W), got shape {feats.shape}")
    lo, hi = int_range(8)
    if feats.dtype != np.int8:
        feats = checked_ints(feats, "features", lo, hi).astype(np.int8)
    px = np.asarray(px)
    py = np.asarray(py)
    if px.shape != py.shape or px.ndim != 2:
        raise ValueError(f"px and py must be the same (Ho, Wo) shape, got {px.shape}, {py.shape}")
    _, h, w = feats.shape
    one = 1 << _in(f, "pixel_frac_bits", 1, 15)
    # Clamping to [-2^F, W·2^F] changes no result: at or beyond either end every
    # tap along that axis is outside the image or carries weight 0.
    px = np.clip(checked_ints(px, "px", -(1 << 62), (1 << 62) - 1), -one, w * one)
    py = np.clip(checked_ints(py, "py", -(1 << 62), (1 << 62) - 1), -one, h * one)
    x0, y0, w00, w01, w10, w11 = bilinear_taps(px, py, f)
    # Now x0 ∈ [-1, W] and x0 + 1 ∈ [0, W + 1]: one zero column before, two after.
    padded = np.pad(feats, ((0, 0), (1, 2), (1, 2)))
    xi, yi = x0 + 1, y0 + 1
    acc = padded[:, yi, xi].astype(np.int64) * w00
    acc += padded[:, yi, xi + 1].astype(np.int64) * w01
    acc += padded[:, yi + 1, xi].astype(np.int64) * w10
    acc += padded[:, yi + 1, xi + 1].astype(np.int64) * w11
    return acc


def grid_sample_fixed(
    features: npt.ArrayLike, px: npt.ArrayLike, py: npt.ArrayLike, pixel_frac_bits: int
) -> npt.NDArray[np.int8]:
    """Bilinear backward warp of int8 features (C, H, W) at pixel coordinates (Ho, Wo).

    px, py carry F = pixel_frac_bits fraction bits (1 ≤ F ≤ 15). Taps outside the
    image read 0. acc = Σ w·v with the weights of `bilinear_taps`;
    out = saturate(round_shift(acc, 2F), 8). Returns int8 (C, Ho, Wo).
    """
    acc = _warp_acc(features, px, py, pixel_frac_bits)
    return saturate(round_shift(acc, 2 * pixel_frac_bits), 8).astype(np.int8)


def grid_sample_fixed_mul(
    features: npt.ArrayLike,
    px: npt.ArrayLike,
    py: npt.ArrayLike,
    pixel_frac_bits: int,
    occlusion_q: npt.ArrayLike,
    occ_frac_bits: int = 8,
) -> npt.NDArray[np.int8]:
    """The warp fused with a multiply by an unsigned occlusion map (Ho, Wo).

    occlusion_q is unsigned 8-bit with value occlusion_q / 2^occ_frac_bits
    (occ_frac_bits = 8: 255 ≈ 1.0). One rounding for both operations:
    out = saturate(round_shift(acc · occ, 2F + occ_frac_bits), 8).
    """
    occ = checked_ints(occlusion_q, "occlusion_q", 0, (1 << OCC_BITS) - 1)
    fo = _in(occ_frac_bits, "occ_frac_bits", 0, 16)
    if occ.shape != np.shape(px):
        raise ValueError(f"occlusion_q shape {occ.shape} differs from px shape {np.shape(px)}")
    acc = _warp_acc(features, px, py, pixel_frac_bits)
    return saturate(round_shift(acc * occ, 2 * pixel_frac_bits + fo), 8).astype(np.int8)


# --------------------------------------------------------------------------- tables


def make_lut(
    fn: Callable[[npt.NDArray[np.float64]], npt.ArrayLike],
    in_scale: float,
    out_scale: float,
    out_bits: int = 8,
    signed_out: bool = True,
) -> IntArray:
    """The 256-entry table of fn for int8 inputs: entry q + 128 for every q in -128..127.

    entry = clamp(round_half_up(fn(q·in_scale) / out_scale)), evaluated in float64
    (fn must accept a float64 array), clamped to the signed or unsigned `out_bits`
    range. The stored entries, not fn, are the contract: the hardware holds the table.
    """
    if not out_scale > 0:
        raise ValueError(f"out_scale must be positive, got {out_scale}")
    bits = _in(out_bits, "out_bits", 1, 32)
    lo, hi = int_range(bits) if signed_out else (0, (1 << bits) - 1)
    lo_in, hi_in = int_range(LUT_IN_BITS)
    q = np.arange(lo_in, hi_in + 1, dtype=np.float64)
    y = np.asarray(fn(q * np.float64(in_scale)), dtype=np.float64)
    if y.shape != q.shape:
        raise ValueError(f"fn must be elementwise: got shape {y.shape} for {q.shape}")
    if np.isnan(y).any():
        raise ValueError("table function returned NaN")
    return round_float(y / np.float64(out_scale), lo, hi)


def apply_lut(x: npt.ArrayLike, lut: npt.ArrayLike) -> IntArray:
    """lut[x + 128] for int8 x (any shape)."""
    table = np.asarray(lut, dtype=np.int64)
    if table.shape != (LUT_SIZE,):
        raise ValueError(f"lut must have {LUT_SIZE} entries, got shape {table.shape}")
    lo, hi = int_range(LUT_IN_BITS)
    return table[checked_ints(x, "x", lo, hi) - lo]


def _sigmoid(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-v))


def sigmoid_lut(in_scale: float, out_frac_bits: int = 8) -> IntArray:
    """Sigmoid table: unsigned 8-bit out with value out / 2^out_frac_bits (255 at most)."""
    fo = _in(out_frac_bits, "out_frac_bits", 0, 16)
    return make_lut(_sigmoid, in_scale, 2.0**-fo, out_bits=8, signed_out=False)


# --------------------------------------------------------------------------- softmax


def exp_lut(in_scale: float, exp_frac_bits: int = 15) -> IntArray:
    """EXP[k] = round_half_up(exp(-k·in_scale) · 2^E) for k = 0..255 (E = exp_frac_bits).

    Indexed by k = -d = m - x (0 ≤ k ≤ 255). EXP[0] = 2^E exactly; entries are
    unsigned, E + 1 bits wide, and non-increasing.
    """
    if not in_scale > 0:
        raise ValueError(f"in_scale must be positive, got {in_scale}")
    e = _in(exp_frac_bits, "exp_frac_bits", 1, 24)
    k = np.arange(LUT_SIZE, dtype=np.float64)
    return round_float(np.exp(-k * np.float64(in_scale)) * np.float64(1 << e), 0, 1 << e)


def softmax_widths(
    channels: int, exp_frac_bits: int = 15, recip_bits: int = 16, out_frac_bits: int = 8
) -> dict[str, int]:
    """Every width and constant of `softmax_channels_fixed` for `channels` channels.

    R = E + recip_bits - 1 (reciprocal numerator 2^R), shift = R - out_frac_bits;
    bits of e (E + 1), of S (E + 1 + ceil(log2 C)), of r (recip_bits) and of e·r.
    """
    e = _in(exp_frac_bits, "exp_frac_bits", 1, 24)
    rb = _in(recip_bits, "recip_bits", 2, 32)
    fo = _in(out_frac_bits, "out_frac_bits", 0, SOFTMAX_OUT_BITS)
    c = _in(channels, "channels", 1, 1 << 24)
    r_exp = e + rb - 1
    if r_exp < fo:
        raise ValueError("softmax: exp_frac_bits + recip_bits - 1 must be ≥ out_frac_bits")
    return {
        "R": r_exp,
        "shift": r_exp - fo,
        "e_bits": e + 1,
        "sum_bits": (c << e).bit_length(),
        "recip_bits": rb,
        "product_bits": (1 << r_exp).bit_length(),
    }


def softmax_error_bound(
    channels: int, exp_frac_bits: int = 15, recip_bits: int = 16, out_frac_bits: int = 8
) -> float:
    """δ: bound on |2^O·e·r/2^R - 2^O·softmax| before the final rounding, in output LSBs.

    δ = 2^(O-E-1)·max(1, C-1)  (exp-table rounding, through e and S)
      + 2^(O-recip_bits)        (reciprocal rounding: e ≤ 2^E, |r - 2^R/S| ≤ 1/2)
    so |out - 2^O·softmax| ≤ 1/2 + δ before saturation at 2^8 - 1 (docs/numerics.md).
    """
    w = softmax_widths(channels, exp_frac_bits, recip_bits, out_frac_bits)
    o = out_frac_bits
    return 2.0 ** (o - exp_frac_bits - 1) * max(1, channels - 1) + 2.0 ** (o - w["recip_bits"])


def softmax_channels_fixed(
    x: npt.ArrayLike,
    in_scale: float,
    exp_frac_bits: int = 15,
    recip_bits: int = 16,
    out_frac_bits: int = 8,
) -> npt.NDArray[np.uint8]:
    """Softmax over axis 0 of int8 x (C, H, W) with value x·in_scale → uint8 (C, H, W).

    Per pixel, with E = exp_frac_bits, R = E + recip_bits - 1, O = out_frac_bits:
        m = max_c x;  k_c = m - x_c ∈ [0, 255];  e_c = EXP[k_c]     (`exp_lut`)
        S = Σ_c e_c                                                  exact, ≥ 2^E
        r = round_half_up(2^R / S) = floor((2^(R+1) + S) / (2S))     recip_bits unsigned
        out_c = min(round_shift(e_c · r, R - O), 2^8 - 1)            value out / 2^O
    """
    lo, hi = int_range(LUT_IN_BITS)
    q = checked_ints(x, "x", lo, hi)
    if q.ndim != 3:
        raise ValueError(f"x must be (C, H, W), got shape {q.shape}")
    w = softmax_widths(q.shape[0], exp_frac_bits, recip_bits, out_frac_bits)
    if w["sum_bits"] > 62:
        raise ValueError("softmax: channel sum exceeds 62 bits")
    table = exp_lut(in_scale, exp_frac_bits)
    e = table[q.max(axis=0, keepdims=True) - q]
    s = e.sum(axis=0, keepdims=True)
    r = ((1 << (w["R"] + 1)) + s) // (2 * s)
    out = _saturate_unsigned(round_shift(e * r, w["shift"]), SOFTMAX_OUT_BITS)
    return out.astype(np.uint8)
