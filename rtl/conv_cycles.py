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
"""

from __future__ import annotations

import math
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


def tile_cycles(params: GraceParams, shape: ConvShape) -> TileCost:
    """Cycles from the command's transfer to the done token's, for one tile."""
    rows, cols = params.array.rows, params.array.cols
    if shape.groups != 1:
        raise ValueError("the conv engine runs dense convolutions (groups = 1) only")
    beats = math.ceil(shape.channels / cols) * shape.kernel_h * shape.kernel_w
    out_groups = math.ceil(shape.out_channels / rows)
    last = shape.out_channels - (out_groups - 1) * rows
    pixels = shape.computed_pixels
    slots = params.buffers.accumulator_slots

    round_trip = ISSUE_TO_TREE + tree_levels(cols) + _SLOT_RETURN
    credit_bound = (beats + round_trip) / slots

    phases = [(n, lanes) for n, lanes in (((out_groups - 1) * pixels, rows), (pixels, last)) if n]
    if any(credit_bound > max(beats, lanes + 1) for _, lanes in phases):
        cycles = _slot_bound_cycles(params, beats, phases, credit_bound, last)
    else:
        cycles = fill_cycles(params) + _flow_shop(beats, phases)
    return TileCost(
        cycles=math.ceil(cycles),
        beats_per_pixel=beats,
        vectors=out_groups * pixels,
        useful_macs=shape.macs,
        array_macs=params.array.macs,
    )


def _flow_shop(beats: int, phases: list[tuple[int, int]]) -> int:
    """Issue and output unit as a two-stage flow shop (the FIFO never fills up).

    Vector i costs a = beats in the issue stage and b_i = lanes + 1 in the
    output unit (a cycle to load it, one per lane; the very last one's load is
    part of the fill). The makespan is max_j (Σ_{i≤j} a + Σ_{i≥j} b_i): both sums
    are piecewise linear, so the maximum sits at a phase's first or last vector.
    """
    total_b = sum(n * (lanes + 1) for n, lanes in phases) - 1
    makespan = before_a = before_b = 0
    for count, lanes in phases:
        b = lanes + 1
        for j in (1, count):
            makespan = max(makespan, before_a + j * beats + total_b - before_b - (j - 1) * b)
        before_a += count * beats
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
