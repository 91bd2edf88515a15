"""L3's heatmap and motion units: their per-frame constants, and what a command does.

Both units hold a grid axis and the frame's keypoints (and the motion unit its
Jacobians), loaded on write streams whose payloads carry their own place
(`rtl/act/keypoints.py`); the heatmap unit also holds the Gaussian table. A
command calls L2's own `heatmaps`, `affine_motions` and `compose_flow` on that
state (over the loaded grid axis, which the host loads as `grid_axis(S)`) and
returns the unit's words: the heatmaps' int8, or the warp's {x, y} coordinates
saturated to s18. A write whose place the buffers lack and a command whose
size, keypoint count or map index the unit does not take are refused, each
naming the field (`UnitCommandError`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from defs.params import GraceParams
from model.fixed import saturate
from model.fixed_motion import affine_motions, compose_flow, heatmaps
from rtl.act.heatmap_layouts import gaussian_write_layout
from rtl.act.keypoints import grid_write_layout, jacobian_write_layout, keypoint_write_layout
from rtl.act.motion_layouts import MotionOp, output_layout
from rtl.warp.layouts import FLOW_BITS
from sim.l3.elementwise import UnitCommandError, check_place, take
from sim.l3.words import cached_unpacker

IntArray = npt.NDArray[np.int64]


@dataclass
class KeypointState:
    """The grid axis and one frame's keypoints (coordinate format) and Jacobians."""

    params: GraceParams
    grid: IntArray = field(init=False)
    keypoints: IntArray = field(init=False)  # (2 frames: driving, source; K, 2: x, y)
    jacobians: IntArray = field(init=False)  # (K, 2, 2)

    def __post_init__(self) -> None:
        a = self.params.act
        self.grid = np.zeros(a.max_grid, np.int64)
        self.keypoints = np.zeros((2, a.max_keypoints, 2), np.int64)
        self.jacobians = np.zeros((a.max_keypoints, 2, 2), np.int64)

    def write_grid(self, word: int) -> None:
        f = cached_unpacker(grid_write_layout, self.params)(word)
        check_place("grid", "index", f["index"], self.params.act.max_grid)
        self.grid[f["index"]] = f["value"]

    def write_keypoint(self, word: int) -> None:
        f = cached_unpacker(keypoint_write_layout, self.params)(word)
        check_place("keypoint", "keypoint", f["keypoint"], self.params.act.max_keypoints)
        self.keypoints[f["source"], f["keypoint"]] = (f["x"], f["y"])

    def write_jacobian(self, word: int) -> None:
        f = cached_unpacker(jacobian_write_layout, self.params)(word)
        check_place("Jacobian", "keypoint", f["keypoint"], self.params.act.max_keypoints)
        self.jacobians[f["keypoint"], f["row"], f["col"]] = f["value"]

    def _frame(self, command: Mapping[str, int], unit: str) -> tuple[int, int]:
        size, k = command["size"], command["keypoints"]
        a = self.params.act
        if not 2 <= size <= a.max_grid:
            raise UnitCommandError(f"{unit}.size = {size}: the unit takes 2..{a.max_grid}")
        if not 1 <= k <= a.max_keypoints:
            raise UnitCommandError(f"{unit}.keypoints = {k}: the unit takes 1..{a.max_keypoints}")
        return size, k

    def motions(self, size: int, k: int) -> IntArray:
        """(K + 1, S, S, 2): L2's `affine_motions` over the loaded grid."""
        kp = self.keypoints[:, :k]
        return affine_motions(kp[0], kp[1], self.jacobians[:k], size, self.grid[:size])


@dataclass
class HeatmapState(KeypointState):
    table: IntArray = field(init=False)  # the Gaussian table, zero beyond what was loaded

    def __post_init__(self) -> None:
        super().__post_init__()
        self.table = np.zeros(self.params.act.gaussian_depth, np.int64)

    def write_gaussian(self, word: int) -> None:
        f = cached_unpacker(gaussian_write_layout, self.params)(word)
        check_place("Gaussian", "index", f["index"], self.params.act.gaussian_depth)
        self.table[f["index"]] = f["data"]

    def run(self, command: Mapping[str, int]) -> list[int]:
        """The frame's heatmaps, row ▸ column ▸ channel (channel 0 the zero background)."""
        size, k = self._frame(command, "HEATMAP")
        kp = self.keypoints[:, :k]
        maps = heatmaps(kp[0], kp[1], size, self.table, self.grid[:size])
        return [int(v) & 0xFF for v in maps.transpose(1, 2, 0).ravel()]


@dataclass
class MotionState(KeypointState):
    masks: deque[int] = field(default_factory=deque)  # FLOW's input stream

    def run(self, command: Mapping[str, int]) -> list[int]:
        """MOTION k's map, or the flow under the streamed masks: {x, y} per pixel."""
        size, k = self._frame(command, "MOTION")
        if command["op"] == MotionOp.MOTION:
            if command["motion"] > k:
                raise UnitCommandError(
                    f"MOTION.motion = {command['motion']}: a frame of {k} keypoints has maps 0..{k}"
                )
            coords = self.motions(size, k)[command["motion"]]
        else:
            count = size * size * (k + 1)
            masks = np.array(take(self.masks, count, "MOTION.size", "MOTION_MASK"), np.int64)
            mask = masks.reshape(size, size, k + 1).transpose(2, 0, 1)
            coords = compose_flow(mask, self.motions(size, k))
        coords = saturate(coords, FLOW_BITS).reshape(-1, 2)
        layout, mask = output_layout(), (1 << FLOW_BITS) - 1
        x, y = layout["x"].offset, layout["y"].offset
        return [((int(cx) & mask) << x) | ((int(cy) & mask) << y) for cx, cy in coords]
