"""The convolution engine (rtl/conv/) against the L2 conv, and its cycle model.

Tier 1 (Amaranth's simulator) runs the whole random-shape sweep under output
back-pressure and residual gaps; tier 2 (cocotb on the elaborated Verilog,
Icarus and Verilator) runs a handful of the same shapes and two back-to-back
tiles. The long sweep (`make test-long`) runs many more shapes on both tiers.
"""

from __future__ import annotations

import numpy as np
import pytest

from defs.params import ArrayParams, BufferParams, GraceParams, preset
from model.conv_shape import ConvShape
from rtl.conv_cycles import tile_cycles
from sim.conv import (
    ConvProgramError,
    fold_rows,
    fold_taps,
    program,
    random_case,
    reference,
    simulate_amaranth,
    simulate_cocotb,
    sweep_cases,
    unfold_rows,
)

#: A small array whose sides divide none of the sweep's channel counts evenly
#: (3 lanes: an adder tree with an odd carry; 4 output lanes).
PARAMS = GraceParams(name="conv-test", array=ArrayParams(rows=4, cols=3))
SWEEP = sweep_cases(PARAMS, 32, seed=5)
OTHER_ARRAYS = {
    "1x1": GraceParams(name="conv-1x1", array=ArrayParams(rows=1, cols=1)),
    "3x5": GraceParams(name="conv-3x5", array=ArrayParams(rows=3, cols=5)),
    "2-slots": GraceParams(
        name="conv-2slots",
        array=ArrayParams(rows=2, cols=2),
        buffers=BufferParams(accumulator_slots=2),
    ),
}


def test_the_sweep_covers_every_option() -> None:
    kernels = {c.weight.shape[-1] for c in SWEEP}
    strides = {c.stride for c in SWEEP}
    assert kernels == {1, 3, 7} and strides == {1, 2}
    for flag in ("relu", "pool", "upsample"):
        assert any(getattr(c, flag) for c in SWEEP), flag
    assert any(c.residual is not None for c in SWEEP)
    assert any(c.upsample and c.pool for c in SWEEP)
    assert any(c.x.shape[0] % PARAMS.array.cols for c in SWEEP)
    assert any(c.weight.shape[0] % PARAMS.array.rows for c in SWEEP)
    assert min(c.x.shape[1] * c.x.shape[2] for c in SWEEP) <= 4
    assert len(SWEEP) >= 30


@pytest.mark.parametrize("index", range(len(SWEEP)), ids=[c.describe() for c in SWEEP])
def test_engine_matches_l2_under_back_pressure(index: int) -> None:
    case = SWEEP[index]
    prog = program(case, PARAMS, tag=index)
    run = simulate_amaranth([prog], PARAMS, ready_prob=0.6, residual_prob=0.7, seed=index)
    np.testing.assert_array_equal(run.outputs, prog.expected)
    assert run.tokens == [index]


@pytest.mark.parametrize("name", list(OTHER_ARRAYS))
def test_other_array_shapes(name: str) -> None:
    params = OTHER_ARRAYS[name]
    for k, case in enumerate(sweep_cases(params, 4, seed=11, max_cycles=2500)):
        prog = program(case, params)
        run = simulate_amaranth([prog], params, ready_prob=0.7, residual_prob=0.8, seed=k)
        np.testing.assert_array_equal(run.outputs, prog.expected, err_msg=case.describe())


@pytest.mark.parametrize("index", range(0, len(SWEEP), 4))
def test_ice40_form_matches_l2_and_the_cycle_model(index: int) -> None:
    """The iCE40 elaboration (one-step accumulators, inferred requantizer products,
    a tail register) computes the same values in the same cycles."""
    case = SWEEP[index]
    prog = program(case, PARAMS)
    run = simulate_amaranth([prog], PARAMS, dsp_target="ice40")
    np.testing.assert_array_equal(run.outputs, prog.expected)
    assert run.cycles == tile_cycles(PARAMS, case.shape).cycles


@pytest.mark.parametrize("index", range(0, len(SWEEP), 2))
def test_cycle_model_is_exact_without_back_pressure(index: int) -> None:
    case = SWEEP[index]
    run = simulate_amaranth([program(case, PARAMS)], PARAMS)
    assert run.cycles == tile_cycles(PARAMS, case.shape).cycles


def test_cycle_model_on_the_tiny_preset() -> None:
    """Another array (4 × 4), including layers whose output groups change the pace."""
    params = preset("tiny")
    for case in sweep_cases(params, 6, seed=3):
        run = simulate_amaranth([program(case, params)], params)
        assert run.cycles == tile_cycles(params, case.shape).cycles, case.describe()


@pytest.mark.parametrize(
    "slots, kernel, out_channels", [(16, 1, 1), (4, 1, 1), (4, 1, 4), (2, 1, 2), (2, 3, 1)]
)
def test_cycle_model_when_slots_or_the_output_unit_bind(
    slots: int, kernel: int, out_channels: int
) -> None:
    """k = 1 with few channels: the FIFO round trip or the lane-serial output set the pace."""
    params = GraceParams(
        array=ArrayParams(rows=4, cols=4), buffers=BufferParams(accumulator_slots=slots)
    )
    case = random_case(
        np.random.default_rng(slots), params, channels=3, out_channels=out_channels,
        size=(8, 8), kernel=kernel,
    )  # fmt: skip
    prog = program(case, params)
    run = simulate_amaranth([prog], params)
    np.testing.assert_array_equal(run.outputs, prog.expected)
    assert run.cycles == tile_cycles(params, case.shape).cycles


@pytest.mark.parametrize("rows, out_channels", [(1, 1), (4, 2), (4, 4)])
def test_pooling_at_full_rate_with_one_lane_per_vector(rows: int, out_channels: int) -> None:
    """One output lane per vector, one vector per pass: the pooling partial of a
    lane is read back as soon as the pipeline allows (its read-after-write
    distance rests on the idle cycle between vectors)."""
    params = GraceParams(array=ArrayParams(rows=rows, cols=1))
    rng = np.random.default_rng(rows * 10 + out_channels)
    for relu in (False, True):
        case = random_case(
            rng, params, channels=1, out_channels=out_channels, size=(6, 8), kernel=1,
            pool=True, relu=relu,
        )  # fmt: skip
        prog = program(case, params)
        run = simulate_amaranth([prog], params)
        np.testing.assert_array_equal(run.outputs, prog.expected)
        assert run.cycles == tile_cycles(params, case.shape).cycles


def _two_tiles(params: GraceParams) -> tuple[list, np.ndarray]:
    rng = np.random.default_rng(1)
    a = random_case(rng, params, channels=5, out_channels=6, size=(5, 4), kernel=3, residual=True)
    b = random_case(
        rng, params, channels=4, out_channels=3, size=(4, 4), kernel=3, pool=True, relu=True
    )
    progs = [
        program(a, params, tag=7),
        program(b, params, tag=9, in_base=200, weight_base=300, param_base=50),
    ]
    return progs, np.concatenate([p.expected for p in progs])


def test_back_to_back_tiles_overlap() -> None:
    """Two resident tiles, two commands: in-order outputs and tokens, no idle gap."""
    progs, expected = _two_tiles(PARAMS)
    run = simulate_amaranth(progs, PARAMS, ready_prob=0.6, residual_prob=0.7, seed=2)
    np.testing.assert_array_equal(run.outputs, expected)
    assert run.tokens == [7, 9]
    quiet = simulate_amaranth(progs, PARAMS)
    alone = [simulate_amaranth([p], PARAMS).cycles for p in progs]
    assert quiet.cycles < sum(alone)  # the second tile issues while the first drains


def _ping_pong_tiles(params: GraceParams) -> list:
    """Six tiles of different layers, alternate ones in the two halves of each buffer."""
    rng = np.random.default_rng(11)
    buffers = params.buffers
    halves = (buffers.input_depth // 2, buffers.weight_depth // 2, buffers.param_depth // 2)
    options = [{}, {"upsample": True}, {"relu": True}, {"residual": True}, {"pool": True}, {}]
    progs = []
    for k, extra in enumerate(options):
        case = random_case(rng, params, channels=int(rng.integers(2, 7)),
                           out_channels=int(rng.integers(2, 9)), size=(6, 5), kernel=3,
                           **extra)  # fmt: skip
        in_base, weight_base, param_base = (h * (k % 2) for h in halves)
        progs.append(program(case, params, tag=k, in_base=in_base, weight_base=weight_base,
                             param_base=param_base))  # fmt: skip
    return progs


def test_loads_overlap_compute_in_two_buffer_halves() -> None:
    """Double buffering: a ping-pong controller writes tile k's data into one half
    of each buffer while tile k-1 computes from the other. Exact under
    back-pressure. Without it the loads hide completely (cycles as if every
    tile's data had been resident before the first command), as each tile
    computes for longer than the next one takes to load."""
    progs = _ping_pong_tiles(PARAMS)
    expected = np.concatenate([p.expected for p in progs])
    run = simulate_amaranth(
        progs, PARAMS, ready_prob=0.7, residual_prob=0.8, seed=4, overlap_loads=True
    )
    np.testing.assert_array_equal(run.outputs, expected)
    assert run.tokens == list(range(len(progs)))
    overlapped = simulate_amaranth(progs, PARAMS, overlap_loads=True)
    resident = simulate_amaranth(progs, PARAMS)
    np.testing.assert_array_equal(overlapped.outputs, expected)
    assert overlapped.cycles == resident.cycles


def test_back_to_back_tiles_of_different_layers() -> None:
    """Tiles whose upsampling, stored row length, stride and kernel differ, with
    their commands waiting: the next command is latched while the last beats of
    a tile are still in the address stages (which once read it there)."""
    rng = np.random.default_rng(3)
    shapes = [
        {"channels": 3, "out_channels": 5, "size": (3, 5), "kernel": 3, "upsample": True},
        {"channels": 6, "out_channels": 4, "size": (6, 7), "kernel": 1, "stride": 2, "padding": 0},
        {"channels": 2, "out_channels": 3, "size": (5, 3), "kernel": 3, "relu": True},
        {"channels": 4, "out_channels": 2, "size": (4, 6), "kernel": 3, "pool": True},
    ]
    progs = [
        program(
            random_case(rng, PARAMS, **shape),
            PARAMS,
            tag=k,
            in_base=200 * k,
            weight_base=100 * k,
            param_base=16 * k,
        )
        for k, shape in enumerate(shapes)
    ]
    run = simulate_amaranth(progs, PARAMS, ready_prob=0.8, seed=3)
    np.testing.assert_array_equal(run.outputs, np.concatenate([p.expected for p in progs]))
    assert run.tokens == [0, 1, 2, 3]


def _resident_groups(cases: list, params: GraceParams) -> list[list]:
    """The cases in order, as programs packed into the buffers side by side, a
    new group whenever the next one does not fit beside the others."""
    groups: list[list] = [[]]
    bases = [0, 0, 0]  # input, weight, parameter words used
    for case in cases:
        try:
            prog = program(case, params, tag=len(groups[-1]), in_base=bases[0],
                           weight_base=bases[1], param_base=bases[2])  # fmt: skip
        except ConvProgramError:
            groups.append([])
            bases = [0, 0, 0]
            prog = program(case, params, tag=0)
        groups[-1].append(prog)
        bases[0] += len(prog.input_writes)
        bases[1] += len(prog.weight_writes) // params.array.rows
        bases[2] += len(prog.param_writes)
    return groups


def test_the_sweep_back_to_back() -> None:
    """Every layer of the sweep as a tile in a stream of commands (as many as the
    buffers hold at once), under back-pressure: each tile is exact whatever
    layer comes before or after it."""
    groups = _resident_groups(SWEEP, PARAMS)
    assert sum(len(g) for g in groups) == len(SWEEP) and len(groups) <= len(SWEEP) // 3
    for k, progs in enumerate(groups):
        run = simulate_amaranth(progs, PARAMS, ready_prob=0.7, residual_prob=0.8, seed=k)
        expected = np.concatenate([p.expected for p in progs])
        np.testing.assert_array_equal(run.outputs, expected)
        assert run.tokens == list(range(len(progs)))


def test_folding_taps_onto_lanes_is_exact_and_faster() -> None:
    """A 3-channel 7×7 layer, laid out with its horizontal taps as channels."""
    params = GraceParams(array=ArrayParams(rows=4, cols=8))
    case = random_case(
        np.random.default_rng(3), params, channels=3, out_channels=5, size=(9, 8), kernel=7,
        relu=True,
    )  # fmt: skip
    folded = fold_taps(case)
    assert folded.weight.shape == (5, 21, 7, 1)
    direct = program(case, params)
    run = simulate_amaranth([program(folded, params)], params, ready_prob=0.7, seed=3)
    np.testing.assert_array_equal(run.outputs, direct.expected)
    assert tile_cycles(params, folded.shape).cycles < tile_cycles(params, case.shape).cycles / 2


def _row_fold_cases(count: int) -> list[tuple[int, ...]]:
    """Random (C, O, H, W, kernel, pad, fold, relu) the row fold accepts."""
    rng = np.random.default_rng(77)
    cases: list[tuple[int, ...]] = []
    while len(cases) < count:
        k = int(rng.choice([1, 2, 3, 4, 5, 7]))
        c, o, h, w = (
            int(v) for v in (rng.integers(1, 7), rng.integers(1, 4), *rng.integers(1, 13, 2))
        )
        pad, fold = int(rng.integers(0, k + 1)), int(rng.integers(1, 9))
        if h + 2 * pad >= k and w + 2 * pad >= k and pad <= 7:
            cases.append((c, o, h, w, k, pad, fold, int(rng.integers(0, 2))))
    return cases


def test_folding_rows_is_the_same_layer() -> None:
    """L2 on the folded layout, unfolded, equals L2 on the layer: 150 random shapes
    (even kernels, uneven and oversized padding, folds beyond the height)."""
    for c, o, h, w, k, pad, fold, relu in _row_fold_cases(150):
        rng = np.random.default_rng([c, o, h, w, k, pad, fold])
        case = random_case(rng, PARAMS, channels=c, out_channels=o, size=(h, w), kernel=k,
                           padding=pad, relu=bool(relu))  # fmt: skip
        want = reference(case, PARAMS)
        got = unfold_rows(reference(fold_rows(case, fold), PARAMS), fold, want.shape[1])
        np.testing.assert_array_equal(got, want, err_msg=str((c, o, h, w, k, pad, fold)))


@pytest.mark.parametrize(("out_channels", "fold"), [(1, 4), (2, 2), (1, 6)])
def test_folding_rows_onto_idle_rows_is_exact_and_faster(out_channels: int, fold: int) -> None:
    """A 7×7 layer with fewer output channels than the array has rows, run with
    its output rows folded onto the idle rows: exact under back-pressure, and
    fewer cycles where the fold fits one output group (the final 64→3 layer's
    mapping); a fold past the rows spans two groups and stays exact."""
    case = random_case(np.random.default_rng(fold), PARAMS, channels=4,
                       out_channels=out_channels, size=(7, 5), kernel=7, relu=True)  # fmt: skip
    folded = fold_rows(case, fold)
    prog = program(folded, PARAMS)
    run = simulate_amaranth([prog], PARAMS, ready_prob=0.7, seed=fold)
    np.testing.assert_array_equal(run.outputs, prog.expected)
    want = reference(case, PARAMS)
    np.testing.assert_array_equal(unfold_rows(reference(folded, PARAMS), fold, 7), want)
    cycles = tile_cycles(PARAMS, folded.shape).cycles
    assert simulate_amaranth([prog], PARAMS).cycles == cycles  # the model holds here too
    if out_channels * fold <= PARAMS.array.rows:
        assert cycles < tile_cycles(PARAMS, case.shape).cycles


@pytest.mark.parametrize(
    "change, message",
    [
        ({"kernel": 9}, "kernel 9×9"),
        ({"stride": 3}, "stride 3"),
        ({"size": (200, 200)}, "input buffer holds"),
        ({"out_channels": 300}, "parameter buffer holds"),
        ({"channels": 3 * 1024, "size": (1, 1), "kernel": 1}, "1024 input / 1 output channel gr"),
    ],
)
def test_programs_that_do_not_fit_are_refused(change: dict, message: str) -> None:
    settings = {"channels": 3, "out_channels": 4, "size": (4, 4), "kernel": 3} | change
    stride = settings.pop("stride", 1)
    case = random_case(np.random.default_rng(0), PARAMS, **settings, stride=stride)
    with pytest.raises(ConvProgramError, match=message):
        program(case, PARAMS)


def test_an_empty_pooled_output_is_refused() -> None:
    case = random_case(np.random.default_rng(0), PARAMS, channels=2, out_channels=2,
                       size=(1, 4), kernel=1, pool=True)  # fmt: skip
    with pytest.raises(ConvProgramError, match="empty after pooling"):
        program(case, PARAMS)


COCOTB_CASES = [0, 4, 13, 20]


# Icarus in `make test-long` only: the same Verilog runs here under Verilator, and the conv
# engine under Icarus in `test_cocotb_reports_a_wrong_expectation`, `test_conv_split.py`
# and the co-processor's three-layer program (41 s of the suite's 20-minute budget).
@pytest.mark.parametrize("simulator", [pytest.param("icarus", marks=pytest.mark.long), "verilator"])
def test_verilog_matches_l2(simulator: str, build_root) -> None:
    build_dir = build_root / "sim" / "conv" / PARAMS.key()
    for index in COCOTB_CASES:
        case = SWEEP[index]
        prog = program(case, PARAMS, tag=index)
        run, result = simulate_cocotb(
            [prog], PARAMS, simulator=simulator, build_dir=build_dir, ready_prob=0.6,
            residual_prob=0.7, seed=index,
        )  # fmt: skip
        result.check()
        np.testing.assert_array_equal(run.outputs, prog.expected, err_msg=case.describe())
        assert run.tokens == [index]
    progs, expected = _two_tiles(PARAMS)
    run, result = simulate_cocotb(progs, PARAMS, simulator=simulator, build_dir=build_dir)
    result.check()
    np.testing.assert_array_equal(run.outputs, expected)
    assert run.cycles == simulate_amaranth(progs, PARAMS).cycles
    # double buffering on the Verilog: tiles load while the previous one computes
    progs = _ping_pong_tiles(PARAMS)
    expected = np.concatenate([p.expected for p in progs])
    run, result = simulate_cocotb(progs, PARAMS, simulator=simulator, build_dir=build_dir,
                                  ready_prob=0.7, residual_prob=0.8, seed=5,
                                  overlap_loads=True)  # fmt: skip
    result.check()
    np.testing.assert_array_equal(run.outputs, expected)
    assert run.tokens == list(range(len(progs)))
    run, result = simulate_cocotb(progs, PARAMS, simulator=simulator, build_dir=build_dir,
                                  overlap_loads=True)  # fmt: skip
    result.check()
    assert run.cycles == simulate_amaranth(progs, PARAMS).cycles  # the loads hide


def test_cocotb_reports_a_wrong_expectation(build_root) -> None:
    from sim.runner import SimulationFailed

    prog = program(SWEEP[1], PARAMS)
    prog.expected = prog.expected.copy()
    prog.expected[len(prog.expected) // 2] += 1
    _, result = simulate_cocotb(
        [prog], PARAMS, simulator="icarus", build_dir=build_root / "sim" / "conv" / PARAMS.key()
    )
    with pytest.raises(SimulationFailed):
        result.check()


@pytest.mark.long
@pytest.mark.parametrize("seed", range(4))
def test_long_sweep(seed: int, build_root) -> None:
    """`make test-long`: 4 × 60 shapes in Amaranth, 4 × 15 on Verilator."""
    cases = sweep_cases(PARAMS, 60, seed=100 + seed, max_cycles=6000)
    for k, case in enumerate(cases):
        prog = program(case, PARAMS)
        run = simulate_amaranth([prog], PARAMS, ready_prob=0.5, residual_prob=0.6, seed=k)
        np.testing.assert_array_equal(run.outputs, prog.expected, err_msg=case.describe())
    build_dir = build_root / "sim" / "conv" / PARAMS.key()
    for k, case in enumerate(cases[:15]):
        prog = program(case, PARAMS)
        run, result = simulate_cocotb(
            [prog], PARAMS, simulator="verilator", build_dir=build_dir, ready_prob=0.5, seed=k
        )
        result.check()
        np.testing.assert_array_equal(run.outputs, prog.expected, err_msg=case.describe())


def test_fold_taps_shape() -> None:
    shape = ConvShape(3, 64, 256, 256, 7, 7, padding=3)
    folded = shape.fold_taps()
    assert (folded.channels, folded.kernel_h, folded.kernel_w) == (21, 7, 1)
    assert folded.conv_size == shape.conv_size and folded.macs == shape.macs
    with pytest.raises(ValueError, match="stride 1"):
        ConvShape(3, 8, 8, 8, 3, 3, stride=2).fold_taps()


def test_fold_rows_shape() -> None:
    final = ConvShape(64, 3, 256, 256, 7, 7, padding=3)
    folded = final.fold_rows(4)
    assert (folded.channels, folded.out_channels, folded.height) == (256, 12, 64)
    assert (folded.kernel_h, folded.kernel_w, folded.padding) == (3, 7, 1)
    assert folded.conv_size == (64, 256)
    for refused in (
        ConvShape(4, 2, 8, 8, 3, 3, stride=2),
        ConvShape(4, 2, 8, 8, 3, 3, upsample=True),
        ConvShape(4, 2, 8, 8, 3, 3, pool=True),
        ConvShape(4, 2, 8, 8, 3, 3, residual=True),
    ):
        with pytest.raises(ValueError, match="fold_rows: stride 1"):
            refused.fold_rows(2)
    with pytest.raises(ValueError, match="at least 1"):
        final.fold_rows(0)
