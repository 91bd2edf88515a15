"""The motion unit: FOMM's first-order motion maps and the dense flow, for the warp engine.

Two ops, chosen per command (`rtl.act.motion_layouts.MotionOp`), each emitting
one (x, y) per pixel of an S × S map, row-major, saturated to the warp's s18
flow fields (exact for the warp: docs/warp_engine.md §1.9):
- MOTION k: `model.fixed_motion.affine_motions(kp_d, kp_s, J, S)[k]` (k = 0: the
  identity grid; a DAC model's `sparse_motions` is the same with J = 2^14·I);
- FLOW: `compose_flow(mask, motions)`, the K + 1 mask bytes of each pixel
  streamed in on `i`, the motions regenerated here, not read back.

The per-frame constants (grid axis, keypoints, composed Jacobians:
rtl/act/keypoints.py) are written beforehand. Motion 0 is the identity, J =
2^14·I with zero keypoints, so every motion takes one path. Each beat's g −
kp_d goes to two lanes (`MotionLane`, x and y), each with its DSP products, and
their values to two output paths in lockstep, which round FLOW's sum
(round_shift(·, 8)), saturate to s18, queue the results and return done tokens::

    cmd ─► MotionIssue ◄─ mask queue ◄─ i
              │ beat: row or pixel, motion k, grid index, mask byte
              ▼
    grid axis (RegisteredRAM) ┐
    keypoints, Jacobians of k ┴─► rel = g − kp_d,  J entries, kp_s (motion 0: identity)
              ▼
    MotionLane x, MotionLane y ─► OutputPath x, y (lockstep) ─► o {x, y}, done
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.limits import TAG_BITS
from model.fixed_motion import JAC_FRAC_BITS
from rtl.act.keypoints import (
    GRID_BITS,
    JAC_BITS,
    KP_BITS,
    grid_write_layout,
    jacobian_write_layout,
    keypoint_index_bits,
    keypoint_write_layout,
)
from rtl.act.motion_issue import MotionIssue
from rtl.act.motion_lane import MotionLane, small_memory
from rtl.act.motion_layouts import (
    COORDINATE_NUMERIC,
    MASK_BITS,
    REL_BITS,
    MotionOp,
    command_layout,
    flow_pre_shift,
    output_layout,
)
from rtl.bram import RegisteredRAM
from rtl.dsp import platform_target
from rtl.output_path import OutputPath, element_user_layout, lanes_in_lockstep
from rtl.pipeline import delay, equals
from rtl.prefetch import PrefetchQueue

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Commands in flight (accepted, done token not yet taken) at most.
TOKEN_SLOTS = 16
#: Edges of the constants' read: the small memories' one, then choosing the
#: beat's axis (and the identity for motion 0); they meet the grid axis' read.
CONSTANTS_LATENCY = 2
#: Edges of rel = g − kp_d.
DIFFERENCE_LATENCY = 1
#: Edges from `beat.valid` to the lanes' input.
FRONT_LATENCY = RegisteredRAM.READ_LATENCY + DIFFERENCE_LATENCY
#: Edges from a beat issuing to its value entering the output paths.
ISSUE_TO_OUTPUT = MotionIssue.LATENCY + FRONT_LATENCY + MotionLane.LATENCY

#: A Jacobian entry of 1 (motion 0's J = 2^14·I).
JAC_ONE = 1 << JAC_FRAC_BITS


def _pair(bits: int) -> data.StructLayout:
    return data.StructLayout({"x": signed(bits), "y": signed(bits)})


#: The keypoint memory's word: the driving and the source keypoint, each (x, y).
KEYPOINT_WORD = data.StructLayout({"driving": _pair(KP_BITS), "source": _pair(KP_BITS)})
#: The Jacobian memory's word: J[row][col] in lane 2·row + col.
JACOBIAN_WORD = data.ArrayLayout(signed(JAC_BITS), 4)


class MotionUnit(wiring.Component):
    """One S × S map of (x, y) per command: a motion map, or the dense flow."""

    def __init__(self, params: GraceParams, *, dsp_target: str | None = None) -> None:
        self.params = params
        self.dsp_target = dsp_target
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(params))),
                "grid_write": In(stream.Signature(grid_write_layout(params))),
                "keypoint_write": In(stream.Signature(keypoint_write_layout(params))),
                "jacobian_write": In(stream.Signature(jacobian_write_layout(params))),
                "i": In(stream.Signature(MASK_BITS)),  # FLOW: K + 1 mask bytes per pixel
                "o": Out(stream.Signature(output_layout())),
                "done": Out(stream.Signature(TAG_BITS)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p, target = self.params, self.dsp_target
        big_die = platform_target(platform, target) != "ice40"

        m.submodules.issue = issue = MotionIssue(p, token_slots=TOKEN_SLOTS)
        m.submodules.mask_queue = masks = PrefetchQueue(MASK_BITS)
        wiring.connect(m, wiring.flipped(self.cmd), issue.cmd)
        wiring.connect(m, wiring.flipped(self.i), masks.i)
        m.d.comb += [
            issue.mask.eq(masks.head),
            issue.mask_valid_next.eq(masks.head_valid_next),
            masks.pop.eq(issue.mask_pop),
            issue.token_return.eq(self.done.valid & self.done.ready),
        ]
        beat = issue.beat.payload

        # -- writes: registered, then into the memories (two edges after the
        # transfer; a command reads them at least five edges after its own)
        m.submodules.grid = grid = RegisteredRAM(GRID_BITS, p.act.max_grid, target=target)
        keypoints_w, keypoints_r = small_memory(
            m, "keypoints", KEYPOINT_WORD.size, p.act.max_keypoints, big_die=big_die,
            granularity=KEYPOINT_WORD.size // 2,
        )  # fmt: skip
        jacobians_w, jacobians_r = small_memory(
            m, "jacobians", JACOBIAN_WORD.size, p.act.max_keypoints, big_die=big_die,
            granularity=JAC_BITS,
        )  # fmt: skip
        gw, kw, jw = self.grid_write, self.keypoint_write, self.jacobian_write
        m.d.comb += [gw.ready.eq(1), kw.ready.eq(1), jw.ready.eq(1)]
        m.d.sync += [
            grid.w_addr.eq(gw.payload.index),
            grid.w_data.eq(gw.payload.value),
            grid.w_en.eq(gw.valid),
            keypoints_w.addr.eq(kw.payload.keypoint),
            keypoints_w.data.eq(Cat(kw.payload.x, kw.payload.y).replicate(2)),
            keypoints_w.en.eq(Mux(kw.payload.source, 0b10, 0b01) & kw.valid.replicate(2)),
            jacobians_w.addr.eq(jw.payload.keypoint),
            jacobians_w.data.eq(jw.payload.value.replicate(4)),
            jacobians_w.en.eq((jw.valid << Cat(jw.payload.col, jw.payload.row))[:4]),
        ]

        # -- [0..2] the beat's grid entry, and its motion's constants (motion k is
        # keypoint k − 1; motion 0 is the identity)
        m.d.comb += [grid.r_addr.eq(beat.index), grid.r_clear.eq(0)]
        keypoint = (beat.k - 1)[: keypoint_index_bits(p)]
        m.d.comb += [keypoints_r.addr.eq(keypoint), jacobians_r.addr.eq(keypoint)]
        row_1 = delay(m, beat.row, 1, "select_row")
        identity = Signal()
        m.d.comb += identity.eq(equals(delay(m, beat.k, 1, "select_k"), 0))
        kp = data.View(KEYPOINT_WORD, keypoints_r.data)
        jac = data.View(JACOBIAN_WORD, jacobians_r.data)
        driving = Signal(signed(KP_BITS))  # kp_d on the beat's axis
        jac_x, jac_y = Signal(signed(JAC_BITS)), Signal(signed(JAC_BITS))  # J[c][axis]
        source_x, source_y = Signal(signed(KP_BITS)), Signal(signed(KP_BITS))
        m.d.sync += [
            driving.eq(Mux(identity, 0, Mux(row_1, kp.driving.y, kp.driving.x))),
            jac_x.eq(Mux(identity, Mux(row_1, 0, JAC_ONE), Mux(row_1, jac[1], jac[0]))),
            jac_y.eq(Mux(identity, Mux(row_1, JAC_ONE, 0), Mux(row_1, jac[3], jac[2]))),
            source_x.eq(Mux(identity, 0, kp.source.x)),
            source_y.eq(Mux(identity, 0, kp.source.y)),
        ]
        assert CONSTANTS_LATENCY == RegisteredRAM.READ_LATENCY  # they meet

        # -- [2..3] rel = g − kp_d; each lane takes its Jacobian entry and kp_s
        rel = Signal(signed(REL_BITS))
        m.d.sync += rel.eq(grid.r_data.as_signed() - driving)
        front = delay(
            m,
            Cat(issue.beat.valid, beat.row, beat.k, beat.first, beat.flow, beat.mask),
            FRONT_LATENCY,
            "front",
        )
        lanes = []
        for name, jac_c, source_c in (("x", jac_x, source_x), ("y", jac_y, source_y)):
            lane = MotionLane(p, dsp_target=target)
            m.submodules[f"lane_{name}"] = lane
            li = lane.i
            m.d.comb += [
                Cat(li.work, li.row, li.k, li.first, li.flow, li.mask).eq(front),
                li.rel.eq(rel),
            ]
            m.d.sync += [li.jac.eq(jac_c), li.source.eq(source_c)]
            lanes.append(lane)

        # -- [13] the output paths: FLOW's rounding and both ops' saturation
        back = delay(
            m,
            Cat(issue.beat.valid & beat.emit, beat.flow, beat.end, beat.tag),
            FRONT_LATENCY + MotionLane.LATENCY,
            "back",
        )
        emit, flow, end, tag = back[0], back[1], back[2], back[3:]
        paths = []
        for name, lane in zip("xy", lanes, strict=True):
            # tags beside the results: a narrower LUT-RAM queue, whose read address
            # reaches fewer slices (ECP5: it set the clock, 133.2 MHz, as in the warp's)
            path = OutputPath(
                COORDINATE_NUMERIC, 1, producer_latency=ISSUE_TO_OUTPUT,
                token_slots=TOKEN_SLOTS, dsp_target=target, tags_beside=True,
            )  # fmt: skip
            m.submodules[f"output_{name}"] = path
            element = path.i.payload
            user = data.View(element_user_layout(1), element.user)
            m.d.comb += [
                path.i.valid.eq(emit),
                element.acc.eq(lane.value),
                element.bias.eq(0),
                element.multiplier.eq(1),
                element.shift.eq(Mux(flow, MASK_BITS - flow_pre_shift(p), 0)),
                element.relu.eq(0),
                user.lane.eq(0),
                user.pool.eq(0),
                user.quad.eq(0),
                user.end.eq(end),
                user.tag.eq(tag),
            ]
            paths.append(path)
        m.d.comb += issue.room_next.eq(
            lanes_in_lockstep(m, paths, reserve=issue.reserve, o=self.o, done=self.done)
        )
        return m


__all__ = ["ISSUE_TO_OUTPUT", "TOKEN_SLOTS", "MotionOp", "MotionUnit"]
