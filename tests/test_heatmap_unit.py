"""The heatmap unit (rtl/act/heatmap.py) against L2's `heatmaps`; its host side and cycles.

Host side first (no RTL): the write streams and the command read back field by
field, the refusals, the load schedule, the generators' coverage of the edges
(pixel centres, rounding ties, the table's end, the s14 saturation), and the
unit's DSPs and block RAM. Then tier 1 (Amaranth's simulator: sweeps under
back-pressure and write gaps, frames back to back with keypoints, grid and
table reloaded between them, token credits, K = max, the s14 saturation's edge
with a table as long as the unit is exact for, the iCE40 form, the cycle
model) and tier 2 (cocotb on the elaborated Verilog: Icarus on a sweep and
on a wrong value the bench must report, Verilator on the fomm-256 shape,
K = 10 on a 64² grid; many frames in `make test-long`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from amaranth.lib import data

from defs.limits import TAG_BITS
from defs.params import ActParams, GraceParams, preset
from model.fixed_motion import gaussian_table, grid_axis, heatmaps, keypoints_to_coords
from rtl.act.heatmap import TOKEN_SLOTS, HeatmapUnit
from rtl.act.heatmap_issue import HeatmapIssue, beats_per_frame
from rtl.act.heatmap_layouts import MAX_TABLE, command_layout, gaussian_write_layout
from rtl.act.keypoints import KP_LIMIT_Q, grid_write_layout, keypoint_write_layout
from rtl.dsp import dsp_count
from rtl.heatmap_cycles import DRAIN, model_frame_cycles, run_cycles, tile_cycles
from rtl.hierarchy import block_ram_bound, instance_count
from sim.heatmap import (
    KEYPOINT_KINDS,
    HeatmapCase,
    HeatmapProgram,
    HeatmapProgramError,
    HeatmapRun,
    adversarial_keypoints,
    first_mismatch,
    hitting_offset,
    l2_indices,
    place,
    program,
    random_case,
    random_table,
    reference,
    schedule_loads,
    simulate_amaranth,
    simulate_cocotb,
    split_outputs,
    sweep_cases,
)

#: The tiny preset's unit: 16 keypoints, grids up to 128², a 2,048-entry table.
PARAMS = preset("tiny")
#: A small unit for fast sweeps: 5 keypoints, grids up to 12², a 512-entry table.
SMALL = PARAMS.replace(
    name="heatmap-small", act=ActParams(max_keypoints=5, max_grid=12, gaussian_depth=512)
)
#: A table as long as the unit is exact for (MAX_TABLE = 4,095 entries): the s14
#: saturation's edge then shows in the outputs.
LONG = PARAMS.replace(name="heatmap-long-table", act=ActParams(gaussian_depth=4096))
#: The fomm-256 unit (the ULX3S's): the Verilator runs.
FOMM = preset("fomm-256")
#: fomm-256's table: 1,818 entries of 0..128.
FOMM_TABLE = gaussian_table(0.01)


def _unpack(layout: data.StructLayout, word: int) -> dict[str, int]:
    return {name: (word >> f.offset) & ((1 << f.width) - 1) for name, f in layout}


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def _check(outputs: np.ndarray, progs: list[HeatmapProgram], cases: list[HeatmapCase]) -> None:
    """Every frame bit-exact against L2, named by its first wrong element."""
    for k, (got, prog, case) in enumerate(
        zip(split_outputs(outputs, progs), progs, cases, strict=True)
    ):
        wrong = first_mismatch(got, prog) or "(the expected values agree)"
        np.testing.assert_array_equal(
            got, reference(case), err_msg=f"frame {k}: {case.describe()}: {wrong}"
        )


def _ties(case: HeatmapCase) -> int:
    """Elements whose squared distance is a rounding tie (≡ 2^13 mod 2^14)."""
    total = 0
    for kp in (case.kp_driving, case.kp_source):
        coords, axis = keypoints_to_coords(kp), grid_axis(case.size)
        dx = axis[None, None, :] - coords[:, 0, None, None]
        dy = axis[None, :, None] - coords[:, 1, None, None]
        total += int(((dx * dx + dy * dy) % (1 << 14) == 1 << 13).sum())
    return total


# -- host side: layouts, refusals, loads, generators, resources ------------------------


@pytest.mark.parametrize("kind", KEYPOINT_KINDS)
def test_program_layout_reads_back(kind: str) -> None:
    """Decoded field by field: the command; the grid axis entry by entry; every
    keypoint of both frames once, in coordinates; the table, zero-filled to the
    depth; and the expected values, L2's heatmaps row ▸ column ▸ channel."""
    rng = np.random.default_rng(1)
    case = random_case(rng, SMALL, 3, 7, kind=kind, table="random")
    prog = program(case, SMALL, tag=9)
    assert _unpack(command_layout(SMALL), prog.command) == {"size": 7, "keypoints": 3, "tag": 9}
    grid = [_unpack(grid_write_layout(SMALL), w) for w in prog.writes["grid"]]
    assert [g["index"] for g in grid] == list(range(7))
    assert [_signed(g["value"], 16) for g in grid] == grid_axis(7).tolist()
    points = {}
    for word in prog.writes["keypoint"]:
        f = _unpack(keypoint_write_layout(SMALL), word)
        assert (f["keypoint"], f["source"]) not in points
        points[f["keypoint"], f["source"]] = (_signed(f["x"], 17), _signed(f["y"], 17))
    coords = [keypoints_to_coords(case.kp_driving), keypoints_to_coords(case.kp_source)]
    assert points == {(k, s): tuple(coords[s][k].tolist()) for k in range(3) for s in (0, 1)}
    table = [_unpack(gaussian_write_layout(SMALL), w) for w in prog.writes["gaussian"]]
    assert [t["index"] for t in table] == list(range(SMALL.act.gaussian_depth))
    filled = np.zeros(SMALL.act.gaussian_depth, dtype=np.int64)
    filled[: len(case.table)] = case.table
    np.testing.assert_array_equal([t["data"] for t in table], filled)
    maps = reference(case).reshape(7, 7, 4).transpose(2, 0, 1)
    assert not maps[0].any() and prog.outputs == 7 * 7 * 4
    kp_d, kp_s = keypoints_to_coords(case.kp_driving), keypoints_to_coords(case.kp_source)
    l2 = heatmaps(kp_d, kp_s, case.size, case.table)  # (K + 1, S, S)
    np.testing.assert_array_equal(prog.expected, l2.transpose(1, 2, 0).ravel())


def _refused(change: str) -> tuple[HeatmapCase, GraceParams, dict]:
    rng = np.random.default_rng(0)
    case = random_case(rng, SMALL, 2, 4, table="narrow")
    params, options = SMALL, {}
    if change == "driving beyond":
        case.kp_driving[1, 0] = KP_LIMIT_Q + 1
    elif change == "source beyond":
        case.kp_source[0, 1] = -KP_LIMIT_Q - 1
    elif change == "size 1":
        case.size = 1
    elif change == "size too large":
        case.size = 13
    elif change == "size float":
        case.size = 4.0
    elif change == "no keypoints":
        case.kp_driving, case.kp_source = case.kp_driving[:0], case.kp_source[:0]
    elif change == "too many keypoints":
        case.kp_driving, case.kp_source = np.zeros((6, 2), int), np.zeros((6, 2), int)
    elif change == "keypoint shape":
        case.kp_driving = case.kp_driving[:, :1]
    elif change == "keypoint counts differ":
        case.kp_source = case.kp_source[:1]
    elif change == "keypoints float":
        case.kp_source = case.kp_source.astype(float)
    elif change == "table too long":
        case.table = np.ones(513, int)
    elif change == "table beyond s14":
        params = PARAMS.replace(name="deep", act=ActParams(gaussian_depth=8192))
        case.table = np.ones(MAX_TABLE + 1, int)
    elif change == "empty table":
        case.table = case.table[:0]
    elif change == "negative entry":
        case.table[3] = -1
    elif change == "entry too large":
        case.table[0] = 256
    elif change == "tag":
        options = {"tag": 1 << TAG_BITS}
    return case, params, options


@pytest.mark.parametrize(
    "change, message",
    [
        ("driving beyond", r"kp_driving reaches \|kp_q\| = 513: .* exact for \|kp_q\| ≤ 512"),
        ("source beyond", r"kp_source reaches \|kp_q\| = 513"),
        ("size 1", r"size 1: the unit takes grids of side 2..12 \(act.max_grid\)"),
        ("size too large", "size 13: the unit takes grids of side 2..12"),
        ("size float", "size 4.0: give the grid's side as an integer"),
        ("no keypoints", r"0 keypoints: the unit takes 1..5 \(act.max_keypoints\)"),
        ("too many keypoints", "6 keypoints: the unit takes 1..5"),
        ("keypoint shape", r"kp_driving must have shape \(K, 2\), got \(2, 1\)"),
        ("keypoint counts differ", r"kp_driving \(2, 2\) and kp_source \(1, 2\) must have"),
        ("keypoints float", "kp_source must hold integers"),
        ("table too long", r"table of shape \(513,\): the unit holds 1..512 entries"),
        ("table beyond s14", r"table of shape \(4096,\): the unit holds 1..4095 entries \(s14"),
        ("empty table", r"table of shape \(0,\)"),
        ("negative entry", r"Gaussian table entries -1..128: the unit stores 0..255"),
        ("entry too large", r"Gaussian table entries .*256: the unit stores 0..255"),
        ("tag", "tag 256: the unit takes 0..255"),
    ],
)
def test_program_refuses_what_the_unit_is_not_exact_for(change: str, message: str) -> None:
    case, params, options = _refused(change)
    with pytest.raises(HeatmapProgramError, match=message) as refusal:
        program(case, params, **options)
    assert "\n" not in str(refusal.value)


def test_loads_skip_what_is_in_place_and_wait_for_its_readers() -> None:
    """Data already in place is not written again; keypoints or a grid that replace
    what an earlier frame reads wait for its token; a new table likewise. Loading
    everything first refuses two frames that want one place."""
    rng = np.random.default_rng(3)
    a = random_case(rng, SMALL, 3, 6, table="narrow")
    b = HeatmapCase(a.kp_driving[:2], a.kp_source[:2], 6, a.table)  # a's data, fewer
    c = HeatmapCase(a.kp_driving, a.kp_source, 4, a.table)  # a smaller grid: rewrites 0..3
    d = random_case(rng, SMALL, 1, 4, table="narrow")  # keypoint 0 moves
    e = HeatmapCase(d.kp_driving, d.kp_source, 4, random_table(rng, "random", 512))
    progs = place([a, b, c, d, e], SMALL)
    loads = schedule_loads(progs, overlap=True)
    counts = [
        tuple(len(load.writes[n]) for n in ("grid", "keypoint", "gaussian")) for load in loads
    ]
    # grid_axis(4) and grid_axis(6) share their first entry, −2^14
    assert counts == [(6, 6, 512), (0, 0, 0), (3, 0, 0), (0, 2, 0), (0, 0, counts[4][2])]
    assert 0 < counts[4][2] <= 512
    assert [load.wait for load in loads] == [0, 0, 2, 3, 4]
    assert schedule_loads(progs[:2], overlap=False)[1].writes["grid"] == []
    with pytest.raises(ValueError, match=r"frame 2 \(tag 2\) overwrites data frame 1 reads"):
        schedule_loads(progs, overlap=False)


def test_generators_reach_every_edge() -> None:
    """The sweep's frames: every keypoint kind, sizes 2 and odd, K = 1 and max,
    outputs 127 (T[0] = 128 saturated) and −128, rounding ties, keypoints at
    |kp_q| = 512, all-zero frames (driving = source). The adversarial frame on
    fomm-256's grid: index 0, len T − 1 and len T, offsets of exactly ±8,191
    and ±8,192."""
    cases = sweep_cases(SMALL, 14, seed=5)
    assert {c.kind.split()[0] for c in cases} == set(KEYPOINT_KINDS)
    assert {2, 3, 5, 12} <= {c.size for c in cases} and {1, 5} <= {c.keypoints for c in cases}
    outputs = np.concatenate([reference(c) for c in cases])
    assert {127, -128} <= set(outputs.tolist())
    assert sum(_ties(c) for c in cases) > 0
    assert max(np.abs(c.kp_driving).max() for c in cases) == KP_LIMIT_Q
    same = [c for c in cases if c.kind.startswith("same")]
    assert same and not any(reference(c).any() for c in same)
    kd, ks = adversarial_keypoints(64, len(FOMM_TABLE))
    idx_d, idx_s = l2_indices(kd, 64), l2_indices(ks, 64)
    assert (idx_d[:4] == 0).any(axis=(1, 2)).all() and (idx_s[4] == 0).any()
    assert (idx_d[5] == len(FOMM_TABLE) - 1).any() and (idx_s[5] == len(FOMM_TABLE)).any()
    offsets = {
        int(o)
        for kp in (kd, ks)
        for o in (grid_axis(64)[None, :] - keypoints_to_coords(kp)[:, :1]).ravel()
    }
    assert {8191, 8192, -8191, -8192} <= offsets
    frame = reference(HeatmapCase(kd, ks, 64, FOMM_TABLE)).reshape(64, 64, 11)
    assert (frame[[0, 0, -1, -1], [0, -1, 0, -1], [1, 2, 3, 4]] == 127).all()
    assert frame[0, -1, 5] == -128 and not frame[..., 9].any()


@pytest.mark.parametrize("family", ["ecp5", "ice40"])
def test_two_dsps_and_two_block_rams(family: str) -> None:
    """The squares on two DSPs and nothing else (the output path's ×1 is logic);
    on ECP5 the two Gaussian tables are the only DP16KD (the small stores are LUT
    RAM); on iCE40 the whole unit fits the UP5K's 30 EBR."""
    assert dsp_count(HeatmapUnit(FOMM, dsp_target=family), family) == 2
    if family == "ecp5":
        assert instance_count(HeatmapUnit(FOMM, dsp_target=family), "DP16KD") == 2
    else:
        assert block_ram_bound(HeatmapUnit(FOMM, dsp_target=family), family) <= 30


def test_cycle_model_formula_and_the_fomm_frame() -> None:
    """A frame costs S·(K + S·(K + 1)) beats plus set-up and drain; fomm-256's
    frame (K = 10 on 64²) 45,727 cycles; sizes and counts beyond the unit refused."""
    assert beats_per_frame(64, 10) == 64 * 10 + 64 * 64 * 11
    assert tile_cycles(FOMM, 64, 10) == HeatmapIssue.SETUP_LATENCY + 45_696 - 1 + DRAIN == 45_727
    assert model_frame_cycles(FOMM) == 45_727
    frame = HeatmapIssue.SETUP_LATENCY + 45_696
    assert run_cycles(FOMM, [(64, 10)] * 3) == 3 * frame - 1 + DRAIN
    for size, keypoints in ((1, 3), (129, 3), (8, 0), (8, 17)):
        with pytest.raises(
            ValueError, match=r"the unit takes sizes 2\.\.128 and 1\.\.16 keypoints"
        ):
            tile_cycles(PARAMS, size, keypoints)


# -- tier 1: Amaranth's simulator --------------------------------------------------------


def test_sweep_matches_l2_under_back_pressure() -> None:
    """14 sweep frames (every keypoint kind, S from 2 to 12, K from 1 to 5, the
    tables that fit), back to back, each frame's writes once the frames reading
    what they replace are done: `o` taken 60 % of the time, done tokens half the
    time, write words offered 70 % of the time."""
    cases = sweep_cases(SMALL, 14, seed=5)
    progs = place(cases, SMALL)
    run = simulate_amaranth(
        progs, SMALL, ready_prob=0.6, write_prob=0.7, done_ready_prob=0.5, seed=2,
        overlap_loads=True,
    )  # fmt: skip
    _check(run.outputs, progs, cases)
    assert run.tokens == list(range(len(progs)))
    assert run.stalls["o"] > 0 and run.stalls["done"] > 0


def test_fomm_table_on_small_grids_and_the_most_keypoints() -> None:
    """fomm-256's table (1,818 entries, T[0] = 128) on grids of 2, 3 and 9 (pixel
    centres on multiples of the keypoint step: index 0 and ties), K = 16 (the
    most), and on 7² the table's last entry and the first beyond it."""
    rng = np.random.default_rng(6)
    cases = [
        random_case(rng, PARAMS, 16, 3, kind="centres", table="fomm"),
        random_case(rng, PARAMS, 4, 9, kind="near", table="fomm"),
        random_case(rng, PARAMS, 3, 2, kind="corners", table="fomm"),
    ]
    edge_d, edge_s = adversarial_keypoints(7, len(FOMM_TABLE))
    cases.append(HeatmapCase(edge_d[5:6], edge_s[5:6], 7, FOMM_TABLE, "table edge"))
    assert (l2_indices(edge_d[5:6], 7) == 1817).any() and (l2_indices(edge_s[5:6], 7) == 1818).any()
    assert _ties(cases[1]) > 0 and cases[0].keypoints == PARAMS.act.max_keypoints
    progs = place(cases, PARAMS, first_tag=40)
    run = simulate_amaranth(
        progs, PARAMS, ready_prob=0.7, write_prob=0.8, done_ready_prob=0.6, seed=6,
        overlap_loads=True,
    )  # fmt: skip
    _check(run.outputs, progs, cases)
    assert {127, -128} <= set(run.outputs.tolist())


def test_the_s14_saturation_is_exact_at_its_edge() -> None:
    """A table of MAX_TABLE = 4,095 entries (as long as the unit is exact for): on
    a 54² grid (the smallest whose axis allows them) offsets of exactly 8,190
    (index 4,094: the table's last entry, read) and −8,191 (the bound: index
    4,095, beyond the table); on 5², ±8,192 (saturated to the bound: 0, as L2's
    index 4,096 reads)."""
    rng = np.random.default_rng(7)
    table = random_table(rng, "long", MAX_TABLE)
    hit = {o: hitting_offset(54 if abs(o) < 8192 else 5, o) for o in (8190, -8191, 8192, -8192)}
    cases = [
        HeatmapCase(np.array([hit[8190]]), np.array([hit[-8191]]), 54, table, "8,190, −8,191"),
        HeatmapCase(np.array([hit[8192]]), np.array([hit[-8192]]), 5, table, "±8,192"),
    ]
    idx = [
        set(l2_indices(kp, c.size).ravel().tolist())
        for c in cases
        for kp in (c.kp_driving, c.kp_source)
    ]
    assert 4094 in idx[0] and 4095 in idx[1] and 4096 in idx[2] & idx[3]
    progs = place(cases, LONG)
    run = simulate_amaranth(progs, LONG, write_prob=0.9, seed=7, overlap_loads=True)
    _check(run.outputs, progs, cases)
    # the last entry counts: L2's output is not 0 where the driving index is 4,094
    k, i, j = np.argwhere(l2_indices(cases[0].kp_driving, 54) == 4094)[0]
    assert run.outputs[(i * 54 + j) * 2 + k + 1] != 0


#: Frames back to back: (size, keypoints, keypoint kind, table). Frame 1 needs
#: no loads (frame 0's data), frame 2 a smaller grid, 3 new keypoints, 4 a new
#: table; frames 5 and 6 swap the keypoints back and forth.
SEQUENCE = [(6, 3, "random"), (6, 2, None), (4, 3, None), (4, 2, "outside"), (4, 2, None)]


def _sequence(seed: int) -> list[HeatmapCase]:
    rng = np.random.default_rng(seed)
    a = random_case(rng, SMALL, 3, 6, table="narrow")
    b = random_case(rng, SMALL, 2, 4, kind="outside", table="narrow")
    table = random_table(rng, "random", 512)
    return [
        a,
        HeatmapCase(a.kp_driving[:2], a.kp_source[:2], 6, a.table, "a's first two"),
        HeatmapCase(a.kp_driving, a.kp_source, 4, a.table, "a on a smaller grid"),
        b,
        HeatmapCase(b.kp_driving, b.kp_source, 4, table, "b, new table"),
        HeatmapCase(a.kp_driving[:2], a.kp_source[:2], 4, table, "a's keypoints again"),
        HeatmapCase(b.kp_driving, b.kp_source, 4, table, "b's again"),
    ]


def test_frames_back_to_back_with_reloads() -> None:
    """Keypoints, grid and table reloaded between frames, each load once the
    frames reading the old data are done: exact under back-pressure; without
    it, a frame that needs no loads has its command accepted as the frame
    before issues its last beat."""
    cases = _sequence(seed=8)
    progs = place(cases, SMALL, first_tag=100)
    loads = schedule_loads(progs, overlap=True)
    assert [load.wait for load in loads] == [0, 0, 2, 3, 4, 5, 6]
    run = simulate_amaranth(
        progs, SMALL, ready_prob=0.7, write_prob=0.6, done_ready_prob=0.6, seed=8,
        overlap_loads=True,
    )  # fmt: skip
    _check(run.outputs, progs, cases)
    assert run.tokens == [100 + k for k in range(len(progs))]
    quiet = simulate_amaranth(progs, SMALL, overlap_loads=True)
    _check(quiet.outputs, progs, cases)
    gap = quiet.accepted[1] - quiet.accepted[0]
    assert gap == HeatmapIssue.SETUP_LATENCY + beats_per_frame(6, 3), gap


def test_more_frames_than_token_slots_wait_for_their_credits() -> None:
    """2 × 2 frames with done tokens taken 1 % of the time: the unit holds
    TOKEN_SLOTS frames accepted but not done, then stops accepting until a
    token leaves; every output and token arrives, in order."""
    rng = np.random.default_rng(9)
    base = random_case(rng, SMALL, 1, 2, kind="centres", table="narrow")
    count = TOKEN_SLOTS + 6
    cases = [base] * count
    progs = place(cases, SMALL, first_tag=250)
    run = simulate_amaranth(progs, SMALL, done_ready_prob=0.01, seed=4, stall_limit=20_000)
    _check(run.outputs, progs, cases)
    assert run.tokens == [(250 + k) % (1 << TAG_BITS) for k in range(count)]
    held = [k + 1 - sum(r <= a for r in run.returned) for k, a in enumerate(run.accepted)]
    assert max(held) == TOKEN_SLOTS, held
    assert run.stalls["cmd"] > 0 and run.stalls["done"] > count


def _resident(seed: int) -> list[HeatmapCase]:
    """Frames whose data fit side by side: one grid, one table, keypoint prefixes."""
    rng = np.random.default_rng(seed)
    full = random_case(rng, SMALL, 5, 5, kind="near", table="narrow")
    return [
        HeatmapCase(full.kp_driving[:k], full.kp_source[:k], 5, full.table, f"first {k}")
        for k in (3, 1, 5, 2)
    ]


def test_cycle_model_is_exact_without_back_pressure() -> None:
    """Command transfer to done token: `tile_cycles` on single frames (S = 2 and
    K = 1, S = 3 and K = 16, S = 7 and K = 2), and `run_cycles` on resident
    frames issued back to back."""
    rng = np.random.default_rng(10)
    for size, k, params in ((2, 1, SMALL), (3, 16, PARAMS), (7, 2, SMALL)):
        case = random_case(rng, params, k, size, kind="random", table="narrow")
        run = simulate_amaranth([program(case, params)], params)
        _check(run.outputs, [program(case, params)], [case])
        assert run.cycles == tile_cycles(params, size, k), case.describe()
    cases = _resident(seed=11)
    progs = place(cases, SMALL)
    run = simulate_amaranth(progs, SMALL)
    _check(run.outputs, progs, cases)
    assert run.cycles == run_cycles(SMALL, [(c.size, c.keypoints) for c in cases])


def test_ice40_form_matches_l2_and_the_cycle_model() -> None:
    """The iCE40 elaboration (block RAM stores read synchronously, the squares
    as SB_MAC16 pipelines) computes the same values in the same cycles, and
    stays exact under back-pressure and write gaps."""
    cases = _resident(seed=12)
    progs = place(cases, SMALL)
    run = simulate_amaranth(progs, SMALL, dsp_target="ice40")
    _check(run.outputs, progs, cases)
    assert run.cycles == run_cycles(SMALL, [(c.size, c.keypoints) for c in cases])
    cases = _sequence(seed=13)[2:5]
    progs = place(cases, SMALL)
    run = simulate_amaranth(
        progs, SMALL, dsp_target="ice40", ready_prob=0.5, write_prob=0.6, seed=13,
        overlap_loads=True,
    )  # fmt: skip
    _check(run.outputs, progs, cases)


# -- tier 2: cocotb on the Verilog ------------------------------------------------------


def _build_dir(build_root: Path, params: GraceParams) -> Path:
    return build_root / "sim" / "heatmap" / params.key()


def _cocotb(
    cases: list[HeatmapCase],
    params: GraceParams,
    simulator: str,
    build_root: Path,
    **options: object,
) -> tuple[HeatmapRun, list[HeatmapProgram]]:
    progs = place(cases, params)
    run, result = simulate_cocotb(
        progs, params, simulator=simulator, build_dir=_build_dir(build_root, params), **options
    )
    result.check()
    _check(run.outputs, progs, cases)
    assert run.tokens == [p.tag for p in progs]
    return run, progs


def test_icarus_sweep_matches_l2(build_root: Path) -> None:
    """The small unit's sweep on Icarus, under back-pressure and write gaps, frames
    back to back with their loads between them; then resident frames without
    back-pressure: the cycle model's cycles."""
    cases = sweep_cases(SMALL, 7, seed=21)
    run, _ = _cocotb(
        cases, SMALL, "icarus", build_root, ready_prob=0.6, write_prob=0.7,
        done_ready_prob=0.5, seed=1, overlap_loads=True,
    )  # fmt: skip
    assert run.stalls["o"] > 0 and run.stalls["done"] > 0
    cases = _resident(seed=22)
    run, _ = _cocotb(cases, SMALL, "icarus", build_root, seed=2)
    assert run.cycles == run_cycles(SMALL, [(c.size, c.keypoints) for c in cases])


def test_verilator_fomm_frame_matches_l2(build_root: Path) -> None:
    """The fomm-256 unit on its real shape, K = 10 on 64², with its table: a frame
    of the adversarial keypoints (corners, centres, the table's end, the s14
    edge, driving = source, ties) under back-pressure and write gaps; then
    resident frames without back-pressure: the cycle model's cycles."""
    kd, ks = adversarial_keypoints(64, len(FOMM_TABLE))
    cases = [HeatmapCase(kd, ks, 64, FOMM_TABLE, "adversarial")]
    run, _ = _cocotb(
        cases, FOMM, "verilator", build_root, ready_prob=0.85, write_prob=0.8,
        done_ready_prob=0.5, seed=3,
    )  # fmt: skip
    assert run.outputs.size == 64 * 64 * 11 and run.stalls["o"] > 0
    cases = [HeatmapCase(kd[:k], ks[:k], 9, FOMM_TABLE, f"first {k}") for k in (10, 1, 4)]
    run, _ = _cocotb(cases, FOMM, "verilator", build_root, seed=4)
    assert run.cycles == run_cycles(FOMM, [(c.size, c.keypoints) for c in cases])


def test_cocotb_reports_a_wrong_output(build_root: Path) -> None:
    """The bench's own comparison: one wrong value in a frame fails the cocotb test."""
    from sim.runner import SimulationFailed

    rng = np.random.default_rng(25)
    progs = place([random_case(rng, SMALL, 1, 2, kind="centres", table="narrow")], SMALL)
    progs[0].expected[5] ^= 1
    build_dir = _build_dir(build_root, SMALL)
    _, result = simulate_cocotb(progs, SMALL, simulator="icarus", build_dir=build_dir)
    with pytest.raises(SimulationFailed, match="1 of 8 output words differ; first at #5"):
        result.check()


@pytest.mark.long
def test_long_verilator_many_fomm_frames(build_root: Path) -> None:
    """`make test-long`: 12 fomm-256 frames (≈ 540,000 outputs) of every keypoint
    kind on Verilator, keypoints reloaded between frames, under back-pressure."""
    rng = np.random.default_rng(24)
    cases = [
        random_case(rng, FOMM, 10, 64, kind=KEYPOINT_KINDS[k % len(KEYPOINT_KINDS)], table="fomm")
        for k in range(12)
    ]
    run, _ = _cocotb(
        cases, FOMM, "verilator", build_root, ready_prob=0.8, write_prob=0.7,
        done_ready_prob=0.5, seed=5, overlap_loads=True,
    )  # fmt: skip
    assert run.outputs.size == 12 * 64 * 64 * 11
