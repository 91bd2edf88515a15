"""Property tests of the integer rules in model.fixed, against exact rational arithmetic."""

from __future__ import annotations

import itertools
from fractions import Fraction
from math import floor

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from defs.limits import MAX_PRODUCT_BITS
from defs.params import NumericParams, ParamsError, preset
from model.fixed import int_range, requantize, round_float, round_shift, saturate

NUMERIC = preset("tiny").numeric
ACC_LO, ACC_HI = int_range(NUMERIC.acc_bits)


def oracle(acc: int, bias: int, mult: int, shift: int, relu: int, n: NumericParams) -> int:
    """The spec of docs/numerics.md in rationals: round half up, saturate, ReLU."""
    value = Fraction((acc + bias) * mult, 2**shift)
    rounded = floor(value + Fraction(1, 2))
    lo, hi = int_range(n.act_bits)
    y = min(max(rounded, lo), hi)
    return max(y, 0) if relu else y


@given(st.floats(-(2.0**62), 2.0**62) | st.sampled_from([0.5 - 2**-54, 2.0**52 + 1, -2.5]))
def test_round_float_is_round_half_up_of_the_float(x: float) -> None:
    """The exact rational rule, where floor(x + 0.5) is not (0.5 - 2^-54, 2^52 + 1)."""
    assert int(round_float(x)) == floor(Fraction(x) + Fraction(1, 2))


def test_round_float_clamps_first_and_refuses_what_int64_cannot_hold() -> None:
    assert round_float([-np.inf, 3.5, np.inf], -8, 7).tolist() == [-8, 4, 7]
    with pytest.raises(ValueError, match="NaN"):
        round_float([1.0, np.nan])
    with pytest.raises(ValueError, match="beyond int64"):
        round_float(2.0**63)


@given(st.integers(-(2**61), 2**61), st.integers(0, 62))
def test_round_shift_is_round_half_up(x: int, shift: int) -> None:
    assert int(round_shift(x, shift)) == floor(Fraction(x, 2**shift) + Fraction(1, 2))


@given(st.integers(-(2**61), 2**61), st.integers(0, 48))
def test_hardware_rounding_identity(x: int, shift: int) -> None:
    """rtl/requant.py rounds as ((2x >> s) + 1) >> 1: the same function."""
    assert ((2 * x >> shift) + 1) >> 1 == int(round_shift(x, shift))


@given(st.integers(-(2**61), 2**61), st.integers(0, 48), st.booleans(), st.integers(2, 16))
def test_hardware_clamp_identity(x: int, shift: int, relu: bool, bits: int) -> None:
    """Clamping t = 2x >> s to [2·lo or -1, 2·hi] before halving = saturate(round_shift)."""
    lo, hi = int_range(bits)
    t = min(max(2 * x >> shift, -1 if relu else 2 * lo), 2 * hi)
    want = int(saturate(round_shift(x, shift), bits))
    assert (t + 1) >> 1 == (max(want, 0) if relu else want)


@given(st.integers(-(2**62), 2**62), st.integers(2, 32))
def test_saturate(x: int, bits: int) -> None:
    lo, hi = int_range(bits)
    assert int(saturate(x, bits)) == min(max(x, lo), hi)


@given(
    st.integers(ACC_LO, ACC_HI),
    st.integers(ACC_LO, ACC_HI),
    st.integers(0, NUMERIC.mult_max),
    st.integers(0, NUMERIC.max_shift),
    st.integers(0, 1),
)
def test_requantize_matches_oracle(acc: int, bias: int, mult: int, shift: int, relu: int) -> None:
    got = requantize(acc, bias, mult, shift, relu, NUMERIC)
    assert int(got) == oracle(acc, bias, mult, shift, relu, NUMERIC)


@given(st.data())
def test_requantize_other_widths(data: st.DataObject) -> None:
    acc_bits = data.draw(st.integers(8, 40))
    bias_bits = data.draw(st.integers(8, 40))
    mult_bits = data.draw(st.integers(1, 20))
    product_bits = max(acc_bits, bias_bits) + 1 + mult_bits
    n = NumericParams(
        act_bits=data.draw(st.integers(2, 16)),
        acc_bits=acc_bits,
        bias_bits=bias_bits,
        mult_bits=mult_bits,
        max_shift=data.draw(st.integers(1, product_bits - 1)),
    )
    acc = data.draw(st.integers(*int_range(n.acc_bits)))
    bias = data.draw(st.integers(*int_range(n.bias_bits)))
    mult = data.draw(st.integers(0, n.mult_max))
    shift = data.draw(st.integers(0, n.max_shift))
    relu = data.draw(st.integers(0, 1))
    assert int(requantize(acc, bias, mult, shift, relu, n)) == oracle(
        acc, bias, mult, shift, relu, n
    )


@pytest.mark.parametrize("mult_bits", [14, 16, 32])  # acc_bits 48 … 30
def test_requantize_is_exact_at_the_widest_product(mult_bits: int) -> None:
    """At MAX_PRODUCT_BITS the largest products, with the largest rounding constants,
    still match the rational oracle (a wider limit would let int64 wrap here); one
    bit more is refused."""
    sum_bits = MAX_PRODUCT_BITS - mult_bits
    n = NumericParams(
        acc_bits=sum_bits - 1, bias_bits=sum_bits - 1, mult_bits=mult_bits,
        max_shift=MAX_PRODUCT_BITS - 1,
    )  # fmt: skip
    assert n.product_bits == MAX_PRODUCT_BITS
    lo, hi = int_range(n.acc_bits)
    for acc, shift in itertools.product((lo, hi), (0, 1, n.max_shift - 1, n.max_shift)):
        for mult in (n.mult_max, 1):
            got = int(requantize(acc, acc, mult, shift, 0, n))
            assert got == oracle(acc, acc, mult, shift, 0, n), (acc, mult, shift)
    # the limit is tight: the largest positive product plus the largest rounding
    # constant stays in int64 at MAX_PRODUCT_BITS, and not one bit wider
    worst = {b: (1 << (b - 1)) - 1 + (1 << (b - 2)) for b in (n.product_bits, n.product_bits + 1)}
    assert worst[MAX_PRODUCT_BITS] <= np.iinfo(np.int64).max < worst[MAX_PRODUCT_BITS + 1]
    wider = MAX_PRODUCT_BITS - 16  # sum_bits one above the limit with 16-bit multipliers
    with pytest.raises(ParamsError, match=f"must be at most {MAX_PRODUCT_BITS}"):
        NumericParams(acc_bits=wider, bias_bits=wider, mult_bits=16)


def test_requantize_extremes() -> None:
    """The corners in closed form: ±2^31 sums saturate; shift 0 passes the product through."""
    n = NUMERIC
    big = n.mult_max
    assert requantize(ACC_HI, ACC_HI, big, n.max_shift, 0, n) == 2  # ≈ 2^48 / 2^47
    assert requantize(ACC_LO, ACC_LO, big, n.max_shift, 0, n) == -2
    assert requantize(ACC_HI, ACC_HI, big, 0, 0, n) == 127
    assert requantize(ACC_LO, ACC_LO, big, 0, 0, n) == -128
    assert requantize(ACC_LO, ACC_LO, big, 0, 1, n) == 0
    assert requantize(5, 0, 1, 0, 0, n) == 5
    assert requantize(3, 0, 1, 1, 0, n) == 2  # 1.5 rounds up
    assert requantize(-3, 0, 1, 1, 0, n) == -1  # -1.5 rounds up (towards +inf)
    assert requantize(-5, 0, 1, 1, 0, n) == -2  # -2.5 → -2


def test_requantize_broadcasts_per_channel() -> None:
    acc = np.arange(-8, 8).reshape(4, 4) * 1000
    mult = np.array([1, 2, 3, 4])[:, None]
    shift = np.array([4, 5, 6, 7])[:, None]
    got = requantize(acc, 0, mult, shift, 0, NUMERIC)
    want = [
        [oracle(int(a), 0, int(m), int(s), 0, NUMERIC) for a in row]
        for row, m, s in zip(acc, mult[:, 0], shift[:, 0], strict=True)
    ]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"acc": 2**31}, "acc out of range"),
        ({"bias": -(2**31) - 1}, "bias out of range"),
        ({"multiplier": -1}, "multiplier out of range"),
        ({"multiplier": 2**16}, "multiplier out of range"),
        ({"shift": 48}, "shift out of range 0..47"),
        ({"relu": 2}, "relu out of range"),
        ({"acc": 1.5}, "acc must be integers"),
    ],
)
def test_requantize_refuses_what_hardware_would_wrap(kwargs: dict, message: str) -> None:
    args = {"acc": 0, "bias": 0, "multiplier": 1, "shift": 0, "relu": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        requantize(**args, numeric=NUMERIC)
