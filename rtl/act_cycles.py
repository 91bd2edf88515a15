"""Cycle model of the element-wise engine (rtl/act/).

The engine issues one beat (one input word of `lanes` channels) per cycle and
never stalls behind the issue loop, so a tile of P pixels and G channel groups
costs its P·G beats plus the pipeline's fill and drain, the sum of the
latencies the RTL's parts declare. Back to back, the next command is accepted
as the last beat issues. Exact without back-pressure with the input offered
every cycle (tests/test_act_engine.py compares it with simulation).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rtl.act.engine import ISSUE_TO_OUTPUT
from rtl.act.issue import ActIssue
from rtl.output_path import OutputPath

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Edges from the last beat issuing to its tile's done token being taken.
DRAIN = ISSUE_TO_OUTPUT + OutputPath.LATENCY + OutputPath.TOKEN_LATENCY


def fill_cycles() -> int:
    """Constant part of a tile: set-up before the first beat, drain after the last."""
    return ActIssue.SETUP_LATENCY + DRAIN


def groups_for(params: GraceParams, channels: int) -> int:
    """Input words per pixel for `channels` channels: one per `lanes`."""
    return math.ceil(channels / params.act.lanes)


def tile_cycles(params: GraceParams, pixels: int, groups: int) -> int:
    """Cycles from a tile command's transfer to its done token's transfer."""
    if pixels < 1 or groups < 1:
        raise ValueError(f"a tile needs pixels ≥ 1 and groups ≥ 1, not {pixels}, {groups}")
    return fill_cycles() + pixels * groups - 1


def run_cycles(params: GraceParams, tiles: Iterable[tuple[int, int]]) -> int:
    """Tiles (pixels, groups) issued back to back: first transfer → last done token."""
    tiles = list(tiles)
    if not tiles or any(p < 1 or g < 1 for p, g in tiles):
        raise ValueError(f"tiles need pixels ≥ 1 and groups ≥ 1: {tiles}")
    issue = sum(ActIssue.SETUP_LATENCY + p * g for p, g in tiles)
    return issue - 1 + DRAIN
