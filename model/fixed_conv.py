"""Integer convolution of the fixed-point reference (L2), with its fused output path.

    x (int8, C×H×W) ─ nearest ×2 on read (optional) ─ zero pad ─ k×k conv, stride s
      ─ int32 accumulator ─ requantize (+bias, ×M_o, >>shift_o, round half up,
        saturate, ReLU) ─ 2×2 average pool (optional) ─ int8 (O×Ho×Wo)

Every step is exact integer arithmetic. The accumulation runs as a float64 matrix
product (BLAS) because every partial sum of int8×int8 products here stays far
below 2^53, where float64 represents integers exactly; `conv2d_int` checks the
bound, so exactness and speed do not fight (DESIGN.md §2). NumPy only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from model.fixed import int_range, requantize, round_shift

if TYPE_CHECKING:
    from grace.params import NumericParams

IntArray = npt.NDArray[np.int64]

_EXACT_FLOAT64 = 1 << 53
_MIN_FLOAT32_CHUNK = 64  # below this many terms per chunk, float64 is simpler and as fast
_SHIFT_ADD_MIN_CHANNELS = 32  # narrower inputs use one im2col product instead


def upsample_nearest2(x: npt.ArrayLike) -> IntArray:
    """(C, H, W) → (C, 2H, 2W), each value repeated in a 2×2 block."""
    a = np.asarray(x, dtype=np.int64)
    return a.repeat(2, axis=1).repeat(2, axis=2)


def avg_pool2(x: npt.ArrayLike) -> IntArray:
    """2×2 average, round half up: round_shift(sum of the 4, 2). Odd edges are dropped."""
    a = np.asarray(x, dtype=np.int64)
    h, w = a.shape[1] // 2 * 2, a.shape[2] // 2 * 2
    a = a[:, :h, :w]
    total = a[:, 0::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 0::2] + a[:, 1::2, 1::2]
    return round_shift(total, 2)


def conv_accumulate(
    x: npt.ArrayLike, weight: npt.ArrayLike, *, stride: int = 1, padding: int = 0
) -> IntArray:
    """Exact int64 accumulators (O, Ho, Wo) of a zero-padded k×k convolution."""
    xi = np.asarray(x, dtype=np.int64)
    wi = np.asarray(weight, dtype=np.int64)
    c, h, w = xi.shape
    _, wc, kh, kw = wi.shape
    if wc != c:
        raise ValueError(f"conv: weight expects {wc} input channels, input has {c}")
    bound = int(np.abs(xi).max(initial=0)) * int(np.abs(wi).max(initial=0)) * c * kh * kw
    if bound >= _EXACT_FLOAT64:
        raise ValueError(f"conv: |sum| bound {bound} reaches 2^53; float64 would not be exact")
    # float32 is exact while every partial sum stays within 2^24: split the
    # reduction into chunks that guarantee it (int8 × int8 allows 1024 terms),
    # and add the chunks in float64. Otherwise use float64 throughout.
    largest = int(np.abs(xi).max(initial=0)) * int(np.abs(wi).max(initial=0))
    chunk = (1 << 24) // max(largest, 1)
    dtype = np.float32 if chunk >= _MIN_FLOAT32_CHUNK else np.float64
    # Convert once, before im2col, so the (C·k², Ho·Wo) copy is the only large pass.
    padded = np.pad(xi.astype(dtype), ((0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (w + 2 * padding - kw) // stride + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"conv: {kh}x{kw} kernel does not fit a {h}x{w} input with pad {padding}")
    weights = wi.astype(dtype)
    if c >= _SHIFT_ADD_MIN_CHANNELS:
        acc = _shift_add(padded, weights, chunk, stride, ho, wo)
    else:
        acc = _im2col(padded, weights, chunk, stride, ho, wo)
    return acc.astype(np.int64)


def _im2col(
    padded: np.ndarray, weights: np.ndarray, chunk: int, stride: int, ho: int, wo: int
) -> np.ndarray:
    """One matrix product over all C·k² taps (best when C is small)."""
    c = padded.shape[0]
    o, _, kh, kw = weights.shape
    s = padded.strides
    cols = np.lib.stride_tricks.as_strided(
        padded,
        shape=(c, kh, kw, ho, wo),
        strides=(s[0], s[1], s[2], s[1] * stride, s[2] * stride),
        writeable=False,
    ).reshape(c * kh * kw, -1)
    flat = weights.reshape(o, -1)
    acc = np.zeros((o, ho * wo), dtype=np.float64)
    for start in range(0, cols.shape[0], chunk):
        acc += flat[:, start : start + chunk] @ cols[start : start + chunk]
    return acc.reshape(o, ho, wo)


def _shift_add(
    padded: np.ndarray, weights: np.ndarray, chunk: int, stride: int, ho: int, wo: int
) -> np.ndarray:
    """Per tap (u, v): W_uv @ X over the whole padded map, then add its shifted window.

    No im2col copy: the padded input is used in place, which is what makes the
    reference fast on wide layers.
    """
    c, hp, wp = padded.shape
    o, _, kh, kw = weights.shape
    flat = padded.reshape(c, hp * wp)
    acc = np.zeros((o, ho, wo), dtype=np.float64)
    for u in range(kh):
        for v in range(kw):
            for start in range(0, c, chunk):
                y = weights[:, start : start + chunk, u, v] @ flat[start : start + chunk]
                y = y.reshape(o, hp, wp)
                acc += y[:, u : u + stride * ho : stride, v : v + stride * wo : stride]
    return acc


def conv2d_int(
    x: npt.ArrayLike,
    weight: npt.ArrayLike,
    bias: npt.ArrayLike,
    multiplier: npt.ArrayLike,
    shift: npt.ArrayLike,
    numeric: NumericParams,
    *,
    stride: int = 1,
    padding: int = 0,
    relu: bool = False,
    upsample: bool = False,
    pool: bool = False,
    residual: npt.ArrayLike | None = None,
    residual_gain: npt.ArrayLike | None = None,
) -> IntArray:
    """The convolution engine's function: int8 in, int8 out, per-channel requantize.

    bias, multiplier and shift have one entry per output channel. A residual
    (int8, same shape as the output) enters the accumulator as residual × gain_o,
    with the integer gain_o ≈ s_residual / (s_in · s_w[o]) per output channel, so
    the block's only rounding stays the final requantize. The accumulator must fit
    `numeric.acc_bits` (the hardware's register); a wider sum is refused.
    """
    xi = upsample_nearest2(x) if upsample else np.asarray(x, dtype=np.int64)
    acc = conv_accumulate(xi, weight, stride=stride, padding=padding)
    if residual is not None:
        if residual_gain is None:
            raise ValueError("conv: a residual needs its per-channel residual_gain")
        res = np.asarray(residual, dtype=np.int64)
        if res.shape != acc.shape:
            raise ValueError(f"conv: residual {res.shape} does not match output {acc.shape}")
        acc = acc + res * np.asarray(residual_gain, dtype=np.int64).reshape(-1, 1, 1)
    lo, hi = int_range(numeric.acc_bits)
    if acc.size and (acc.min() < lo or acc.max() > hi):
        raise ValueError(
            f"conv: accumulator leaves int{numeric.acc_bits} "
            f"({acc.min()}..{acc.max()}); the hardware would wrap"
        )

    def per_channel(v: npt.ArrayLike) -> IntArray:
        return np.asarray(v, dtype=np.int64).reshape(-1, 1, 1)

    y = requantize(
        acc, per_channel(bias), per_channel(multiplier), per_channel(shift), int(relu), numeric
    )
    return avg_pool2(y) if pool else y


def affine_int(
    x: npt.ArrayLike,
    negate: npt.ArrayLike,
    bias: npt.ArrayLike,
    multiplier: npt.ArrayLike,
    shift: npt.ArrayLike,
    numeric: NumericParams,
    *,
    relu: bool = True,
) -> IntArray:
    """Per-channel y = relu(a_c·x + b_c) on the output unit: requantize(±x + bias_c).

    The requantize multiplier is unsigned, so a negative scale a_c (BatchNorm
    weights can be negative) flips the input: acc = -x where `negate` is set.
    This is how a ResBlock's pre-activation BatchNorm + ReLU runs: the output
    unit alone, no multiply-accumulate.
    """
    xi = np.asarray(x, dtype=np.int64)
    sign = np.where(np.asarray(negate, dtype=bool), -1, 1).reshape(-1, 1, 1)

    def per_channel(v: npt.ArrayLike) -> IntArray:
        return np.asarray(v, dtype=np.int64).reshape(-1, 1, 1)

    return requantize(
        xi * sign,
        per_channel(bias),
        per_channel(multiplier),
        per_channel(shift),
        int(relu),
        numeric,
    )
