"""Input-channel splitting on the conv engine: a layer as passes over chunks of its
input channel groups, int32 partial sums carried between them on chip.

Every pass is a tile command with `partial_in` (add the partial sums the last
`partial_out` tile left) and `partial_out` (keep this tile's sums);
`sim.conv.split_programs` lays the passes out, and the last pass's results must
be L2's `conv2d_int` of the whole layer (docs/conv_engine.md). Tier 1 under
back-pressure and on the iCE40 form, tier 2 on Icarus and Verilator, and the
cycle model of back-to-back passes (`sequence_cycles`) against both.
"""

from __future__ import annotations

import numpy as np
import pytest

from defs.params import ArrayParams, BufferParams, GraceParams, ParamsError, preset
from rtl.conv.output import ConvOutputUnit
from rtl.conv_cycles import sequence_cycles, tile_cycles
from sim.conv import (
    ConvCase,
    ConvProgram,
    ConvProgramError,
    program,
    random_case,
    simulate_amaranth,
    simulate_cocotb,
    split_case,
    split_programs,
)

#: The conv engine tests' array (4 output lanes, 3 input lanes): the same Verilog build.
PARAMS = GraceParams(name="conv-test", array=ArrayParams(rows=4, cols=3))

#: (case settings, chunks of input groups, the pass taking the residual)
SPLITS = {
    # 2 passes, residual in the last, ReLU; 6 outputs: the last group has 2 lanes
    "two-residual": (
        {"channels": 7, "out_channels": 6, "size": (5, 4), "kernel": 3, "residual": True,
         "relu": True},
        [2, 1], -1,
    ),
    # 3 passes with pooling on an odd-sized output (its last row and column dropped)
    "three-pool": (
        {"channels": 8, "out_channels": 5, "size": (5, 7), "kernel": 3, "pool": True},
        [1, 1, 1], -1,
    ),
    # 4 passes, the last group of input channels short (11 = 3 + 3 + 3 + 2), a
    # residual with pooling, nearest ×2 upsampling on read
    "four-residual-pool": (
        {"channels": 11, "out_channels": 7, "size": (3, 3), "kernel": 3, "upsample": True,
         "pool": True, "residual": True, "relu": True},
        [1, 1, 1, 1], -1,
    ),
    # a 7 × 7 head (3 outputs: one group of 3 lanes) at stride 2, the residual
    # taken by the first pass
    "head-stride2": (
        {"channels": 6, "out_channels": 3, "size": (7, 6), "kernel": 7, "padding": 3,
         "stride": 2, "residual": True},
        [1, 1], 0,
    ),
}  # fmt: skip


def _split(name: str, params: GraceParams = PARAMS, seed: int = 0) -> tuple[ConvCase, list]:
    settings, chunks, residual_pass = SPLITS[name]
    case = random_case(np.random.default_rng(seed), params, **settings)
    progs = split_programs(case, params, chunks, residual_pass=residual_pass)
    return case, progs


def _passes(case: ConvCase, progs: list[ConvProgram], params: GraceParams) -> list[tuple]:
    """(shape, partial_out) of each pass, as `sequence_cycles` takes them."""
    chunks = [p.command_fields["in_groups"] for p in progs]
    parts = split_case(case, chunks, params.array.cols)
    return [
        (part.shape, bool(p.command_fields["partial_out"]))
        for part, p in zip(parts, progs, strict=True)
    ]


def _stream(progs: list[ConvProgram]) -> np.ndarray:
    return np.concatenate([p.expected for p in progs])


@pytest.mark.parametrize("name", list(SPLITS))
def test_split_layer_matches_l2_under_back_pressure(name: str) -> None:
    """Every pass runs; the last one's results are L2's conv of the whole layer."""
    case, progs = _split(name)
    flags = [(p.command_fields["partial_in"], p.command_fields["partial_out"]) for p in progs]
    assert flags == [(0, 1)] + [(1, 1)] * (len(progs) - 2) + [(1, 0)]
    np.testing.assert_array_equal(progs[-1].expected, program(case, PARAMS).expected)
    run = simulate_amaranth(progs, PARAMS, ready_prob=0.6, residual_prob=0.7, seed=len(progs))
    np.testing.assert_array_equal(run.outputs, _stream(progs))
    assert run.tokens == [p.command_fields["tag"] for p in progs]


@pytest.mark.parametrize("name", ["two-residual", "four-residual-pool"])
def test_cycle_model_of_the_passes_is_exact(name: str) -> None:
    """Back to back without back-pressure: `sequence_cycles`; each pass alone: `tile_cycles`."""
    case, progs = _split(name)
    passes = _passes(case, progs, PARAMS)
    assert simulate_amaranth(progs, PARAMS).cycles == sequence_cycles(PARAMS, passes)
    alone = simulate_amaranth(progs[1:2], PARAMS).cycles  # a partial_in, partial_out pass
    assert alone == tile_cycles(PARAMS, passes[1][0]).cycles


def _ends(prog: ConvProgram, params: GraceParams) -> tuple[int, int, int]:
    """Where the program's input, weight and parameter words end in the buffers."""
    f = prog.command_fields
    return (
        f["in_base"] + len(prog.input_writes),
        f["weight_base"] + len(prog.weight_writes) // params.array.rows,
        f["param_base"] + len(prog.param_writes),
    )


def _short_splits(count: int) -> tuple[list[ConvProgram], list[tuple]]:
    """Layers split into 3 passes of 1 to 6 output elements each, every pass's data
    resident at once: the passes, and (shape, partial_out) of each. Passes
    shorter than the partial sums' write latency would read a partial sum before
    its write, but for the output unit's hold after each partial_out pass."""
    rng = np.random.default_rng(9)
    progs: list[ConvProgram] = []
    passes: list[tuple] = []
    for out_channels, size in [(1, (1, 1)), (2, (1, 1)), (3, (1, 1)), (4, (1, 1)),
                               (5, (1, 1)), (1, (1, 2)), (2, (1, 3))][:count]:  # fmt: skip
        case = random_case(rng, PARAMS, channels=9, out_channels=out_channels, size=size, kernel=1)
        start = _ends(progs[-1], PARAMS) if progs else (0, 0, 0)
        progs += split_programs(case, PARAMS, [1, 1, 1], tag=len(progs), start=start)
        parts = split_case(case, [1, 1, 1], PARAMS.array.cols)
        passes += [(part.shape, j < 2) for j, part in enumerate(parts)]
    return progs, passes


def test_short_passes_wait_for_their_partial_sums() -> None:
    """Passes of 1 to 6 elements back to back (without the output unit's hold the
    next pass would read a partial sum before its write), data resident: exact,
    and in the cycles `sequence_cycles` gives."""
    assert ConvOutputUnit.PARTIAL_HOLD == 3
    progs, passes = _short_splits(7)
    run = simulate_amaranth(progs, PARAMS)
    np.testing.assert_array_equal(run.outputs, _stream(progs))
    assert run.cycles == sequence_cycles(PARAMS, passes)
    run = simulate_amaranth(progs, PARAMS, ready_prob=0.5, seed=2)
    np.testing.assert_array_equal(run.outputs, _stream(progs))


def test_a_layer_whose_weights_exceed_the_buffer_runs_in_passes() -> None:
    """The point of splitting: 2 output groups × 4 input groups × 3 × 3 = 72 weight
    words against a 64-word buffer. Four passes of 18 words each alternate between
    the buffers' halves, loaded while the pass before computes (a ping-pong
    controller), exact under back-pressure."""
    params = GraceParams(
        name="conv-split-small",
        array=ArrayParams(rows=4, cols=3),
        buffers=BufferParams(input_depth=128, weight_depth=64, param_depth=32, partial_depth=128),
    )
    case = random_case(np.random.default_rng(4), params, channels=12, out_channels=6,
                       size=(4, 5), kernel=3, residual=True)  # fmt: skip
    with pytest.raises(ConvProgramError, match="weight buffer holds 64"):
        program(case, params)
    halves = [(64 * (j % 2), 32 * (j % 2), 16 * (j % 2)) for j in range(4)]
    progs = split_programs(case, params, [1, 1, 1, 1], bases=halves)
    run = simulate_amaranth(progs, params, ready_prob=0.7, residual_prob=0.8, seed=1,
                            overlap_loads=True)  # fmt: skip
    np.testing.assert_array_equal(run.outputs, _stream(progs))
    np.testing.assert_array_equal(run.outputs[-len(progs[-1].expected) :], progs[-1].expected)


def test_ice40_form_of_a_split_head() -> None:
    """The iCEBreaker preset (2 × 2 MACs, 512 partial sums): a 7 × 7 head of 10 input
    channels in three passes, on the iCE40 elaboration, exact and as modelled."""
    params = preset("icebreaker")
    case = random_case(np.random.default_rng(6), params, channels=10, out_channels=3,
                       size=(4, 4), kernel=7, padding=3)  # fmt: skip
    progs = split_programs(case, params, [2, 2, 1])
    np.testing.assert_array_equal(progs[-1].expected, program(case, params).expected)
    run = simulate_amaranth(progs, params, dsp_target="ice40")
    np.testing.assert_array_equal(run.outputs, _stream(progs))
    assert run.cycles == sequence_cycles(params, _passes(case, progs, params))


def test_partial_tiles_that_exceed_the_partial_sums_are_refused() -> None:
    params = GraceParams(array=ArrayParams(rows=4, cols=3), buffers=BufferParams(partial_depth=16))
    case = random_case(np.random.default_rng(0), params, channels=6, out_channels=5,
                       size=(2, 2), kernel=1)  # fmt: skip
    with pytest.raises(ConvProgramError, match="20 output elements; the partial sums hold 16"):
        split_programs(case, params, [1, 1])
    with pytest.raises(ConvProgramError, match="do not split 2 input groups"):
        split_programs(case, params, [1, 2])


@pytest.mark.parametrize("depth", [0, 8, 48, 1 << 17])
def test_partial_depth_is_a_power_of_two_in_range(depth: int) -> None:
    with pytest.raises(ParamsError, match="partial_depth"):
        BufferParams(partial_depth=depth)


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_verilog_splits_match_l2(simulator: str, build_root) -> None:
    """On the Verilog: a 4-pass split with a residual and pooling under back-pressure,
    then short passes back to back in `sequence_cycles`' cycles."""
    build_dir = build_root / "sim" / "conv" / PARAMS.key()
    case, progs = _split("four-residual-pool")
    run, result = simulate_cocotb(progs, PARAMS, simulator=simulator, build_dir=build_dir,
                                  ready_prob=0.6, residual_prob=0.7, seed=3)  # fmt: skip
    result.check()
    np.testing.assert_array_equal(run.outputs, _stream(progs))
    np.testing.assert_array_equal(progs[-1].expected, program(case, PARAMS).expected)
    progs, passes = _short_splits(4)
    run, result = simulate_cocotb(progs, PARAMS, simulator=simulator, build_dir=build_dir)
    result.check()
    np.testing.assert_array_equal(run.outputs, _stream(progs))
    assert run.cycles == sequence_cycles(PARAMS, passes)
