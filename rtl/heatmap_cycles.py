"""Cycle model of the heatmap unit (rtl/act/heatmap.py).

The unit issues one beat per cycle and never stalls behind the issue loop: per
row, K set-up beats (the row's squares) and S pixels of K + 1 channels, so a
frame of side S costs S·(K + S·(K + 1)) beats plus the pipeline's fill and
drain, the sum of the latencies the RTL's parts declare. Back to back, the next
command is accepted as the last beat issues. Exact without back-pressure
(tests/test_heatmap_unit.py compares it with simulation).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rtl.act.heatmap import ISSUE_TO_OUTPUT
from rtl.act.heatmap_issue import HeatmapIssue, beats_per_frame
from rtl.output_path import OutputPath

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Edges from the last beat issuing to its frame's done token being taken.
DRAIN = ISSUE_TO_OUTPUT + OutputPath.LATENCY + OutputPath.TOKEN_LATENCY


def fill_cycles() -> int:
    """Constant part of a frame: set-up before the first beat, drain after the last."""
    return HeatmapIssue.SETUP_LATENCY + DRAIN


def _check(params: GraceParams, size: int, keypoints: int) -> None:
    act = params.act
    if not 2 <= size <= act.max_grid or not 1 <= keypoints <= act.max_keypoints:
        raise ValueError(
            f"a frame of size {size} with {keypoints} keypoints: the unit takes sizes "
            f"2..{act.max_grid} and 1..{act.max_keypoints} keypoints"
        )


def tile_cycles(params: GraceParams, size: int, keypoints: int) -> int:
    """Cycles from a command's transfer to its done token's transfer."""
    _check(params, size, keypoints)
    return fill_cycles() + beats_per_frame(size, keypoints) - 1


def run_cycles(params: GraceParams, frames: Iterable[tuple[int, int]]) -> int:
    """Commands (size, keypoints) issued back to back: first transfer → last done token."""
    frames = list(frames)
    if not frames:
        raise ValueError("run_cycles: no frames")
    for size, keypoints in frames:
        _check(params, size, keypoints)
    issue = sum(HeatmapIssue.SETUP_LATENCY + beats_per_frame(s, k) for s, k in frames)
    return issue - 1 + DRAIN


def model_frame_cycles(params: GraceParams) -> int:
    """One decoded frame's heatmaps for the parameters' model: its keypoints on the
    dense motion network's grid (image_size · dense_scale_factor, as model/fusion.py
    sizes it). fomm-256: 10 keypoints on 64², 45,727 cycles."""
    m = params.model
    return tile_cycles(params, m.dense_size, m.num_kp)
