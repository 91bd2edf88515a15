"""Host side of the heatmap unit: a frame's keypoints and the Gaussian table in, `o` predicted.

`HeatmapCase` is one call of L2's `model.fixed_motion.heatmaps`: the driving and
the source frame's keypoints as the bitstream carries them (kp_q, KP_FRAC_BITS),
the motion grid's side S and the decoder's Gaussian table. `program` turns it
into the unit's view — grid axis, keypoint and table writes, one command — in
the layouts of `rtl/act/keypoints.py` and `rtl/act/heatmap_layouts.py`, with
L2's result in the unit's order (row ▸ column ▸ channel), after refusing, in
one line, what the unit is not exact for. `schedule_loads` decides which
writes each frame still needs and which earlier frames must be done before
they may land, and `unit_tiles` turns the frames into the tiles both
simulators run (`sim.unit_sim`: Amaranth's, and cocotb with `sim.heatmap_tb`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from defs.limits import TAG_BITS
from defs.params import GraceParams
from model.fixed_motion import gaussian_table, grid_axis, heatmaps, keypoints_to_coords
from rtl.act.heatmap import HeatmapUnit
from rtl.act.heatmap_layouts import MAX_TABLE, command_layout, gaussian_write_layout
from rtl.act.keypoints import KP_LIMIT_Q, grid_write_layout, keypoint_write_layout
from sim import unit_sim
from sim.runner import SimResult
from sim.stream_function import pack
from sim.unit_sim import UnitRun, UnitTile, writes_first

IntArray = npt.NDArray[np.int64]

#: The unit's write streams, in the order the benches drive them.
WRITE_STREAMS = ("grid", "keypoint", "gaussian")
#: Their ports on the unit, in the same order.
WRITE_PORTS = tuple(f"{name}_write" for name in WRITE_STREAMS)
#: A write's place in the unit: (stream, address), the keypoints' with the frame.
Location = tuple[str, int] | tuple[str, int, int]


class HeatmapProgramError(ValueError):
    """The frame does not fit the unit's command or buffers, or a value is out of its contract."""


@dataclass
class HeatmapCase:
    """One frame: what L2's `heatmaps` takes, keypoints as bitstream integers."""

    kp_driving: IntArray  # (K, 2) kp_q, (x, y)
    kp_source: IntArray  # (K, 2)
    size: int  # the motion grid's side S
    table: IntArray  # the Gaussian table T
    kind: str = ""  # the generator's kinds, for messages

    @property
    def keypoints(self) -> int:
        return int(np.shape(self.kp_driving)[0])

    def describe(self) -> str:
        return f"K={self.keypoints} S={self.size} T={len(self.table)} {self.kind}".strip()


def reference(case: HeatmapCase) -> IntArray:
    """L2's heatmaps in the unit's order: row i ▸ column j ▸ channel c = 0..K."""
    maps = heatmaps(
        keypoints_to_coords(case.kp_driving),
        keypoints_to_coords(case.kp_source),
        case.size,
        case.table,
    )
    return maps.transpose(1, 2, 0).reshape(-1)


def _integers(name: str, values: npt.ArrayLike) -> IntArray:
    a = np.asarray(values)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise HeatmapProgramError(f"{name} must hold integers, got {a.dtype}")
    return a.astype(np.int64)


def check_case(case: HeatmapCase, params: GraceParams) -> None:
    """Refuse, in one line, a frame the unit cannot compute exactly."""
    act = params.act
    size = case.size
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise HeatmapProgramError(f"size {size!r}: give the grid's side as an integer")
    if not 2 <= size <= act.max_grid:
        raise HeatmapProgramError(
            f"size {size}: the unit takes grids of side 2..{act.max_grid} (act.max_grid)"
        )
    kp_d, kp_s = _integers("kp_driving", case.kp_driving), _integers("kp_source", case.kp_source)
    for name, kp in (("kp_driving", kp_d), ("kp_source", kp_s)):
        if kp.ndim != 2 or kp.shape[1] != 2:
            raise HeatmapProgramError(f"{name} must have shape (K, 2), got {kp.shape}")
    if kp_d.shape != kp_s.shape:
        raise HeatmapProgramError(
            f"kp_driving {kp_d.shape} and kp_source {kp_s.shape} must have the same keypoints"
        )
    if not 1 <= len(kp_d) <= act.max_keypoints:
        raise HeatmapProgramError(
            f"{len(kp_d)} keypoints: the unit takes 1..{act.max_keypoints} (act.max_keypoints)"
        )
    for name, kp in (("kp_driving", kp_d), ("kp_source", kp_s)):
        worst = int(np.abs(kp).max())
        if worst > KP_LIMIT_Q:
            raise HeatmapProgramError(
                f"{name} reaches |kp_q| = {worst}: the unit is exact for |kp_q| ≤ {KP_LIMIT_Q} "
                f"(|kp| ≤ 2); decode this frame's heatmaps on the host"
            )
    table = _integers("table", case.table)
    longest = min(act.gaussian_depth, MAX_TABLE)
    if table.ndim != 1 or not 1 <= len(table) <= longest:
        why = "act.gaussian_depth" if longest == act.gaussian_depth else "s14 offsets"
        raise HeatmapProgramError(
            f"a Gaussian table of shape {table.shape}: the unit holds 1..{longest} entries "
            f"({why}); shorten the table or raise act.gaussian_depth"
        )
    if table.min() < 0 or table.max() > 255:
        raise HeatmapProgramError(
            f"Gaussian table entries {table.min()}..{table.max()}: the unit stores 0..255"
        )


@dataclass
class HeatmapProgram:
    """Everything the host sends the unit for one frame, and what it must send back."""

    writes: dict[str, list[int]]  # per write stream (WRITE_STREAMS), every word
    command: int
    expected: IntArray  # the `o` values, int8
    size: int
    keypoints: int
    tag: int
    # every write's location and data, in the order of `writes`: what the frame reads
    locations: dict[str, list[tuple[Location, int]]] = field(default_factory=dict)

    @property
    def outputs(self) -> int:
        return len(self.expected)


def program(case: HeatmapCase, params: GraceParams, *, tag: int = 1) -> HeatmapProgram:
    """The grid axis, keypoint and table writes and the command of one frame."""
    check_case(case, params)
    if not 0 <= tag < 1 << TAG_BITS:
        raise HeatmapProgramError(f"tag {tag}: the unit takes 0..{(1 << TAG_BITS) - 1}")
    size, k = int(case.size), case.keypoints
    axis = grid_axis(size)
    grid = pack(grid_write_layout(params), {"index": np.arange(size), "value": axis})
    coords = [keypoints_to_coords(case.kp_driving), keypoints_to_coords(case.kp_source)]
    frames = np.repeat([0, 1], k)
    points = np.concatenate(coords)
    keypoint = pack(
        keypoint_write_layout(params),
        {
            "keypoint": np.tile(np.arange(k), 2),
            "source": frames,
            "x": points[:, 0],
            "y": points[:, 1],
        },
    )
    depth = params.act.gaussian_depth
    table = np.zeros(depth, dtype=np.int64)
    table[: len(case.table)] = case.table
    gaussian = pack(gaussian_write_layout(params), {"index": np.arange(depth), "data": table})
    fields = {"size": size, "keypoints": k, "tag": tag}
    command = pack(command_layout(params), {n: [v] for n, v in fields.items()})[0]
    locations = {
        "grid": [(("grid", j), int(v)) for j, v in enumerate(axis)],
        "keypoint": [
            (("keypoint", int(n), int(f)), (int(x), int(y)))
            for n, f, (x, y) in zip(np.tile(np.arange(k), 2), frames, points, strict=True)
        ],
        "gaussian": [(("gaussian", j), int(v)) for j, v in enumerate(table)],
    }
    writes = {"grid": grid, "keypoint": keypoint, "gaussian": gaussian}
    return HeatmapProgram(writes, command, reference(case), size, k, tag, locations)


def place(
    cases: list[HeatmapCase], params: GraceParams, *, first_tag: int = 0
) -> list[HeatmapProgram]:
    """The cases as frames back to back, tags counting up from `first_tag`."""
    return [
        program(case, params, tag=(first_tag + k) % (1 << TAG_BITS)) for k, case in enumerate(cases)
    ]


# -- loading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameLoad:
    """The writes a frame still needs before its command, and the tokens to await first."""

    writes: dict[str, list[int]]
    wait: int  # tokens returned before the first write: the frames that read what it overwrites


def schedule_loads(progs: list[HeatmapProgram], *, overlap: bool) -> list[FrameLoad]:
    """Each frame's writes, less those whose data is already in place from an earlier frame.

    Overlapped, a frame's writes wait for every earlier frame that reads a place
    they change (its done token says it has read it all). Without overlap every
    write goes before the first command, so no two frames may want different
    data in one place: refused.
    """
    resident: dict[Location, object] = {}
    readers: dict[Location, dict[object, int]] = {}  # place → data → the last frame reading it
    loads = []
    for k, prog in enumerate(progs):
        changed = {
            name: [
                (loc, d, word)
                for (loc, d), word in zip(prog.locations[name], prog.writes[name], strict=True)
                if resident.get(loc) != d
            ]
            for name in WRITE_STREAMS
        }
        last = max(
            (
                j
                for entries in changed.values()
                for loc, d, _ in entries
                for data, j in readers.get(loc, {}).items()
                if data != d
            ),
            default=-1,
        )
        if last >= 0 and not overlap:
            raise ValueError(
                f"frame {k} (tag {prog.tag}) overwrites data frame {last} reads: "
                f"overlap the loads (each frame's after the tokens of those reading the old)"
            )
        for entries in changed.values():
            resident.update({loc: d for loc, d, _ in entries})
        for name in WRITE_STREAMS:
            for loc, d in prog.locations[name]:
                readers.setdefault(loc, {})[d] = k
        loads.append(
            FrameLoad({n: [w for _, _, w in entries] for n, entries in changed.items()}, last + 1)
        )
    return loads


# -- simulation -------------------------------------------------------------------------


@dataclass(frozen=True)
class HeatmapRun:
    outputs: IntArray  # every `o` value (int8), in arrival order
    tokens: list[int]  # done tags, in arrival order
    cycles: int  # from the first command's transfer to the last done token's
    # per stream: edges it offered a value that was not taken ("o", "done", "cmd")
    stalls: dict[str, int] = field(default_factory=dict)
    accepted: list[int] = field(default_factory=list)  # edge of each command's transfer
    returned: list[int] = field(default_factory=list)  # edge of each token's transfer


def split_outputs(outputs: npt.ArrayLike, progs: list[HeatmapProgram]) -> list[IntArray]:
    """A run's outputs as one array per frame, in order."""
    outputs = np.asarray(outputs, dtype=np.int64)
    total = sum(p.outputs for p in progs)
    if len(outputs) != total:
        raise AssertionError(f"{len(outputs)} outputs, the frames make {total}")
    return np.split(outputs, np.cumsum([p.outputs for p in progs])[:-1])


def first_mismatch(got: npt.ArrayLike, prog: HeatmapProgram) -> str | None:
    """Where a frame's outputs first differ from L2's (pixel, channel), or None."""
    got = np.asarray(got, dtype=np.int64)
    bad = np.flatnonzero(got != prog.expected)
    if not len(bad):
        return None
    pixel, channel = divmod(int(bad[0]), prog.keypoints + 1)
    i, j = divmod(pixel, prog.size)
    return (
        f"{len(bad)} outputs differ; first: row {i} column {j} channel {channel}: "
        f"got {got[bad[0]]}, expected {prog.expected[bad[0]]}"
    )


def _int8(values: list[int]) -> IntArray:
    return (
        (np.asarray(values, dtype=np.int64) & 0xFF).astype(np.uint8).view(np.int8).astype(np.int64)
    )


def unit_tiles(progs: list[HeatmapProgram], *, overlap_loads: bool) -> list[UnitTile]:
    """The frames as the tiles `sim.unit_sim` runs: each with its writes from
    `schedule_loads`, or, without `overlap_loads`, every write before the first."""
    loads = schedule_loads(progs, overlap=overlap_loads)
    ports = dict(zip(WRITE_PORTS, WRITE_STREAMS, strict=True))
    tiles = [
        UnitTile(
            prog.command,
            {port: load.writes[name] for port, name in ports.items()},
            load.wait,
            [],
            prog.outputs,
            prog.tag,
        )
        for prog, load in zip(progs, loads, strict=True)
    ]
    return tiles if overlap_loads else writes_first(tiles)


def _heatmap_run(run: UnitRun) -> HeatmapRun:
    return HeatmapRun(
        _int8(run.outputs), run.tokens, run.cycles, run.stalls, run.accepted, run.returned
    )


def simulate_amaranth(
    progs: list[HeatmapProgram],
    params: GraceParams,
    *,
    ready_prob: float = 1.0,
    write_prob: float = 1.0,
    done_ready_prob: float | None = None,
    seed: int = 0,
    dsp_target: str | None = None,
    overlap_loads: bool = False,
    stall_limit: int = 5000,
) -> HeatmapRun:
    """Load the grid, keypoints and table, issue the commands, collect outputs.

    Without `overlap_loads` every write goes first (`schedule_loads`); with it,
    each frame's writes go just before its command, once the frames that read
    what they overwrite are done. The three write streams run at once, each
    word offered with probability `write_prob` per cycle (random gaps);
    outputs and done tokens leave under random back-pressure (`ready_prob`;
    `done_ready_prob` for the tokens). Both output streams are checked against
    the stream rules; the tokens must be the commands' tags in order, each after
    its frame's last output (`sim.unit_sim.simulate_amaranth`).
    """
    if not progs:
        raise ValueError("simulate_amaranth: no programs to run")
    run = unit_sim.simulate_amaranth(
        HeatmapUnit(params, dsp_target=dsp_target), unit_tiles(progs, overlap_loads=overlap_loads),
        ready_prob=ready_prob, write_prob=write_prob, done_ready_prob=done_ready_prob, seed=seed,
        stall_limit=stall_limit,
    )  # fmt: skip
    return _heatmap_run(run)


def tags(progs: list[HeatmapProgram]) -> list[int]:
    """The done tokens the programs' commands return, in order."""
    return [p.tag for p in progs]


def simulate_cocotb(
    progs: list[HeatmapProgram],
    params: GraceParams,
    *,
    simulator: str,
    build_dir: Path,
    ready_prob: float = 1.0,
    write_prob: float = 1.0,
    done_ready_prob: float | None = None,
    seed: int = 0,
    waves: bool = False,
    overlap_loads: bool = False,
) -> tuple[HeatmapRun, SimResult]:
    """The same as `simulate_amaranth`, on the elaborated Verilog under cocotb.

    The bench (`sim.heatmap_tb`) fails the cocotb test (see `SimResult.check`)
    on a broken stream rule, a wrong output, or a done token that is not its
    command's tag or comes before its frame's last output.
    """
    run, result = unit_sim.simulate_cocotb(
        "heatmap", params, unit_tiles(progs, overlap_loads=overlap_loads), WRITE_PORTS,
        expected=[int(v) & 0xFF for p in progs for v in p.expected], simulator=simulator,
        build_dir=build_dir, ready_prob=ready_prob, write_prob=write_prob,
        done_ready_prob=done_ready_prob, seed=seed, waves=waves,
    )  # fmt: skip
    return _heatmap_run(run), result


# -- generators -------------------------------------------------------------------------

#: The keypoint kinds `random_keypoints` draws (driving, source):
#: - "random": anywhere in the frame;
#: - "corners": the four corners (kp_q = ±256: coordinates ±2^14), source elsewhere;
#: - "centres": exactly on pixel centres (index 0: T[0] = 128 saturates to 127),
#:   the source far outside; every other keypoint the other way round (−128);
#: - "near": pixel centres ± 1 or 2 LSB per axis (ties of the rounding where both are odd);
#: - "midpoints": halfway between two pixel centres;
#: - "outside": beyond the frame, up to |kp_q| = KP_LIMIT_Q (the contract's edge);
#: - "same": driving = source (every difference 0).
KEYPOINT_KINDS = ("random", "corners", "centres", "near", "midpoints", "outside", "same")
#: The table kinds `random_table` draws: fomm-256's (`gaussian_table(0.01)`, 1,818
#: entries), a narrower Gaussian (for small grids), random bytes with 0 and 255
#: (differences saturating both ways), and a long random one (MAX_TABLE entries).
TABLE_KINDS = ("fomm", "narrow", "random", "long")

#: Coordinate units per bitstream keypoint unit (keypoints_to_coords' shift).
KP_SCALE = int(keypoints_to_coords(1))
#: A keypoint far outside the frame (its Gaussian is 0 on every pixel).
FAR = KP_LIMIT_Q


def centres_q(size: int) -> IntArray:
    """The grid axis entries a keypoint can sit on exactly (multiples of KP_SCALE), in kp_q."""
    axis = grid_axis(size)
    return axis[axis % KP_SCALE == 0] // KP_SCALE


def random_table(rng: np.random.Generator, kind: str, longest: int) -> IntArray:
    """A Gaussian table of `TABLE_KINDS`, at most `longest` entries."""
    if kind == "fomm":
        table = gaussian_table(0.01)
    elif kind == "narrow":
        table = gaussian_table(0.002)
    elif kind in ("random", "long"):
        length = longest if kind == "long" else int(rng.integers(longest // 4, longest + 1))
        table = rng.integers(1, 256, length)
        table[0], table[rng.integers(1, length)] = 255, 0
    else:
        raise ValueError(f"unknown table kind {kind!r}; known: {', '.join(TABLE_KINDS)}")
    if len(table) > longest:
        raise ValueError(f"a {kind} table has {len(table)} entries, more than {longest}")
    return table


def random_keypoints(
    rng: np.random.Generator, kind: str, keypoints: int, size: int
) -> tuple[IntArray, IntArray]:
    """(driving, source) kp_q of shape (K, 2), of one of `KEYPOINT_KINDS`."""
    k = keypoints
    inside = rng.integers(-KP_LIMIT_Q // 2, KP_LIMIT_Q // 2 + 1, (2, k, 2))
    driving, source = inside
    far = rng.choice([-FAR, FAR], (k, 2))
    centres = centres_q(size)
    if kind == "random":
        pass
    elif kind == "corners":
        driving = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]])[np.arange(k) % 4] * 256
    elif kind == "centres":
        on = rng.choice(centres, (k, 2))
        flip = np.arange(k) % 2 == 1
        driving = np.where(flip[:, None], far, on)
        source = np.where(flip[:, None], on, far)
    elif kind == "near":
        # ±1 on both axes for every other keypoint: with centres on multiples of
        # KP_SCALE (S = 2, 3, 5, 9, …) each pixel's d² is then a rounding tie
        odd = np.arange(k)[:, None] % 2 == 0
        step = np.where(odd, rng.choice([-1, 1], (k, 2)), rng.choice([-2, -1, 1, 2], (k, 2)))
        driving = rng.choice(centres, (k, 2)) + step
    elif kind == "midpoints":
        axis = grid_axis(size)
        mid = (axis[:-1] + axis[1:]) // (2 * KP_SCALE)
        driving = rng.choice(mid, (k, 2))
        source = rng.choice(mid, (k, 2))
    elif kind == "outside":
        driving = rng.integers(-FAR, FAR + 1, (k, 2))
        driving[:, rng.integers(0, 2)] = rng.choice([-1, 1], k) * rng.integers(257, FAR + 1, k)
        driving[0] = [FAR, -FAR]
        source = far * rng.integers(1, 3, (k, 2)) // 2  # ±256 or ±512
    elif kind == "same":
        source = driving
    else:
        raise ValueError(f"unknown keypoint kind {kind!r}; known: {', '.join(KEYPOINT_KINDS)}")
    return np.clip(driving, -FAR, FAR), np.clip(source, -FAR, FAR).copy()


def hitting_index(size: int, index: int) -> IntArray | None:
    """A keypoint (kp_q x, y) that puts some pixel of the grid at table index `index`
    exactly (L2's round_shift(d², 14)): the first found, y from the frame's middle
    outwards; None if there is none."""
    axis = grid_axis(size)
    xs = np.arange(-KP_LIMIT_Q, KP_LIMIT_Q + 1)
    dx2 = (axis[None, :] - xs[:, None] * KP_SCALE) ** 2  # (x, column)
    for y in sorted(xs, key=abs):
        dy2 = (axis - y * KP_SCALE) ** 2  # (row,)
        idx = (dx2[:, :, None] + dy2[None, None, :] + (1 << 13)) >> 14
        hits = np.flatnonzero((idx == index).any(axis=(1, 2)))
        if len(hits):
            return np.array([xs[hits[len(hits) // 2]], y])
    return None


def hitting_offset(size: int, offset: int) -> IntArray | None:
    """A keypoint (kp_q x, y) with g[j] − x = `offset` (coordinates) for some column j,
    on the row of a pixel centre (dy = 0 there); None if no column allows it."""
    axis = grid_axis(size)
    for g in axis:
        if (g - offset) % KP_SCALE == 0 and abs(g - offset) <= KP_LIMIT_Q * KP_SCALE:
            return np.array([(g - offset) // KP_SCALE, centres_q(size)[0]])
    return None


def l2_indices(kp_q: npt.ArrayLike, size: int) -> IntArray:
    """L2's table indices round_shift(dx² + dy², 14) per (keypoint, row, column)."""
    kp = keypoints_to_coords(kp_q)
    axis = grid_axis(size)
    dx = axis[None, None, :] - kp[:, 0, None, None]
    dy = axis[None, :, None] - kp[:, 1, None, None]
    return (dx * dx + dy * dy + (1 << 13)) >> 14


def random_case(
    rng: np.random.Generator,
    params: GraceParams,
    keypoints: int,
    size: int,
    *,
    kind: str = "random",
    table: str = "narrow",
) -> HeatmapCase:
    """A frame of `keypoints` of `kind` on a grid of `size`, with a table of kind `table`."""
    longest = min(params.act.gaussian_depth, MAX_TABLE)
    kp_d, kp_s = random_keypoints(rng, kind, keypoints, size)
    return HeatmapCase(kp_d, kp_s, size, random_table(rng, table, longest), f"{kind} {table}")


def sweep_cases(params: GraceParams, count: int, seed: int) -> list[HeatmapCase]:
    """`count` frames cycling through every keypoint kind, sizes from 2 to the largest
    (odd and even), K from 1 to the largest, the tables that fit."""
    rng = np.random.default_rng(seed)
    act = params.act
    longest = min(act.gaussian_depth, MAX_TABLE)
    tables = [t for t in TABLE_KINDS if len(random_table(rng, t, MAX_TABLE)) <= longest]
    sizes = [2, 3, act.max_grid, 5, 4, 9, 7, 6]
    counts = [1, act.max_keypoints, 2, 3]
    cases = []
    for n in range(count):
        size = min(sizes[n % len(sizes)], act.max_grid)
        k = min(counts[n % len(counts)], act.max_keypoints)
        kind = KEYPOINT_KINDS[n % len(KEYPOINT_KINDS)]
        table = tables[n % len(tables)]
        cases.append(random_case(rng, params, k, size, kind=kind, table=table))
    return cases


def adversarial_keypoints(size: int, table_length: int) -> tuple[IntArray, IntArray]:
    """Ten keypoints (driving, source) that put one frame on every edge the unit has:
    - 0–3: driving at the four corners (kp_q = ±256), source far: T[0] = 128 at the
      corner pixels, saturating to 127;
    - 4: driving far, source on a corner: −T[0] = −128;
    - 5: driving at index len T − 1 somewhere, source at len T (just beyond the table);
    - 6, 7: offsets g − kp of 8,191 and 8,192 (driving), −8,192 and −8,191 (source),
      each on a pixel centre's row: the s14 saturation's edge (where the grid allows);
    - 8: driving = source, a pixel centre + 1 LSB: differences 0;
    - 9: driving a centre ± 1 LSB (rounding ties), source halfway between two centres.
    """
    corners = np.array([[-256, -256], [256, -256], [-256, 256], [256, 256]])
    driving = [*corners, [FAR, -FAR]]
    source = [[FAR, FAR], [-FAR, FAR], [FAR, -FAR], [-FAR, -FAR], corners[1]]
    edge = [hitting_index(size, table_length - 1), hitting_index(size, table_length)]
    driving.append(edge[0] if edge[0] is not None else corners[0])
    source.append(edge[1] if edge[1] is not None else corners[3])
    for d, s in ((8191, -8192), (8192, -8191)):
        hit_d, hit_s = hitting_offset(size, d), hitting_offset(size, s)
        driving.append(hit_d if hit_d is not None else [FAR, 0])
        source.append(hit_s if hit_s is not None else [-FAR, 0])
    centre = centres_q(size)[0]
    driving.append([centre + 1, centre])
    source.append([centre + 1, centre])
    axis = grid_axis(size)
    driving.append([centre - 1, -centre + 1])
    source.append([(axis[0] + axis[1]) // (2 * KP_SCALE), 0])
    return np.array(driving, dtype=np.int64), np.array(source, dtype=np.int64)
