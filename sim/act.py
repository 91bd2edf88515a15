"""Host side of the element-wise engine: tables and constants in, input words in, `o` predicted.

`ActCase` is one element-wise op on a (C, H, W) int8 map: a 256-entry table
(`model.fixed_ops.apply_lut`, the decoder's sigmoids) or per-channel affine
constants (`model.fixed_conv.affine_int`, the residual blocks' pre-activation).
`program` turns it into the engine's view — table writes, constant writes, input
words, one tile command — in the layout `rtl/act/layouts.py` defines, and the
L2 reference reordered into the engine's output order, one byte per lane, with
a mask of the lanes that carry a channel (the rest is padding, ignored only
when comparing). `schedule_loads` decides which writes each tile still needs and
which earlier tiles must be done before they may land, and `unit_tiles` turns
the programs into the tiles both simulators run (`sim.unit_sim`: Amaranth's,
and cocotb with `sim.act_tb`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from defs.limits import DIM_BITS, GROUP_BITS, TAG_BITS
from defs.params import GraceParams
from model.fixed import int_range
from model.fixed_conv import affine_int
from model.fixed_decoder import quantize_image
from model.fixed_ops import LUT_IN_BITS, LUT_SIZE, apply_lut, make_lut, sigmoid_lut
from rtl.act import ActEngine
from rtl.act.layouts import (
    TABLES,
    ActOp,
    command_layout,
    param_layout,
    param_write_layout,
    table_write_layout,
)
from sim import unit_sim
from sim.runner import SimResult
from sim.stream_function import pack
from sim.unit_sim import UnitRun, UnitTile, writes_first

IntArray = npt.NDArray[np.int64]
ByteArray = npt.NDArray[np.uint8]
BoolArray = npt.NDArray[np.bool_]

#: The engine's write streams, in the order the cocotb bench counts them.
WRITE_PORTS = ("table_write", "param_write")

#: The table kinds `random_case` draws: the decoder's two sigmoids (occlusion,
#: 0..255 pixels), random unsigned entries with 0 and 255 at both ends, a 0/255
#: alternation, a signed table (int8 entries, −128 and 127 at both ends), the
#: identity (y = x), a constant 0 or 255, and `quantize_image`'s (index = byte b).
LUT_KINDS = ("sigmoid", "pixel", "random", "extreme", "signed", "identity", "constant", "quantize")
#: The affine kinds: constants like PTQ's (outputs mostly inside int8), extremes
#: that saturate (bias at its limits, multipliers 0, 1 and the largest, shift 0,
#: 1 and the largest), a per-channel mix of the two, and every combination of
#: those extremes in turn, channel by channel ("corners").
AFFINE_KINDS = ("realistic", "saturate", "mixed", "corners")
#: The input kinds: random int8 with −128 and 127 planted, a −128/127
#: checkerboard, and a ramp through every int8 value (every table entry read).
INPUT_KINDS = ("random", "ends", "ramp")

#: The table index of int8 x = 0 (x + 128): what a padding lane reads.
ZERO_INDEX = -int_range(LUT_IN_BITS)[0]
#: A write's place in the engine: (0, table, index) or (1, lane, address).
Location = tuple[int, int, int]


class ActProgramError(ValueError):
    """The tile does not fit the engine's command fields or buffers, or a value is out of range."""


@dataclass
class ActCase:
    """One element-wise op: what L2's `apply_lut` or `affine_int` takes."""

    op: ActOp
    x: IntArray  # (C, H, W) int8 values
    lut: IntArray | None = None  # TABLE: 256 entries, all in 0..255 or all in −128..127
    negate: IntArray | None = None  # AFFINE: (C,) each
    bias: IntArray | None = None
    multiplier: IntArray | None = None
    shift: IntArray | None = None
    relu: bool = False  # AFFINE; a TABLE command carries it too, and the engine ignores it
    table: int = 0  # TABLE: the slot its entries go to
    kind: str = ""  # the generator's kinds, for messages

    def __post_init__(self) -> None:
        if self.op not in set(ActOp):
            known = ", ".join(f"{o.name} = {o.value}" for o in ActOp)
            raise ActProgramError(f"op {self.op!r}: the engine knows {known}")
        self.op = ActOp(self.op)

    @property
    def channels(self) -> int:
        return int(self.x.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.x.shape[1]), int(self.x.shape[2])

    def describe(self) -> str:
        c, (h, w) = self.channels, self.size
        relu = "relu" if self.relu else ""
        parts = (self.op.name, f"{c}x{h}x{w}", self.kind, relu)
        return " ".join(s for s in parts if s)


def _signed_table(lut: IntArray) -> bool:
    """Whether the table's bytes read as int8 (a negative entry) rather than uint8."""
    return bool(np.asarray(lut).min() < 0)


def reference(case: ActCase, params: GraceParams) -> IntArray:
    """L2's result (C, H, W): table entries as the table holds them, or int8 affine outputs."""
    if case.op == ActOp.TABLE:
        return apply_lut(case.x, case.lut)
    return affine_int(
        case.x,
        case.negate,
        case.bias,
        case.multiplier,
        case.shift,
        params.numeric,
        relu=case.relu,
    )


# -- generators -------------------------------------------------------------------------


def random_inputs(
    rng: np.random.Generator, shape: tuple[int, int, int], kind: str = "random"
) -> IntArray:
    """(C, H, W) int8: random with −128 and 127 planted, a −128/127 checkerboard, or a ramp."""
    c, h, w = shape
    if kind == "ends":
        cc, yy, xx = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
        return np.where((cc + yy + xx) % 2 == 0, -128, 127).astype(np.int64)
    if kind == "ramp":
        start = int(rng.integers(0, LUT_SIZE))
        return ((np.arange(c * h * w) + start) % LUT_SIZE - 128).reshape(shape).astype(np.int64)
    if kind != "random":
        raise ValueError(f"unknown input kind {kind!r}; known: {', '.join(INPUT_KINDS)}")
    x = rng.integers(-128, 128, shape)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, min(flat.size, 2 + flat.size // 16), replace=False)
    flat[picks[::2]] = -128
    flat[picks[1::2]] = 127
    return x


def random_lut(rng: np.random.Generator, kind: str) -> IntArray:
    """A 256-entry table of one of `LUT_KINDS`."""
    if kind == "sigmoid":  # the occlusion map's (model.ptq)
        return sigmoid_lut(float(rng.uniform(0.02, 0.12)))
    if kind == "pixel":  # the output frame's: 255·sigmoid
        scale = float(rng.uniform(0.02, 0.12))
        return make_lut(lambda v: 255 / (1 + np.exp(-v)), scale, 1.0, 8, signed_out=False)
    if kind == "random":
        lut = rng.integers(0, 256, LUT_SIZE)
        first, last = rng.permutation([0, 255]), rng.permutation([0, 255])
        lut[:2], lut[-2:] = first, last
        return lut
    if kind == "extreme":  # 0 and 255 only, alternating, both ends included
        return np.where((np.arange(LUT_SIZE) + int(rng.integers(0, 2))) % 2 == 0, 0, 255)
    if kind == "signed":
        lut = rng.integers(-128, 128, LUT_SIZE)
        lut[:2], lut[-2:] = rng.permutation([-128, 127]), rng.permutation([-128, 127])
        return lut
    if kind == "identity":
        return np.arange(LUT_SIZE) - ZERO_INDEX
    if kind == "constant":
        return np.full(LUT_SIZE, rng.choice([0, 255]))
    if kind == "quantize":  # the key frame's bytes b, sent as x = b ⊕ 0x80: index b
        return quantize_image(np.arange(LUT_SIZE).reshape(1, -1, 1))[0, 0]
    raise ValueError(f"unknown table kind {kind!r}; known: {', '.join(LUT_KINDS)}")


def affine_corners(params: GraceParams) -> IntArray:
    """Every combination of the extreme constants: negate off and on; bias at both
    limits, 0 and −1; multiplier 0, 1, the top octave's first and the largest;
    shift 0, 1 and the largest. Rows negate, bias, multiplier, shift; a column each."""
    n = params.numeric
    lo, hi = int_range(n.bias_bits)
    grid = np.meshgrid(
        [0, 1], [lo, hi, 0, -1], [0, 1, 1 << (n.mult_bits - 1), n.mult_max],
        [0, 1, n.max_shift], indexing="ij",
    )  # fmt: skip
    return np.stack([g.reshape(-1) for g in grid]).astype(np.int64)


def random_constants(
    rng: np.random.Generator, params: GraceParams, channels: int, kind: str
) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """(negate, bias, multiplier, shift) per channel, of one of `AFFINE_KINDS`.

    Realistic constants follow PTQ (`model.ptq.quantize_affine`): a multiplier
    in the top octave and a shift near mult_bits, a gain of about 1/6 to 3/2, and a
    small bias, so outputs spread over int8. Saturating ones draw each constant
    from the extremes of `affine_corners` (shift 0 or 1 mostly, so most outputs
    saturate); "corners" takes its combinations in turn, channel c the c-th.
    """
    n = params.numeric
    mb = n.mult_bits
    negate = rng.integers(0, 2, channels)
    bias = rng.integers(-64, 65, channels)
    multiplier = rng.integers(1 << (mb - 1), 1 << mb, channels)
    shift = np.clip(mb + rng.integers(-1, 3, channels), 0, n.max_shift)
    if kind == "realistic":
        return negate, bias, multiplier, shift
    corners = affine_corners(params)
    if kind == "corners":
        negate, bias, multiplier, shift = corners[:, np.arange(channels) % corners.shape[1]]
        return negate, bias, multiplier, shift
    if kind not in ("saturate", "mixed"):
        raise ValueError(f"unknown affine kind {kind!r}; known: {', '.join(AFFINE_KINDS)}")
    extreme = np.ones(channels, bool) if kind == "saturate" else rng.random(channels) < 0.5
    k = int(extreme.sum())
    negate[extreme] = rng.integers(0, 2, k)
    bias[extreme] = rng.choice(np.unique(corners[1]), k)
    multiplier[extreme] = _leaning(rng, np.unique(corners[2]), k)  # large ones more often
    shift[extreme] = _leaning(rng, np.unique(corners[3])[::-1], k)  # small ones more often
    return negate, bias, multiplier, shift


def _leaning(rng: np.random.Generator, values: IntArray, count: int) -> IntArray:
    """`count` draws from `values`, the later ones likelier (weights 1, 2, 3, …)."""
    weights = np.arange(1, len(values) + 1)
    return rng.choice(values, count, p=weights / weights.sum())


def random_case(
    rng: np.random.Generator,
    params: GraceParams,
    op: ActOp,
    channels: int,
    size: tuple[int, int] = (4, 4),
    *,
    kind: str | None = None,
    inputs: str = "random",
    relu: bool = False,
    table: int = 0,
) -> ActCase:
    """A case of `channels` planes of `size`; `kind` from `LUT_KINDS` or `AFFINE_KINDS`."""
    x = random_inputs(rng, (channels, *size), inputs)
    if op == ActOp.TABLE:
        kind = "random" if kind is None else kind
        lut = random_lut(rng, kind)
        return ActCase(op, x, lut=lut, relu=relu, table=table, kind=f"{kind} {inputs}")
    kind = "realistic" if kind is None else kind
    negate, bias, multiplier, shift = random_constants(rng, params, channels, kind)
    return ActCase(
        op, x, negate=negate, bias=bias, multiplier=multiplier, shift=shift, relu=relu,
        table=table, kind=f"{kind} {inputs}",
    )  # fmt: skip


# -- the engine's view ------------------------------------------------------------------


@dataclass
class ActProgram:
    """Everything the host sends the engine for one tile, and what it must send back."""

    table_writes: list[int]
    param_writes: list[int]
    inputs: list[int]  # pixel ▸ group, lane l in bits [8l, 8l + 8)
    command: int
    expected: ByteArray  # (pixels·groups, lanes): each output word's bytes
    mask: BoolArray  # (pixels·groups, lanes): the lanes that carry a channel
    command_fields: dict[str, int]
    channels: int
    size: tuple[int, int]
    signed: bool  # the output bytes read as int8 (AFFINE, signed tables) or uint8
    # every write's location and data, in the order of table_writes + param_writes:
    # what the tile reads from the buffers
    locations: dict[Location, int] = field(default_factory=dict)

    @property
    def pixels(self) -> int:
        return self.command_fields["pixels"]

    @property
    def groups(self) -> int:
        return self.command_fields["groups"]

    @property
    def tag(self) -> int:
        return self.command_fields["tag"]

    @property
    def words(self) -> int:
        """Output (and input) words of the tile: pixels · groups."""
        return self.pixels * self.groups


def _check_values(name: str, values: npt.ArrayLike, lo: int, hi: int, shape: tuple) -> IntArray:
    """`values` as int64 of `shape` with every entry in lo..hi, or a one-line refusal."""
    a = np.asarray(values)
    if a.shape != shape:
        raise ActProgramError(f"{name} must have shape {shape}, got {a.shape}")
    if a.size and (not np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_):
        raise ActProgramError(f"{name} must hold integers, got {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < lo or a.max() > hi):
        raise ActProgramError(f"{name} must lie in {lo}..{hi}, got {a.min()}..{a.max()}")
    return a


def tile_shape(case: ActCase, params: GraceParams) -> tuple[int, int]:
    """(pixels, groups) of the case, after checking they fit the command's fields."""
    if case.x.ndim != 3 or min(case.x.shape) < 1:
        raise ActProgramError(f"x must be a non-empty (C, H, W), got shape {case.x.shape}")
    c, (h, w) = case.channels, case.size
    pixels, groups = h * w, -(-c // params.act.lanes)
    if pixels >= 1 << (2 * DIM_BITS):
        raise ActProgramError(
            f"{h}×{w} = {pixels} pixels: a tile takes at most {(1 << 2 * DIM_BITS) - 1}"
        )
    if groups >= 1 << GROUP_BITS:
        raise ActProgramError(
            f"{c} channels make {groups} groups of {params.act.lanes} lanes; a tile takes "
            f"at most {(1 << GROUP_BITS) - 1}"
        )
    return pixels, groups


def program(
    case: ActCase,
    params: GraceParams,
    *,
    tag: int = 1,
    param_base: int = 0,
    table: int | None = None,
) -> ActProgram:
    """Table or constant writes, the input words and the tile command of one case.

    `param_base` places an AFFINE tile's constants (channel c at lane c mod L,
    address param_base + c div L); `table` overrides the case's table slot. Two
    tiles resident at once need disjoint places (`schedule_loads` checks).
    """
    lanes, depth = params.act.lanes, params.act.param_depth
    pixels, groups = tile_shape(case, params)
    c, (h, w) = case.channels, case.size
    slot = case.table if table is None else table
    if not 0 <= tag < 1 << TAG_BITS:
        raise ActProgramError(f"tag {tag}: the engine takes 0..{(1 << TAG_BITS) - 1}")
    if not 0 <= slot < TABLES:
        raise ActProgramError(f"table {slot}: the engine has tables 0..{TABLES - 1}")
    if not 0 <= param_base < depth:
        raise ActProgramError(f"param_base {param_base}: the buffers hold 0..{depth - 1}")
    x = _check_values("x", case.x, -128, 127, case.x.shape)
    if case.op == ActOp.AFFINE and param_base + groups > depth:
        raise ActProgramError(
            f"{c} channels take {groups} constant sets per lane from {param_base}; "
            f"the buffers hold {depth}"
        )

    locations: dict[Location, int] = {}
    table_writes: list[int] = []
    param_writes: list[int] = []
    table_raw = np.zeros(LUT_SIZE, dtype=np.int64)
    if case.op == ActOp.TABLE:
        if case.lut is None:
            raise ActProgramError("a TABLE case needs a lut")
        lut = _check_values("lut", case.lut, -128, 255, (LUT_SIZE,))
        if lut.min() < 0 and lut.max() > 127:
            raise ActProgramError(
                f"lut entries {lut.min()}..{lut.max()}: 8 bits hold 0..255 or −128..127, not both"
            )
        signed = _signed_table(lut)
        table_raw = lut & 0xFF
        # the entry the first beat reads goes last: the write just before the command
        first = int(x[0, 0, 0]) + ZERO_INDEX
        index = np.roll(np.arange(LUT_SIZE), LUT_SIZE - 1 - first)
        fields = {"table": np.full(LUT_SIZE, slot), "index": index, "data": table_raw[index]}
        table_writes = pack(table_write_layout(), fields)
        locations = {(0, slot, int(i)): int(table_raw[i]) for i in index}
    else:
        n = params.numeric
        constants = {
            "negate": _check_values("negate", _given(case.negate, "negate"), 0, 1, (c,)),
            "bias": _check_values("bias", _given(case.bias, "bias"), *int_range(n.bias_bits), (c,)),
            "multiplier": _check_values(
                "multiplier", _given(case.multiplier, "multiplier"), 0, n.mult_max, (c,)
            ),
            "shift": _check_values("shift", _given(case.shift, "shift"), 0, n.max_shift, (c,)),
        }
        signed = True
        # channels last to first: the first beat's constants are the last writes
        channel = np.arange(c)[::-1]
        data = pack(param_layout(params), {k: v[channel] for k, v in constants.items()})
        lane, addr = channel % lanes, param_base + channel // lanes
        param_writes = pack(param_write_layout(params), {"lane": lane, "addr": addr, "data": data})
        locations = {(1, int(ln), int(a)): d for ln, a, d in zip(lane, addr, data, strict=True)}

    fields = {
        "op": int(case.op),
        "pixels": pixels,
        "groups": groups,
        "param_base": param_base,
        "table": slot,
        "relu": int(case.relu),
        "tag": tag,
    }
    command = pack(command_layout(params), {k: [v] for k, v in fields.items()})[0]
    y = reference(case, params)
    # a padding lane's x is 0: TABLE sends the entry of 0; AFFINE requantizes 0 with
    # whatever constants the lane holds there, which nothing predicts
    pad = int(table_raw[ZERO_INDEX]) if case.op == ActOp.TABLE else 0
    expected = engine_order(y & 0xFF, lanes, pad).astype(np.uint8)
    mask = engine_order(np.ones_like(y), lanes, 0).astype(bool)
    return ActProgram(
        table_writes, param_writes, pack_bytes(engine_order(x, lanes, 0)), command,
        expected, mask, fields, c, (h, w), signed, locations,
    )  # fmt: skip


def _given(values: npt.ArrayLike | None, name: str) -> npt.ArrayLike:
    if values is None:
        raise ActProgramError(f"an AFFINE case needs {name}")
    return values


def engine_order(y: npt.ArrayLike, lanes: int, pad: int) -> IntArray:
    """A (C, H, W) map as the engine streams it: (pixels·groups, lanes), padding lanes `pad`."""
    y = np.asarray(y, dtype=np.int64)
    c, h, w = y.shape
    groups = -(-c // lanes)
    padded = np.full((groups * lanes, h, w), pad, dtype=np.int64)
    padded[:c] = y
    return padded.reshape(groups, lanes, h, w).transpose(2, 3, 0, 1).reshape(-1, lanes)


def output_map(raw: npt.ArrayLike, prog: ActProgram) -> IntArray:
    """The engine's bytes for one tile (words, lanes) as (C, H, W), padding lanes dropped."""
    raw = np.asarray(raw, dtype=np.uint8)
    (h, w), lanes = prog.size, prog.expected.shape[1]
    if raw.shape != prog.expected.shape:
        raise ValueError(f"{raw.shape} output bytes for a tile of {prog.expected.shape}")
    values = raw.view(np.int8) if prog.signed else raw
    y = values.astype(np.int64).reshape(h, w, prog.groups * lanes).transpose(2, 0, 1)
    return y[: prog.channels]


def split_outputs(raw: npt.ArrayLike, progs: list[ActProgram]) -> list[ByteArray]:
    """A run's output bytes (words, lanes) as one array per tile, in order."""
    raw = np.asarray(raw, dtype=np.uint8)
    total = sum(p.words for p in progs)
    if len(raw) != total:
        raise AssertionError(f"{len(raw)} output words, the tiles make {total}")
    ends = np.cumsum([p.words for p in progs])[:-1]
    return np.split(raw, ends)


def first_mismatch(raw: npt.ArrayLike, prog: ActProgram) -> str | None:
    """Where a tile's bytes first differ from the expected ones on a real channel, or None."""
    raw = np.asarray(raw, dtype=np.uint8)
    bad = np.argwhere((raw != prog.expected) & prog.mask)
    if not len(bad):
        return None
    word, lane = (int(v) for v in bad[0])
    pixel, group = divmod(word, prog.groups)
    channel = group * prog.expected.shape[1] + lane
    y, x = divmod(pixel, prog.size[1])
    return (
        f"{len(bad)} bytes differ; first: channel {channel} pixel ({y}, {x}) (word {word}, "
        f"lane {lane}): got {raw[word, lane]:#04x}, expected {prog.expected[word, lane]:#04x}"
    )


def pack_bytes(rows: npt.ArrayLike) -> list[int]:
    """Rows of byte values (int8 or uint8) → one word per row, lane 0 in the low byte."""
    rows = np.ascontiguousarray(np.asarray(rows, dtype=np.int64) & 0xFF, dtype=np.uint8)
    width = rows.shape[1]
    raw = rows.tobytes()
    return [int.from_bytes(raw[k : k + width], "little") for k in range(0, len(raw), width)]


def unpack_bytes(words: list[int], lanes: int) -> ByteArray:
    """`o` words → (words, lanes) raw bytes, lane l from bits [8l, 8l + 8)."""
    mask = (1 << (8 * lanes)) - 1
    raw = b"".join((w & mask).to_bytes(lanes, "little") for w in words)
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, lanes).copy()


def tags(progs: list[ActProgram]) -> list[int]:
    """The done tokens the programs' commands return, in order."""
    return [p.tag for p in progs]


# -- loading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TileLoad:
    """The writes a tile still needs before its command, and the tokens to await first."""

    table_writes: list[int]
    param_writes: list[int]
    wait: int  # tokens returned before the first write: the tiles that read what it overwrites


def schedule_loads(progs: list[ActProgram], *, overlap: bool) -> list[TileLoad]:
    """Each tile's writes, less those whose data is already in place from an earlier tile.

    Overlapped, a tile's writes wait for every earlier tile that reads a place
    they change (its done token says it has read it all). Without overlap every
    write goes before the first command, so no two tiles may want different data
    in one place: refused.
    """
    resident: dict[Location, int] = {}
    readers: dict[Location, dict[int, int]] = {}  # place → data → the last tile reading it
    loads = []
    for k, prog in enumerate(progs):
        writes = zip(prog.locations.items(), prog.table_writes + prog.param_writes, strict=True)
        changed = [(loc, d, word) for (loc, d), word in writes if resident.get(loc) != d]
        last = max(
            (j for loc, d, _ in changed for data, j in readers.get(loc, {}).items() if data != d),
            default=-1,
        )
        if last >= 0 and not overlap:
            raise ValueError(
                f"tile {k} (tag {prog.tag}) overwrites a table entry or constants tile "
                f"{last} reads: give them separate places, or overlap the loads"
            )
        resident.update({loc: d for loc, d, _ in changed})
        for loc, d in prog.locations.items():
            readers.setdefault(loc, {})[d] = k
        loads.append(
            TileLoad(
                [word for loc, _, word in changed if loc[0] == 0],
                [word for loc, _, word in changed if loc[0] == 1],
                last + 1,
            )
        )
    return loads


# -- simulation -------------------------------------------------------------------------


@dataclass(frozen=True)
class ActRun:
    outputs: ByteArray  # (words, lanes): every `o` word's bytes, in arrival order
    tokens: list[int]  # done tags, in arrival order
    cycles: int  # from the first command's transfer to the last done token's
    # per stream: edges it offered a value that was not taken ("o", "done", "cmd")
    stalls: dict[str, int] = field(default_factory=dict)
    accepted: list[int] = field(default_factory=list)  # edge of each command's transfer
    returned: list[int] = field(default_factory=list)  # edge of each token's transfer


def unit_tiles(progs: list[ActProgram], *, overlap_loads: bool) -> list[UnitTile]:
    """The programs as the tiles `sim.unit_sim` runs: each with its writes from
    `schedule_loads`, or, without `overlap_loads`, every write before the first."""
    loads = schedule_loads(progs, overlap=overlap_loads)
    tiles = [
        UnitTile(
            prog.command,
            dict(zip(WRITE_PORTS, (load.table_writes, load.param_writes), strict=True)),
            load.wait,
            prog.inputs,
            prog.words,
            prog.tag,
        )
        for prog, load in zip(progs, loads, strict=True)
    ]
    return tiles if overlap_loads else writes_first(tiles)


def _act_run(run: UnitRun, lanes: int) -> ActRun:
    return ActRun(
        unpack_bytes(run.outputs, lanes),
        run.tokens,
        run.cycles,
        run.stalls,
        run.accepted,
        run.returned,
    )


def simulate_amaranth(
    progs: list[ActProgram],
    params: GraceParams,
    *,
    ready_prob: float = 1.0,
    in_prob: float = 1.0,
    done_ready_prob: float | None = None,
    seed: int = 0,
    dsp_target: str | None = None,
    overlap_loads: bool = False,
    stall_limit: int = 5000,
) -> ActRun:
    """Load the tables and constants, issue the commands back to back, collect outputs.

    Without `overlap_loads` every write goes first (`schedule_loads`), both
    write streams at once; with it, each tile's writes go just before its
    command, once the tiles that read what they overwrite are done. Outputs and
    done tokens leave under random back-pressure (`ready_prob`;
    `done_ready_prob` for the tokens, from a stream of its own), input words
    arrive with random gaps (`in_prob`); cycles are counted from the first
    command's transfer to the last done token's. Both output streams are checked
    against the stream rules, and the tokens must be the commands' tags in order
    (`sim.unit_sim.simulate_amaranth`).
    """
    if not progs:
        raise ValueError("simulate_amaranth: no programs to run")
    run = unit_sim.simulate_amaranth(
        ActEngine(params, dsp_target=dsp_target), unit_tiles(progs, overlap_loads=overlap_loads),
        ready_prob=ready_prob, in_prob=in_prob, done_ready_prob=done_ready_prob, seed=seed,
        stall_limit=stall_limit,
    )  # fmt: skip
    return _act_run(run, params.act.lanes)


def simulate_cocotb(
    progs: list[ActProgram],
    params: GraceParams,
    *,
    simulator: str,
    build_dir: Path,
    ready_prob: float = 1.0,
    in_prob: float = 1.0,
    done_ready_prob: float | None = None,
    seed: int = 0,
    waves: bool = False,
    overlap_loads: bool = False,
) -> tuple[ActRun, SimResult]:
    """The same as `simulate_amaranth`, on the elaborated Verilog under cocotb.

    The bench (`sim.act_tb`) fails the cocotb test (see `SimResult.check`) on a
    broken stream rule, a wrong byte on a lane that carries a channel, or a done
    token that is not its command's tag.
    """
    run, result = unit_sim.simulate_cocotb(
        "act", params, unit_tiles(progs, overlap_loads=overlap_loads), WRITE_PORTS,
        expected=pack_bytes(np.concatenate([p.expected for p in progs])),
        masks=pack_bytes(np.concatenate([p.mask for p in progs]) * 0xFF), simulator=simulator,
        build_dir=build_dir, ready_prob=ready_prob, in_prob=in_prob,
        done_ready_prob=done_ready_prob, seed=seed, waves=waves,
    )  # fmt: skip
    return _act_run(run, params.act.lanes), result


# -- sweeps -----------------------------------------------------------------------------


def place(cases: list[ActCase], params: GraceParams, *, first_tag: int = 0) -> list[ActProgram]:
    """The cases as tiles back to back: each AFFINE tile's constants after the last's
    (wrapping to 0 when the buffers end), tags counting up from `first_tag`."""
    progs, base = [], 0
    for k, case in enumerate(cases):
        groups = tile_shape(case, params)[1]
        if case.op == ActOp.AFFINE and base + groups > params.act.param_depth:
            base = 0
        tag = (first_tag + k) % (1 << TAG_BITS)
        progs.append(program(case, params, tag=tag, param_base=base))
        if case.op == ActOp.AFFINE:
            base = (base + groups) % params.act.param_depth
    return progs


def sweep_cases(
    params: GraceParams, count: int, seed: int, *, max_beats: int | None = None
) -> list[ActCase]:
    """`count` varied cases, TABLE and AFFINE alternating, every kind of each.

    Maps 1×1, 1×N, N×1, non-square ones and the tiny decoder's real shapes
    (occlusion sigmoid 1×16², pixel sigmoid 3×64², affine 64×16²); every
    affine corner on −128 and 127 (2 pixels of 96 channels) and 255 channels
    of one pixel; relu on and off for both ops (TABLE ignores it), both table
    slots; channel counts that are not multiples of the lanes. A case of more
    than `max_beats` input words loses pixels, then channels, until it fits;
    channels stop where the constant buffers do.
    """
    rng = np.random.default_rng(seed)
    lanes = params.act.lanes
    corners = affine_corners(params).shape[1]
    # (size, channels, op, kind, inputs): None = drawn
    shapes: list[tuple[tuple[int, int], int | None, ActOp | None, str | None, str | None]] = [
        ((1, 1), None, None, None, None),
        ((1, 9), None, None, None, None),
        ((16, 16), 1, ActOp.TABLE, "sigmoid", "ramp"),  # the occlusion map: every entry
        ((7, 1), None, None, None, None),
        ((3, 5), None, None, None, None),
        ((16, 16), 64, ActOp.AFFINE, "realistic", None),  # a bottleneck's pre-activation
        ((64, 64), 3, ActOp.TABLE, "pixel", None),  # the output frame
        ((1, 40), None, None, None, None),
        ((9, 4), None, None, None, None),
        ((1, 2), corners, ActOp.AFFINE, "corners", "ends"),  # each on −128 and 127
        ((2, 2), None, None, None, None),
        ((1, 1), 255, ActOp.AFFINE, "mixed", "ends"),
        ((5, 1), None, None, None, None),
        ((6, 7), None, None, None, None),
    ]
    drawn = {ActOp.TABLE: 0, ActOp.AFFINE: 0}
    free_kinds = {ActOp.TABLE: LUT_KINDS, ActOp.AFFINE: ("saturate", "realistic", "mixed")}
    cases: list[ActCase] = []
    for k in range(count):
        (h, w), channels, op, kind, inputs = shapes[k % len(shapes)]
        if channels is None:
            channels = int(rng.integers(1, 3 * lanes + 2))
            if lanes > 1 and channels % lanes == 0:
                channels += 1
        channels = min(channels, lanes * params.act.param_depth)
        op = ActOp(k % 2) if op is None else op  # the list keeps TABLE on even k
        if kind is None:
            kind = free_kinds[op][drawn[op] % len(free_kinds[op])]
            drawn[op] += 1
        if inputs is None:
            inputs = INPUT_KINDS[0] if k % 3 else INPUT_KINDS[1 + (k // 3) % 2]
        relu, table = (k // 2) % 2 == 1, (k // 4) % TABLES
        while max_beats is not None and h * w * -(-channels // lanes) > max_beats:
            if h * w > 1:
                h, w = max(1, h * 2 // 3), max(1, w * 2 // 3)
            else:
                channels = max(1, channels * 2 // 3)
        cases.append(
            random_case(
                rng, params, op, channels, (h, w), kind=kind, inputs=inputs, relu=relu,
                table=table,
            )
        )  # fmt: skip
    return cases
