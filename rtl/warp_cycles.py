"""Cycle model of the warp engine (rtl/warp/), and a frame's warp cycles.

The engine issues one beat (one output pixel × one plane of `lanes` channels)
per cycle and never stalls behind the issue loop, so a tile of P pixels and G
planes costs its P·G beats plus the pipeline's fill and drain: the sum of the
latencies the RTL's parts declare (counted nowhere else). Back to back, the
next tile's command is accepted as the last beat issues, and its beats start
after the set-up steps. The model is exact for the RTL without back-pressure
and with the flow offered every cycle: tests compare it with simulation
(tests/test_warp_engine.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rtl.output_path import OutputPath
from rtl.warp.engine import ISSUE_TO_OUTPUT
from rtl.warp.issue import WarpIssue

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Edges from the last beat issuing to its tile's done token being taken.
DRAIN = ISSUE_TO_OUTPUT + OutputPath.LATENCY + OutputPath.TOKEN_LATENCY


def fill_cycles() -> int:
    """Constant part of a tile: set-up before the first beat, drain after the last."""
    return WarpIssue.SETUP_LATENCY + DRAIN


def tile_cycles(params: GraceParams, pixels: int, planes: int) -> int:
    """Cycles from a tile command's transfer to its done token's transfer."""
    return fill_cycles() + beats(params, pixels, planes) - 1


def beats(params: GraceParams, pixels: int, planes: int) -> int:
    """Beats of a tile: `planes` words of `lanes` channels per output pixel."""
    if pixels < 1 or planes < 1:
        raise ValueError(f"a warp tile needs pixels ≥ 1 and planes ≥ 1, not {pixels}, {planes}")
    return pixels * planes


def run_cycles(params: GraceParams, tiles: Iterable[tuple[int, int]]) -> int:
    """Tiles (pixels, planes) issued back to back: first transfer → last done token."""
    tiles = list(tiles)
    issue = sum(WarpIssue.SETUP_LATENCY + beats(params, *t) for t in tiles)
    return issue - 1 + DRAIN


def planes_for(params: GraceParams, channels: int) -> int:
    """Words per pixel for `channels` channels: one per `lanes`."""
    return math.ceil(channels / params.warp.lanes)
