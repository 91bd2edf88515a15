"""The warp engine on a whole decoder: cycles per inter frame, priced by its cycle model.

Every warp of the fusion plan is mapped the way docs/warp_engine.md §2.4 maps
it with ping-pong double buffering: half of each bank holds the tile being
computed while the other half loads the next, so a tile holds
`(depth // 2) // plane_words` channel planes. A warp of more planes runs as
several tiles, each re-reading the flow. The dense-motion warp repeats one
source for each of its K + 1 motions: when the source fits one tile it stays
resident, one tile per motion.

Tiles of one warp op issue back to back (`rtl.warp_cycles.run_cycles`, exact
against RTL simulation without back-pressure); only the first tile's load is
exposed, the later ones overlap compute. Warp ops sit between conv layers, so
each op is priced on its own, its own fill and its own first load included.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from defs.limits import GROUP_BITS
from defs.params import GraceParams
from model.fusion import PlannedOp, fusion_plan
from rtl.warp_cycles import planes_for, run_cycles

#: The fusion plan's warp shapes: "K×C×S²" (K warps of one C-channel source, as
#: the dense-motion network's K + 1 motions) or "C×S²" (one warp).
_SHAPE = re.compile(r"^(?:(\d+)×)?(\d+)×(\d+)²$")


class WarpMappingError(ValueError):
    """A warp's maps do not fit the engine's feature buffer (one line)."""


@dataclass(frozen=True)
class WarpCost:
    name: str
    shape: str
    warps: int  # warps of the same source (the dense-motion network's K + 1 motions)
    channels: int  # per warp
    side: int  # maps and flow grids are side × side
    tile_planes: int  # planes in its fullest tile (at most what half the banks hold)
    tiles: int
    samples: int  # channel-samples: channels × side² × warps
    load_cycles: int  # the first tile's load, the only one not hidden behind compute
    cycles: int  # tiles back to back plus that load


@dataclass(frozen=True)
class WarpSummary:
    engine: str  # the params whose warp engine (lanes, depth) priced the model
    lanes: int
    depth: int  # words per bank
    frame_cycles: int  # every warp of one inter frame
    samples: int
    samples_per_cycle: float
    conv_frame_cycles: int  # the conv engine's cycles for the same inter frame
    conv_share: float  # frame_cycles / conv_frame_cycles


def _geometry(op: PlannedOp) -> tuple[int, int, int]:
    """(warps, channels, side) from the op's shape text."""
    match = _SHAPE.match(op.shape)
    if match is None:
        raise WarpMappingError(f"warp {op.name!r}: cannot read its shape {op.shape!r}")
    warps, channels, side = match.groups()
    return int(warps or 1), int(channels), int(side)


def tile_plan(params: GraceParams, warps: int, channels: int, side: int) -> list[int]:
    """Planes of each tile, in issue order: every warp's channel planes in groups
    of as many as half the banks hold, the last group of each warp short."""
    plane_words = math.ceil(side / 2) ** 2
    per_tile = min((params.warp.depth // 2) // plane_words, (1 << GROUP_BITS) - 1)
    if per_tile == 0:
        raise WarpMappingError(
            f"a {side}×{side} plane takes {plane_words:,} words per bank, but half of the "
            f"{params.warp.depth:,}-word banks (the other half loads the next tile) holds "
            f"{params.warp.depth // 2:,}"
        )
    planes = planes_for(params, channels)
    groups = [min(per_tile, planes - start) for start in range(0, planes, per_tile)]
    return groups * warps


def warp_costs(params: GraceParams, ops: list[PlannedOp] | None = None) -> list[WarpCost]:
    """Every warp of one inter frame of `params.model`, on `params`' warp engine.

    `ops` is the model's fusion plan when the caller has it (fomm-256's takes seconds).
    """
    costs = []
    for op in fusion_plan(params.model) if ops is None else ops:
        if op.op != "warp":
            continue
        warps, channels, side = _geometry(op)
        tiles = tile_plan(params, warps, channels, side)
        pixels = side * side
        load = tiles[0] * pixels  # one word (a pixel of `lanes` channels) per cycle
        costs.append(
            WarpCost(
                name=op.name,
                shape=op.shape,
                warps=warps,
                channels=channels,
                side=side,
                tile_planes=max(tiles),
                tiles=len(tiles),
                samples=channels * pixels * warps,
                load_cycles=load,
                cycles=run_cycles(params, [(pixels, planes) for planes in tiles]) + load,
            )
        )
    return costs


def summarise_warps(
    params: GraceParams, costs: list[WarpCost], conv_frame_cycles: int
) -> WarpSummary:
    """Totals of one inter frame, and their share of the conv engine's cycles."""
    cycles = sum(c.cycles for c in costs)
    samples = sum(c.samples for c in costs)
    return WarpSummary(
        engine=params.name,
        lanes=params.warp.lanes,
        depth=params.warp.depth,
        frame_cycles=cycles,
        samples=samples,
        samples_per_cycle=samples / cycles if cycles else 0.0,
        conv_frame_cycles=conv_frame_cycles,
        conv_share=cycles / conv_frame_cycles if conv_frame_cycles else 0.0,
    )


@dataclass(frozen=True)
class WarpReport:
    """A model's warps on one engine, or why they do not fit it."""

    costs: list[WarpCost]
    summary: WarpSummary | None
    refused: str = ""


def price_warps(
    params: GraceParams, conv_frame_cycles: int, ops: list[PlannedOp] | None = None
) -> WarpReport:
    """`warp_costs` and their totals; a map too large for the buffer is reported, not
    raised, so the conv engine's figures for the same engine still print."""
    try:
        costs = warp_costs(params, ops)
    except WarpMappingError as exc:
        return WarpReport([], None, str(exc))
    return WarpReport(costs, summarise_warps(params, costs, conv_frame_cycles))
