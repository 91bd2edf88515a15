"""The warp engine (rtl/warp/) against L2's warp, its host side, and its cycle model.

Host side first (no RTL): the bank layout, the refusals, the flow saturation,
and a NumPy emulation of the hardware form (`sim.warp.emulate`) equal to L2 on
every flow kind, a guard on the reference and the case generators. Then tier 1
(Amaranth's simulator: the sweep under back-pressure and flow gaps, tiles back
to back, double buffering, two lanes, token credits, the cycle model) and
tier 2 (cocotb on the elaborated Verilog, Icarus and Verilator, with ≥ 10^5
samples on Verilator; ≥ 10^6 in `make test-long`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from amaranth.lib import data

from defs.limits import DIM_BITS, GROUP_BITS, TAG_BITS
from defs.params import GraceParams, WarpParams, preset
from model.fixed_motion import grid_axis
from model.fixed_ops import normalized_to_pixels
from rtl.warp.engine import TOKEN_SLOTS
from rtl.warp.layouts import command_layout
from rtl.warp_cycles import run_cycles, tile_cycles
from sim.warp import (
    FEATURE_KINDS,
    FLOW_KINDS,
    FLOW_MAX,
    FLOW_MIN,
    ONE,
    WarpCase,
    WarpProgram,
    WarpProgramError,
    decode_features,
    decode_flow,
    emulate,
    join_channels,
    output_map,
    program,
    random_case,
    random_features,
    reference,
    simulate_amaranth,
    simulate_cocotb,
    split_channels,
    sweep_cases,
    tile_samples,
)

#: The tiny preset's engine: 1 lane, 1,024 words per bank (16 planes of 16²).
PARAMS = preset("tiny")
#: Two lanes and a shallower buffer: channel counts that leave a lane empty.
LANES2 = PARAMS.replace(name="warp-2-lanes", warp=WarpParams(lanes=2, depth=512))
#: Three lanes: words of 24 bits, a lane count that divides nothing in the sweep.
LANES3 = PARAMS.replace(name="warp-3-lanes", warp=WarpParams(lanes=3, depth=512))
SWEEP = sweep_cases(PARAMS, 21, seed=7, max_cycles=240)
SWEEP2 = sweep_cases(LANES2, 7, seed=8, max_cycles=240)


def _unpack(layout: data.StructLayout, word: int) -> dict[str, int]:
    return {name: (word >> f.offset) & ((1 << f.width) - 1) for name, f in layout}


def _programs(cases: list[WarpCase], params: GraceParams) -> list[list[WarpProgram]]:
    """The cases' tiles in order, packed side by side in the banks, a new group
    (one simulation) whenever the next tile does not fit beside the others."""
    groups: list[list[WarpProgram]] = [[]]
    base = 0
    for case in cases:
        for tile in split_channels(case, params):
            try:
                prog = program(tile, params, tag=len(groups[-1]), in_base=base)
            except WarpProgramError:
                groups.append([])
                base = 0
                prog = program(tile, params, tag=0)
            groups[-1].append(prog)
            f = prog.command_fields
            base = f["in_base"] + f["planes"] * f["in_plane"] + 3
    return [g for g in groups if g]


def _check_outputs(outputs: np.ndarray, progs: list[WarpProgram], what: str = "") -> None:
    """Each tile's slice of the run's samples equals its expected samples."""
    start = 0
    for k, prog in enumerate(progs):
        got = outputs[start : start + len(prog.expected)]
        start += len(prog.expected)
        np.testing.assert_array_equal(got, prog.expected, err_msg=f"{what} tile {k}")
    assert len(outputs) == start, f"{what}: {len(outputs)} samples, expected {start}"


# -- host side: layout, refusals, saturation ---------------------------------------------


def _layout_cases() -> list[tuple[GraceParams, WarpCase, int]]:
    rng = np.random.default_rng(1)
    shapes = [(1, (1, 1)), (3, (5, 9)), (5, (9, 5)), (2, (1, 7)), (4, (7, 1)), (7, (4, 6))]
    return [
        (params, random_case(rng, params, c, size, flow="random"), base)
        for params in (PARAMS, LANES2, LANES3)
        for (c, size), base in zip(shapes, (0, 17, 3, 100, 0, 41), strict=True)
    ]


@pytest.mark.parametrize("params, case, in_base", _layout_cases())
def test_program_places_every_pixel_where_the_layout_says(
    params: GraceParams, case: WarpCase, in_base: int
) -> None:
    """Plane g's pixel (y, x) in bank 2(y & 1) + (x & 1) at in_base + g·in_plane
    + (y >> 1)·in_row + (x >> 1), lane l = channel gL + l: read back from the
    decoded writes, every channel is the case's and every padding lane is 0."""
    lanes = params.warp.lanes
    prog = program(case, params, in_base=in_base)
    c, (h, w) = case.channels, case.size
    planes, in_row = -(-c // lanes), -(-w // 2)
    in_plane = -(-h // 2) * in_row
    banks = decode_features(prog, params)
    got = np.zeros((planes * lanes, h, w), dtype=np.int64)
    for g in range(planes):
        for y in range(h):
            for x in range(w):
                addr = in_base + g * in_plane + (y >> 1) * in_row + (x >> 1)
                got[g * lanes : (g + 1) * lanes, y, x] = banks[2 * (y & 1) + (x & 1), addr]
    np.testing.assert_array_equal(got[:c], case.features)
    assert not got[c:].any()
    assert len(prog.feature_writes) == planes * h * w  # one write per word, none twice
    assert len(set(prog.feature_writes)) == len(prog.feature_writes)
    fields = _unpack(command_layout(params), prog.command)
    assert fields == {
        "in_base": in_base,
        "in_plane": in_plane,
        "in_row": in_row,
        "in_height": h,
        "in_width": w,
        "planes": planes,
        "out_height": case.out_size[0],
        "out_width": case.out_size[1],
        "occlusion": 0,
        "tag": 1,
    }


def _refused(change: str) -> tuple[WarpCase, dict]:
    rng = np.random.default_rng(0)
    case = random_case(rng, PARAMS, 3, (4, 4), flow="random", occlusion=True)
    options: dict = {}
    if change == "too many words":
        case = random_case(rng, PARAMS, 17, (16, 16))
    elif change == "past the end":
        options = {"in_base": 1020}
    elif change == "wide map":
        case.features = np.zeros((1, 1, 1 << DIM_BITS), dtype=np.int64)
    elif change == "tall grid":
        case.coords = np.zeros((1 << DIM_BITS, 1, 2), dtype=np.int64)
        case.occlusion = None
    elif change == "planes":
        case.features = np.zeros((1 << GROUP_BITS, 1, 1), dtype=np.int64)
    elif change == "no channels":
        case.features = np.zeros((0, 4, 4), dtype=np.int64)
    elif change == "tag":
        options = {"tag": 1 << TAG_BITS}
    elif change == "int8":
        case.features[0, 1, 2] = 128
    elif change == "float":
        case.features = case.features.astype(np.float64)
    elif change == "occlusion value":
        case.occlusion[0, 0] = 256
    elif change == "occlusion shape":
        case.occlusion = case.occlusion[:, :3]
    return case, options


@pytest.mark.parametrize(
    "change, message",
    [
        ("too many words", r"17 channels of 16×16 take 17 planes of 64 words .* hold 1024"),
        ("past the end", r"from word 1020 to 1032; the banks hold 1024"),
        ("wide map", r"map 1×4096 on a 4×4 grid: sizes must stay below 4096"),
        ("tall grid", r"on a 4096×1 grid: sizes must stay below 4096"),
        ("planes", r"1024 channels make 1024 planes .* at most 1023"),
        ("no channels", r"non-empty \(C, H, W\), got \(0, 4, 4\)"),
        ("tag", r"tag 256: the engine takes 0..255"),
        ("int8", r"features span -?\d+..128; the engine takes -128..127"),
        ("float", r"features must be integers, got dtype float64"),
        ("occlusion value", r"occlusion span \d+..256; the engine takes 0..255"),
        ("occlusion shape", r"occlusion \(4, 3\) differs from the flow grid \(4, 4\)"),
    ],
)
def test_programs_that_do_not_fit_are_refused(change: str, message: str) -> None:
    case, options = _refused(change)
    with pytest.raises(WarpProgramError, match=message) as refusal:
        program(case, PARAMS, **options)
    assert "\n" not in str(refusal.value)


@pytest.mark.parametrize("size", [(1, 4095), (4095, 1), (2, 64), (16, 16), (1, 1)])
def test_far_flows_saturate_on_the_stream_without_changing_a_result(
    size: tuple[int, int],
) -> None:
    """Coordinates up to ±2^37 go on the s18 stream clipped to its range; L2 on
    the clipped coordinates equals L2 on the raw ones (docs/warp_engine.md §1.9),
    and so does the hardware form."""
    rng = np.random.default_rng(size[0] * 7 + size[1])
    case = random_case(rng, PARAMS, 1, size, out_size=(24, 24), flow="far", occlusion=True)
    assert case.coords.max() > 1 << 30 and case.coords.min() < -(1 << 30)
    prog = program(case, PARAMS.replace(warp=WarpParams(depth=4096)))
    stream = decode_flow(prog)
    clipped = np.clip(case.coords, FLOW_MIN, FLOW_MAX).reshape(-1, 2)
    np.testing.assert_array_equal(stream[:, :2], clipped)
    np.testing.assert_array_equal(stream[:, 2], case.occlusion.reshape(-1))
    assert {FLOW_MIN, FLOW_MAX} <= set(stream[:, :2].ravel().tolist())
    clipped_case = WarpCase(case.features, clipped.reshape(case.coords.shape), case.occlusion)
    np.testing.assert_array_equal(reference(clipped_case), reference(case))
    _, out = emulate(prog, PARAMS.replace(warp=WarpParams(depth=4096)))
    np.testing.assert_array_equal(out, prog.expected)


# -- host side: the hardware form against L2 ---------------------------------------------

EMULATED_SIZES = [(1, 1), (1, 7), (7, 1), (2, 2), (2, 3), (5, 9), (33, 47), (16, 16)]


@pytest.mark.parametrize("kind", FLOW_KINDS)
def test_hardware_form_equals_l2_on_every_flow_kind(kind: str) -> None:
    """`emulate` (banks from the program's writes, the s18 stream, c' saturated to
    s17, interpolation in bank order) equals L2's `warp_int` reordered, on map
    sizes from 1×1 to 33×47, grids of the map's size or not, with and without
    occlusion, every feature kind, 1 to 3 lanes: a guard on the reference, the
    generators and the layout."""
    rng = np.random.default_rng(FLOW_KINDS.index(kind))
    samples = 0
    for params in (PARAMS, LANES2, LANES3):
        for k, size in enumerate(EMULATED_SIZES):
            out_size = size if k % 2 else (int(rng.integers(1, 9)), int(rng.integers(1, 9)))
            features = FEATURE_KINDS[k % len(FEATURE_KINDS)]
            case = random_case(rng, params, 1 + k % 5, size, out_size, kind, k % 3 != 1, features)
            for tile in split_channels(case, params):
                prog = program(tile, params)
                acc, out = emulate(prog, params)
                np.testing.assert_array_equal(out, prog.expected, err_msg=tile.describe())
                assert acc.min() >= -(1 << 23) and acc.max() <= 127 << 16  # s24 (§1.8)
                samples += out.size
    assert samples > 2000


def test_flow_kinds_are_what_they_say() -> None:
    """Each generator hits the positions it is named for, checked through L2's
    own pixel conversion (on sizes whose S − 1 divides 2^15, where it is exact)."""
    rng = np.random.default_rng(3)
    h, w = 9, 17  # S − 1 = 8 and 16
    grid = (12, 13)

    def pixels(kind: str) -> tuple[np.ndarray, np.ndarray]:
        coords = random_case(rng, PARAMS, 1, (h, w), grid, kind).coords
        px = normalized_to_pixels(coords[..., 0], 14, w, 8)
        py = normalized_to_pixels(coords[..., 1], 14, h, 8)
        return px, py

    px, py = pixels("integer")
    assert not (px & 255).any() and not (py & 255).any()
    assert px.min() < 0 and px.max() >= w * 256 and py.min() < 0 and py.max() >= h * 256
    px, _ = pixels("centres")
    assert set(np.unique(np.abs(px - np.where(px > 256, (w - 1) * 256, 0)))) <= {0, 1, 2}
    px, _ = pixels("half_outside")
    edge = np.where(px > 0, px - (w - 1) * 256 - 128, px + 128)
    assert np.abs(edge).max() <= 1 and (px < 0).any() and (px > 0).any()
    coords = random_case(rng, PARAMS, 1, (h, w), grid, "identity").coords
    np.testing.assert_array_equal(coords[0, :, 0], grid_axis(grid[1]))
    np.testing.assert_array_equal(coords[:, 0, 1], grid_axis(grid[0]))
    shifted = random_case(rng, PARAMS, 1, (h, w), grid, "translation").coords - coords
    assert len(np.unique(shifted[..., 0])) == len(np.unique(shifted[..., 1])) == 1
    far = random_case(rng, PARAMS, 1, (h, w), (40, 40), "far").coords
    assert far.min() < FLOW_MIN and far.max() > FLOW_MAX and (np.abs(far) <= ONE).any()
    uniform = random_case(rng, PARAMS, 1, (h, w), (40, 40), "random").coords
    assert np.abs(uniform).max() <= 1.3 * ONE and np.abs(uniform).max() > ONE


def test_channels_split_into_tiles_that_fit() -> None:
    """The tiny generator warp (64 channels of 16²) takes 4 tiles of 16 planes on
    1,024-word banks, or 8 of 8 in half of them; the tiles' outputs, joined, are
    L2's warp of the whole map. Two lanes: 37 channels, the last word half empty."""
    rng = np.random.default_rng(4)
    case = random_case(rng, PARAMS, 64, (16, 16), flow="random", occlusion=True)
    for words, count in ((1024, 4), (512, 8)):
        tiles = split_channels(case, PARAMS, words=words)
        assert [t.channels for t in tiles] == [64 // count] * count
        progs = [program(t, PARAMS) for t in tiles]
        np.testing.assert_array_equal(
            join_channels([p.expected for p in progs], tiles, PARAMS), reference(case)
        )
    case = random_case(rng, LANES2, 37, (6, 7), (5, 5), flow="translation")
    tiles = split_channels(case, LANES2, words=80)  # 12 words a plane: 6 planes, 12 channels
    assert [t.channels for t in tiles] == [12, 12, 12, 1]
    progs = [program(t, LANES2) for t in tiles]
    assert progs[-1].expected.reshape(-1, 2)[:, 1].tolist() == [0] * 25  # the empty lane
    np.testing.assert_array_equal(output_map(progs[0].expected, tiles[0], 2), reference(tiles[0]))
    joined = join_channels([p.expected for p in progs], tiles, LANES2)
    np.testing.assert_array_equal(joined, reference(case))
    with pytest.raises(WarpProgramError, match="one plane of 16×16 takes 64 words"):
        split_channels(random_case(rng, PARAMS, 2, (16, 16)), PARAMS, words=63)


def test_the_sweeps_cover_every_option() -> None:
    full = sweep_cases(PARAMS, 24, seed=7)
    for cases in (SWEEP, full):
        assert {c.flow for c in cases} == set(FLOW_KINDS)
        assert {c.occlusion is None for c in cases} == {True, False}
        assert any(c.size != c.out_size for c in cases)
        assert min(c.size[0] * c.size[1] for c in cases) == 1
        assert any(c.size[0] == 1 < c.size[1] for c in cases)
        assert any(c.size[1] == 1 < c.size[0] for c in cases)
        assert any(c.size[0] != c.size[1] and min(c.size) > 1 for c in cases)
    shapes = {(c.channels, c.size) for c in full}
    assert {(3, (16, 16)), (64, (16, 16))} <= shapes
    assert any(c.size == (33, 47) for c in full) and any(c.size == (2, 2) for c in full)
    assert any(c.channels % 2 for c in SWEEP2) and any(c.channels > 2 for c in SWEEP2)
    rng = np.random.default_rng(0)
    for cases in (SWEEP, full):
        features = [c.features for c in cases]
        assert any((f == -128).all() for f in features)
        assert any((f == 127).all() for f in features)
        checker = [random_features(rng, f.shape, "checker") for f in features]
        assert any(f.size > 1 and (f == b).all() for f, b in zip(features, checker, strict=True))
        assert any({-128, 127} <= set(np.unique(f)) and f.std() > 60 for f in features)


# -- tier 1: Amaranth's simulator --------------------------------------------------------


@pytest.mark.parametrize("index", range(len(SWEEP)), ids=[c.describe() for c in SWEEP])
def test_engine_matches_l2_under_back_pressure(index: int) -> None:
    """One sweep case per test: `o` taken 50–80 % of the time, done tokens on
    their own random stream, flow entries with random gaps."""
    case = SWEEP[index]
    progs = [program(case, PARAMS, tag=index)]  # the sweep's cost cap keeps it one tile
    ready = 0.5 + 0.3 * (index % 4) / 3
    run = simulate_amaranth(
        progs, PARAMS, ready_prob=ready, flow_prob=0.6, done_ready_prob=0.7, seed=index
    )
    _check_outputs(run.outputs, progs, case.describe())
    assert run.tokens == [index]


@pytest.mark.parametrize("index", range(len(SWEEP2)), ids=[c.describe() for c in SWEEP2])
def test_two_lanes_with_odd_channel_counts(index: int) -> None:
    case = SWEEP2[index]
    progs = [program(t, LANES2, tag=k) for k, t in enumerate(split_channels(case, LANES2))]
    run = simulate_amaranth(progs, LANES2, ready_prob=0.6, flow_prob=0.7, seed=index)
    _check_outputs(run.outputs, progs, case.describe())


def test_the_sweep_back_to_back() -> None:
    """Every tile of the sweep resident at once where the banks allow, one
    command after another: each exact whatever tile comes before or after."""
    groups = _programs(SWEEP, PARAMS)
    assert len(groups) <= 3
    for k, progs in enumerate(groups):
        run = simulate_amaranth(progs, PARAMS, ready_prob=0.7, flow_prob=0.8, seed=k)
        _check_outputs(run.outputs, progs, f"group {k}")
        assert run.tokens == list(range(len(progs)))
        assert run.stalls["o"] > 0 and run.stalls["done"] > 0


#: Double buffering in two regions of `PING_PONG_WORDS` words: 7 channels of 5 × 6
#: (9 words a plane) as 3 + 3 + 1 planes, on a 7 × 8 grid, so each tile computes
#: (56 beats a plane) for longer than the next one loads (30 words a plane).
PING_PONG_WORDS = 32


def _ping_pong(params: GraceParams, cases: list[WarpCase], words: int) -> list[WarpProgram]:
    """The cases' tiles in two regions of `words` words, alternating (double buffering)."""
    tiles = [t for case in cases for t in split_channels(case, params, words=words)]
    return [
        program(t, params, tag=k % (1 << TAG_BITS), in_base=words * (k % 2))
        for k, t in enumerate(tiles)
    ]


def _ping_pong_case() -> WarpCase:
    rng = np.random.default_rng(9)
    return random_case(rng, PARAMS, 7, (5, 6), (7, 8), flow="translation", occlusion=True)


def test_loads_overlap_compute_in_two_halves() -> None:
    """A ping-pong controller writes tile k into one half while tile k−1 computes
    from the other: exact under back-pressure, and when each tile computes for
    longer than the next one loads, the loads hide: the run takes the cycle
    model's back-to-back cycles, as if every tile had been resident."""
    case = _ping_pong_case()
    progs = _ping_pong(PARAMS, [case], PING_PONG_WORDS)
    assert [p.planes for p in progs] == [3, 3, 1]
    run = simulate_amaranth(
        progs, PARAMS, ready_prob=0.7, flow_prob=0.8, seed=2, overlap_loads=True
    )
    _check_outputs(run.outputs, progs)
    tiles = split_channels(case, PARAMS, words=PING_PONG_WORDS)
    np.testing.assert_array_equal(
        join_channels([p.expected for p in progs], tiles, PARAMS), reference(case)
    )
    quiet = simulate_amaranth(progs, PARAMS, overlap_loads=True)
    _check_outputs(quiet.outputs, progs)
    assert quiet.cycles == run_cycles(PARAMS, [(p.pixels, p.planes) for p in progs])


def test_more_tiles_than_token_slots_wait_for_their_credits() -> None:
    """Short tiles with done tokens taken 1 % of the time: the engine holds
    TOKEN_SLOTS tiles accepted but not done, then stops accepting until a token
    leaves; every output and token arrives, in order."""
    rng = np.random.default_rng(5)
    count = TOKEN_SLOTS + 8
    progs = [
        program(random_case(rng, PARAMS, 1 + k % 2, (2, 3), (1, 2)), PARAMS, tag=200 - k,
                in_base=4 * k)
        for k in range(count)
    ]  # fmt: skip
    run = simulate_amaranth(progs, PARAMS, done_ready_prob=0.01, seed=4, stall_limit=20_000)
    _check_outputs(run.outputs, progs)
    assert run.tokens == [200 - k for k in range(count)]
    held = [k + 1 - sum(r <= a for r in run.returned) for k, a in enumerate(run.accepted)]
    assert max(held) == TOKEN_SLOTS, held
    assert run.stalls["cmd"] > 0 and run.stalls["done"] > count


def test_cycle_model_is_exact_without_back_pressure() -> None:
    """Command transfer to done token: `rtl.warp_cycles.tile_cycles` on single
    tiles of 1 to 3 planes and 1 to 70 pixels, one and two lanes; and
    `run_cycles` on tiles issued back to back."""
    rng = np.random.default_rng(6)
    for params, shapes in (
        (PARAMS, [(1, (1, 1), (1, 1)), (3, (5, 9), (7, 10)), (2, (4, 4), (1, 1))]),
        (LANES2, [(5, (3, 4), (3, 4)), (1, (2, 2), (2, 5))]),
    ):
        progs = []
        for k, (channels, size, out) in enumerate(shapes):
            case = random_case(rng, params, channels, size, out, FLOW_KINDS[k], k % 2 == 0)
            prog = program(case, params, tag=k, in_base=40 * k)
            run = simulate_amaranth([prog], params)
            np.testing.assert_array_equal(run.outputs, prog.expected)
            assert run.cycles == tile_cycles(params, prog.pixels, prog.planes), case.describe()
            progs.append(prog)
        run = simulate_amaranth(progs, params)
        _check_outputs(run.outputs, progs)
        assert run.cycles == run_cycles(params, [(p.pixels, p.planes) for p in progs])


def test_ice40_form_matches_l2_and_the_cycle_model() -> None:
    """The iCE40 elaboration (16-bit DSP operands) computes the same values in
    the same cycles."""
    progs = _programs(SWEEP[:6], PARAMS)[0]
    run = simulate_amaranth(progs, PARAMS, dsp_target="ice40")
    _check_outputs(run.outputs, progs)
    assert run.cycles == run_cycles(PARAMS, [(p.pixels, p.planes) for p in progs])


# -- tier 2: cocotb on the Verilog ------------------------------------------------------


def _build_dir(build_root: Path, params: GraceParams) -> Path:
    return build_root / "sim" / "warp" / params.key()


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_verilog_matches_l2(simulator: str, build_root: Path) -> None:
    """Under back-pressure on `o` and done and flow gaps. Icarus: small sweep
    cases resident side by side, one command after another, and a 3 × 16²
    translation on a 40 × 40 grid; Verilator: the whole sweep (the tiny
    preset's 16² warps, 64 channels in 8 tiles, and 33 × 47 maps included)
    double buffered in one run. Then the ping-pong tiles without back-pressure,
    whose loads hide: the cycle model's back-to-back cycles."""
    build_dir = _build_dir(build_root, PARAMS)
    if simulator == "icarus":
        rng = np.random.default_rng(22)
        cases = sweep_cases(PARAMS, 14, seed=21, max_cycles=400)
        big = random_case(rng, PARAMS, 3, (16, 16), (40, 40), "translation", True)
        runs = [(g, False) for g in _programs([*cases, big], PARAMS)]
    else:
        half = PARAMS.warp.depth // 2
        runs = [(_ping_pong(PARAMS, sweep_cases(PARAMS, 24, seed=21), half), True)]
    samples = 0
    for k, (progs, overlap) in enumerate(runs):
        run, result = simulate_cocotb(
            progs, PARAMS, simulator=simulator, build_dir=build_dir, ready_prob=0.6,
            flow_prob=0.7, done_ready_prob=0.5, seed=k, overlap_loads=overlap,
        )  # fmt: skip
        result.check()
        _check_outputs(run.outputs, progs, f"{simulator} run {k}")
        assert run.tokens == [p.command_fields["tag"] for p in progs]
        assert run.stalls["o"] > 0 and run.stalls["done"] > 0
        samples += len(run.outputs)
    assert samples >= (5000 if simulator == "icarus" else 30_000)
    progs = _ping_pong(PARAMS, [_ping_pong_case()], PING_PONG_WORDS)
    run, result = simulate_cocotb(
        progs, PARAMS, simulator=simulator, build_dir=build_dir, seed=99, overlap_loads=True
    )
    result.check()
    _check_outputs(run.outputs, progs)
    assert run.cycles == run_cycles(PARAMS, [(p.pixels, p.planes) for p in progs])


def test_verilog_two_lanes(build_root: Path) -> None:
    """Two lanes on Icarus: 16-bit words, odd channel counts (a lane left empty)."""
    progs = _programs(SWEEP2, LANES2)[0]
    run, result = simulate_cocotb(
        progs, LANES2, simulator="icarus", build_dir=_build_dir(build_root, LANES2),
        ready_prob=0.7, flow_prob=0.6, seed=3,
    )  # fmt: skip
    result.check()
    _check_outputs(run.outputs, progs)


def _bulk(params: GraceParams, tiles: int, seed: int) -> list[WarpProgram]:
    """Ping-pong tiles of 8 channels of 16² on a 40×40 grid (12,800 samples
    each at one lane), every flow kind, occlusion on every other one."""
    rng = np.random.default_rng(seed)
    cases = [
        random_case(rng, params, 8, (16, 16), (40, 40), FLOW_KINDS[k % len(FLOW_KINDS)], k % 2 == 1)
        for k in range(tiles)
    ]
    progs = _ping_pong(params, cases, params.warp.depth // 2)
    assert len(progs) == tiles
    return progs


def test_verilator_hundred_thousand_samples(build_root: Path) -> None:
    """≥ 10^5 samples on Verilator, double buffered, under light back-pressure."""
    progs = _bulk(PARAMS, 8, seed=12)
    assert sum(tile_samples(p, PARAMS) for p in progs) >= 100_000
    run, result = simulate_cocotb(
        progs, PARAMS, simulator="verilator", build_dir=_build_dir(build_root, PARAMS),
        ready_prob=0.9, flow_prob=0.9, done_ready_prob=0.5, seed=12, overlap_loads=True,
    )  # fmt: skip
    result.check()
    _check_outputs(run.outputs, progs)


def test_verilator_fomm_256_warps_on_the_ulx3s_engine(build_root: Path) -> None:
    """fomm-256's real sizes on the ULX3S engine (8,192 words per bank): the
    3-channel 64² source by two motions (random and far out of range), then a
    ping-pong tile of 4 feature planes of 64² × occlusion, as `grace bench`
    maps them."""
    params = preset("ulx3s-85f")
    rng = np.random.default_rng(21)
    half = params.warp.depth // 2
    cases = [
        random_case(rng, params, 3, (64, 64), flow="random"),
        random_case(rng, params, 3, (64, 64), flow="far"),
        random_case(rng, params, 4, (64, 64), flow="translation", occlusion=True),
    ]
    progs = [program(c, params, tag=k, in_base=half * (k % 2)) for k, c in enumerate(cases)]
    assert sum(tile_samples(p, params) for p in progs) == (3 + 3 + 4) * 64 * 64
    run, result = simulate_cocotb(
        progs, params, simulator="verilator", build_dir=_build_dir(build_root, params),
        ready_prob=0.9, flow_prob=0.9, seed=21, overlap_loads=True,
    )  # fmt: skip
    result.check()
    _check_outputs(run.outputs, progs)


def test_cocotb_reports_a_wrong_expectation(build_root: Path) -> None:
    from sim.runner import SimulationFailed

    prog = program(SWEEP[4], PARAMS)
    prog.expected = prog.expected.copy()
    prog.expected[len(prog.expected) // 2] ^= 1
    _, result = simulate_cocotb(
        [prog], PARAMS, simulator="icarus", build_dir=_build_dir(build_root, PARAMS)
    )
    with pytest.raises(SimulationFailed, match="output words differ"):
        result.check()


@pytest.mark.long
def test_long_verilator_million_samples(build_root: Path) -> None:
    """`make test-long`: ≥ 10^6 samples on Verilator under back-pressure."""
    progs = _bulk(PARAMS, 80, seed=13)
    assert sum(tile_samples(p, PARAMS) for p in progs) >= 1_000_000
    run, result = simulate_cocotb(
        progs, PARAMS, simulator="verilator", build_dir=_build_dir(build_root, PARAMS),
        ready_prob=0.8, flow_prob=0.9, done_ready_prob=0.5, seed=13, overlap_loads=True,
    )  # fmt: skip
    result.check()
    _check_outputs(run.outputs, progs)


@pytest.mark.long
@pytest.mark.parametrize("seed", range(2))
def test_long_sweep(seed: int) -> None:
    """`make test-long`: 2 × 60 more sweep cases in Amaranth, one and two lanes."""
    for params in (PARAMS, LANES2):
        cases = sweep_cases(params, 60, seed=100 + seed, max_cycles=600)
        for k, progs in enumerate(_programs(cases, params)):
            run = simulate_amaranth(progs, params, ready_prob=0.6, flow_prob=0.7, seed=k)
            _check_outputs(run.outputs, progs, f"{params.name} group {k}")
