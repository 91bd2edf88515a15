"""The element-wise engine (rtl/act/) against L2's tables and affine; its host side and cycles.

Host side first (no RTL): the stream layouts read back field by field, the
refusals, the load schedule's hazards, and the generators' coverage. Then
tier 1 (Amaranth's simulator: sweeps at 1, 2 and 3 lanes under back-pressure
and input gaps, tiles of both ops back to back with tables and constants
loaded beside running tiles and rewritten between them, token credits, the
counters at their limits, the iCE40 form, the cycle model) and tier 2 (cocotb
on the elaborated Verilog: Icarus at two lanes, Verilator with the tiny
decoder's real shapes and ≥ 10^5 samples; ≥ 10^6 in `make test-long`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from amaranth.lib import data

from defs.limits import TAG_BITS
from defs.params import ActParams, GraceParams, NumericParams, preset
from model.fixed import int_range
from model.fixed_decoder import quantize_image
from rtl.act.engine import TOKEN_SLOTS
from rtl.act.issue import ActIssue
from rtl.act.layouts import (
    ActOp,
    command_layout,
    param_layout,
    param_write_layout,
    table_write_layout,
)
from rtl.act_cycles import groups_for, run_cycles, tile_cycles
from sim.act import (
    AFFINE_KINDS,
    INPUT_KINDS,
    LUT_KINDS,
    ZERO_INDEX,
    ActCase,
    ActProgram,
    ActProgramError,
    ActRun,
    affine_corners,
    first_mismatch,
    output_map,
    place,
    program,
    random_case,
    random_lut,
    reference,
    schedule_loads,
    simulate_amaranth,
    simulate_cocotb,
    split_outputs,
    sweep_cases,
    unpack_bytes,
)

#: The tiny preset's engine: 1 lane, 256 constant sets.
PARAMS = preset("tiny")
#: Two lanes, 128 constant sets: 255 channels fill them, and bases wrap.
LANES2 = PARAMS.replace(name="act-2-lanes", act=ActParams(lanes=2, param_depth=128))
#: Three lanes: 24-bit words, a lane count that divides nothing in the sweep, a
#: constant buffer whose depth (96) is not a power of two, and narrower constants
#: (20-bit bias, 12-bit multiplier, shift up to 30) than the presets'.
LANES3 = PARAMS.replace(
    name="act-3-lanes",
    numeric=NumericParams(acc_bits=24, bias_bits=20, mult_bits=12, max_shift=30),
    act=ActParams(lanes=3, param_depth=96),
)
#: The ULX3S engine (1 lane, 1,024 constant sets): the long run.
ULX3S = preset("ulx3s-85f")
SWEEPS = {
    params.name: (params, sweep_cases(params, 24, seed=7 + params.act.lanes, max_beats=256))
    for params in (PARAMS, LANES2, LANES3)
}


def _unpack(layout: data.StructLayout, word: int) -> dict[str, int]:
    return {name: (word >> f.offset) & ((1 << f.width) - 1) for name, f in layout}


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


def _check(
    raw: np.ndarray, progs: list[ActProgram], cases: list[ActCase], params: GraceParams, what: str
) -> None:
    """Every tile's channels bit-exact against L2, and TABLE padding lanes the entry of 0."""
    for k, (got, prog, case) in enumerate(
        zip(split_outputs(raw, progs), progs, cases, strict=True)
    ):
        name = f"{what} tile {k}: {case.describe()}"
        wrong = first_mismatch(got, prog) or "(the expected bytes agree)"
        np.testing.assert_array_equal(
            output_map(got, prog), reference(case, params), err_msg=f"{name}: {wrong}"
        )
        if case.op == ActOp.TABLE:
            pad = got[~prog.mask]
            assert (pad == int(case.lut[ZERO_INDEX]) & 0xFF).all(), f"{name}: padding {pad}"


# -- host side: layouts, refusals, loads, generators ------------------------------------


#: Tables the layout test writes: unsigned, signed, the pixel sigmoid, 0/255.
TABLE_KINDS = ("random", "signed", "pixel", "extreme")


def _layout_cases() -> list[object]:
    rng = np.random.default_rng(1)
    shapes = [(1, (1, 1)), (5, (3, 4)), (7, (1, 6)), (4, (5, 1))]
    cases = []
    for params in (PARAMS, LANES2, LANES3):
        for op in ActOp:
            for k, ((c, size), base) in enumerate(zip(shapes, (0, 17, 3, 20), strict=True)):
                kind = TABLE_KINDS[k] if op == ActOp.TABLE else AFFINE_KINDS[k]
                relu = k % 2 == 1
                case = random_case(rng, params, op, c, size, kind=kind, relu=relu, table=k % 2)
                name = f"{params.act.lanes}-lanes-{case.describe().replace(' ', '-')}"
                cases.append(pytest.param(params, case, base, k, id=name))
    return cases


@pytest.mark.parametrize("params, case, param_base, tag", _layout_cases())
def test_program_layout_reads_back(
    params: GraceParams, case: ActCase, param_base: int, tag: int
) -> None:
    """Decoded field by field: the command; every table entry once, in its slot;
    channel c's constants at lane c mod L, address param_base + c div L (what
    the first beat reads written last, so it lands just before the command); input
    word (pixel, g) holding channels gL .. gL + L − 1 (0 where ≥ C); and the
    expected bytes, read back as a map, L2's result."""
    lanes, n = params.act.lanes, params.numeric
    prog = program(case, params, tag=tag, param_base=param_base)
    c, (h, w) = case.channels, case.size
    groups = groups_for(params, c)
    assert _unpack(command_layout(params), prog.command) == {
        "op": int(case.op),
        "pixels": h * w,
        "groups": groups,
        "param_base": param_base,
        "table": case.table,
        "relu": int(case.relu),
        "tag": tag,
    }
    if case.op == ActOp.TABLE:
        assert not prog.param_writes
        entries = [_unpack(table_write_layout(), word) for word in prog.table_writes]
        assert {e["table"] for e in entries} == {case.table}
        assert sorted(e["index"] for e in entries) == list(range(256))
        table = np.zeros(256, dtype=np.int64)
        for e in entries:
            table[e["index"]] = e["data"]
        np.testing.assert_array_equal(table, case.lut & 0xFF)
        assert entries[-1]["index"] == case.x[0, 0, 0] + 128  # the first beat's, written last
    else:
        assert not prog.table_writes
        got = {}
        for word in prog.param_writes:
            f = _unpack(param_write_layout(params), word)
            d = _unpack(param_layout(params), f["data"])
            assert (f["lane"], f["addr"]) not in got
            bias = _signed(d["bias"], n.bias_bits)
            got[f["lane"], f["addr"]] = (d["negate"], bias, d["multiplier"], d["shift"])
        last = _unpack(param_write_layout(params), prog.param_writes[-1])
        assert (last["lane"], last["addr"]) == (0, param_base)  # the first beat's, written last
        assert got == {
            (ch % lanes, param_base + ch // lanes): (
                case.negate[ch],
                case.bias[ch],
                case.multiplier[ch],
                case.shift[ch],
            )
            for ch in range(c)
        }
    words = unpack_bytes(prog.inputs, lanes).view(np.int8).astype(np.int64)
    assert words.shape == (h * w * groups, lanes)
    planes = words.reshape(h, w, groups * lanes).transpose(2, 0, 1)
    np.testing.assert_array_equal(planes[:c], case.x)
    assert not planes[c:].any()
    assert prog.mask.sum() == c * h * w and prog.mask.shape == (h * w * groups, lanes)
    np.testing.assert_array_equal(output_map(prog.expected, prog), reference(case, params))


def test_output_map_reads_signed_and_unsigned_bytes() -> None:
    """Sigmoid tables give uint8, signed tables and affine int8; a padding lane
    never counts as a mismatch, a channel's lane does, named by channel and pixel."""
    rng = np.random.default_rng(2)
    for kind in ("pixel", "signed"):
        case = random_case(rng, LANES3, ActOp.TABLE, 4, (2, 3), kind=kind)  # x = 127 planted
        prog = program(case, LANES3)
        y = output_map(prog.expected, prog)
        assert y.min() >= 0 and y.max() > 127 if kind == "pixel" else y.min() < 0
    case = random_case(rng, LANES3, ActOp.AFFINE, 4, (2, 3), kind="saturate")
    prog = program(case, LANES3)
    assert output_map(prog.expected, prog).min() < 0
    raw = prog.expected.copy()
    raw[~prog.mask] ^= 0x55
    assert first_mismatch(raw, prog) is None
    raw[7, 0] ^= 1  # word 7 = pixel 3 = (1, 0), group 1: channel 3
    assert first_mismatch(raw, prog).startswith("1 bytes differ; first: channel 3 pixel (1, 0)")


def _refused(change: str) -> tuple[ActCase, dict]:
    rng = np.random.default_rng(0)
    case = random_case(rng, PARAMS, ActOp.AFFINE, 3, (4, 4))
    options: dict = {}
    n = PARAMS.numeric
    if change == "pixels":  # 2^24 pixels, never materialised
        case.x = np.broadcast_to(np.zeros((1, 1, 1), dtype=np.int64), (1, 4096, 4096))
    elif change == "groups":
        case = random_case(rng, PARAMS, ActOp.TABLE, 1024, (1, 1))
    elif change == "constants past the end":
        case = random_case(rng, PARAMS, ActOp.AFFINE, 10, (1, 1))
        options = {"param_base": 250}
    elif change == "param_base":
        options = {"param_base": 256}
    elif change == "tag":
        options = {"tag": 1 << TAG_BITS}
    elif change == "table slot":
        options = {"table": 2}
    elif change == "x range":
        case.x[0, 1, 2] = 128
    elif change == "x float":
        case.x = case.x.astype(float)
    elif change == "x shape":
        case.x = case.x[0]
    elif change == "no channels":
        case.x = case.x[:0]
    elif change == "bias":
        case.bias[1] = int_range(n.bias_bits)[1] + 1
    elif change == "multiplier":
        case.multiplier[2] = n.mult_max + 1
    elif change == "negative multiplier":
        case.multiplier[0] = -1
    elif change == "shift":
        case.shift[0] = n.max_shift + 1
    elif change == "negate":
        case.negate[0] = 2
    elif change == "constants shape":
        case.shift = case.shift[:2]
    elif change == "no constants":
        case.bias = None
    else:
        case = random_case(rng, PARAMS, ActOp.TABLE, 2, (3, 3))
        if change == "lut size":
            case.lut = case.lut[:255]
        elif change == "lut range":
            case.lut[5] = 256
        elif change == "lut signs":
            case.lut[:2] = [-1, 200]
        elif change == "no lut":
            case.lut = None
    return case, options


@pytest.mark.parametrize(
    "change, message",
    [
        ("pixels", "4096×4096 = 16777216 pixels: a tile takes at most 16777215"),
        ("groups", "1024 channels make 1024 groups of 1 lanes; a tile takes at most 1023"),
        ("constants past the end", "10 constant sets per lane from 250; the buffers hold 256"),
        ("param_base", "param_base 256: the buffers hold 0..255"),
        ("tag", "tag 256: the engine takes 0..255"),
        ("table slot", "table 2: the engine has tables 0..1"),
        ("x range", r"x must lie in -128..127, got -128..128"),
        ("x float", "x must hold integers"),
        ("x shape", r"x must be a non-empty \(C, H, W\)"),
        ("no channels", r"x must be a non-empty \(C, H, W\), got shape \(0, 4, 4\)"),
        ("bias", r"bias must lie in -2147483648..2147483647"),
        ("multiplier", "multiplier must lie in 0..65535, got .*65536"),
        ("negative multiplier", "multiplier must lie in 0..65535, got -1"),
        ("shift", "shift must lie in 0..47, got .*48"),
        ("negate", "negate must lie in 0..1"),
        ("constants shape", r"shift must have shape \(3,\), got \(2,\)"),
        ("no constants", "an AFFINE case needs bias"),
        ("lut size", r"lut must have shape \(256,\), got \(255,\)"),
        ("lut range", "lut must lie in -128..255"),
        ("lut signs", "8 bits hold 0..255 or −128..127, not both"),
        ("no lut", "a TABLE case needs a lut"),
    ],
)
def test_program_refuses_what_does_not_fit(change: str, message: str) -> None:
    case, options = _refused(change)
    with pytest.raises(ActProgramError, match=message) as refusal:
        program(case, PARAMS, **options)
    assert "\n" not in str(refusal.value)


def test_an_unknown_op_is_refused() -> None:
    with pytest.raises(ActProgramError, match="op 2: the engine knows TABLE = 0, AFFINE = 1"):
        ActCase(2, np.zeros((1, 1, 1), dtype=np.int64))


def test_loads_skip_what_is_in_place_and_wait_for_its_readers() -> None:
    """A table already in its slot is not written again; one that replaces it
    waits for the last tile reading the old one; constants likewise per address.
    Loading everything first refuses two tiles that want one place."""
    rng = np.random.default_rng(3)
    a, b = (random_case(rng, LANES2, ActOp.TABLE, 3, (2, 2), kind="random") for _ in "ab")
    b.table = 1
    c = random_case(rng, LANES2, ActOp.TABLE, 1, (1, 2), kind="sigmoid")  # slot 0 again
    p = random_case(rng, LANES2, ActOp.AFFINE, 5, (1, 1))
    q = random_case(rng, LANES2, ActOp.AFFINE, 3, (1, 1))
    progs = [
        program(a, LANES2, tag=0),
        program(p, LANES2, tag=1, param_base=4),  # addresses 4..6
        program(b, LANES2, tag=2),
        program(a, LANES2, tag=3),  # slot 0 holds it: nothing to write
        program(c, LANES2, tag=4),  # replaces slot 0: after tiles 0 and 3
        program(q, LANES2, tag=5, param_base=6),  # address 6 overlaps tile 1's
        program(p, LANES2, tag=6, param_base=10),
    ]
    loads = schedule_loads(progs, overlap=True)
    changed = int((c.lut != a.lut).sum())  # c's entries that differ from a's
    assert 200 < changed < 256
    assert [(len(t.table_writes), len(t.param_writes)) for t in loads] == [
        (256, 0), (0, 5), (256, 0), (0, 0), (changed, 0), (0, 3), (0, 5),
    ]  # fmt: skip
    assert [t.wait for t in loads] == [0, 0, 0, 0, 4, 2, 0]
    assert schedule_loads(progs[:4], overlap=False)[3].table_writes == []
    with pytest.raises(ValueError, match=r"tile 4 \(tag 4\) overwrites .* tile 3 reads"):
        schedule_loads(progs, overlap=False)


def test_the_sweeps_cover_every_option() -> None:
    """Both ops alternating, every kind, relu on and off for each, both slots, the
    sizes, channel counts that leave lanes empty (255 among them), every table
    entry read, −128 and 127 inputs, 0 and 255 (and −128 and 127) at both ends
    of a table, every affine corner; and the decoder's real shapes unshrunk."""
    full = sweep_cases(PARAMS, 24, seed=7)
    for params, cases in [*SWEEPS.values(), (PARAMS, full)]:
        lanes = params.act.lanes
        assert [c.op for c in cases] == [ActOp(k % 2) for k in range(len(cases))]
        ops = {op: [c for c in cases if c.op == op] for op in ActOp}
        assert {c.kind.split()[0] for c in ops[ActOp.TABLE]} == set(LUT_KINDS)
        assert {c.kind.split()[0] for c in ops[ActOp.AFFINE]} == set(AFFINE_KINDS)
        assert {c.kind.split()[1] for c in cases} == set(INPUT_KINDS)
        assert all({c.relu for c in ops[op]} == {True, False} for op in ActOp)
        assert {c.relu for c in ops[ActOp.AFFINE] if c.kind.startswith("corners")} == {0, 1}
        assert {c.table for c in ops[ActOp.TABLE]} == {0, 1}
        assert min(c.size[0] * c.size[1] for c in cases) == 1
        assert any(c.size[0] == 1 < c.size[1] for c in cases)
        assert any(c.size[1] == 1 < c.size[0] for c in cases)
        assert any(c.size[0] != c.size[1] and min(c.size) > 1 for c in cases)
        assert any(c.channels == 255 for c in cases)
        if lanes > 1:
            assert any(c.channels % lanes for c in cases)
            assert any(c.channels > lanes for c in cases)
        xs = [c.x for c in cases]
        assert any({-128, 127} <= set(np.unique(x)) and x.std() > 60 for x in xs)
        assert any(len(np.unique(c.x)) == 256 for c in ops[ActOp.TABLE])
        ends = [sorted(c.lut[:2]) + sorted(c.lut[-2:]) for c in ops[ActOp.TABLE]]
        assert [0, 255, 0, 255] in ends and [-128, 127, -128, 127] in ends
        corners = next(c for c in cases if c.kind.startswith("corners"))
        got = np.stack([corners.negate, corners.bias, corners.multiplier, corners.shift])
        assert got.shape[1] == affine_corners(params).shape[1]
        np.testing.assert_array_equal(got, affine_corners(params))
        assert (corners.x[:, 0, 0] != corners.x[:, 0, 1]).all()  # each on −128 and 127
    shapes = {(c.op, c.channels, c.size, c.kind.split()[0]) for c in full}
    assert {
        (ActOp.TABLE, 1, (16, 16), "sigmoid"),
        (ActOp.TABLE, 3, (64, 64), "pixel"),
        (ActOp.AFFINE, 64, (16, 16), "realistic"),
    } <= shapes


def test_affine_kinds_spread_or_saturate() -> None:
    """Realistic constants spread outputs over int8 with few saturated; the
    extremes saturate both ways, and to 0 under relu; −(−128) reaches +127 only
    through the 9-bit negate (bias 0, M = 1, s = 0)."""
    n, (lo, hi) = PARAMS.numeric, int_range(PARAMS.numeric.bias_bits)
    rng = np.random.default_rng(4)
    for kind in AFFINE_KINDS:
        case = random_case(rng, PARAMS, ActOp.AFFINE, 200, (4, 4), kind=kind)
        y = reference(case, PARAMS)
        saturated = np.mean((y == -128) | (y == 127))
        if kind == "realistic":
            assert saturated < 0.15 and y.std() > 20, (saturated, y.std())
            continue
        assert (y == -128).any() and (y == 127).any()
        assert saturated > {"saturate": 0.6, "mixed": 0.25, "corners": 0.3}[kind], saturated
        assert {lo, hi, 0} <= set(case.bias.tolist()) and set(case.negate.tolist()) == {0, 1}
        assert {0, 1, n.mult_max} <= set(case.multiplier.tolist())
        assert {0, 1, n.max_shift} <= set(case.shift.tolist())
        case.relu = True
        y = reference(case, PARAMS)
        assert y.min() == 0 and (y == 127).any()
    corners = random_case(rng, PARAMS, ActOp.AFFINE, 96, (1, 2), kind="corners", inputs="ends")
    negated = (corners.negate == 1) & (corners.bias == 0) & (corners.multiplier == 1)
    flip = negated & (corners.shift == 0)
    y = reference(corners, PARAMS)
    assert (y[flip][corners.x[flip] == -128] == 127).all()
    assert (y[flip][corners.x[flip] == 127] == -127).all()


# -- tier 1: Amaranth's simulator --------------------------------------------------------


@pytest.mark.parametrize("name", list(SWEEPS))
def test_sweep_matches_l2_under_back_pressure(name: str) -> None:
    """24 sweep cases, TABLE and AFFINE alternating, one tile after another, each
    tile's writes just before its command: `o` taken 60 % of the time, done
    tokens half the time, input words offered 70 % of the time."""
    params, cases = SWEEPS[name]
    progs = place(cases, params)
    run = simulate_amaranth(
        progs, params, ready_prob=0.6, in_prob=0.7, done_ready_prob=0.5, seed=params.act.lanes,
        overlap_loads=True,
    )  # fmt: skip
    _check(run.outputs, progs, cases, params, name)
    assert run.tokens == list(range(len(progs)))
    assert run.stalls["o"] > 0 and run.stalls["done"] > 0


#: Tiles back to back: (op, table slot and which of three tables / constants
#: base, size, channels). Tiles 1 and 3 load beside a running tile of their own
#: op (the other slot, the other constants region); later ones replace what an
#: earlier tile read, once it is done; tile 8's table is already in place.
SEQUENCE = [
    (ActOp.TABLE, (0, 0), (16, 16), 1),  # a random table, every entry read
    (ActOp.TABLE, (1, 1), (2, 5), 2),
    (ActOp.AFFINE, 0, (4, 8), 3),
    (ActOp.AFFINE, 8, (1, 1), 5),
    (ActOp.TABLE, (0, 2), (1, 7), 4),
    (ActOp.AFFINE, 0, (2, 5), 7),
    (ActOp.TABLE, (1, 0), (4, 1), 3),
    (ActOp.AFFINE, 8, (3, 3), 2),
    (ActOp.TABLE, (0, 2), (2, 3), 5),
    (ActOp.AFFINE, 0, (1, 6), 4),
]


def _sequence(params: GraceParams, seed: int) -> tuple[list[ActCase], list[ActProgram]]:
    """`SEQUENCE` as cases and programs (tags 100 up), relu on every other tile."""
    rng = np.random.default_rng(seed)
    luts = [random_lut(rng, kind) for kind in ("random", "signed", "extreme")]
    cases, progs = [], []
    for k, (op, place_at, size, channels) in enumerate(SEQUENCE):
        relu = k % 4 < 2
        if op == ActOp.TABLE:
            (slot, lut), base = place_at, 0
            case = random_case(rng, params, op, channels, size, inputs="ramp", relu=relu)
            case.table, case.lut = slot, luts[lut]
        else:
            kind = AFFINE_KINDS[k // 2 % len(AFFINE_KINDS)]
            case = random_case(rng, params, op, channels, size, kind=kind, relu=relu)
            base = place_at
        cases.append(case)
        progs.append(program(case, params, tag=100 + k, param_base=base))
    return cases, progs


@pytest.mark.parametrize("params", [PARAMS, LANES3], ids=lambda p: p.name)
def test_tiles_back_to_back_mixing_ops(params: GraceParams) -> None:
    """TABLE and AFFINE tiles one after another, tables and constants written
    beside a running tile and rewritten once the tiles reading them are done:
    exact under back-pressure; without it, a tile whose loads fit beside the
    running tile (or that needs none) has its command accepted as the tile
    before issues its last beat."""
    cases, progs = _sequence(params, seed=5)
    assert len(np.unique(cases[0].x)) == 256
    loads = schedule_loads(progs, overlap=True)
    assert [t.wait for t in loads] == [0, 0, 0, 0, 1, 3, 2, 4, 0, 6]
    assert not (loads[8].table_writes or loads[8].param_writes)
    run = simulate_amaranth(
        progs, params, ready_prob=0.7, in_prob=0.8, done_ready_prob=0.6, seed=6,
        overlap_loads=True,
    )  # fmt: skip
    _check(run.outputs, progs, cases, params, "back to back")
    assert run.tokens == [100 + k for k in range(len(progs))]
    quiet = simulate_amaranth(progs, params, overlap_loads=True)
    _check(quiet.outputs, progs, cases, params, "without back-pressure")
    for k in (1, 3, 8):  # loads beside the running tile, or none: back to back
        gap = quiet.accepted[k] - quiet.accepted[k - 1]
        assert gap == ActIssue.SETUP_LATENCY + progs[k - 1].words, (k, gap)


def test_counters_and_buffers_at_their_limits() -> None:
    """1,023 channel groups (the command's largest) of one pixel, as a table and
    as affine constants reaching the last address of a 1,024-deep buffer."""
    rng = np.random.default_rng(17)
    cases = [
        random_case(rng, ULX3S, ActOp.TABLE, 1023, (1, 1), kind="signed"),
        random_case(rng, ULX3S, ActOp.AFFINE, 1023, (1, 1), kind="mixed", relu=True),
    ]
    progs = [program(cases[0], ULX3S, tag=0), program(cases[1], ULX3S, tag=1, param_base=1)]
    assert progs[1].groups == 1023 and max(loc[2] for loc in progs[1].locations) == 1023
    run = simulate_amaranth(progs, ULX3S, ready_prob=0.8, in_prob=0.8, seed=17)
    _check(run.outputs, progs, cases, ULX3S, "limits")


def test_more_tiles_than_token_slots_wait_for_their_credits() -> None:
    """One-pixel tiles, both ops, with done tokens taken 1 % of the time: the
    engine holds TOKEN_SLOTS tiles accepted but not done, then stops accepting
    until a token leaves; every output and token arrives, in order."""
    rng = np.random.default_rng(8)
    count = TOKEN_SLOTS + 8
    lut = random_case(rng, LANES2, ActOp.TABLE, 1, (1, 1)).lut
    cases = [
        random_case(rng, LANES2, ActOp(k % 2), 1 + k % 3, (1, 1), kind="mixed" if k % 2 else None)
        for k in range(count)
    ]
    for case in cases[::2]:
        case.lut = lut
    progs = place(cases, LANES2, first_tag=200)
    run = simulate_amaranth(progs, LANES2, done_ready_prob=0.01, seed=4, stall_limit=20_000)
    _check(run.outputs, progs, cases, LANES2, "credits")
    assert run.tokens == [(200 + k) % (1 << TAG_BITS) for k in range(count)]
    held = [k + 1 - sum(r <= a for r in run.returned) for k, a in enumerate(run.accepted)]
    assert max(held) == TOKEN_SLOTS, held
    assert run.stalls["cmd"] > 0 and run.stalls["done"] > count


def test_quantize_image_through_a_table() -> None:
    """The key frame's quantization as a TABLE tile: byte b sent as x = b ⊕ 0x80
    reads entry b, and the tile's output is `quantize_image` of the frame."""
    rng = np.random.default_rng(16)
    frame = rng.integers(0, 256, (5, 7, 3))
    frame[0, 0], frame[-1, -1] = 0, 255
    x = (frame.transpose(2, 0, 1) ^ 0x80).astype(np.uint8).view(np.int8).astype(np.int64)
    case = random_case(rng, LANES2, ActOp.TABLE, 3, (5, 7), kind="quantize", table=1)
    case.x = x
    progs = [program(case, LANES2, tag=3)]
    run = simulate_amaranth(progs, LANES2, ready_prob=0.8, in_prob=0.8, seed=16)
    (got,) = split_outputs(run.outputs, progs)
    np.testing.assert_array_equal(output_map(got, progs[0]), quantize_image(frame))


def _resident(params: GraceParams, seed: int) -> tuple[list[ActCase], list[ActProgram]]:
    """Six tiles whose tables (one per slot) and constants fit side by side."""
    rng = np.random.default_rng(seed)
    shapes = [(1, (1, 1)), (4, (2, 5)), (3, (1, 1)), (5, (3, 3)), (2, (1, 9)), (7, (2, 2))]
    kinds = ["pixel", "saturate", "signed", "realistic", "pixel", "mixed"]
    cases = [
        random_case(
            rng, params, ActOp(k % 2), c, size, kind=kind, relu=k % 3 == 0, table=k // 2 % 2
        )
        for k, ((c, size), kind) in enumerate(zip(shapes, kinds, strict=True))
    ]
    cases[4].lut = cases[0].lut
    return cases, place(cases, params)


def test_cycle_model_is_exact_without_back_pressure() -> None:
    """Command transfer to done token: `rtl.act_cycles.tile_cycles` on single
    tiles of 1 to 45 words, one and two lanes, both ops; and `run_cycles` on
    the tiles issued back to back, everything loaded first."""
    for params in (PARAMS, LANES2):
        cases, progs = _resident(params, seed=9)
        for case, prog in zip(cases, progs, strict=True):
            run = simulate_amaranth([prog], params)
            _check(run.outputs, [prog], [case], params, "alone")
            assert run.cycles == tile_cycles(params, prog.pixels, prog.groups), case.describe()
        run = simulate_amaranth(progs, params)
        _check(run.outputs, progs, cases, params, "back to back")
        assert run.cycles == run_cycles(params, [(p.pixels, p.groups) for p in progs])


def test_ice40_form_matches_l2_and_the_cycle_model() -> None:
    """The iCE40 elaboration (16-bit DSP operands: the largest multipliers and
    the bias limits included) computes the same values in the same cycles, and
    stays exact under back-pressure."""
    cases, progs = _resident(LANES2, seed=10)
    run = simulate_amaranth(progs, LANES2, dsp_target="ice40")
    _check(run.outputs, progs, cases, LANES2, "ice40")
    assert run.cycles == run_cycles(LANES2, [(p.pixels, p.groups) for p in progs])
    run = simulate_amaranth(progs, LANES2, dsp_target="ice40", ready_prob=0.5, in_prob=0.6, seed=11)
    _check(run.outputs, progs, cases, LANES2, "ice40 under back-pressure")


# -- tier 2: cocotb on the Verilog ------------------------------------------------------


def _build_dir(build_root: Path, params: GraceParams) -> Path:
    return build_root / "sim" / "act" / params.key()


def _cocotb(
    cases: list[ActCase], params: GraceParams, simulator: str, build_root: Path, **options: object
) -> tuple[ActRun, list[ActProgram]]:
    progs = place(cases, params)
    run, result = simulate_cocotb(
        progs, params, simulator=simulator, build_dir=_build_dir(build_root, params), **options
    )
    result.check()
    _check(run.outputs, progs, cases, params, simulator)
    assert run.tokens == [p.tag for p in progs]
    return run, progs


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_verilog_matches_l2(simulator: str, build_root: Path) -> None:
    """Under back-pressure on `o` and done and input gaps, tiles back to back
    with their writes between them. Icarus: two lanes on a small sweep;
    Verilator: the tiny engine on the sweep unshrunk (the occlusion sigmoid of
    16², the pixel sigmoid of 3 × 64², the affine of 64 × 16²). Then resident
    tiles without back-pressure: the cycle model's cycles."""
    params = LANES2 if simulator == "icarus" else PARAMS
    if simulator == "icarus":
        cases = sweep_cases(params, 14, seed=21, max_beats=100)
    else:
        cases = sweep_cases(params, 14, seed=21)
    run, progs = _cocotb(
        cases, params, simulator, build_root, ready_prob=0.6, in_prob=0.7,
        done_ready_prob=0.5, seed=1, overlap_loads=True,
    )  # fmt: skip
    assert run.stalls["o"] > 0 and run.stalls["done"] > 0
    assert run.outputs.size >= (1000 if simulator == "icarus" else 25_000)
    cases, _ = _resident(params, seed=12)
    run, progs = _cocotb(cases, params, simulator, build_root, seed=2)
    assert run.cycles == run_cycles(params, [(p.pixels, p.groups) for p in progs])


def test_cocotb_reports_a_wrong_byte_on_a_channel_only(build_root: Path) -> None:
    """The bench's comparison: a padding lane may hold anything, a channel may not."""
    from sim.runner import SimulationFailed

    rng = np.random.default_rng(15)
    case = random_case(rng, LANES2, ActOp.AFFINE, 3, (2, 3))  # group 1's lane 1 is padding
    prog = program(case, LANES2)
    build_dir = _build_dir(build_root, LANES2)
    prog.expected[~prog.mask] ^= 0xFF
    _, result = simulate_cocotb([prog], LANES2, simulator="icarus", build_dir=build_dir)
    result.check()
    prog.expected[5, 0] ^= 1
    _, result = simulate_cocotb([prog], LANES2, simulator="icarus", build_dir=build_dir)
    with pytest.raises(SimulationFailed, match="1 of 12 output words differ; first at #5"):
        result.check()


def _bulk(params: GraceParams, tiles: int, seed: int) -> list[ActCase]:
    """The tiny decoder's largest element-wise tiles in turn: the output frame's
    pixel sigmoid (3 × 64²) and a bottleneck's affine (64 × 16²)."""
    rng = np.random.default_rng(seed)
    cases = []
    for k in range(tiles):
        if k % 2 == 0:
            case = random_case(
                rng, params, ActOp.TABLE, 3, (64, 64), kind="pixel", table=k // 2 % 2
            )
        else:
            kind, relu = AFFINE_KINDS[k // 2 % 3], k % 4 == 1
            case = random_case(rng, params, ActOp.AFFINE, 64, (16, 16), kind=kind, relu=relu)
        cases.append(case)
    return cases


def test_verilator_hundred_thousand_samples(build_root: Path) -> None:
    """≥ 10^5 samples on Verilator under light back-pressure."""
    cases = _bulk(PARAMS, 8, seed=13)
    run, _ = _cocotb(
        cases, PARAMS, "verilator", build_root, ready_prob=0.9, in_prob=0.95,
        done_ready_prob=0.5, seed=13, overlap_loads=True,
    )  # fmt: skip
    assert run.outputs.size >= 100_000


@pytest.mark.long
def test_long_verilator_million_samples(build_root: Path) -> None:
    """`make test-long`: ≥ 10^6 samples on Verilator, the ULX3S engine (1,024
    constant sets), the tiny decoder's tiles and sweeps between them, under
    back-pressure."""
    cases = []
    for k in range(9):
        cases += _bulk(ULX3S, 8, seed=100 + k) + sweep_cases(ULX3S, 12, seed=200 + k)
    run, _ = _cocotb(
        cases, ULX3S, "verilator", build_root, ready_prob=0.8, in_prob=0.9,
        done_ready_prob=0.5, seed=14, overlap_loads=True,
    )  # fmt: skip
    assert run.outputs.size >= 1_000_000
