"""Host side of the warp engine: lay a map out in its banks, stream the flow, predict `o`.

`WarpCase` is one warp (int8 features, normalised coordinates, an optional
occlusion map); `program` turns it into the engine's view of the world — bank
words, flow entries, one tile command — in the layout docs/warp_engine.md
defines, and `expected` is the L2 reference (`model.fixed_decoder.warp_int`)
reordered into the engine's output order. Both simulators (Amaranth here,
cocotb in `sim.warp_tb`) share it. `emulate` recomputes a program's outputs the
way the hardware does (banks, saturated stream coordinates, interpolation in
bank order: docs/warp_engine.md §1.9), a second model that guards the first and
the case generators, and the place to look at intermediates when debugging.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from amaranth.sim import Simulator, SimulatorContext

from defs.limits import DIM_BITS, GROUP_BITS, TAG_BITS
from defs.params import GraceParams
from model.fixed_decoder import warp_int
from model.fixed_motion import COORD_FRAC_BITS, grid_axis
from model.fixed_ops import OCC_BITS, PIXEL_FRAC_BITS
from rtl.warp import WarpEngine
from rtl.warp.layouts import (
    BANKS,
    FLOW_BITS,
    command_layout,
    feature_write_layout,
    flow_layout,
)
from sim.engine_bench import collect_outputs, read_numbers, run_engine_bench, send
from sim.runner import SimResult
from sim.stream_function import pack
from sim.stream_rules import watch_amaranth

IntArray = npt.NDArray[np.int64]
Int8Array = npt.NDArray[np.int8]

#: ±2^14: the centres of the first and last pixel along an axis.
ONE = 1 << COORD_FRAC_BITS
#: The flow stream's range; the host saturates coordinates to it (exact: §1.9).
FLOW_MIN, FLOW_MAX = -(1 << (FLOW_BITS - 1)), (1 << (FLOW_BITS - 1)) - 1
#: The flow kinds `random_case` draws (docs/warp_engine.md §5).
FLOW_KINDS = (
    "random",
    "far",
    "centres",
    "half_outside",
    "integer",
    "identity",
    "translation",
)
#: The feature kinds `random_case` draws: random int8 with both extremes
#: planted, constant −128 and 127 maps, and a −128/127 checkerboard.
FEATURE_KINDS = ("random", "min", "max", "checker")


class WarpProgramError(ValueError):
    """The tile does not fit the engine's banks or command fields."""


@dataclass
class WarpCase:
    """One warp: what L2's `warp_int` takes."""

    features: IntArray  # (C, H, W) int8 values
    coords: IntArray  # (Ho, Wo, 2): (x, y), COORD_FRAC_BITS fraction bits, any magnitude
    occlusion: IntArray | None = None  # (Ho, Wo), 0..255
    flow: str = ""  # the generator's flow kind, for messages

    @property
    def channels(self) -> int:
        return int(self.features.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return int(self.features.shape[1]), int(self.features.shape[2])

    @property
    def out_size(self) -> tuple[int, int]:
        return int(self.coords.shape[0]), int(self.coords.shape[1])

    def describe(self) -> str:
        (h, w), (ho, wo) = self.size, self.out_size
        occ = "occ" if self.occlusion is not None else ""
        return " ".join(s for s in (f"{self.channels}x{h}x{w}->{ho}x{wo}", self.flow, occ) if s)


def reference(case: WarpCase) -> Int8Array:
    """L2's warp (C, Ho, Wo) int8, on the coordinates as given (no saturation)."""
    return warp_int(case.features, case.coords, case.occlusion)


# -- generators -------------------------------------------------------------------------


def _axis_points(size: int) -> IntArray:
    """The normalised coordinates of pixel centres 0 .. size-1 (0 for one pixel)."""
    return grid_axis(size) if size > 1 else np.zeros(1, dtype=np.int64)


def _normalised(pixel: IntArray, size: int) -> IntArray:
    """Pixel positions → normalised coordinates, exact where 2^15·j / (S−1) is an integer
    and rounded half up otherwise; S = 1 has no scale (every position is pixel 0)."""
    if size == 1:
        return np.zeros_like(pixel)
    numerator = (2 * pixel - (size - 1)) * ONE  # value · (S − 1)
    return (2 * numerator + (size - 1)) // (2 * (size - 1))


def flow_axis(rng: np.random.Generator, kind: str, size: int, shape: tuple[int, int]) -> IntArray:
    """One coordinate axis (x across a map of width `size`, or y down its height)."""
    if kind == "random":
        r = round(1.3 * ONE)
        return rng.integers(-r, r + 1, shape)
    if kind == "far":
        # several map widths out, up to the keypoints' ±2^37, both signs, and the
        # stream's and the s17 saturation's edges (c' = c + 2^14 at ±2^16)
        scale = rng.choice(np.array([1 << 16, 1 << 20, 1 << 30, 1 << 37]), shape)
        values = rng.integers(-scale, scale + 1)
        edges = np.array(
            [FLOW_MAX, FLOW_MIN, FLOW_MAX + 1, FLOW_MIN - 1, FLOW_MAX - 1, FLOW_MIN + 1]
            + [(1 << 16) - ONE + d for d in (-2, -1, 0, 1)]
            + [-(1 << 16) - ONE + d for d in (-1, 0, 1, 2)]
        )
        planted = rng.random(shape) < 0.3
        values[planted] = rng.choice(edges, int(planted.sum()))
        inside = rng.random(shape) < 0.2  # the other axis far, this one on the map
        values[inside] = rng.integers(-ONE, ONE + 1, int(inside.sum()))
        return values
    if kind == "centres":
        ends = np.array([s * ONE + d for s in (-1, 1) for d in range(-2, 3)])
        return rng.choice(ends, shape)
    if kind == "half_outside":
        half = ONE * 2 if size == 1 else -(-ONE // (size - 1))  # half a pixel, normalised
        ends = np.array([s * (ONE + half) + d for s in (-1, 1) for d in range(-2, 3)])
        return rng.choice(ends, shape)
    if kind == "integer":
        return _normalised(rng.integers(-3, size + 3, shape), size)
    if kind in ("identity", "translation"):
        raise ValueError(f"flow kind {kind!r} is a grid: use flow_coords")
    raise ValueError(f"unknown flow kind {kind!r}; known: {', '.join(FLOW_KINDS)}")


def flow_coords(
    rng: np.random.Generator, kind: str, size: tuple[int, int], out_size: tuple[int, int]
) -> IntArray:
    """(Ho, Wo, 2) coordinates of one kind for a map of `size` = (H, W)."""
    (h, w), (ho, wo) = size, out_size
    if kind in ("identity", "translation"):
        gx, gy = np.meshgrid(_axis_points(wo), _axis_points(ho))
        coords = np.stack([gx, gy], axis=-1)
        if kind == "translation":
            coords = coords + rng.integers(-ONE // 2, ONE // 2 + 1, 2)
        return coords.astype(np.int64)
    x = flow_axis(rng, kind, w, (ho, wo))
    y = flow_axis(rng, kind, h, (ho, wo))
    return np.stack([x, y], axis=-1).astype(np.int64)


def random_features(
    rng: np.random.Generator, shape: tuple[int, int, int], kind: str = "random"
) -> IntArray:
    """(C, H, W) int8 values: random with −128 and 127 planted, constant, or a checkerboard."""
    c, h, w = shape
    if kind == "min":
        return np.full(shape, -128, dtype=np.int64)
    if kind == "max":
        return np.full(shape, 127, dtype=np.int64)
    if kind == "checker":
        cc, yy, xx = np.meshgrid(np.arange(c), np.arange(h), np.arange(w), indexing="ij")
        return np.where((cc + yy + xx) % 2 == 0, -128, 127).astype(np.int64)
    if kind != "random":
        raise ValueError(f"unknown feature kind {kind!r}; known: {', '.join(FEATURE_KINDS)}")
    x = rng.integers(-128, 128, shape)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, min(flat.size, 2 + flat.size // 16), replace=False)
    flat[picks[::2]] = -128
    flat[picks[1::2]] = 127
    return x


def random_occlusion(rng: np.random.Generator, out_size: tuple[int, int]) -> IntArray:
    """(Ho, Wo) occlusion in 0..255 with 0 and 255 planted."""
    occ = rng.integers(0, 1 << OCC_BITS, out_size)
    flat = occ.reshape(-1)
    picks = rng.choice(flat.size, min(flat.size, 2 + flat.size // 16), replace=False)
    flat[picks[::2]] = 0
    flat[picks[1::2]] = (1 << OCC_BITS) - 1
    return occ


def random_case(
    rng: np.random.Generator,
    params: GraceParams,
    channels: int,
    size: tuple[int, int] = (8, 8),
    out_size: tuple[int, int] | None = None,
    flow: str = "random",
    occlusion: bool = False,
    features: str = "random",
) -> WarpCase:
    """A warp of `channels` planes of `size` on a flow grid of `out_size` (default `size`)."""
    del params  # the case is the model's; `program` fits it to the engine
    out = size if out_size is None else out_size
    return WarpCase(
        features=random_features(rng, (channels, *size), features),
        coords=flow_coords(rng, flow, size, out),
        occlusion=random_occlusion(rng, out) if occlusion else None,
        flow=flow,
    )


# -- the engine's view ------------------------------------------------------------------


@dataclass
class WarpProgram:
    """Everything the host sends the engine for one tile, as packed stream words."""

    feature_writes: list[int]
    flow: list[int]
    command: int
    expected: Int8Array  # (pixels·planes·lanes,): pixel, then plane, then lane
    command_fields: dict[str, int] = field(default_factory=dict)

    @property
    def pixels(self) -> int:
        return self.command_fields["out_height"] * self.command_fields["out_width"]

    @property
    def planes(self) -> int:
        return self.command_fields["planes"]


def _tile_sizes(case: WarpCase, params: GraceParams) -> tuple[int, int, int]:
    """(planes, in_row, in_plane) of the case, after checking its shapes."""
    if case.features.ndim != 3 or min(case.features.shape) < 1:
        raise WarpProgramError(f"features must be a non-empty (C, H, W), got {case.features.shape}")
    if case.coords.ndim != 3 or case.coords.shape[2] != 2 or min(case.coords.shape) < 1:
        raise WarpProgramError(f"coords must be a non-empty (Ho, Wo, 2), got {case.coords.shape}")
    c, (h, w), (ho, wo) = case.channels, case.size, case.out_size
    if max(h, w, ho, wo) >= 1 << DIM_BITS:
        raise WarpProgramError(
            f"map {h}×{w} on a {ho}×{wo} grid: sizes must stay below {1 << DIM_BITS}"
        )
    planes = -(-c // params.warp.lanes)
    if planes >= 1 << GROUP_BITS:
        raise WarpProgramError(
            f"{c} channels make {planes} planes of {params.warp.lanes} lanes; a tile takes "
            f"at most {(1 << GROUP_BITS) - 1} (split_channels)"
        )
    in_row = -(-w // 2)
    return planes, in_row, -(-h // 2) * in_row


def _check_values(case: WarpCase) -> None:
    for name, values, lo, hi in (
        ("features", case.features, -128, 127),
        ("coords", case.coords, None, None),
        ("occlusion", case.occlusion, 0, (1 << OCC_BITS) - 1),
    ):
        if values is None:
            continue
        if not np.issubdtype(np.asarray(values).dtype, np.integer):
            raise WarpProgramError(f"{name} must be integers, got dtype {values.dtype}")
        if lo is not None and values.size and not (lo <= values.min() and values.max() <= hi):
            raise WarpProgramError(
                f"{name} span {values.min()}..{values.max()}; the engine takes {lo}..{hi}"
            )
    if case.occlusion is not None and case.occlusion.shape != case.out_size:
        raise WarpProgramError(
            f"occlusion {case.occlusion.shape} differs from the flow grid {case.out_size}"
        )


def program(case: WarpCase, params: GraceParams, *, tag: int = 1, in_base: int = 0) -> WarpProgram:
    """Bank words, the flow stream and the tile command of one case.

    `in_base` places the tile's planes in the banks, so several tiles can be
    resident at once (what a controller's double buffering does).
    """
    lanes, depth = params.warp.lanes, params.warp.depth
    planes, in_row, in_plane = _tile_sizes(case, params)
    _check_values(case)
    c, (h, w), (ho, wo) = case.channels, case.size, case.out_size
    end = in_base + planes * in_plane
    if in_base < 0 or end > depth:
        raise WarpProgramError(
            f"{c} channels of {h}×{w} take {planes} planes of {in_plane} words per bank "
            f"from word {in_base} to {end}; the banks hold {depth} (split_channels)"
        )
    if not 0 <= tag < 1 << TAG_BITS:
        raise WarpProgramError(f"tag {tag}: the engine takes 0..{(1 << TAG_BITS) - 1}")

    # bank words: plane g's pixel (y, x) in bank 2(y & 1) + (x & 1), lane l = channel gL + l
    padded = np.zeros((planes * lanes, h, w), dtype=np.int64)
    padded[:c] = case.features
    words = padded.reshape(planes, lanes, h, w).transpose(0, 2, 3, 1)  # (g, y, x, lane)
    g, y, x = np.meshgrid(np.arange(planes), np.arange(h), np.arange(w), indexing="ij")
    feature_writes = pack(
        feature_write_layout(params),
        {
            "addr": in_base + g * in_plane + (y >> 1) * in_row + (x >> 1),
            "bank": 2 * (y & 1) + (x & 1),
            "data": pack_lanes(words.reshape(-1, lanes)),
        },
    )

    occ = np.zeros((ho, wo), np.int64) if case.occlusion is None else case.occlusion
    stream = np.clip(case.coords, FLOW_MIN, FLOW_MAX)  # exact: docs/warp_engine.md §1.9
    flow = pack(flow_layout(), {"x": stream[..., 0], "y": stream[..., 1], "occ": occ})

    fields = {
        "in_base": in_base,
        "in_plane": in_plane,  # the field wraps at depth; only planes 1.. use it
        "in_row": in_row,
        "in_height": h,
        "in_width": w,
        "planes": planes,
        "out_height": ho,
        "out_width": wo,
        "occlusion": int(case.occlusion is not None),
        "tag": tag,
    }
    command = pack(command_layout(params), {k: [v] for k, v in fields.items()})[0]
    expected = engine_order(reference(case), lanes)
    return WarpProgram(feature_writes, flow, command, expected, fields)


def engine_order(y: npt.ArrayLike, lanes: int) -> Int8Array:
    """A (C, Ho, Wo) result as the engine sends it: pixel, plane, lane (padding lanes 0)."""
    y = np.asarray(y)
    c, ho, wo = y.shape
    planes = -(-c // lanes)
    padded = np.zeros((planes * lanes, ho, wo), dtype=np.int8)
    padded[:c] = y
    return padded.reshape(planes, lanes, ho, wo).transpose(2, 3, 0, 1).reshape(-1)


def output_map(samples: npt.ArrayLike, case: WarpCase, lanes: int) -> Int8Array:
    """The engine's samples for `case` back as (C, Ho, Wo), padding lanes dropped."""
    c, (ho, wo) = case.channels, case.out_size
    planes = -(-c // lanes)
    y = np.asarray(samples, dtype=np.int8).reshape(ho, wo, planes * lanes)
    return y.transpose(2, 0, 1)[:c]


def split_channels(
    case: WarpCase, params: GraceParams, *, words: int | None = None
) -> list[WarpCase]:
    """The case as tiles of as many channels as `words` per bank hold (default: all of it).

    Each tile re-reads the flow; `join_channels` puts their outputs back together.
    """
    lanes = params.warp.lanes
    words = params.warp.depth if words is None else words
    _, _, in_plane = _tile_sizes(dataclasses.replace(case, features=case.features[:1]), params)
    planes = min(words // in_plane, (1 << GROUP_BITS) - 1)
    if planes < 1:
        h, w = case.size
        raise WarpProgramError(
            f"one plane of {h}×{w} takes {in_plane} words per bank; {words} are available"
        )
    step = planes * lanes
    return [
        dataclasses.replace(case, features=case.features[k : k + step])
        for k in range(0, case.channels, step)
    ]


def join_channels(
    outputs: list[npt.ArrayLike], tiles: list[WarpCase], params: GraceParams
) -> Int8Array:
    """The tiles' samples (one array per tile) as the whole case's (C, Ho, Wo)."""
    lanes = params.warp.lanes
    return np.concatenate([output_map(o, t, lanes) for o, t in zip(outputs, tiles, strict=True)])


def tile_samples(prog: WarpProgram, params: GraceParams) -> int:
    """Output samples (lanes included) of one program: pixels · planes · lanes."""
    return prog.pixels * prog.planes * params.warp.lanes


def pack_lanes(values: npt.ArrayLike) -> list[int]:
    """Rows of int8 lane values → one unsigned word per row (lane 0 in the low byte)."""
    rows = np.ascontiguousarray(np.asarray(values, dtype=np.int64).astype(np.int8))
    width = rows.shape[1]
    raw = rows.view(np.uint8).tobytes()
    return [int.from_bytes(raw[k : k + width], "little") for k in range(0, len(raw), width)]


def unpack_words(words: list[int], lanes: int) -> Int8Array:
    """`o` words (raw bits, lane l in bits 8l..8l+7) → their int8 lanes, in order."""
    mask = (1 << (8 * lanes)) - 1
    raw = b"".join((w & mask).to_bytes(lanes, "little") for w in words)
    return np.frombuffer(raw, dtype=np.int8).copy()


def decode_features(prog: WarpProgram, params: GraceParams) -> IntArray:
    """The banks after the program's writes, as (BANKS, depth, lanes) int8 values (0 unwritten)."""
    layout = feature_write_layout(params)
    lanes, depth = params.warp.lanes, params.warp.depth
    banks = np.zeros((BANKS, depth, lanes), dtype=np.int64)
    fld = {name: f for name, f in layout}
    for word in prog.feature_writes:
        addr = (word >> fld["addr"].offset) & ((1 << fld["addr"].width) - 1)
        bank = (word >> fld["bank"].offset) & 3
        data = (word >> fld["data"].offset) & ((1 << fld["data"].width) - 1)
        banks[bank, addr] = unpack_words([data], lanes)
    return banks


def decode_flow(prog: WarpProgram) -> IntArray:
    """The flow entries as (pixels, 3) signed x, y and unsigned occ."""
    layout, out = flow_layout(), []
    for name in ("x", "y", "occ"):
        f = layout[name]
        mask = (1 << f.shape.width) - 1
        v = np.array([(w >> f.offset) & mask for w in prog.flow], dtype=np.int64)
        if f.shape.signed:
            v = np.where(v >> (f.shape.width - 1), v - (1 << f.shape.width), v)
        out.append(v)
    return np.stack(out, axis=-1)


def _coordinate_unit(c: IntArray, size: int) -> tuple[IntArray, IntArray]:
    """Stream coordinate → (tap floor, fraction): c' = sat17(c + 2^14), p = (c'(S−1) + 64) >> 7."""
    cs = np.clip(c + ONE, -(1 << 16), (1 << 16) - 1)
    p = (cs * (size - 1) + (1 << (COORD_FRAC_BITS - PIXEL_FRAC_BITS))) >> (
        COORD_FRAC_BITS + 1 - PIXEL_FRAC_BITS
    )
    return p >> PIXEL_FRAC_BITS, p & ((1 << PIXEL_FRAC_BITS) - 1)


def emulate(prog: WarpProgram, params: GraceParams) -> tuple[IntArray, Int8Array]:
    """The hardware form of docs/warp_engine.md §1.9 on the program's own words:
    `warp_banks` on the banks its feature writes fill and its flow entries. Returns
    (acc, out); `out` must equal `prog.expected` (L2 on the raw coordinates)."""
    return warp_banks(decode_features(prog, params), decode_flow(prog), prog.command_fields, params)


def warp_banks(
    banks: IntArray, flow: IntArray, f: Mapping[str, int], params: GraceParams
) -> tuple[IntArray, Int8Array]:
    """A warp command on the engine's state: `banks` (BANKS, depth, lanes) int8 values,
    `flow` (pixels, 3) entries (x, y, occ). Reads the banks at the four addresses
    built from the saturated stream coordinates, clears taps outside the map, and
    interpolates in bank order. Returns (acc, out) in the engine's output order.
    (L3's warp engine is this function.)"""
    depth = params.warp.depth
    h, w, in_row = f["in_height"], f["in_width"], f["in_row"]
    x0, fx = _coordinate_unit(flow[:, 0], w)
    y0, fy = _coordinate_unit(flow[:, 1], h)
    xpar, ypar = x0 & 1, y0 & 1
    # tap inside the map, per parity bank: the tap is y0 + (ry ⊕ (y0 & 1))
    xin = [(x0 >= 0) & (x0 < w), (x0 >= -1) & (x0 < w - 1)]
    yin = [(y0 >= 0) & (y0 < h), (y0 >= -1) & (y0 < h - 1)]
    one = 1 << PIXEL_FRAC_BITS
    tx = np.where(xpar == 1, one - fx, fx)[:, None]
    ty = np.where(ypar == 1, one - fy, fy)[:, None]
    accs = []
    for g in range(f["planes"]):
        a11 = f["in_base"] + g * f["in_plane"] + (y0 >> 1) * in_row + (x0 >> 1)
        addr = {
            (1, 1): a11,
            (1, 0): a11 + xpar,
            (0, 1): a11 + ypar * in_row,
            (0, 0): a11 + ypar * in_row + xpar,
        }
        b = {}
        for (ry, rx), a in addr.items():
            inside = np.where(ry ^ ypar, yin[1], yin[0]) & np.where(rx ^ xpar, xin[1], xin[0])
            if np.any(inside & ((a < 0) | (a >= depth))):
                raise AssertionError(f"plane {g}: a tap inside the map reads outside the banks")
            v = banks[2 * ry + rx, np.clip(a, 0, depth - 1)]  # (pixels, lanes)
            b[ry, rx] = np.where(inside[:, None], v, 0)
        hb = [one * b[ry, 0] + tx * (b[ry, 1] - b[ry, 0]) for ry in (0, 1)]
        accs.append(one * hb[0] + ty * (hb[1] - hb[0]))
    acc = np.stack(accs, axis=1)  # (pixels, planes, lanes)
    if f["occlusion"]:
        m, s = flow[:, 2][:, None, None], 2 * PIXEL_FRAC_BITS + OCC_BITS
    else:
        m, s = 1, 2 * PIXEL_FRAC_BITS
    out = np.clip((acc * m + (1 << (s - 1))) >> s, -128, 127).astype(np.int8)
    return acc.reshape(-1), out.reshape(-1)


def tags(progs: list[WarpProgram]) -> list[int]:
    """The done tokens the programs' commands return, in order."""
    return [p.command_fields["tag"] for p in progs]


# -- simulation -------------------------------------------------------------------------


@dataclass(frozen=True)
class WarpRun:
    outputs: Int8Array  # every lane of every `o` word, in arrival order
    tokens: list[int]  # done tags, in arrival order
    cycles: int  # from the first command's transfer to the last done token's
    # per stream: edges it offered a value that was not taken ("o", "done", "cmd")
    stalls: dict[str, int] = field(default_factory=dict)
    accepted: list[int] = field(default_factory=list)  # edge of each command's transfer
    returned: list[int] = field(default_factory=list)  # edge of each token's transfer


def simulate_amaranth(
    progs: list[WarpProgram],
    params: GraceParams,
    *,
    ready_prob: float = 1.0,
    flow_prob: float = 1.0,
    done_ready_prob: float | None = None,
    seed: int = 0,
    dsp_target: str | None = None,
    overlap_loads: bool = False,
    stall_limit: int = 5000,
) -> WarpRun:
    """Load every program's banks, issue their commands back to back, collect outputs.

    Outputs and done tokens leave under random back-pressure (`ready_prob`;
    `done_ready_prob` for the tokens, the same by default, drawn from a stream
    of its own) and flow entries arrive in order with random gaps
    (`flow_prob`); cycles are counted from the first command's transfer to the
    last done token's. Both output streams are checked against the stream rules
    (`sim.stream_rules`), and the tokens must be the commands' tags in order.

    `overlap_loads` runs a ping-pong controller instead of loading everything
    first: tile k's words are written while tile k-1 computes, as soon as tile
    k-2 (whose half of the banks it reuses) has returned its token, then its
    command follows. The caller places alternate tiles at two `in_base` values.
    """
    if not progs:
        raise ValueError("simulate_amaranth: no programs to run")
    dut = WarpEngine(params, dsp_target=dsp_target)
    words: list[int] = []
    tokens: list[int] = []
    accepted: list[int] = []
    returned: list[int] = []
    cmd_stalls = [0]
    flow = [w for prog in progs for w in prog.flow]

    async def load(ctx: SimulatorContext, prog: WarpProgram) -> int:
        edges = 0
        for word in prog.feature_writes:
            edges += await send(ctx, dut.feature_write, word)
        return edges

    async def loader(ctx: SimulatorContext) -> None:
        edge = 0
        if not overlap_loads:
            for prog in progs:
                edge += await load(ctx, prog)
        for k, prog in enumerate(progs):
            if overlap_loads:
                while len(tokens) < k - 1:  # tile k-2 still reads this half
                    await ctx.tick()
                    edge += 1
                edge += await load(ctx, prog)
            took = await send(ctx, dut.cmd, prog.command)
            edge += took
            cmd_stalls[0] += took - 1
            accepted.append(edge)

    async def flow_source(ctx: SimulatorContext) -> None:
        rng = random.Random(f"{seed}:flow")
        for word in flow:
            while rng.random() >= flow_prob:
                await ctx.tick()
            await send(ctx, dut.flow, word)

    async def sink(ctx: SimulatorContext) -> None:
        await collect_outputs(
            ctx, dut, tiles=len(progs), outputs=words, tokens=tokens, token_edges=returned,
            seed=seed, ready_prob=ready_prob, done_ready_prob=done_ready_prob,
            idle_limit=stall_limit + sum(len(p.feature_writes) for p in progs),
            engine="warp engine",
        )  # fmt: skip

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(loader)
    sim.add_testbench(flow_source)
    sim.add_testbench(sink)
    streams = {n: watch_amaranth(sim, getattr(dut, n), f"WarpEngine.{n}") for n in ("o", "done")}
    sim.run()
    for rules, seen in ((streams["o"], words), (streams["done"], tokens)):
        rules.check()
        assert rules.transfers == len(seen), f"{rules.name}: {rules.transfers} ≠ {len(seen)}"
    assert tokens == tags(progs), f"done tokens {tokens}, the commands' tags {tags(progs)}"
    stalls = {name: rules.stalls for name, rules in streams.items()} | {"cmd": cmd_stalls[0]}
    return WarpRun(
        unpack_words(words, params.warp.lanes),
        tokens,
        returned[-1] - accepted[0],
        stalls,
        accepted,
        returned,
    )


def simulate_cocotb(
    progs: list[WarpProgram],
    params: GraceParams,
    *,
    simulator: str,
    build_dir: Path,
    ready_prob: float = 1.0,
    flow_prob: float = 1.0,
    done_ready_prob: float | None = None,
    seed: int = 0,
    waves: bool = False,
    overlap_loads: bool = False,
) -> tuple[WarpRun, SimResult]:
    """The same as `simulate_amaranth`, on the elaborated Verilog under cocotb.

    The bench fails the cocotb test (see `SimResult.check`) on a broken stream
    rule, a wrong output word or a done token that is not its command's tag.
    """
    lanes = params.warp.lanes
    expected = np.concatenate([p.expected for p in progs]).reshape(-1, lanes)
    done_prob = ready_prob if done_ready_prob is None else done_ready_prob
    work, result = run_engine_bench(
        "warp",
        params,
        simulator=simulator,
        build_dir=build_dir,
        seed=seed,
        words={
            "feature": [w for p in progs for w in p.feature_writes],
            "command": [p.command for p in progs],
            "flow": [w for p in progs for w in p.flow],
            "expected": pack_lanes(expected),
        },
        texts={
            "loads.txt": "".join(f"{len(p.feature_writes)}\n" for p in progs),
            "tags.txt": "".join(f"{t}\n" for t in tags(progs)),
        },
        env={
            "GRACE_READY_PROB": repr(ready_prob),
            "GRACE_DONE_READY_PROB": repr(done_prob),
            "GRACE_FLOW_PROB": repr(flow_prob),
            "GRACE_SEED": str(seed),
            "GRACE_OVERLAP": str(int(overlap_loads)),
        },
        waves=waves,
    )
    cycles = read_numbers(work, "cycles.txt")
    run = WarpRun(
        unpack_words(read_numbers(work, "out.txt", 16), lanes),
        read_numbers(work, "tokens.txt"),
        cycles[0] if cycles else 0,
        dict(zip(("o", "done", "cmd"), read_numbers(work, "stalls.txt"), strict=False)),
    )
    return run, result


# -- sweeps -----------------------------------------------------------------------------


def load_words(case: WarpCase, params: GraceParams) -> int:
    """Feature writes of a case (all its tiles): planes · H · W."""
    h, w = case.size
    return -(-case.channels // params.warp.lanes) * h * w


def case_cost(case: WarpCase, params: GraceParams) -> int:
    """About the cycles one case takes without back-pressure: loads plus output words."""
    ho, wo = case.out_size
    return load_words(case, params) + ho * wo * -(-case.channels // params.warp.lanes)


def sweep_cases(
    params: GraceParams, count: int, seed: int, *, max_cycles: int | None = None
) -> list[WarpCase]:
    """`count` varied warps: every flow kind, occlusion on and off, every feature kind.

    Maps 1×1, 1×N, N×1, 2×2, non-square (5×9, 33×47) and the tiny preset's real
    warps (3 and 64 channels of 16², the latter several tiles: `split_channels`),
    flow grids of the map's size or another, and channel counts that are not
    multiples of the lanes. A case whose `case_cost` exceeds `max_cycles` loses
    flow grid, then channels, then map until it fits.
    """
    rng = np.random.default_rng(seed)
    lanes = params.warp.lanes
    shapes: list[tuple[tuple[int, int], int | None]] = [
        ((1, 1), None),
        ((1, 9), None),
        ((7, 1), None),
        ((2, 2), None),
        ((5, 9), None),
        ((16, 16), 3),
        ((3, 2), None),
        ((1, 64), None),
        ((33, 47), None),
        ((16, 16), 64),
        ((9, 5), None),
        ((6, 6), None),
    ]
    cases: list[WarpCase] = []
    for k in range(count):
        (h, w), channels = shapes[k % len(shapes)]
        if channels is None:
            channels = int(rng.integers(1, 3 * lanes + 2))
            if lanes > 1 and channels % lanes == 0:
                channels += 1
        kind = FLOW_KINDS[k % len(FLOW_KINDS)]
        # every third case samples on a flow grid of another size than the map
        other = (int(rng.integers(1, h + 4)), int(rng.integers(1, w + 4)))
        out = other if k % 3 == 2 else (h, w)
        occlusion = k % 2 == 1
        features = FEATURE_KINDS[1 + (k // 5) % 3] if k % 5 == 4 else "random"
        case = random_case(rng, params, channels, (h, w), out, kind, occlusion, features)
        while max_cycles is not None and case_cost(case, params) > max_cycles:
            (h, w), (ho, wo) = case.size, case.out_size
            if ho * wo > 4:
                out = (max(1, ho * 2 // 3), max(1, wo * 2 // 3))
            elif case.channels > lanes + 1:
                channels = case.channels * 2 // 3
            else:
                h, w = max(1, h * 2 // 3), max(1, w * 2 // 3)
            case = random_case(rng, params, channels, (h, w), out, kind, occlusion, features)
        cases.append(case)
    return cases
