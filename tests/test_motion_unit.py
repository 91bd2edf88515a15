"""The motion unit (rtl/act/motion.py) against L2's motions and flow; its host side and cycles.

Host side first (no RTL): the stream layouts read back field by field, the
refusals, the widths against the contract's extremes, and the generators'
coverage (ties, extremes). Then tier 1 (Amaranth's simulator: frames of every
kind back to back with their constants reloaded between them, under
back-pressure and gaps on every input; token credits; the iCE40 form; the cycle
model) and tier 2 (cocotb on the elaborated Verilog: Icarus on a small sweep,
Verilator on fomm-256's frame, K = 10 on 64², under back-pressure and without,
its cycles the model's; more frames in `make test-long`).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from amaranth.lib import data

from defs.limits import TAG_BITS
from defs.params import ActParams, preset
from model.fixed import saturate
from model.fixed_motion import (
    JAC_FRAC_BITS,
    grid_axis,
    keypoints_to_coords,
    sparse_motions,
)
from rtl.act.keypoints import (
    KP_LIMIT_Q,
    grid_write_layout,
    jacobian_write_layout,
    keypoint_write_layout,
)
from rtl.act.motion import TOKEN_SLOTS, MotionUnit
from rtl.act.motion_issue import MotionIssue
from rtl.act.motion_layouts import (
    JAC_LIMIT,
    MOTION_BITS,
    MOTION_LIMIT,
    REL_BITS,
    TERM_BITS,
    VALUE_BITS,
    MotionOp,
    command_layout,
    flow_pre_shift,
    flow_sum_bits,
)
from rtl.dsp import dsp_count
from rtl.hierarchy import instance_count
from rtl.motion_cycles import command_cycles, frame_cycles, run_cycles
from rtl.warp.layouts import FLOW_BITS
from sim.motion import (
    MASK_KINDS,
    MotionCase,
    MotionFrame,
    MotionProgram,
    MotionProgramError,
    frame_cases,
    frame_writes,
    identity_jacobians,
    place,
    program,
    random_frame,
    random_mask,
    reference,
    schedule,
    simulate_amaranth,
    simulate_cocotb,
    split_outputs,
    unsaturated,
)

#: The tiny preset's unit: up to 16 keypoints, grids up to 128.
PARAMS = preset("tiny")
MAX_K = PARAMS.act.max_keypoints


def _unpack(layout: data.StructLayout, word: int) -> dict[str, int]:
    return {name: (word >> f.offset) & ((1 << f.width) - 1) for name, f in layout}


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def _check(entries: np.ndarray, progs: list[MotionProgram], what: str) -> None:
    """Every command's entries bit-exact against L2 (saturated to s18); translation
    maps also against `sparse_motions`."""
    for k, (got, prog) in enumerate(zip(split_outputs(entries, progs), progs, strict=True)):
        case = prog.case
        np.testing.assert_array_equal(
            got, reference(case), err_msg=f"{what} #{k}: {case.describe()}"
        )
        frame = case.frame
        translation = np.array_equal(frame.jacobians, identity_jacobians(frame.keypoints))
        if translation and case.op == MotionOp.MOTION:
            dac = sparse_motions(
                keypoints_to_coords(frame.kp_driving),
                keypoints_to_coords(frame.kp_source),
                frame.size,
            )[case.motion]
            np.testing.assert_array_equal(got, saturate(dac.reshape(-1, 2), FLOW_BITS))


def _products(frame: MotionFrame) -> np.ndarray:
    """(K, S, S, 2) J·(g − kp_d): the sums before the rounding, as L2 forms them."""
    g = grid_axis(frame.size)
    grid = np.stack(np.broadcast_arrays(g[None, :], g[:, None]), axis=-1)
    rel = grid[None] - keypoints_to_coords(frame.kp_driving)[:, None, None, :]
    return np.einsum("kij,khwj->khwi", np.asarray(frame.jacobians), rel)


# -- host side: layouts, refusals, widths, generators ----------------------------------


def test_program_and_writes_read_back() -> None:
    """Decoded field by field: the command; the grid axis of S; both keypoint sets
    in the coordinate format; every J entry at its (row, col); the mask bytes
    pixel-major, background first; the expected entries, L2 saturated."""
    rng = np.random.default_rng(1)
    frame = random_frame(rng, 3, 5, jac="random")
    mask = random_mask(rng, 3, 5, "random")
    prog = program(MotionCase(frame, MotionOp.FLOW, mask=mask), PARAMS, tag=7)
    assert _unpack(command_layout(PARAMS), prog.command) == {
        "op": 1, "size": 5, "keypoints": 3, "motion": 0, "tag": 7
    }  # fmt: skip
    assert prog.inputs == mask.transpose(1, 2, 0).ravel().tolist()
    assert prog.inputs[:4] == mask[:, 0, 0].tolist()
    motion = program(MotionCase(frame, MotionOp.MOTION, 2), PARAMS, tag=3)
    assert _unpack(command_layout(PARAMS), motion.command)["motion"] == 2 and not motion.inputs
    np.testing.assert_array_equal(
        motion.expected, saturate(frame.motions()[2].reshape(-1, 2), FLOW_BITS)
    )
    writes = frame_writes(frame, PARAMS)
    grid = [_unpack(grid_write_layout(PARAMS), w) for w in writes.grid]
    assert [g["index"] for g in grid] == list(range(5))
    assert [_signed(g["value"], 16) for g in grid] == grid_axis(5).tolist()
    kp_layout = keypoint_write_layout(PARAMS)
    got = {}
    for word in writes.keypoints:
        f = _unpack(kp_layout, word)
        width = kp_layout.members["x"].width
        got[f["source"], f["keypoint"]] = (_signed(f["x"], width), _signed(f["y"], width))
    for source, kp in enumerate((frame.kp_driving, frame.kp_source)):
        coords = keypoints_to_coords(kp)
        assert all(got[source, k] == tuple(coords[k]) for k in range(3))
    j_layout = jacobian_write_layout(PARAMS)
    entries = {}
    for word in writes.jacobians:
        f = _unpack(j_layout, word)
        entries[f["keypoint"], f["row"], f["col"]] = _signed(f["value"], 20)
    assert len(entries) == 12
    assert all(entries[k] == frame.jacobians[k] for k in entries)


def _refused(change: str) -> tuple[MotionCase, dict]:
    rng = np.random.default_rng(0)
    frame = random_frame(rng, 3, 4)
    case = MotionCase(frame, MotionOp.MOTION, 1)
    options: dict = {}
    if change == "kp_driving":
        frame.kp_driving[1, 0] = KP_LIMIT_Q + 1
    elif change == "kp_source":
        frame.kp_source[2, 1] = -KP_LIMIT_Q - 1
    elif change == "jacobian":
        frame.jacobians[0, 1, 0] = JAC_LIMIT + 1
    elif change == "float keypoints":
        frame.kp_driving = frame.kp_driving.astype(float)
    elif change == "keypoint shape":
        frame.kp_source = frame.kp_source[:2]
    elif change == "size 1":
        frame.size = 1
    elif change == "size above":
        frame.size = PARAMS.act.max_grid + 1
    elif change == "no keypoints":
        frame.kp_driving = frame.kp_driving[:0]
    elif change == "too many keypoints":
        case.frame = random_frame(rng, MAX_K + 1, 4)
    elif change == "motion":
        case.motion = 4
    elif change == "negative motion":
        case.motion = -1
    elif change == "tag":
        options = {"tag": 1 << TAG_BITS}
    else:
        case = MotionCase(frame, MotionOp.FLOW, mask=random_mask(rng, 3, 4, "random"))
        if change == "mask range":
            case.mask[1, 2, 3] = 256
        elif change == "negative mask":
            case.mask[0, 0, 0] = -1
        elif change == "mask shape":
            case.mask = case.mask[:3]
        elif change == "no mask":
            case.mask = None
    return case, options


@pytest.mark.parametrize(
    "change, message",
    [
        ("kp_driving", "kp_driving must lie in -512..512, got .*513: the unit is exact only"),
        ("kp_source", "kp_source must lie in -512..512, got -513"),
        ("jacobian", "jacobians must lie in -262144..262144, got .*262145: clip them"),
        ("float keypoints", "kp_driving must hold integers"),
        ("keypoint shape", r"kp_source must have shape \(3, 2\), got \(2, 2\)"),
        ("size 1", r"grid side S = 1: the unit takes 2..128 \(ActParams.max_grid\)"),
        ("size above", "grid side S = 129: the unit takes 2..128"),
        ("no keypoints", r"0 keypoints: the unit takes 1..16 \(ActParams.max_keypoints\)"),
        ("too many keypoints", "17 keypoints: the unit takes 1..16"),
        ("motion", "motion 4: a frame of 3 keypoints has motions 0..3"),
        ("negative motion", "motion -1: a frame of 3 keypoints has motions 0..3"),
        ("tag", "tag 256: the unit takes 0..255"),
        ("mask range", "mask must lie in 0..255, got 0..256: the softmax's masks are u8"),
        ("negative mask", "mask must lie in 0..255, got -1"),
        ("mask shape", r"mask must have shape \(4, 4, 4\), got \(3, 4, 4\)"),
        ("no mask", "a FLOW case needs a mask of K \\+ 1 channels"),
    ],
)
def test_program_refuses_what_the_unit_is_not_exact_for(change: str, message: str) -> None:
    case, options = _refused(change)
    with pytest.raises(MotionProgramError, match=message) as refusal:
        program(case, PARAMS, **options)
    assert "\n" not in str(refusal.value)


def test_widths_hold_the_contracts_extremes() -> None:
    """At the contract's corners (K = 16 keypoints at ±2^9, J = ±2^18 in every
    entry, all-255 masks) the values L2 forms reach the widths the unit chose and
    fit them: g − kp_d s17, the sum before rounding s36 (with kp_s·2^14 + 2^13),
    motions ±1,605,632 (s22), Σ mask·m s34, which after the pre-shift fits the
    output path's 32 bits; and the outputs go beyond s18, where they saturate."""
    rng = np.random.default_rng(2)
    frame = random_frame(rng, MAX_K, 5, kp="extreme")
    assert (np.abs(frame.jacobians) == JAC_LIMIT).all()
    coords = keypoints_to_coords(frame.kp_driving)
    g = grid_axis(frame.size)
    rel = g[None, :, None] - coords[:, None, :]
    assert np.abs(rel).max() == 49_152 and np.abs(rel).max() < 1 << (REL_BITS - 1)
    terms = _products(frame) + (keypoints_to_coords(frame.kp_source)[:, None, None] << 14) + 8192
    assert np.abs(terms).max() < 1 << (TERM_BITS - 1) <= 2 * np.abs(terms).max()
    motions = frame.motions()
    assert motions.max() == MOTION_LIMIT and motions.min() == -MOTION_LIMIT
    assert MOTION_LIMIT < 1 << (MOTION_BITS - 1) <= 2 * MOTION_LIMIT
    # every keypoint as the first (positive) one: the sum at its widest
    same = MotionFrame(
        5, frame.kp_driving, np.repeat(frame.kp_source[:1], MAX_K, 0),
        np.repeat(frame.jacobians[:1], MAX_K, 0),
    )  # fmt: skip
    full = np.full((MAX_K + 1, 5, 5), 255)
    total = (full[..., None] * same.motions()).sum(axis=0)
    assert np.abs(total).max() < 1 << (flow_sum_bits(PARAMS) - 1) <= 2 * np.abs(total).max()
    assert np.abs(total >> flow_pre_shift(PARAMS)).max() < 1 << (VALUE_BITS - 1)
    case = MotionCase(same, MotionOp.FLOW, mask=full)
    assert np.abs(unsaturated(case)).max() >= 1 << FLOW_BITS
    assert (np.abs(reference(case)) == (1 << (FLOW_BITS - 1)) - (reference(case) > 0)).any()


def test_generators_reach_the_corners() -> None:
    """The kinds exist for a reason: ties of round_shift(·, 14) with the "halves"
    Jacobians and of round_shift(·, 8) with the "half" masks; the singular J_d
    gives the identity; corners at ±256; centres on the grid where it has them."""
    rng = np.random.default_rng(3)
    halves = random_frame(rng, 3, 7, jac="halves")
    assert ((_products(halves) & ((1 << JAC_FRAC_BITS) - 1)) == 1 << (JAC_FRAC_BITS - 1)).any()
    mask = random_mask(rng, 3, 7, "half")
    total = (mask[..., None] * halves.motions()).sum(axis=0)
    assert ((total & 0xFF) == 0x80).any()
    singular = random_frame(rng, 4, 3, jac="singular")
    np.testing.assert_array_equal(singular.jacobians, identity_jacobians(4))
    corners = random_frame(rng, 4, 3, kp="corners")
    assert set(np.abs(corners.kp_driving).ravel()) == {256}
    centres = random_frame(rng, 4, 5, kp="centres")  # S = 5: every centre a multiple of 64
    assert set(keypoints_to_coords(centres.kp_driving).ravel()) <= set(grid_axis(5).tolist())


def test_loads_reload_each_frame_after_the_commands_before() -> None:
    rng = np.random.default_rng(4)
    a, b = random_frame(rng, 2, 3), random_frame(rng, 1, 2)
    progs = place(frame_cases(rng, a) + frame_cases(rng, b) + frame_cases(rng, a)[:1], PARAMS)
    loads = schedule(progs, PARAMS)
    assert [load.writes is not None for load in loads] == [1, 0, 0, 0, 1, 0, 0, 1]
    assert [load.wait for load in loads if load.writes] == [0, 4, 7]


# -- tier 1: Amaranth's simulator --------------------------------------------------------

#: Frames of the sweep: (K, S, keypoint kind, Jacobian kind, mask kinds).
FRAMES = [
    (1, 2, "corners", "translation", ("zero", "full", "one-hot")),
    (3, 7, "centres", "halves", ("half", "random")),  # odd grid entries: ties
    (2, 7, "edge", "singular", ("softmax",)),
    (MAX_K, 3, "extreme", "limit", ("full",)),
    (4, 6, "random", "mixed", ("one-hot",)),
    (5, 4, "random", "random", ("random",)),
    (2, 3, "random", "translation", ("half",)),
]


def _sweep(seed: int, frames: list = FRAMES) -> list[MotionProgram]:
    rng = np.random.default_rng(seed)
    cases = []
    for k, s, kp, jac, masks in frames:
        cases += frame_cases(rng, random_frame(rng, k, s, kp=kp, jac=jac), masks)
    return place(cases, PARAMS)


def test_frames_match_l2_under_back_pressure() -> None:
    """Seven frames, each its K + 1 motion maps and flows, constants reloaded
    between frames: `o` taken 60 % of the time, done tokens half the time, mask
    bytes and constant writes offered 70 % and 50 % of the time."""
    progs = _sweep(5)
    run = simulate_amaranth(
        progs, PARAMS, ready_prob=0.6, in_prob=0.7, write_prob=0.5, done_ready_prob=0.5, seed=5
    )
    _check(run.outputs, progs, "sweep")
    assert run.tokens == list(range(len(progs)))
    assert run.stalls["o"] > 0 and run.stalls["done"] > 0
    flows = [p for p in progs if p.case.op == MotionOp.FLOW]
    assert {p.case.kind for p in flows} == set(MASK_KINDS)
    half = 1 << (JAC_FRAC_BITS - 1)
    frames = {id(p.case.frame): p.case.frame for p in progs}.values()
    assert any(((_products(f) & (2 * half - 1)) == half).any() for f in frames)
    sums = [(p.case.mask[..., None] * p.case.frame.motions()).sum(axis=0) for p in flows]
    assert any(((total & 0xFF) == 0x80).any() for total in sums)  # ties of round_shift(·, 8)
    assert np.abs(np.concatenate([unsaturated(p.case) for p in progs])).max() >= 1 << FLOW_BITS


def test_more_commands_than_token_slots_wait_for_their_credits() -> None:
    """2 × 2 maps, both ops, done tokens taken 1 % of the time: the unit holds
    TOKEN_SLOTS commands accepted but not done, then stops accepting until a
    token leaves; every entry and token arrives, in order."""
    rng = np.random.default_rng(6)
    frame = random_frame(rng, 2, 2)
    cases = [
        MotionCase(frame, MotionOp.MOTION, k % 3)
        if k % 4
        else MotionCase(frame, MotionOp.FLOW, mask=random_mask(rng, 2, 2, "random"))
        for k in range(TOKEN_SLOTS + 6)
    ]
    progs = place(cases, PARAMS, first_tag=250)
    run = simulate_amaranth(progs, PARAMS, done_ready_prob=0.01, seed=6, stall_limit=20_000)
    _check(run.outputs, progs, "credits")
    assert run.tokens == [(250 + k) % (1 << TAG_BITS) for k in range(len(progs))]
    held = [k + 1 - sum(r <= a for r in run.returned) for k, a in enumerate(run.accepted)]
    assert max(held) == TOKEN_SLOTS, held
    assert run.stalls["cmd"] > 0


#: Commands for the cycle model: row phases padded (M < ROW_LEAD) and not.
TIMED = [(1, 2, "translation", ()), (3, 3, "random", ("random",)), (6, 4, "limit", ("full",))]


def _timed(seed: int) -> list[MotionProgram]:
    rng = np.random.default_rng(seed)
    cases = []
    for k, s, jac, masks in TIMED:
        frame = random_frame(rng, k, s, jac=jac)
        commands = frame_cases(rng, frame, masks)  # K + 1 motion maps, then the flows
        cases += commands[: k + 1 : max(1, k // 2)] + commands[k + 1 :]
    return place(cases, PARAMS)


def _commands(progs: list[MotionProgram]) -> list[tuple[MotionOp, int, int]]:
    return [(p.case.op, p.case.frame.size, p.case.frame.keypoints) for p in progs]


@pytest.mark.parametrize("target", [None, "ice40"])
def test_cycle_model_is_exact_without_back_pressure(target: str | None) -> None:
    """Command transfer to done token: `command_cycles` for single commands (MOTION
    and FLOW, K + 1 below and above the row lead), `run_cycles` for frames back to
    back with their constants reloaded between them (each frame's run measured from
    its first command); the iCE40 form (16-bit DSP operands, more of each product
    in logic) exact in the same cycles."""
    progs = _timed(7)
    flows = {k + 1 for op, _, k in _commands(progs) if op == MotionOp.FLOW}
    assert min(flows) < MotionIssue.ROW_LEAD < max(flows)  # row phases padded, and not
    for prog in progs[:: 3 if target else 1]:
        run = simulate_amaranth([prog], PARAMS, dsp_target=target)
        _check(run.outputs, [prog], "alone")
        assert run.cycles == command_cycles(PARAMS, *_commands([prog])[0]), prog.case.describe()
    loads = schedule(progs, PARAMS)
    starts = [k for k, load in enumerate(loads) if load.writes is not None] + [len(progs)]
    run = simulate_amaranth(progs, PARAMS, dsp_target=target)
    _check(run.outputs, progs, "frames")
    for a, b in itertools.pairwise(starts):
        assert run.returned[b - 1] - run.accepted[a] == run_cycles(PARAMS, _commands(progs[a:b]))


def test_a_smaller_unit_keeps_its_parameters_honest() -> None:
    """ActParams with 3 keypoints and grids up to 9: narrower counters, memories
    of 3 words; K = max on S = max, and K = 1 on 2²."""
    params = PARAMS.replace(name="motion-small", act=ActParams(max_keypoints=3, max_grid=9))
    rng = np.random.default_rng(13)
    cases = frame_cases(rng, random_frame(rng, 3, 9, jac="mixed"), ("random",))
    cases += frame_cases(rng, random_frame(rng, 1, 2, kp="edge"), ("full",))
    progs = place(cases, params)
    run = simulate_amaranth(progs, params, ready_prob=0.7, in_prob=0.8, write_prob=0.8, seed=13)
    _check(run.outputs, progs, "small")
    with pytest.raises(MotionProgramError, match=r"4 keypoints: the unit takes 1\.\.3"):
        program(MotionCase(random_frame(rng, 4, 3), MotionOp.MOTION), params)


def test_ice40_form_matches_l2_under_back_pressure() -> None:
    """The iCE40 form cuts both factors of J·rel (16-bit DSP operands): exact on
    four frames of the sweep under back-pressure and gaps."""
    progs = _sweep(8, FRAMES[2:6])  # random Jacobians among them: carries everywhere
    run = simulate_amaranth(
        progs, PARAMS, dsp_target="ice40", ready_prob=0.5, in_prob=0.6, write_prob=0.7, seed=8
    )
    _check(run.outputs, progs, "ice40")


def test_budget_and_the_fomm_frame() -> None:
    """4 DSPs on both families (two lanes' J·rel and mask·m; the output paths' ×1 in
    logic), one DP16KD (the grid axis; the per-keypoint words are LUT RAM), and a
    fomm-256 frame (11 MOTION + FLOW at K = 10 on 64²) well within 10^6 cycles."""
    for family in ("ecp5", "ice40"):
        assert dsp_count(MotionUnit(PARAMS, dsp_target=family), family) == 4
    assert instance_count(MotionUnit(preset("ulx3s-85f"), dsp_target="ecp5"), "DP16KD") == 1
    fomm = preset("fomm-256")
    lead = MotionIssue.ROW_LEAD  # 5: MOTION's row phase is padded, FLOW's (11) is not
    motion, flow = 4 + 64 * (lead + 64), 4 + 64 * (11 + 64 * 11)
    assert frame_cycles(fomm) == 11 * motion + flow - 1 + 31 == 94_414 <= 1_000_000


# -- tier 2: cocotb on the Verilog ------------------------------------------------------


def _build_dir(build_root: Path) -> Path:
    return build_root / "sim" / "motion" / PARAMS.key()


def _fomm_frame(seed: int, size: int) -> list[MotionProgram]:
    """fomm-256's frame: 10 keypoints, the K + 1 motion maps and the flow on size²."""
    rng = np.random.default_rng(seed)
    frame = random_frame(rng, 10, size, jac="random")
    return place(frame_cases(rng, frame, ("softmax",)), PARAMS)


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_verilog_matches_l2(simulator: str, build_root: Path) -> None:
    """Under back-pressure on `o` and done, gaps on the mask and the constant writes.
    Icarus: three frames of the sweep back to back with reloads; Verilator: the
    fomm-256 frame (K = 10 on 64², a softmax's masks: about 10^5 cycles). Then a
    frame's commands without back-pressure: the cycle model's cycles (Verilator:
    a flow of K = 10 on 16²)."""
    if simulator == "icarus":
        progs, options = _sweep(9, FRAMES[:3]), {"ready_prob": 0.6, "in_prob": 0.7}
    else:
        progs, options = _fomm_frame(9, 64), {"ready_prob": 0.9, "in_prob": 0.9}
    run, result = simulate_cocotb(
        progs, PARAMS, simulator=simulator, build_dir=_build_dir(build_root), write_prob=0.6,
        done_ready_prob=0.5, seed=1, **options,
    )  # fmt: skip
    result.check()
    _check(run.outputs, progs, simulator)
    assert run.tokens == [p.tag for p in progs] and run.stalls["o"] > 0
    progs = _timed(10)[2:7] if simulator == "icarus" else _fomm_frame(10, 16)[-2:]  # one frame
    run, result = simulate_cocotb(
        progs, PARAMS, simulator=simulator, build_dir=_build_dir(build_root), seed=2
    )
    result.check()
    _check(run.outputs, progs, f"{simulator} unstalled")
    assert run.cycles == run_cycles(PARAMS, _commands(progs))


def test_cocotb_reports_a_wrong_entry(build_root: Path) -> None:
    from sim.runner import SimulationFailed

    rng = np.random.default_rng(11)
    progs = place(frame_cases(rng, random_frame(rng, 1, 2), ()), PARAMS)
    progs[1].expected[3, 1] ^= 1
    _, result = simulate_cocotb(progs, PARAMS, simulator="icarus", build_dir=_build_dir(build_root))
    with pytest.raises(SimulationFailed, match="1 of 8 output words differ; first at #7"):
        result.check()


@pytest.mark.long
def test_long_verilator_frames(build_root: Path) -> None:
    """`make test-long`: four fomm-256 frames back to back with their constants
    reloaded, every Jacobian kind, under back-pressure."""
    rng = np.random.default_rng(12)
    cases = []
    for jac, kp in (
        ("random", "random"),
        ("limit", "edge"),
        ("halves", "centres"),
        ("mixed", "corners"),
    ):
        cases += frame_cases(rng, random_frame(rng, 10, 64, kp=kp, jac=jac), ("softmax", "random"))
    progs = place(cases, PARAMS)
    run, result = simulate_cocotb(
        progs, PARAMS, simulator="verilator", build_dir=_build_dir(build_root), ready_prob=0.8,
        in_prob=0.9, write_prob=0.7, done_ready_prob=0.5, seed=12,
    )  # fmt: skip
    result.check()
    _check(run.outputs, progs, "long")
