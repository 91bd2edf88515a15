"""Cycle model of the convolution engine (rtl/conv/), and its MAC utilisation.

The engine is a two-stage pipeline joined by the accumulator FIFO. The issue
stage spends T = G·k_h·k_w beats on each output pixel vector (G input-channel
groups of `cols`); the output unit spends n cycles on it (n = real channels of
the output group, one element per cycle). Without back-pressure a vector
therefore costs max(T, n) cycles, or more when the FIFO's slots cannot cover
the round trip from issue to output unit. The first vector also pays the issue
beats T and the pipeline's fill and drain: the sum of the latencies the RTL's
parts declare. `tile_cycles` is exact for the RTL without back-pressure: tests compare
it cycle for cycle with simulation (tests/test_conv_engine.py).

`sequence_cycles` prices tiles whose commands wait back to back, such as the
passes of a layer split over its input channels (docs/conv_engine.md): the
same flow shop over all their vectors, with the issue loop's set-up between
tiles and the output unit's hold after a `partial_out` tile
(tests/test_conv_split.py compares it with simulation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rtl.conv.engine import ISSUE_TO_TREE
from rtl.conv.issue import IssueLoop
from rtl.conv.mac_array import MacArray
from rtl.conv.output import ConvOutputUnit
from rtl.output_path import OutputPath
from rtl.pipeline import CREDIT_RETURN_LATENCY, tree_levels

if TYPE_CHECKING:
    from defs.params import GraceParams
    from model.conv_shape import ConvShape

# Every figure below is a sum of the latencies the engine's parts declare
# (rtl/conv/*.py, rtl/output_path.py); none is counted here.

#: Cycles a row-queue slot stays reserved beyond the pixel's own beats and the
#: MAC pipeline (issue → products): accumulate and queue write, the output
#: unit's `pop`, and the credit's return to the issue loop.
_SLOT_RETURN = MacArray.ACCUMULATE_LATENCY + ConvOutputUnit.POP_LATENCY + CREDIT_RETURN_LATENCY


def fill_cycles(params: GraceParams) -> int:
    """Constant part of a tile: pipeline fill and drain around the beats."""
    return (
        IssueLoop.SETUP_LATENCY
        + ISSUE_TO_TREE
        + tree_levels(params.array.cols)
        + MacArray.ACCUMULATE_LATENCY
        + ConvOutputUnit.LATENCY
        + OutputPath.LATENCY
    )


@dataclass(frozen=True)
class TileCost:
    cycles: int
    beats_per_pixel: int  # T
    vectors: int  # output pixel vectors (pixels × output groups)
    useful_macs: int
    array_macs: int

    @property
    def utilisation(self) -> float:
        """Useful MACs / (array MACs × cycles)."""
        return self.useful_macs / (self.array_macs * self.cycles)


def _tile_phases(params: GraceParams, shape: ConvShape) -> tuple[int, list[tuple[int, int]]]:
    """(beats per vector, [(vectors, lanes)]): the full output groups, then the last."""
    rows, cols = params.array.rows, params.array.cols
    if shape.groups != 1:
        raise ValueError("the conv engine runs dense convolutions (groups = 1) only")
    beats = math.ceil(shape.channels / cols) * shape.kernel_h * shape.kernel_w
    out_groups = math.ceil(shape.out_channels / rows)
    last = shape.out_channels - (out_groups - 1) * rows
    pixels = shape.computed_pixels
    phases = [(n, lanes) for n, lanes in (((out_groups - 1) * pixels, rows), (pixels, last)) if n]
    return beats, phases


def _credit_bound(params: GraceParams, beats: int) -> float:
    """Cycles per vector the row queues' slots allow: each is held a round trip."""
    round_trip = ISSUE_TO_TREE + tree_levels(params.array.cols) + _SLOT_RETURN
    return (beats + round_trip) / params.buffers.accumulator_slots


def _slots_bind(params: GraceParams, beats: int, phases: list[tuple[int, int]]) -> bool:
    credit_bound = _credit_bound(params, beats)
    return any(credit_bound > max(beats, lanes + 1) for _, lanes in phases)


def tile_cycles(params: GraceParams, shape: ConvShape) -> TileCost:
    """Cycles from the command's transfer to the done token's, for one tile."""
    beats, phases = _tile_phases(params, shape)
    if _slots_bind(params, beats, phases):
        last = phases[-1][1]
        cycles = _slot_bound_cycles(params, beats, phases, _credit_bound(params, beats), last)
    else:
        jobs = [(n, beats, lanes + 1) for n, lanes in phases]
        cycles = fill_cycles(params) + _flow_shop(jobs)
    return TileCost(
        cycles=math.ceil(cycles),
        beats_per_pixel=beats,
        vectors=sum(n for n, _ in phases),
        useful_macs=shape.macs,
        array_macs=params.array.macs,
    )


def sequence_cycles(params: GraceParams, tiles: Sequence[tuple[ConvShape, bool]]) -> int:
    """Cycles from the first command's transfer to the last done token's, for tiles
    (shape, partial_out) whose commands wait back to back, data resident, no
    back-pressure: the passes of a split layer (docs/conv_engine.md).

    One flow shop over every tile's vectors: a tile after the first starts
    issuing `IssueLoop.SETUP_LATENCY` cycles after the last beat of the one
    before (its command is taken the cycle after that beat, then set up), and
    after a `partial_out` tile the output unit holds `PARTIAL_HOLD` cycles
    before the next tile's first element. Tiles whose row-queue slots bind
    (`tile_cycles`' slot-bound case: 1 × 1 layers with few slots) are refused.
    """
    if not tiles:
        raise ValueError("sequence_cycles: no tiles")
    jobs: list[tuple[int, int, int]] = []
    for index, (shape, partial_out) in enumerate(tiles):
        beats, phases = _tile_phases(params, shape)
        if _slots_bind(params, beats, phases):
            raise ValueError(f"sequence_cycles: the row-queue slots bind {shape.describe()}")
        # one job per vector range of equal costs: (vectors, issue cycles, output cycles)
        tile = [[n, beats, lanes + 1] for n, lanes in phases]
        if index:  # the set-up before the tile's first beat
            first = tile.pop(0)
            tile[:0] = [[1, beats + IssueLoop.SETUP_LATENCY, first[2]], [first[0] - 1, *first[1:]]]
        tile = [job for job in tile if job[0]]
        if partial_out and index < len(tiles) - 1:  # the hold after the tile's last vector
            last = tile.pop()
            hold = ConvOutputUnit.PARTIAL_HOLD
            tile += [[last[0] - 1, *last[1:]], [1, last[1], last[2] + hold]]
        jobs += [(n, a, b) for n, a, b in tile if n]
    return fill_cycles(params) + _flow_shop(jobs)


def _flow_shop(jobs: list[tuple[int, int, int]]) -> int:
    """Issue and output unit as a two-stage flow shop (the FIFO never fills up).

    `jobs` are runs of vectors (count, a, b): each costs a cycles in the issue
    stage (its beats) and b in the output unit (a cycle to load it, one per
    lane; the very last one's load is part of the fill). The makespan is
    max_j (Σ_{i≤j} a_i + Σ_{i≥j} b_i): both sums are piecewise linear, so the
    maximum sits at a run's first or last vector.
    """
    total_b = sum(n * b for n, _, b in jobs) - 1
    makespan = before_a = before_b = 0
    for count, a, b in jobs:
        for j in (1, count):
            makespan = max(makespan, before_a + j * a + total_b - before_b - (j - 1) * b)
        before_a += count * a
        before_b += count * b
    return makespan


def _slot_bound_cycles(
    params: GraceParams,
    beats: int,
    phases: list[tuple[int, int]],
    credit_bound: float,
    last: int,
) -> float:
    """When the FIFO's slots cannot cover the round trip (1 × 1, one input group)."""
    slots = params.buffers.accumulator_slots

    def per_vector(lanes: int) -> float:
        return max(beats, lanes + 1, credit_bound)

    cycles = fill_cycles(params) + beats + last - per_vector(last)
    for k, (vectors, lanes) in enumerate(phases):
        cycles += vectors * per_vector(lanes)
        # a phase's first `slots` vectors still go at the pipeline's pace
        # (the very first one is already counted in the fill)
        free = min(slots, vectors) - (1 if k == 0 else 0)
        cycles -= free * max(0.0, credit_bound - max(beats, lanes + 1))
    return cycles
