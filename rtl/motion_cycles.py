"""Cycle model of the motion unit (rtl/act/motion.py).

The unit issues one beat per cycle and never stalls behind its issue loop. A
command of an S × S map with M motions per pixel (MOTION: 1, FLOW: K + 1)
issues, per row, a row phase of max(M, ROW_LEAD) slots (one row term per
motion, padded so that no pixel reads a row term before it is written) and S·M
pixel beats; then the pipeline drains, the sum of the latencies the RTL's
parts declare. Back to back, the next command is accepted as the last beat
issues. Exact without back-pressure, with the mask offered every cycle
(tests/test_motion_unit.py compares it with simulation).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rtl.act.motion import ISSUE_TO_OUTPUT
from rtl.act.motion_issue import MotionIssue
from rtl.act.motion_layouts import MotionOp
from rtl.output_path import OutputPath

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Edges from the last beat issuing to its command's done token being taken.
DRAIN = ISSUE_TO_OUTPUT + OutputPath.LATENCY + OutputPath.TOKEN_LATENCY

#: A command: (op, S, K).
Command = tuple[MotionOp, int, int]


def motions_per_pixel(op: MotionOp, keypoints: int) -> int:
    """Beats per pixel: MOTION one, FLOW one per motion (K + 1)."""
    return keypoints + 1 if op == MotionOp.FLOW else 1


def beats(params: GraceParams, op: MotionOp, size: int, keypoints: int) -> int:
    """Issue slots of one command: S · (max(M, ROW_LEAD) + S · M)."""
    if not 2 <= size <= params.act.max_grid or not 1 <= keypoints <= params.act.max_keypoints:
        raise ValueError(
            f"S = {size}, K = {keypoints}: the unit takes S in 2..{params.act.max_grid} and "
            f"K in 1..{params.act.max_keypoints}"
        )
    per_pixel = motions_per_pixel(MotionOp(op), keypoints)
    return size * (max(per_pixel, MotionIssue.ROW_LEAD) + size * per_pixel)


def command_cycles(params: GraceParams, op: MotionOp, size: int, keypoints: int) -> int:
    """Cycles from a command's transfer to its done token's transfer."""
    return MotionIssue.SETUP_LATENCY + beats(params, op, size, keypoints) - 1 + DRAIN


def run_cycles(params: GraceParams, commands: Iterable[Command]) -> int:
    """Commands issued back to back: first transfer → last done token."""
    commands = list(commands)
    if not commands:
        raise ValueError("run_cycles: no commands")
    issue = sum(MotionIssue.SETUP_LATENCY + beats(params, *c) for c in commands)
    return issue - 1 + DRAIN


def frame_commands(size: int, keypoints: int) -> list[Command]:
    """A frame's commands as the decoder issues them: the K + 1 motion maps, the flow."""
    return [(MotionOp.MOTION, size, keypoints)] * (keypoints + 1) + [
        (MotionOp.FLOW, size, keypoints)
    ]


def frame_cycles(params: GraceParams, size: int = 64, keypoints: int = 10) -> int:
    """One frame's motion maps and flow back to back (default: fomm-256's K = 10 on 64²)."""
    return run_cycles(params, frame_commands(size, keypoints))
