"""Tier 2: the elaborated Verilog of the requantize unit under cocotb, Icarus and Verilator."""

from __future__ import annotations

import numpy as np
import pytest

from defs.params import NumericParams, preset
from rtl.requant import Requantizer
from sim.requant import concat, extreme_vectors, random_vectors, simulate_requant

SIMULATORS = ["icarus", "verilator"]


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_ten_thousand_vectors_with_back_pressure(simulator: str, build_root) -> None:
    params = preset("tiny")
    vectors = concat(extreme_vectors(params.numeric), random_vectors(params.numeric, 10_000, 11))
    result = simulate_requant(
        params,
        vectors,
        simulator=simulator,
        build_root=build_root,
        valid_prob=0.7,
        ready_prob=0.6,
        seed=11,
    )
    result.run.result.check()
    assert len(result.expected) >= 10_000 + 400
    np.testing.assert_array_equal(result.run.outputs, result.expected)


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_full_rate_cycles(simulator: str, build_root) -> None:
    params = preset("tiny")
    vectors = random_vectors(params.numeric, 2000, 5)
    result = simulate_requant(params, vectors, simulator=simulator, build_root=build_root, seed=5)
    result.run.result.check()
    np.testing.assert_array_equal(result.run.outputs, result.expected)
    assert result.run.cycles == 2000 + Requantizer.LATENCY


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_other_widths(simulator: str, build_root) -> None:
    params = preset("tiny").replace(
        numeric=NumericParams(act_bits=4, acc_bits=20, bias_bits=24, mult_bits=8, max_shift=20)
    )
    vectors = concat(extreme_vectors(params.numeric), random_vectors(params.numeric, 2000, 3))
    result = simulate_requant(
        params,
        vectors,
        simulator=simulator,
        build_root=build_root,
        valid_prob=0.5,
        ready_prob=0.8,
        seed=3,
    )
    result.run.result.check()
    np.testing.assert_array_equal(result.run.outputs, result.expected)


def test_a_mismatch_fails_the_cocotb_test(build_root) -> None:
    """The bench itself reports mismatches through the results XML, not only pytest."""
    from rtl.blocks import to_verilog, toplevel_name
    from sim.requant import pack, requant_input_layout
    from sim.runner import SimulationFailed
    from sim.stream_function import run_stream_function

    params = preset("tiny")
    vectors = random_vectors(params.numeric, 50, 1)
    wrong = simulate_requant(params, vectors, simulator="icarus", build_root=build_root).expected
    wrong = wrong.copy()
    wrong[17] += 1
    run = run_stream_function(
        verilog=to_verilog("requant", params),
        toplevel=toplevel_name("requant"),
        words=pack(requant_input_layout(params.numeric), vectors),
        expected=wrong,
        simulator="icarus",
        build_dir=build_root / "sim" / "requant-wrong-expectation",
    )
    assert run.result.failed == 1
    with pytest.raises(SimulationFailed, match="1 of 1 cocotb test"):
        run.result.check()
