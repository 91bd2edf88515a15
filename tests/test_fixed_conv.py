"""The integer convolution of the reference: exact against direct loops, meaningful vs float."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from defs.params import NumericParams, preset
from model.fixed import requantize, scale_to_multiplier
from model.fixed_conv import (
    ConvWeights,
    affine_int,
    avg_pool2,
    conv2d_int,
    conv_accumulate,
    upsample_nearest2,
)

NUMERIC = preset("tiny").numeric


def direct_conv(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Slow oracle: the definition, one output at a time, in Python integers."""
    c, h, wd = x.shape
    o, _, k, _ = w.shape
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((o, ho, wo), dtype=object)
    for oc, i, j in itertools.product(range(o), range(ho), range(wo)):
        total = 0
        for ic, di, dj in itertools.product(range(c), range(k), range(k)):
            yi, xj = i * stride + di - pad, j * stride + dj - pad
            if 0 <= yi < h and 0 <= xj < wd:
                total += int(x[ic, yi, xj]) * int(w[oc, ic, di, dj])
        out[oc, i, j] = total
    return out.astype(np.int64)


SHAPES = [
    # (C, O, H, W, k, stride, pad)
    (c, o, h, w, k, s, p)
    for (c, o), (h, w), (k, p), s in itertools.product(
        [(1, 1), (3, 2), (5, 4)],
        [(1, 1), (4, 7), (9, 6)],
        [(1, 0), (3, 1), (7, 3), (3, 0)],
        [1, 2],
    )
    if h + 2 * p >= k and w + 2 * p >= k
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "c{}o{}h{}w{}k{}s{}p{}".format(*s))
def test_accumulators_match_the_definition(shape: tuple) -> None:
    c, o, h, w, k, stride, pad = shape
    rng = np.random.default_rng(list(shape))
    x = rng.integers(-128, 128, (c, h, w))
    wt = rng.integers(-128, 128, (o, c, k, k))
    np.testing.assert_array_equal(
        conv_accumulate(x, wt, stride=stride, padding=pad), direct_conv(x, wt, stride, pad)
    )


def test_extreme_values_stay_exact() -> None:
    x = np.full((512, 5, 5), -128)
    w = np.full((2, 512, 3, 3), -128)
    acc = conv_accumulate(x, w, padding=1)
    assert acc[0, 2, 2] == 128 * 128 * 512 * 9  # the largest 3x3x512 sum, exact


@pytest.mark.parametrize(("relu", "upsample", "pool"), list(itertools.product([0, 1], repeat=3)))
def test_fused_output_path(relu: int, upsample: int, pool: int) -> None:
    rng = np.random.default_rng(relu * 4 + upsample * 2 + pool)
    x = rng.integers(-128, 128, (6, 5, 6))
    w = rng.integers(-128, 128, (4, 6, 3, 3))
    bias = rng.integers(-5000, 5000, 4)
    mult = rng.integers(1 << 14, 1 << 16, 4)
    shift = rng.integers(20, 26, 4)
    got = conv2d_int(
        x,
        w,
        bias,
        mult,
        shift,
        NUMERIC,
        padding=1,
        relu=bool(relu),
        upsample=bool(upsample),
        pool=bool(pool),
    )
    xin = x.repeat(2, 1).repeat(2, 2) if upsample else x
    acc = direct_conv(xin, w, 1, 1)
    want = requantize(
        acc, bias[:, None, None], mult[:, None, None], shift[:, None, None], relu, NUMERIC
    )
    if pool:
        want = avg_pool2(want)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (
        4,
        (xin.shape[1] // (2 if pool else 1)),
        (xin.shape[2] // (2 if pool else 1)),
    )


def test_pool_and_upsample_rules() -> None:
    np.testing.assert_array_equal(avg_pool2([[[1, 0], [0, 0]]]), [[[0]]])  # 0.25 → 0
    np.testing.assert_array_equal(avg_pool2([[[1, 1], [0, 0]]]), [[[1]]])  # 0.5 → 1 (half up)
    np.testing.assert_array_equal(avg_pool2([[[-1, -1], [0, 0]]]), [[[0]]])  # -0.5 → 0
    np.testing.assert_array_equal(avg_pool2([[[-128] * 2] * 2]), [[[-128]]])
    np.testing.assert_array_equal(upsample_nearest2([[[1, 2]]]), [[[1, 1, 2, 2], [1, 1, 2, 2]]])


def test_quantized_conv_tracks_float() -> None:
    """Dequantized int8 conv ≈ float conv: the integer path means what it should."""
    rng = np.random.default_rng(0)
    xf = rng.normal(0, 1, (8, 12, 12))
    wf = rng.normal(0, 0.1, (6, 8, 3, 3))
    bf = rng.normal(0, 0.1, 6)
    s_x = np.abs(xf).max() / 127
    s_w = np.abs(wf).reshape(6, -1).max(1) / 127
    x = np.round(xf / s_x).astype(np.int64)
    w = np.round(wf / s_w[:, None, None, None]).astype(np.int64)
    ref = torch.nn.functional.conv2d(
        torch.from_numpy(x * s_x)[None],
        torch.from_numpy(w * s_w[:, None, None, None]),
        torch.from_numpy(bf),
        padding=1,
    )[0].numpy()
    s_y = np.abs(ref).max() / 127
    bias = np.round(bf / (s_x * s_w)).astype(np.int64)
    mult, shift = scale_to_multiplier(s_x * s_w / s_y, NUMERIC)
    y = conv2d_int(x, w, bias, mult, shift, NUMERIC, padding=1)
    err = np.abs(y - ref / s_y)
    assert err.max() <= 0.5 + 0.01  # only the final rounding (and ≤ 2^-15 scale error)


@given(st.floats(1e-9, 3e4))
def test_scale_to_multiplier_precision(scale: float) -> None:
    m, s = scale_to_multiplier(scale, NUMERIC)
    assert 0 < int(m) <= NUMERIC.mult_max and 0 <= int(s) <= NUMERIC.max_shift
    approx = int(m) / 2 ** int(s)
    if int(s) < NUMERIC.max_shift:  # full precision unless the shift ran out
        assert abs(approx - scale) <= scale * 2.0**-15


def test_conv_errors() -> None:
    x = np.zeros((3, 4, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="weight expects 2 input channels, input has 3"):
        conv_accumulate(x, np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="does not fit"):
        conv_accumulate(x, np.zeros((1, 3, 7, 7)))
    narrow = NumericParams(acc_bits=16, bias_bits=16, max_shift=31)
    big = np.full((64, 3, 3), 127)
    with pytest.raises(ValueError, match="accumulator leaves int16"):
        conv2d_int(big, np.full((1, 64, 3, 3), 127), [0], [1], [0], narrow)
    with pytest.raises(ValueError, match="too small"):
        scale_to_multiplier(1e6, NUMERIC)
    with pytest.raises(ValueError, match="rounds to 0"):
        scale_to_multiplier(1e-20, NUMERIC)


def test_residual_enters_the_accumulator() -> None:
    rng = np.random.default_rng(9)
    x = rng.integers(-128, 128, (4, 6, 6))
    w = rng.integers(-128, 128, (4, 4, 3, 3))
    res = rng.integers(-128, 128, (4, 6, 6))
    gain = rng.integers(100, 5000, 4)
    bias, mult, shift = np.zeros(4, np.int64), np.full(4, 40000), np.full(4, 30)
    got = conv2d_int(x, w, bias, mult, shift, NUMERIC, padding=1, residual=res, residual_gain=gain)
    acc = direct_conv(x, w, 1, 1) + res * gain[:, None, None]
    np.testing.assert_array_equal(got, requantize(acc, 0, 40000, 30, 0, NUMERIC))
    with pytest.raises(ValueError, match="residual_gain"):
        conv2d_int(x, w, bias, mult, shift, NUMERIC, padding=1, residual=res)
    with pytest.raises(ValueError, match="does not match"):
        conv2d_int(
            x, w, bias, mult, shift, NUMERIC, padding=1, residual=res[:, :3], residual_gain=gain
        )


def test_residual_block_tracks_float() -> None:
    """conv + residual with gain = round(s_r / (s_in s_w)) ≈ the float block."""
    rng = np.random.default_rng(4)
    s_in, s_r = 0.02, 0.05
    x = rng.integers(-128, 128, (8, 7, 7))
    r = rng.integers(-128, 128, (8, 7, 7))
    wf = rng.normal(0, 0.05, (8, 8, 3, 3))
    s_w = np.abs(wf).reshape(8, -1).max(1) / 127
    w = np.round(wf / s_w[:, None, None, None]).astype(np.int64)
    ref = (
        torch.nn.functional.conv2d(
            torch.from_numpy(x * s_in)[None],
            torch.from_numpy(w * s_w[:, None, None, None]),
            padding=1,
        )[0].numpy()
        + r * s_r
    )
    s_y = np.abs(ref).max() / 127
    gain = np.round(s_r / (s_in * s_w)).astype(np.int64)
    mult, shift = scale_to_multiplier(s_in * s_w / s_y, NUMERIC)
    y = conv2d_int(
        x, w, np.zeros(8, np.int64), mult, shift, NUMERIC, padding=1, residual=r, residual_gain=gain
    )
    assert np.abs(y - ref / s_y).max() <= 0.5 + 0.02  # gain rounding is ≤ 0.5 / gain relative


@given(
    st.lists(st.floats(-3, 3).filter(lambda v: abs(v) > 1e-3), min_size=1, max_size=8),
    st.integers(0, 2**32 - 1),
)
def test_affine_int_tracks_float(scales: list[float], seed: int) -> None:
    """relu(a·x + b) per channel, negative a included, within half an output LSB (+ b's step)."""
    a = np.array(scales)
    c = len(a)
    rng = np.random.default_rng(seed)
    b = rng.normal(0, 0.5, c)
    s_x, x = 0.03, rng.integers(-128, 128, (c, 3, 3))
    ref = np.maximum(a[:, None, None] * x * s_x + b[:, None, None], 0)
    s_y = max(np.abs(ref).max(), 1e-3) / 127
    negate = a < 0
    mult, shift = scale_to_multiplier(np.abs(a) * s_x / s_y, NUMERIC)
    bias = np.round(b / (np.abs(a) * s_x)).astype(np.int64)  # bias in units of the input step
    y = affine_int(x, negate, bias, mult, shift, NUMERIC)
    bias_step = np.abs(a) * s_x / s_y / 2  # half an input step, in output LSBs
    assert (np.abs(y - np.minimum(ref / s_y, 127)) <= 0.5 + bias_step[:, None, None] + 0.01).all()


def tap_sum_oracle(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """int64 oracle: Σ over taps of W_uv · (strided window), one tensordot per tap."""
    _, h, wd = x.shape
    o, _, kh, kw = w.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    want = np.zeros((o, ho, wo), dtype=np.int64)
    for u, v in itertools.product(range(kh), range(kw)):
        window = padded[:, u : u + stride * ho : stride, v : v + stride * wo : stride]
        want += np.tensordot(w[:, :, u, v], window, axes=(1, 0))  # int64: exact
    return want


def _shift_add_shapes(count: int) -> list[tuple[int, ...]]:
    """Random (C, O, H, W, kh, kw, stride, pad, upsample) on the shift-and-add path."""
    rng = np.random.default_rng(2026)
    shapes: list[tuple[int, ...]] = []
    while len(shapes) < count:
        c, o = int(rng.integers(32, 90)), int(rng.integers(1, 20))
        h, w = (int(v) for v in rng.integers(1, 12, 2))
        kh, kw = (int(v) for v in rng.choice([1, 2, 3, 4, 5, 7], 2))
        stride, pad, up = int(rng.integers(1, 4)), int(rng.integers(0, 4)), int(rng.integers(0, 2))
        if (h << up) + 2 * pad >= kh and (w << up) + 2 * pad >= kw:
            shapes.append((c, o, h, w, kh, kw, stride, pad, up))
    return shapes


@pytest.mark.parametrize(
    "shape", _shift_add_shapes(36), ids=lambda s: "c{}o{}h{}w{}k{}x{}s{}p{}u{}".format(*s)
)
def test_shift_add_phases_are_exact(shape: tuple[int, ...]) -> None:
    """Strides 1-3 (phases), non-square and even kernels, upsample written into the pad."""
    c, o, h, w, kh, kw, stride, pad, up = shape
    rng = np.random.default_rng(list(shape))
    x = rng.integers(-128, 128, (c, h, w))
    wt = rng.integers(-128, 128, (o, c, kh, kw))
    want = tap_sum_oracle(upsample_nearest2(x) if up else x, wt, stride, pad)
    got = conv_accumulate(x, wt, stride=stride, padding=pad, upsample=bool(up))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("c", [256, 700, 2100])
def test_float32_groups_flush_exactly(c: int) -> None:
    """Extreme ±128 terms: sums far past 2^24 split into exact float32 groups (and chunks)."""
    rng = np.random.default_rng(c)
    x = rng.choice([-127, -127, -127, 125], (c, 6, 7))  # odd: float32 rounding would show
    w = rng.choice([-128, 127], (2, c, 3, 3))
    w[1] = -127  # one channel's sums far past 2^24
    weights = ConvWeights(w)
    want = tap_sum_oracle(x, w, 1, 1)
    assert np.abs(want).max() > 1 << 24
    np.testing.assert_array_equal(conv_accumulate(x, weights, padding=1), want)
    # The same prepared weights, now with a smaller input range: still exact.
    np.testing.assert_array_equal(
        conv_accumulate(x // 3, weights, padding=1), tap_sum_oracle(x // 3, w, 1, 1)
    )


def test_sums_beyond_float64_are_refused() -> None:
    x = np.full((1, 3, 3), -(1 << 30))
    with pytest.raises(ValueError, match="reaches 2\\^53"):
        conv_accumulate(x, np.full((1, 1, 3, 3), 1 << 20), padding=1)


@pytest.mark.parametrize(
    ("c", "k", "stride", "pad"), [(40, 3, 1, 1), (1100, 1, 1, 0), (300, 3, 2, 1), (33, 7, 1, 3)]
)
def test_wide_layers_split_exactly(c: int, k: int, stride: int, pad: int) -> None:
    """Wide inputs take the shift-and-add path with float32 chunks: still exact."""
    rng = np.random.default_rng(c)
    x = rng.integers(-128, 128, (c, 9, 8))
    w = rng.integers(-128, 128, (3, c, k, k))
    want = tap_sum_oracle(x, w, stride, pad)
    np.testing.assert_array_equal(conv_accumulate(x, w, stride=stride, padding=pad), want)
