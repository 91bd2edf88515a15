"""Tier 1: the requantize unit in Amaranth's simulator, bit-exact with model.fixed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from defs.params import NumericParams, preset
from rtl.requant import SLICE_BITS, Requantizer, requant_input_layout
from sim.amaranth_stream import run_stream_component
from sim.netlist import cells_of, synthesize
from sim.requant import concat, expected, extreme_vectors, random_vectors
from sim.stream_function import pack

# Widths other than the default exercise every generated width in the pipeline:
# one multiplier slice (short sums), three slices (wide sums), tiny activations.
NUMERICS = {
    "default": preset("tiny").numeric,
    "narrow": NumericParams(act_bits=4, acc_bits=20, bias_bits=24, mult_bits=8, max_shift=20),
    "wide": NumericParams(act_bits=12, acc_bits=40, bias_bits=36, mult_bits=12, max_shift=52),
    "one-slice": NumericParams(act_bits=8, acc_bits=12, bias_bits=12, mult_bits=16, max_shift=28),
}


@pytest.mark.parametrize("name", list(NUMERICS))
@pytest.mark.parametrize(
    ("valid_prob", "ready_prob", "seed"), [(1.0, 1.0, 1), (0.5, 0.5, 2), (0.9, 0.3, 3)]
)
def test_bit_exact_under_back_pressure(
    name: str, valid_prob: float, ready_prob: float, seed: int
) -> None:
    numeric = NUMERICS[name]
    vectors = concat(extreme_vectors(numeric), random_vectors(numeric, 1500, seed))
    words = pack(requant_input_layout(numeric), vectors)
    outputs, _ = run_stream_component(
        Requantizer(numeric), words, valid_prob=valid_prob, ready_prob=ready_prob, seed=seed
    )
    np.testing.assert_array_equal(outputs, expected(vectors, numeric))


def test_full_rate_cycle_count() -> None:
    """One result per cycle after the pipeline fills: N inputs take N + LATENCY edges."""
    numeric = NUMERICS["default"]
    vectors = random_vectors(numeric, 500, 7)
    outputs, edges = run_stream_component(
        Requantizer(numeric), pack(requant_input_layout(numeric), vectors)
    )
    assert len(outputs) == 500
    assert edges == 500 + Requantizer.LATENCY


def test_stimulus_reaches_interesting_outputs() -> None:
    """The random vectors are not all saturated: rounding is really exercised."""
    numeric = NUMERICS["default"]
    want = expected(random_vectors(numeric, 10_000, 0), numeric)
    interior = (want > -128) & (want < 127) & (want != 0)
    assert interior.mean() > 0.2
    assert len(np.unique(want)) >= 240  # nearly every int8 value occurs


def test_stimulus_distinguishes_rounding_rules() -> None:
    """Ties are planted: a unit rounding half away from zero or half to even would fail."""
    numeric = NUMERICS["default"]
    v = random_vectors(numeric, 10_000, 0)
    product = (v["acc"] + v["bias"]) * v["multiplier"]
    shift = v["shift"]
    floor_q = product >> shift
    remainder = product - (floor_q << shift)
    half = np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 0)
    above = (shift > 0) & (remainder > half)
    tie = (shift > 0) & (remainder == half)
    away = floor_q + (above | (tie & (product >= 0)))
    even = floor_q + (above | (tie & (floor_q & 1 == 1)))
    assert np.count_nonzero(tie) > 500
    want = expected(v, numeric)
    lo, hi = -128, 127
    for other in (away, even):
        other = np.clip(other, lo, hi)
        other = np.where(v["relu"] == 1, np.maximum(other, 0), other)
        assert np.count_nonzero(other != want) > 50


@pytest.mark.parametrize("name", list(NUMERICS))
@pytest.mark.parametrize("target", ["twin", "ice40"])
def test_free_running_is_bit_exact_with_gaps(name: str, target: str) -> None:
    """The conv engine's variant: products on Multiplier (twin) or inferred (iCE40 form)."""
    numeric = NUMERICS[name]
    vectors = concat(extreme_vectors(numeric), random_vectors(numeric, 1000, 4))
    words = pack(requant_input_layout(numeric), vectors)
    dut = Requantizer(numeric, free_running=True, dsp_target=target)
    outputs, _ = run_stream_component(dut, words, valid_prob=0.7, seed=5)
    np.testing.assert_array_equal(outputs, expected(vectors, numeric))


@pytest.mark.parametrize("target", ["twin", "ice40"])
def test_free_running_cycle_count(target: str) -> None:
    """Every target has the same latency (iCE40: shorter products, one more edge at the end)."""
    numeric = NUMERICS["default"]
    vectors = random_vectors(numeric, 500, 7)
    dut = Requantizer(numeric, free_running=True, dsp_target=target)
    assert dut.latency == Requantizer.FREE_RUNNING_LATENCY == Requantizer.LATENCY + 2
    outputs, edges = run_stream_component(dut, pack(requant_input_layout(numeric), vectors))
    assert len(outputs) == 500
    assert edges == 500 + dut.latency


def test_free_running_products_are_registered_dsps_on_ecp5(build_root: Path) -> None:
    """One MULT18X18D per slice of the sum, its input and output registers in use."""
    numeric = NUMERICS["default"]
    dut = Requantizer(numeric, free_running=True, dsp_target="ecp5")
    top, _ = synthesize(dut, "ecp5", build_root / "requant" / "free_running_ecp5")
    dsps = cells_of(top, "MULT18X18D")
    # one per 16-bit slice of the 33-bit sum; its 1-bit top slice stays in logic
    assert numeric.sum_bits == 2 * SLICE_BITS + 1
    assert len(dsps) == 2
    for dsp in dsps:
        for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
            assert dsp["parameters"][reg] == "CLK0", reg
