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

import itertools
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from model.fixed import int_range, requantize, round_shift

if TYPE_CHECKING:
    from defs.params import NumericParams

IntArray = npt.NDArray[np.int64]

_EXACT_FLOAT64 = 1 << 53
_EXACT_FLOAT32 = 1 << 24
_MIN_FLOAT32_CHUNK = 64  # below this many terms per chunk, float64 is simpler and as fast
_SHIFT_ADD_MIN_CHANNELS = 32  # narrower inputs use one im2col product instead


def upsample_nearest2(x: npt.ArrayLike, out: np.ndarray | None = None) -> np.ndarray:
    """(C, H, W) → (C, 2H, 2W), each value repeated in a 2×2 block.

    Into `out` when given (any dtype, e.g. a view inside a padded buffer).
    """
    a = np.asarray(x, dtype=np.int64)
    c, h, w = a.shape
    if out is None:
        out = np.empty((c, 2 * h, 2 * w), dtype=np.int64)
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        out[:, dy::2, dx::2] = a
    return out


def avg_pool2(x: npt.ArrayLike) -> IntArray:
    """2×2 average, round half up: round_shift(sum of the 4, 2). Odd edges are dropped."""
    a = np.asarray(x, dtype=np.int64)
    h, w = a.shape[1] // 2 * 2, a.shape[2] // 2 * 2
    a = a[:, :h, :w]
    total = a[:, 0::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 0::2] + a[:, 1::2, 1::2]
    return round_shift(total, 2)


#: Channels per block of `ConvWeights.block_l1`; float32 chunks are whole blocks.
_BOUND_BLOCK = _MIN_FLOAT32_CHUNK


class ConvWeights:
    """A layer's integer weights, with the casts and bounds the products need, made once.

    The decoder runs every layer once per frame; casting and bounding a
    1024 × 1024 × 3 × 3 kernel on every call costs more than multiplying it
    on a 4 × 4 map. `conv2d_int` takes either this or a plain array.
    """

    def __init__(self, weight: npt.ArrayLike) -> None:
        self.values: IntArray = np.asarray(weight, dtype=np.int64)
        if self.values.ndim != 4:
            raise ValueError(f"conv: weight must be (O, C, kh, kw), got shape {self.values.shape}")
        magnitude = np.abs(self.values)
        self.largest = int(magnitude.max(initial=0))
        #: The largest Σ|w| over one output channel's terms.
        self.l1_max = int(magnitude.sum(axis=(1, 2, 3)).max(initial=0))
        o, c, kh, kw = self.values.shape
        blocks = -(-c // _BOUND_BLOCK)
        padded = np.zeros((o, blocks * _BOUND_BLOCK, kh, kw), dtype=np.int64)
        padded[:, :c] = magnitude
        #: Σ|w| per (tap, output channel, block of input channels): (kh, kw, O, blocks).
        self.block_l1 = padded.reshape(o, blocks, _BOUND_BLOCK, kh, kw).sum(2).transpose(2, 3, 0, 1)
        self._by_tap: dict[type, np.ndarray] = {}

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape

    def by_tap(self, dtype: type) -> np.ndarray:
        """(kh, kw, O, C) in `dtype`: one contiguous O × C matrix per tap."""
        if dtype not in self._by_tap:
            self._by_tap[dtype] = np.ascontiguousarray(self.values.transpose(2, 3, 0, 1), dtype)
        return self._by_tap[dtype]

    def chunk_l1(self, u: int, v: int, lo: int, hi: int) -> int:
        """The largest Σ|w| over one output channel for tap (u, v), input channels lo..hi-1.

        lo is a multiple of the block; hi is too, or the channel count.
        """
        part = self.block_l1[u, v, :, lo // _BOUND_BLOCK : -(-hi // _BOUND_BLOCK)]
        return int(part.sum(axis=1).max(initial=0))


def conv_accumulate(
    x: npt.ArrayLike,
    weight: ConvWeights | npt.ArrayLike,
    *,
    stride: int = 1,
    padding: int = 0,
    upsample: bool = False,
) -> IntArray:
    """Exact int64 accumulators (O, Ho, Wo) of a zero-padded k×k convolution.

    With `upsample` the input is first repeated 2×2 (nearest), as the engine
    does on read; the repeat is written straight into the padded buffer.
    """
    xi = np.asarray(x, dtype=np.int64)
    wt = weight if isinstance(weight, ConvWeights) else ConvWeights(weight)
    c, h, w = xi.shape
    _, wc, kh, kw = wt.shape
    if wc != c:
        raise ValueError(f"conv: weight expects {wc} input channels, input has {c}")
    if upsample:
        h, w = 2 * h, 2 * w
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (w + 2 * padding - kw) // stride + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"conv: {kh}x{kw} kernel does not fit a {h}x{w} input with pad {padding}")
    x_max = max(int(xi.max(initial=0)), -int(xi.min(initial=0)))
    # No partial sum, in any order, exceeds x_max · (one output channel's Σ|w|).
    bound = x_max * wt.l1_max
    if bound >= _EXACT_FLOAT64:
        raise ValueError(f"conv: |sum| bound {bound} reaches 2^53; float64 would not be exact")
    # float32 is exact while every partial sum stays within 2^24 (int8 × int8
    # allows 1024 terms); otherwise float64 throughout.
    chunk = _EXACT_FLOAT32 // max(x_max * wt.largest, 1)
    dtype = np.float32 if chunk >= _MIN_FLOAT32_CHUNK else np.float64
    # One zero row below the padded map keeps the flat windows of `_shift_add` in bounds.
    padded = np.zeros((c, h + 2 * padding + 1, w + 2 * padding), dtype)
    inner = padded[:, padding : padding + h, padding : padding + w]
    if upsample:
        upsample_nearest2(xi, out=inner)
    else:
        inner[...] = xi
    if c >= _SHIFT_ADD_MIN_CHANNELS:
        acc = _shift_add(padded, wt, x_max, dtype, stride, ho, wo)
    else:
        acc = _im2col(padded[:, :-1], wt.values.astype(dtype), chunk, stride, ho, wo)
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
    padded: np.ndarray,
    weights: ConvWeights,
    x_max: int,
    dtype: type,
    stride: int,
    ho: int,
    wo: int,
) -> np.ndarray:
    """Σ over taps (u, v) of W_uv @ (the input shifted by u, v), without an im2col copy.

    Stride s splits the padded input into s² phases (rows ≡ a, columns ≡ b
    mod s); tap (u, v) reads phase (u mod s, v mod s) shifted by (u // s, v // s),
    a stride-1 problem. In a phase flattened row-major with `cols` columns,
    that shift is a contiguous slice starting at (u // s)·cols + v // s: the
    product's column i·cols + j is output (i, j), and columns j ≥ wo are
    discarded. Products add up in `dtype` while x_max · Σ|w| says every partial
    sum is exact there, then in float64.
    """
    c = padded.shape[0]
    o, _, kh, kw = weights.shape
    rows, cols = ho + (kh - 1) // stride + 1, wo + (kw - 1) // stride
    if stride == 1:  # the padded map (with its spare row) is the only phase
        phases = {(0, 0): padded.reshape(c, -1)}
    else:
        phases = {}
        for a, b in itertools.product(range(min(stride, kh)), range(min(stride, kw))):
            phase = np.zeros((c, rows, cols), dtype)
            part = padded[:, a::stride, b::stride][:, :rows, :cols]
            phase[:, : part.shape[1], : part.shape[2]] = part
            phases[a, b] = phase.reshape(c, -1)
    limit = _EXACT_FLOAT32 if dtype is np.float32 else _EXACT_FLOAT64
    # Input channels per product: whole bound blocks, each product exact on its own.
    per_block = max(x_max * weights.largest, 1) * _BOUND_BLOCK
    chunk = max(limit // per_block, 1) * _BOUND_BLOCK
    by_tap = weights.by_tap(dtype)
    span = ho * cols
    total: np.ndarray | None = None  # float64, once one exact group is not enough
    group = np.empty((o, span), dtype)
    product = np.empty((o, span), dtype)
    group_bound = 0
    for u, v in itertools.product(range(kh), range(kw)):
        start_col = (u // stride) * cols + v // stride
        phase = phases[u % stride, v % stride]
        for lo in range(0, c, chunk):
            hi = min(lo + chunk, c)
            bound = x_max * weights.chunk_l1(u, v, lo, hi)
            if group_bound and group_bound + bound > limit:
                total = group.astype(np.float64) if total is None else total + group
                group_bound = 0
            target = product if group_bound else group
            rhs = phase[lo:hi, start_col : start_col + span]
            np.matmul(by_tap[u, v, :, lo:hi], rhs, out=target)
            if group_bound:
                group += product
            group_bound += bound
    summed = group if total is None else total + group
    return summed.reshape(o, ho, cols)[:, :, :wo]


def conv2d_int(
    x: npt.ArrayLike,
    weight: ConvWeights | npt.ArrayLike,
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
    acc = conv_accumulate(x, weight, stride=stride, padding=padding, upsample=upsample)
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
