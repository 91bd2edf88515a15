"""Cycle model of the softmax unit (rtl/act/softmax.py).

A pixel of C channels takes 3C + DIVIDE_STEPS steps (gather, exponentiate,
divide, normalise), one per cycle when its logits are there and result slots
free; a tile adds the set-up before its first step and the drain after its
last, the latencies the RTL declares. Back to back, the next command is
accepted as the last step issues. Exact without back-pressure with the input
offered every cycle (tests/test_softmax_unit.py compares it with simulation).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rtl.act.softmax import DIVIDE_STEPS, NORMALISE_TO_OUTPUT
from rtl.output_path import OutputPath
from rtl.tile_control import TileControl

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Edges from the last step issuing to its tile's done token being taken.
DRAIN = NORMALISE_TO_OUTPUT + OutputPath.LATENCY + OutputPath.TOKEN_LATENCY


def pixel_cycles(channels: int) -> int:
    """Steps of one pixel: C to gather, C to exponentiate, the division, C to normalise."""
    if channels < 1:
        raise ValueError(f"a softmax pixel needs at least 1 channel, not {channels}")
    return 3 * channels + DIVIDE_STEPS


def tile_cycles(params: GraceParams, pixels: int, channels: int) -> int:
    """Cycles from a tile command's transfer to its done token's transfer."""
    return run_cycles(params, [(pixels, channels)])


def run_cycles(params: GraceParams, tiles: Iterable[tuple[int, int]]) -> int:
    """Tiles (pixels, channels) issued back to back: first transfer → last done token."""
    tiles = list(tiles)
    limit = params.act.softmax_channels
    if not tiles or any(p < 1 or not 1 <= c <= limit for p, c in tiles):
        raise ValueError(f"tiles need pixels ≥ 1 and 1..{limit} channels: {tiles}")
    steps = sum(TileControl.SETUP_LATENCY + p * pixel_cycles(c) for p, c in tiles)
    return steps - 1 + DRAIN
