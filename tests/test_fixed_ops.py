"""The integer warp, LUTs and channel softmax of model.fixed_ops: against PyTorch and the spec.

Two kinds of reference: PyTorch in float64 (agreement within the bounds stated in
docs/numerics.md), and small pure-Python integer oracles written from the
spec (bit-exact agreement, including out-of-range coordinates and worst-case widths).
"""

from __future__ import annotations

from fractions import Fraction
from math import floor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from model.fixed_ops import (
    apply_lut,
    bilinear_taps,
    exp_lut,
    grid_sample_fixed,
    grid_sample_fixed_mul,
    make_lut,
    normalized_to_pixels,
    sigmoid_lut,
    softmax_channels_fixed,
    softmax_error_bound,
    softmax_widths,
)

FC = 14  # fraction bits of the normalised coordinates in these tests


# --------------------------------------------------------------------------- helpers


def round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5)


def torch_warp(feats: np.ndarray, cx: np.ndarray, cy: np.ndarray, fc: int = FC) -> np.ndarray:
    """grid_sample in float64 on the same quantised normalised coordinates (unrounded)."""
    grid = torch.from_numpy(np.stack([cx, cy], axis=-1).astype(np.float64) / 2**fc)[None]
    x = torch.from_numpy(feats.astype(np.float64))[None]
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0].numpy()


def random_coords(rng: np.random.Generator, ho: int, wo: int, fc: int = FC) -> np.ndarray:
    """(2, Ho, Wo) quantised normalised coordinates in [-1.3, 1.3], with border specials."""
    c = np.round(rng.uniform(-1.3, 1.3, (2, ho, wo)) * 2**fc).astype(np.int64)
    one = 1 << fc
    specials = np.array([-one, one, -one - 1, one + 1, -one + 1, one - 1, 0, -2 * one, 2 * one])
    flat = c.reshape(2, -1)
    n = min(flat.shape[1], specials.size**2)
    sx, sy = np.meshgrid(specials, specials)
    flat[0, :n], flat[1, :n] = sx.ravel()[:n], sy.ravel()[:n]
    return c


def warp_oracle(feats: np.ndarray, px: int, py: int, f: int) -> list[int]:
    """The spec in Python integers, one output pixel, every tap bounds-checked."""
    _, h, w = feats.shape
    x0, y0 = px >> f, py >> f
    fx, fy = px - (x0 << f), py - (y0 << f)
    one = 1 << f
    taps = [
        (y0, x0, (one - fx) * (one - fy)),
        (y0, x0 + 1, fx * (one - fy)),
        (y0 + 1, x0, (one - fx) * fy),
        (y0 + 1, x0 + 1, fx * fy),
    ]
    accs = []
    for ch in range(feats.shape[0]):
        acc = 0
        for y, x, wt in taps:
            if 0 <= y < h and 0 <= x < w:
                acc += wt * int(feats[ch, y, x])
        accs.append(acc)
    return accs


def rshift_half_up(x: int, s: int) -> int:
    return (x + (1 << (s - 1))) >> s if s > 0 else x


def int_softmax_oracle(xs: list[int], in_scale: float, e_bits: int, r_bits: int, o: int):
    """The softmax spec for one pixel in Python integers; also checks every width."""
    table = [int(v) for v in exp_lut(in_scale, e_bits)]
    m = max(xs)
    e = [table[m - x] for x in xs]
    s = sum(e)
    r_exp = e_bits + r_bits - 1
    r = (2 ** (r_exp + 1) + s) // (2 * s)
    assert r == floor(Fraction(2**r_exp, s) + Fraction(1, 2))
    w = softmax_widths(len(xs), e_bits, r_bits, o)
    assert all(v.bit_length() <= w["e_bits"] for v in e)
    assert s.bit_length() <= w["sum_bits"]
    assert r.bit_length() <= w["recip_bits"]
    assert all((v * r).bit_length() <= w["product_bits"] for v in e)
    return [min(rshift_half_up(v * r, r_exp - o), 255) for v in e]


# --------------------------------------------------------------------------- coordinates


@given(
    st.integers(-(2**20), 2**20),
    st.integers(0, 18),
    st.integers(1, 1024),
    st.integers(0, 20),
)
def test_normalized_to_pixels_is_one_rounding(c: int, fc: int, size: int, fp: int) -> None:
    exact = (Fraction(c, 2**fc) + 1) * (size - 1) / 2 * 2**fp
    assert int(normalized_to_pixels(c, fc, size, fp)) == floor(exact + Fraction(1, 2))


def test_normalized_to_pixels_border_and_size_one() -> None:
    one = 1 << FC
    assert normalized_to_pixels([-one, one], FC, 33, 8).tolist() == [0, 32 << 8]
    # One normalised LSB beyond either end: 32·2^12 / 2^15 = 4 pixel LSBs outside (F = 12).
    assert normalized_to_pixels([-one - 1, one + 1], FC, 33, 12).tolist() == [-4, (32 << 12) + 4]
    # ... and below half a pixel LSB at F = 8 (0.25): rounds back onto the border.
    assert normalized_to_pixels([-one - 1, one + 1], FC, 33, 8).tolist() == [0, 32 << 8]
    assert normalized_to_pixels([-2 * one, 0, 3 * one], FC, 1, 8).tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        normalized_to_pixels([1 << 61], FC, 1 << 20, 30)


def exact_grid_coords(n: int, fc: int = FC) -> np.ndarray:
    """round_half_up(2^fc·(2i/(n-1) - 1)) for i < n: make_coordinate_grid, quantised."""
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    i = np.arange(n, dtype=np.int64)
    return (2 ** (fc + 2) * i + (n - 1)) // (2 * (n - 1)) - (1 << fc)


@pytest.mark.parametrize("n", [1, 2, 5, 16, 33, 64])
def test_quantised_coordinate_grid_lands_on_pixels(n: int) -> None:
    """Integer pixel positions survive quantisation when (n - 1) < 2^(Fc - F)."""
    f = 8
    assert normalized_to_pixels(exact_grid_coords(n), FC, n, f).tolist() == [
        i << f for i in range(n)
    ]


# --------------------------------------------------------------------------- warp vs torch

SHAPES = [
    # (C, H, W, Ho, Wo)
    (1, 1, 1, 3, 4),
    (3, 1, 16, 5, 7),
    (16, 2, 5, 9, 9),
    (64, 5, 2, 6, 11),
    (1, 16, 33, 16, 33),
    (3, 33, 16, 12, 10),
    (16, 33, 33, 17, 19),
    (64, 16, 16, 16, 16),
]


@pytest.mark.parametrize("f", [8, 12])
def test_grid_sample_matches_torch(f: int) -> None:
    rng = np.random.default_rng(1234 + f)
    exact = total = 0
    worst = 0
    for c, h, w, ho, wo in SHAPES:
        feats = rng.integers(-128, 128, (c, h, w)).astype(np.int8)
        cx, cy = random_coords(rng, ho, wo)
        px, py = normalized_to_pixels(cx, FC, w, f), normalized_to_pixels(cy, FC, h, f)
        out = grid_sample_fixed(feats, px, py, f)
        assert out.dtype == np.int8 and out.shape == (c, ho, wo)
        ref = np.clip(round_half_up(torch_warp(feats, cx, cy)), -128, 127)
        diff = np.abs(out.astype(np.int64) - ref)
        worst = max(worst, int(diff.max()))
        exact += int((diff == 0).sum())
        total += diff.size
    print(f"\ngrid_sample F={f}: exact {exact / total:.4%} of {total}, max |diff| {worst}")
    assert worst <= 1


@pytest.mark.parametrize("f", [8, 12])
def test_fused_occlusion_matches_torch(f: int) -> None:
    rng = np.random.default_rng(99 + f)
    exact = total = 0
    worst = 0
    for c, h, w, ho, wo in SHAPES:
        feats = rng.integers(-128, 128, (c, h, w)).astype(np.int8)
        cx, cy = random_coords(rng, ho, wo)
        occ = rng.integers(0, 256, (ho, wo)).astype(np.uint8)
        occ.flat[:2] = [0, 255]
        px, py = normalized_to_pixels(cx, FC, w, f), normalized_to_pixels(cy, FC, h, f)
        out = grid_sample_fixed_mul(feats, px, py, f, occ, 8)
        ref = torch_warp(feats, cx, cy) * (occ.astype(np.float64) / 256)
        diff = np.abs(out.astype(np.int64) - np.clip(round_half_up(ref), -128, 127))
        worst = max(worst, int(diff.max()))
        exact += int((diff == 0).sum())
        total += diff.size
    print(f"\ngrid_sample×occlusion F={f}: exact {exact / total:.4%}, max |diff| {worst}")
    assert worst <= 1


@pytest.mark.parametrize(("h", "w"), [(1, 1), (2, 5), (16, 33), (33, 16)])
def test_quantised_identity_grid_is_exact(h: int, w: int) -> None:
    """make_coordinate_grid, quantised to Fc = 14 and converted: the warp returns its input."""
    rng = np.random.default_rng(7)
    feats = rng.integers(-128, 128, (5, h, w)).astype(np.int8)
    cx, cy = np.meshgrid(exact_grid_coords(w), exact_grid_coords(h))
    px, py = normalized_to_pixels(cx, FC, w, 8), normalized_to_pixels(cy, FC, h, 8)
    np.testing.assert_array_equal(grid_sample_fixed(feats, px, py, 8), feats)
    # Arbitrary integer pixel positions (a permutation) read exactly that pixel.
    yi, xi = rng.integers(0, h, (7, 3)), rng.integers(0, w, (7, 3))
    px, py = (
        normalized_to_pixels(exact_grid_coords(w)[xi], FC, w, 8),
        normalized_to_pixels(exact_grid_coords(h)[yi], FC, h, 8),
    )
    np.testing.assert_array_equal(grid_sample_fixed(feats, px, py, 8), feats[:, yi, xi])
    # Torch, on the same quantised coordinates (off-grid by < 2^-15), rounds to the same.
    ref = torch_warp(feats, exact_grid_coords(w)[xi], exact_grid_coords(h)[yi])
    np.testing.assert_array_equal(round_half_up(ref), feats[:, yi, xi])


# --------------------------------------------------------------------------- warp properties

coord = st.integers(-(2**40), 2**40)


@given(coord, coord, st.integers(1, 15))
def test_weights_sum_to_one(px: int, py: int, f: int) -> None:
    x0, y0, *weights = (int(v) for v in bilinear_taps(px, py, f))
    assert all(0 <= wt <= 1 << (2 * f) for wt in weights)
    assert sum(weights) == 1 << (2 * f)
    assert x0 == px >> f and y0 == py >> f


small_image = st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6))


@given(small_image, st.integers(1, 15), st.integers(0, 2**32 - 1))
def test_warp_matches_integer_oracle(shape, f: int, seed: int) -> None:
    """Vectorised warp = the per-tap spec, for coordinates anywhere (far outside too)."""
    c, h, w = shape
    rng = np.random.default_rng(seed)
    feats = rng.choice(np.array([-128, 127, -1, 0, 1, 5, -77]), (c, h, w)).astype(np.int8)
    one = 1 << f
    px = rng.integers(-3 * one, (w + 2) * one, (3, 4))
    py = rng.integers(-3 * one, (h + 2) * one, (3, 4))
    px[0, 0], py[0, 0] = -(2**50), 2**50  # far outside
    px[0, 1], py[0, 1] = w * one - 1, h * one - 1  # last sliver of the last pixel
    occ = rng.integers(0, 256, (3, 4))
    fo = int(rng.integers(0, 9))
    out = grid_sample_fixed(feats, px, py, f)
    out_mul = grid_sample_fixed_mul(feats, px, py, f, occ, fo)
    for i in range(3):
        for j in range(4):
            accs = warp_oracle(feats, int(px[i, j]), int(py[i, j]), f)
            for ch, acc in enumerate(accs):
                assert out[ch, i, j] == min(max(rshift_half_up(acc, 2 * f), -128), 127)
                prod = acc * int(occ[i, j])
                want = min(max(rshift_half_up(prod, 2 * f + fo), -128), 127)
                assert out_mul[ch, i, j] == want


@given(small_image, st.integers(-128, 127), st.integers(1, 15), st.integers(0, 2**32 - 1))
def test_constant_image_stays_constant_inside(shape, k: int, f: int, seed: int) -> None:
    c, h, w = shape
    rng = np.random.default_rng(seed)
    feats = np.full((c, h, w), k, dtype=np.int8)
    px = rng.integers(0, (w - 1 << f) + 1, (4, 5))
    py = rng.integers(0, (h - 1 << f) + 1, (4, 5))
    assert (grid_sample_fixed(feats, px, py, f) == k).all()


@given(small_image, st.integers(1, 15), st.integers(0, 2**32 - 1))
def test_identity_grid_returns_input(shape, f: int, seed: int) -> None:
    c, h, w = shape
    feats = np.random.default_rng(seed).integers(-128, 128, (c, h, w)).astype(np.int8)
    py, px = np.meshgrid(np.arange(h) << f, np.arange(w) << f, indexing="ij")
    np.testing.assert_array_equal(grid_sample_fixed(feats, px, py, f), feats)
    ones = np.full((h, w), 1)
    np.testing.assert_array_equal(grid_sample_fixed_mul(feats, px, py, f, ones, 0), feats)


@given(small_image, st.integers(1, 15), st.integers(0, 2**32 - 1))
def test_monotone_and_saturation_at_extremes(shape, f: int, seed: int) -> None:
    c, h, w = shape
    rng = np.random.default_rng(seed)
    a = rng.choice(np.array([-128, -127, 0, 126, 127]), (c, h, w))
    b = np.minimum(a + rng.integers(0, 256, (c, h, w)), 127)
    one = 1 << f
    px = rng.integers(-2 * one, (w + 1) * one, (3, 5))
    py = rng.integers(-2 * one, (h + 1) * one, (3, 5))
    occ = rng.integers(0, 256, (3, 5))
    assert (grid_sample_fixed(a, px, py, f) <= grid_sample_fixed(b, px, py, f)).all()
    fused_a = grid_sample_fixed_mul(a, px, py, f, occ)
    assert (fused_a <= grid_sample_fixed_mul(b, px, py, f, occ)).all()
    hi = grid_sample_fixed(np.full((c, h, w), 127), px, py, f)
    lo = grid_sample_fixed(np.full((c, h, w), -128), px, py, f)
    assert ((hi >= 0) & (hi <= 127) & (lo >= -128) & (lo <= 0)).all()
    inside = (px >= 0) & (px <= (w - 1) * one) & (py >= 0) & (py <= (h - 1) * one)
    assert (hi[:, inside] == 127).all() and (lo[:, inside] == -128).all()
    outside = (px <= -one) | (px >= w * one) | (py <= -one) | (py >= h * one)
    assert (hi[:, outside] == 0).all() and (lo[:, outside] == 0).all()


def test_warp_rejects_bad_inputs() -> None:
    feats = np.zeros((1, 2, 2), dtype=np.int64)
    px = np.zeros((1, 1), dtype=np.int64)
    with pytest.raises(ValueError):
        grid_sample_fixed(feats + 128, px, px, 8)
    with pytest.raises(ValueError):
        grid_sample_fixed(feats, px, px, 16)
    with pytest.raises(ValueError):
        grid_sample_fixed_mul(feats, px, px, 8, px + 256)


# --------------------------------------------------------------------------- LUTs


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-v))


@pytest.mark.parametrize("in_scale", [1 / 16, 0.05, 0.2, 1.0])
def test_sigmoid_lut_within_half_lsb(in_scale: float) -> None:
    lut = sigmoid_lut(in_scale)
    q = np.arange(-128, 128)
    want = sigmoid(q * in_scale) * 256
    assert lut.shape == (256,) and lut.min() >= 0 and lut.max() <= 255
    assert (np.diff(lut) >= 0).all()
    free = want < 255.5
    assert (np.abs(lut[free] - want[free]) <= 0.5).all()
    assert (lut[~free] == 255).all()
    assert lut[128] == 128  # sigmoid(0) = 1/2


def test_make_lut_signed_and_rounding() -> None:
    lut = make_lut(np.tanh, 1 / 32, 1 / 127)
    want = np.tanh(np.arange(-128, 128) / 32) * 127
    assert (np.abs(lut - want) <= 0.5).all() and lut.min() >= -128 and lut.max() <= 127
    ident = make_lut(lambda v: v, 0.25, 0.25)
    assert ident.tolist() == list(range(-128, 128))
    # Round half up of the float64 value itself, exactly.
    for value, want_q in [(0.49999999999999994, 0), (0.5, 1), (-0.5, 0), (-1.5, -1), (2.5, 3)]:
        assert (make_lut(lambda v, y=value: np.full_like(v, y), 1, 1) == want_q).all()
    sat = make_lut(lambda v: v, 1, 1 / 4, out_bits=8, signed_out=False)
    assert sat[0] == 0 and sat[255] == 255 and sat[128 + 10] == 40


def test_apply_lut_indexes_extremes() -> None:
    lut = np.arange(256) * 3 - 7
    x = np.array([[-128, 127], [0, -1]])
    assert apply_lut(x, lut).tolist() == [[lut[0], lut[255]], [lut[128], lut[127]]]
    with pytest.raises(ValueError):
        apply_lut([128], lut)
    with pytest.raises(ValueError):
        apply_lut([0], lut[:255])


def test_exp_lut() -> None:
    table = exp_lut(0.05, 15)
    assert table[0] == 1 << 15 and (np.diff(table) <= 0).all() and table.min() >= 0
    want = np.exp(-np.arange(256) * 0.05) * 2**15
    assert (np.abs(table - want) <= 0.5).all()


# --------------------------------------------------------------------------- softmax


def sum_bound(c: int, recip_bits: int = 16, o: int = 8) -> tuple[int, int]:
    """Channel sum range of docs/numerics.md: 2^O ± C·(1/2 + 2^(O-recip_bits)), -1 if C = 1."""
    slack = c * (0.5 + 2.0 ** (o - recip_bits))
    return 256 - floor(slack) - 1, 256 + floor(slack)


@pytest.mark.parametrize("c", [1, 2, 11, 64])
@pytest.mark.parametrize("in_scale", [0.01, 0.05, 0.25])
def test_softmax_matches_torch(c: int, in_scale: float) -> None:
    rng = np.random.default_rng(c * 1000 + int(in_scale * 100))
    x = rng.integers(-128, 128, (c, 24, 24))
    x[:, 0, 0] = 127
    x[:, 0, 1] = -128
    x[0, 0, 2], x[1:, 0, 2] = 127, -128  # one channel takes everything
    out = softmax_channels_fixed(x, in_scale)
    assert out.dtype == np.uint8 and out.shape == x.shape
    p = torch.softmax(torch.from_numpy(x * in_scale), dim=0).numpy() * 256
    delta = softmax_error_bound(c)
    err = np.abs(out - np.minimum(p, 255))
    assert err.max() <= 0.5 + delta
    assert np.abs(out - np.minimum(round_half_up(p), 255)).max() <= 1
    sums = out.astype(np.int64).sum(axis=0)
    lo, hi = sum_bound(c)
    print(
        f"\nsoftmax C={c} s={in_scale}: max |out - 256p| {err.max():.4f} (bound {0.5 + delta:.4f}),"
        f" sums {sums.min()}..{sums.max()} (bound {lo}..{hi})"
    )
    assert lo <= sums.min() and sums.max() <= hi


@given(
    st.integers(1, 12),
    st.floats(0.002, 2.0),
    st.integers(8, 16),
    st.integers(8, 18),
    st.integers(0, 2**32 - 1),
)
def test_softmax_matches_integer_oracle(c: int, s: float, e_bits: int, r_bits: int, seed: int):
    x = np.random.default_rng(seed).integers(-128, 128, (c, 2, 3))
    out = softmax_channels_fixed(x, s, e_bits, r_bits, 8)
    for i in range(2):
        for j in range(3):
            want = int_softmax_oracle(x[:, i, j].tolist(), s, e_bits, r_bits, 8)
            assert out[:, i, j].tolist() == want


def test_softmax_ties_and_all_equal() -> None:
    for c, each in [(1, 255), (2, 128), (3, 85), (4, 64), (11, 23)]:
        out = softmax_channels_fixed(np.full((c, 2, 2), -7), 0.1)
        assert (out == each).all()
    x = np.full((5, 1, 1), -128)
    x[1], x[3] = 127, 127  # two channels tie at the max, the rest vanish (exp(-255·0.2))
    assert softmax_channels_fixed(x, 0.2)[:, 0, 0].tolist() == [0, 128, 0, 128, 0]


def test_softmax_worst_case_widths() -> None:
    """2^10 identical channels: S = 2^25, r = 32, every output 1/1024 → 0; no overflow."""
    c = 1 << 10
    x = np.full((c, 1, 2), 100)
    x[5, 0, 1] = 127
    out = softmax_channels_fixed(x, 0.05)
    assert (out[:, 0, 0] == 0).all()
    assert out[:, 0, 1].tolist() == int_softmax_oracle(x[:, 0, 1].tolist(), 0.05, 15, 16, 8)
    w = softmax_widths(1 << 16)
    assert w == {
        "R": 30,
        "shift": 22,
        "e_bits": 16,
        "sum_bits": 32,
        "recip_bits": 16,
        "product_bits": 31,
    }
    # The largest sum the 32-bit adder sees: 2^16 channels, all at the max.
    assert int_softmax_oracle([0] * (1 << 16), 0.05, 15, 16, 8) == [0] * (1 << 16)
