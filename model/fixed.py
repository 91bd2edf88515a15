"""The integer arithmetic of GRACE, written once.

Every rounding, shift and saturation rule that the hardware must reproduce is
defined here, in NumPy only (no torch), and stated in docs/numerics.md. The RTL
either derives its constants from these helpers or is tested bit-exact against
them; nothing else in the project re-implements them.

All helpers take and return int64 arrays. The requantize product is formed in
int64 too, exact up to `defs.limits.MAX_PRODUCT_BITS` (63) bits with its
rounding constant: `NumericParams` refuses wider datapaths, and `requantize`
checks again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from defs.limits import MAX_PRODUCT_BITS

if TYPE_CHECKING:
    from defs.params import NumericParams

IntArray = npt.NDArray[np.int64]


def int_range(bits: int) -> tuple[int, int]:
    """Smallest and largest value of a signed two's-complement integer of `bits` bits."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def saturate(x: npt.ArrayLike, bits: int, out: IntArray | None = None) -> IntArray:
    """Clamp to the signed `bits`-bit range (into `out`, which may be x itself)."""
    lo, hi = int_range(bits)
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi, out=out)


def round_shift(x: npt.ArrayLike, shift: npt.ArrayLike, out: IntArray | None = None) -> IntArray:
    """Divide by 2**shift, rounding half up (towards +inf).

    floor((x + 2**(shift-1)) / 2**shift) for shift > 0, and x itself for shift = 0.
    In hardware: add a one-hot rounding constant, then an arithmetic right shift.
    `out` (int64, the broadcast shape; may be x itself) saves a large temporary.
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    if out is None:
        out = np.empty(np.broadcast_shapes(x.shape, shift.shape), dtype=np.int64)
    np.add(x, half, out=out)
    return np.right_shift(out, shift, out=out)


def round_float(x: npt.ArrayLike, lo: int | None = None, hi: int | None = None) -> IntArray:
    """float64 → int64, round half up (towards +inf) exactly; clamped to [lo, hi] first
    when given. The one rule for turning real numbers into the integers the
    hardware stores (weights, biases, gains, multipliers, tables).

    floor(x) + [x - floor(x) ≥ 1/2]: the subtraction is exact in float64, so this
    rounds the float64 value itself. floor(x + 0.5) agrees on every half-way case
    (-2.5 → -2 too) but misrounds where x + 0.5 is itself rounded: 0.5 - 2^-54
    (→ 1) and |x| ≥ 2^52 (docs/numerics.md). Clamping first keeps ±inf harmless.
    Raises ValueError for NaN, and for a value no int64 holds.
    """
    y = np.asarray(x, dtype=np.float64)
    if np.isnan(y).any():
        raise ValueError("round_float: NaN has no integer")
    if lo is not None or hi is not None:
        y = np.clip(y, lo, hi)
    if y.size and not (np.abs(y) < 2.0**63).all():
        raise ValueError(f"round_float: {np.abs(y).max():.3g} is beyond int64")
    fl = np.floor(y)
    return (fl + (y - fl >= 0.5)).astype(np.int64)


def requantize(
    acc: npt.ArrayLike,
    bias: npt.ArrayLike,
    multiplier: npt.ArrayLike,
    shift: npt.ArrayLike,
    relu: npt.ArrayLike,
    numeric: NumericParams,
) -> IntArray:
    """int32 accumulator → int8 activation (the output unit's rule).

        s = acc + bias                       exact, sum_bits wide
        p = s × multiplier                   exact, product_bits wide (multiplier unsigned)
        r = round_shift(p, shift)            round half up
        y = saturate(r, act_bits)
        y = max(y, 0)  where relu

    Inputs broadcast against each other (e.g. per-channel multiplier and shift).
    Raises ValueError when an input lies outside the width `numeric` declares:
    the hardware would silently wrap it, so the reference refuses it.
    """
    if numeric.product_bits > MAX_PRODUCT_BITS:
        raise ValueError(
            f"requantize: product width {numeric.product_bits} is above {MAX_PRODUCT_BITS}, "
            "where int64 stops holding it exactly; narrow acc_bits, bias_bits or mult_bits"
        )
    acc = checked_ints(acc, "requantize: acc", *int_range(numeric.acc_bits))
    bias = checked_ints(bias, "requantize: bias", *int_range(numeric.bias_bits))
    multiplier = checked_ints(multiplier, "requantize: multiplier", 0, numeric.mult_max)
    shift = checked_ints(shift, "requantize: shift", 0, numeric.max_shift)
    relu = checked_ints(relu, "requantize: relu", 0, 1)
    # One temporary, updated in place: these tensors are the decoder's largest.
    shape = np.broadcast_shapes(acc.shape, bias.shape, multiplier.shape, shift.shape, relu.shape)
    y = np.empty(shape, dtype=np.int64)
    np.add(acc, bias, out=y)
    np.multiply(y, multiplier, out=y)  # the product
    round_shift(y, shift, out=y)
    saturate(y, numeric.act_bits, out=y)
    floor = np.where(relu != 0, 0, int_range(numeric.act_bits)[0])  # 0 where ReLU, else a no-op
    return np.maximum(y, floor, out=y)


def checked_ints(x: npt.ArrayLike, name: str, lo: int, hi: int) -> IntArray:
    """x as int64, refusing non-integers and values outside lo..hi (hardware would wrap)."""
    a = np.asarray(x)
    if a.dtype == np.bool_:
        a = a.astype(np.int64)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {a.dtype}")
    if a.size and (int(a.min()) < lo or int(a.max()) > hi):
        raise ValueError(f"{name} out of range {lo}..{hi} (got {a.min()}..{a.max()})")
    return a.astype(np.int64, copy=False)


def scale_to_multiplier(scale: npt.ArrayLike, numeric: NumericParams) -> tuple[IntArray, IntArray]:
    """Integer (M, shift) with M / 2^shift ≈ scale, per element, M in 0..mult_max.

    The largest shift ≤ max_shift for which round(scale · 2^shift) still fits
    mult_bits: M then carries mult_bits of precision (relative error below
    2^-(mult_bits-1)) unless max_shift runs out first for a tiny scale. Rounding
    is half up. Raises ValueError for negative scales, for scales too large to
    reach with shift 0, and for a positive scale that rounds to M = 0.
    """
    s = np.asarray(scale, dtype=np.float64)
    if (s < 0).any() or not np.isfinite(s).all():
        raise ValueError("scale_to_multiplier: scales must be finite and >= 0")
    positive = s > 0
    exponent = np.floor(np.log2(np.where(positive, s, 1.0))).astype(np.int64)
    shift = np.clip(numeric.mult_bits - 1 - exponent, 0, numeric.max_shift)
    top = numeric.mult_max + 1  # clamped there: any larger multiplier is refused below
    mult = round_float(s * np.exp2(shift), hi=top)
    overflow = mult > numeric.mult_max  # rounding reached 2^mult_bits: one bit less
    shift = np.where(overflow & (shift > 0), shift - 1, shift)
    mult = round_float(s * np.exp2(shift), hi=top)
    if (mult > numeric.mult_max).any():
        raise ValueError(
            f"scale_to_multiplier: scale {s.max():.6g} needs a multiplier above "
            f"{numeric.mult_max} even with shift 0; the layer's output scale is too small"
        )
    if (positive & (mult == 0)).any():
        raise ValueError(
            f"scale_to_multiplier: scale {s[positive].min():.3g} rounds to 0 with the largest "
            f"shift {numeric.max_shift}; raise max_shift or the output scale"
        )
    return np.where(positive, mult, 0), np.where(positive, shift, 0)
