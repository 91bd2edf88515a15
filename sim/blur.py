"""Host side of the key frame's anti-alias blur on the conv engine: a polyphase layout.

The polyphase form (the depthwise blur as a dense stride-1 conv over the
frame's s² phase planes) is `compiler/blur.py`'s; this module tiles it for the
engine's benches and cycle figures.

`plan_blur` splits the frame into tiles the preset's buffers take (colours per
tile, bands of output rows), choosing the split the engine's cycle model
(`rtl.conv_cycles.tile_cycles`) prices lowest; `blur_cases` lays each tile out
as a `sim.conv.ConvCase` for `sim.conv.program`; `assemble` puts the tiles'
outputs back into the (C, H_o, W_o) blurred frame. Everything refused is
refused with one line (`BlurLayoutError`).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from compiler.blur import (  # noqa: F401  (the polyphase form lives in the compiler)
    MAX_GROUPS,
    BlurLayoutError,
    PhaseAxis,
    Polyphase,
    Support,
    check_blur,
    phase_planes,
    phase_weights,
    polyphase,
)
from defs.limits import DIM_BITS
from model.conv_shape import ConvShape
from model.fixed_decoder import IMAGE_SCALE, QConv
from rtl.conv_cycles import tile_cycles
from sim.conv import ConvCase, reference

if TYPE_CHECKING:
    from defs.params import GraceParams, NumericParams

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BlurTile:
    """One engine tile of the blur: some colours, a band of output rows and of columns."""

    colours: range
    rows: range  # output rows
    cols: range  # output columns
    shape: ConvShape
    cycles: int  # `tile_cycles`, alone, without back-pressure


@dataclass(frozen=True)
class BlurPlan:
    geometry: Polyphase
    tiles: tuple[BlurTile, ...]

    @property
    def cycles(self) -> int:
        """The tiles one after another, each priced alone (back to back saves a few)."""
        return sum(t.cycles for t in self.tiles)

    def describe(self) -> str:
        g = self.geometry
        shapes = Counter(t.shape.describe() for t in self.tiles)
        kinds = ", ".join(f"{n} × {shape}" for shape, n in shapes.items())
        return f"{kinds} (stride {g.stride}: {g.phases} phases, {g.rows.taps}×{g.cols.taps} taps)"


def _tile_shape(geo: Polyphase, n: int, rows: range, cols: range) -> ConvShape:
    return ConvShape(
        channels=n * geo.phases,
        out_channels=n,
        height=len(geo.rows.stored(rows.start, rows.stop)),
        width=len(geo.cols.stored(cols.start, cols.stop)),
        kernel_h=geo.rows.taps,
        kernel_w=geo.cols.taps,
        padding=geo.rows.pad(rows.start, rows.stop),
        padding_w=geo.cols.pad(cols.start, cols.stop),
    )


def _bands(out: int, count: int) -> list[range]:
    """out rows (or columns) in `count` near-equal bands."""
    edges = [out * i // count for i in range(count + 1)]
    return [range(a, b) for a, b in itertools.pairwise(edges)]


def _row_bands(geo: Polyphase, cols: list[range], words_per_row: int, depth: int) -> list[range]:
    """The fewest bands of output rows whose phase rows fit `depth` input words beside
    the widest column band, and the command's size fields (none if one row does not)."""
    width = max(len(geo.cols.stored(c.start, c.stop)) for c in cols)
    if width >= 1 << DIM_BITS:
        return []
    most = min(depth // (words_per_row * width), (1 << DIM_BITS) - 1)
    if len(geo.rows.stored(0, geo.rows.out)) <= most:
        return [range(geo.rows.out)]
    band = most - geo.rows.taps + 1  # a band's stored rows: at most its rows + taps − 1
    return _bands(geo.rows.out, -(-geo.rows.out // band)) if band >= 1 else []


def _split(geo: Polyphase, params: GraceParams, n: int) -> list[BlurTile] | str:
    """Tiles of n colours, in the fewest column bands (then row bands) that fit the
    buffers; or why none do."""
    lanes, out_lanes = params.array.cols, params.array.rows
    buffers = params.buffers
    groups, out_groups = -(-n * geo.phases // lanes), -(-n // out_lanes)
    weight_words = out_groups * groups * geo.rows.taps * geo.cols.taps
    if max(groups, out_groups) > MAX_GROUPS:
        return (
            f"{n * geo.phases} phase planes need {groups} channel groups of {lanes}; "
            f"a command counts at most {MAX_GROUPS}"
        )
    if weight_words > buffers.weight_depth:
        return (
            f"the polyphase weights of {n} colour(s) take {weight_words} words; the weight "
            f"buffer holds {buffers.weight_depth} (raise BufferParams.weight_depth)"
        )
    if n > buffers.param_depth:
        return f"{n} channels' constants; the parameter buffer holds {buffers.param_depth}"
    for count in range(1, geo.cols.out + 1):
        cols = _bands(geo.cols.out, count)
        rows = _row_bands(geo, cols, groups, buffers.input_depth)
        if rows:
            break
    else:
        need = geo.rows.taps * geo.cols.taps * groups
        return (
            f"one output pixel of {n} colour(s) reads {need} input words; the input buffer "
            f"holds {buffers.input_depth} (raise BufferParams.input_depth)"
        )
    tiles = []
    for colour in range(0, geo.channels, n):
        colours = range(colour, min(colour + n, geo.channels))
        for row_band, col_band in itertools.product(rows, cols):
            shape = _tile_shape(geo, len(colours), row_band, col_band)
            cost = tile_cycles(params, shape).cycles
            tiles.append(BlurTile(colours, row_band, col_band, shape, cost))
    return tiles


def plan_blur(
    q: QConv,
    height: int,
    width: int,
    params: GraceParams,
    *,
    support: Support = "nonzero",
    colours_per_tile: int | None = None,
) -> BlurPlan:
    """The cheapest split of the blur into tiles the preset's buffers take.

    Colours per tile run from all of them (one dense C·s² → C conv, zero
    off-diagonal blocks) down to one; each tile covers a band of output rows
    and of columns (whole rows when they fit). The beats are the same either
    way when the array's lanes divide s², so the split with the fewest fills
    usually wins. `colours_per_tile` imposes a split instead.
    """
    geo = polyphase(q, height, width, support=support)
    counts = range(geo.channels, 0, -1) if colours_per_tile is None else [colours_per_tile]
    if not set(counts) <= set(range(1, geo.channels + 1)):
        raise BlurLayoutError(f"blur: {colours_per_tile} colours per tile of {geo.channels}")
    splits = {n: _split(geo, params, n) for n in counts}
    fitting = [tiles for tiles in splits.values() if not isinstance(tiles, str)]
    if not fitting:
        raise BlurLayoutError(f"blur on {params.name}: {splits[min(splits)]}")
    best = min(fitting, key=lambda tiles: (sum(t.cycles for t in tiles), len(tiles)))
    return BlurPlan(geo, tuple(best))


def blur_case(q: QConv, image: npt.ArrayLike, plan: BlurPlan, tile: BlurTile) -> ConvCase:
    """The tile as the conv engine's `ConvCase`: phase planes, block-diagonal weights,
    the blur's own constants."""
    geo = plan.geometry
    rows = geo.rows.stored(tile.rows.start, tile.rows.stop)
    cols = geo.cols.stored(tile.cols.start, tile.cols.stop)
    c0, c1 = tile.colours.start, tile.colours.stop
    planes = phase_planes(image, geo, rows, cols)[c0 * geo.phases : c1 * geo.phases]
    return ConvCase(
        x=planes,
        weight=phase_weights(q, geo, tile.colours),
        bias=np.asarray(q.bias, dtype=np.int64)[c0:c1],
        multiplier=np.asarray(q.multiplier, dtype=np.int64)[c0:c1],
        shift=np.asarray(q.shift, dtype=np.int64)[c0:c1],
        padding=tile.shape.padding,
        padding_w=tile.shape.padding_w,
        relu=q.relu,
    )


def blur_cases(q: QConv, image: npt.ArrayLike, plan: BlurPlan) -> list[ConvCase]:
    return [blur_case(q, image, plan, tile) for tile in plan.tiles]


def from_engine_order(values: npt.ArrayLike, shape: ConvShape, rows: int) -> IntArray:
    """A tile's outputs as the engine emits them (output group ▸ pixel ▸ lane) → (O, H, W)."""
    h, w = shape.conv_size
    flat = np.asarray(values, dtype=np.int64)
    if flat.size != shape.out_channels * h * w:
        raise ValueError(f"{flat.size} outputs for a tile of {shape.out_channels * h * w}")
    out, start = [], 0
    for first in range(0, shape.out_channels, rows):
        lanes = min(rows, shape.out_channels - first)
        block = flat[start : start + h * w * lanes]
        out.append(block.reshape(h, w, lanes).transpose(2, 0, 1))
        start += h * w * lanes
    return np.concatenate(out)


def assemble(plan: BlurPlan, outputs: list[IntArray]) -> IntArray:
    """Each tile's (colours, rows, columns) output into the blurred (C, H_o, W_o) frame."""
    if len(outputs) != len(plan.tiles):
        raise ValueError(f"{len(outputs)} outputs for {len(plan.tiles)} tiles")
    frame = np.zeros((plan.geometry.channels, *plan.geometry.out_size), dtype=np.int64)
    for tile, y in zip(plan.tiles, outputs, strict=True):
        frame[
            tile.colours.start : tile.colours.stop,
            tile.rows.start : tile.rows.stop,
            tile.cols.start : tile.cols.stop,
        ] = y
    return frame


def blur_on_engine_l2(q: QConv, image: npt.ArrayLike, params: GraceParams) -> IntArray:
    """What the engine computes, in NumPy: every tile through L2's dense conv, assembled.

    Equal to `run_conv(q, image, params.numeric)` (tests/test_blur_polyphase.py).
    """
    x = np.asarray(image, dtype=np.int64)
    plan = plan_blur(q, x.shape[1], x.shape[2], params)
    return assemble(plan, [reference(case, params) for case in blur_cases(q, x, plan)])


def antialias_qconv(channels: int, scale: float, numeric: NumericParams) -> QConv | None:
    """FOMM's blur for a scale, quantized as `model.ptq.build_quantized` quantizes the
    model's (None at scale 1). The kernel depends on the scale alone: no checkpoint."""
    from model.blocks import AntiAliasInterpolation2d
    from model.ptq import quantize_conv

    if scale == 1:
        return None
    down = AntiAliasInterpolation2d(channels, scale)
    return quantize_conv(
        down.weight,
        None,
        np.full(1, IMAGE_SCALE),
        IMAGE_SCALE,
        numeric,
        padding=down.ka,
        stride=down.int_inv_scale,
        groups=channels,
    )


@dataclass(frozen=True)
class BlurCost:
    preset: str
    plan: str
    tiles: int
    gop_cycles: int  # the key frame's blur: once per GOP
    gop_size: int
    frame_cycles: float  # amortised over the GOP

    def describe(self) -> str:
        return (
            f"{self.preset}: blur {self.gop_cycles:,} cycles per GOP, "
            f"{self.frame_cycles:,.0f} per frame over a GOP of {self.gop_size}: {self.plan}"
        )


def blur_cost(
    params: GraceParams, q: QConv | None = None, *, gop_size: int | None = None
) -> BlurCost:
    """The key frame's blur on `params`' conv engine, per GOP and per frame.

    `q` defaults to the model's own blur (`antialias_qconv`); the GOP, to the
    codec's default (`CodecSettings.gop_size`).
    """
    from model.codec import CodecSettings

    m = params.model
    q = antialias_qconv(m.num_channels, m.dense_scale_factor, params.numeric) if q is None else q
    gop = CodecSettings().gop_size if gop_size is None else gop_size
    if q is None:
        return BlurCost(params.name, "no blur (scale 1)", 0, 0, gop, 0.0)
    side = params.model.image_size
    plan = plan_blur(q, side, side, params)
    return BlurCost(
        params.name, plan.describe(), len(plan.tiles), plan.cycles, gop, plan.cycles / gop
    )


def blur_cycles(params: GraceParams) -> int:
    """Conv-engine cycles of the key frame's blur, per GOP (for `grace bench`)."""
    return blur_cost(params).gop_cycles
