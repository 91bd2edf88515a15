"""The motion unit's issue loop: a command becomes row beats and pixel beats.

Per row i of the S × S map, a row phase first issues one row beat per motion
(its row term J·(g[i] − kp_d,y) + …, `MotionLane`), padded with idle slots to
at least `MotionLane.ROW_LEAD` slots so that no pixel beat reads a row term
before it is written; then the pixel phase issues, per column j, one beat per
motion: MOTION one (the command's map), FLOW K + 1 (k = 0 … K, each with its
mask byte, the last one emitting the pixel's flow). So a command costs

    S · (max(M, ROW_LEAD) + S · M)   beats,   M = 1 (MOTION) or K + 1 (FLOW)

issued one per cycle while allowed. A beat issues only with a result slot free
(reserved by the beats that emit) and, for FLOW, with the next mask byte at
the input queue's head (row beats wait for it too, which costs nothing: the
row's first pixel needs it next); the free-running pipeline behind never
stalls. Command acceptance, credits and set-up are `TileControl`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from defs.limits import bits_for
from rtl.act.motion_lane import MotionLane
from rtl.act.motion_layouts import MASK_BITS, beat_layout, command_layout, count_bits
from rtl.pipeline import LoopCounter
from rtl.tile_control import TileControl

if TYPE_CHECKING:
    from defs.params import GraceParams


class MotionIssue(wiring.Component):
    """Commands and the mask queue's head in, beats out (one per cycle while allowed)."""

    #: Edges from a command's transfer to its first beat issuing.
    SETUP_LATENCY = TileControl.SETUP_LATENCY
    #: Edges from a beat issuing to `beat.valid`.
    LATENCY = 1
    #: Slots of a row phase, at least: see `MotionLane.ROW_LEAD`.
    ROW_LEAD = MotionLane.ROW_LEAD

    def __init__(self, params: GraceParams, *, token_slots: int) -> None:
        self.params = params
        self.token_slots = token_slots
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(params))),
                # the mask queue's head (rtl.prefetch.PrefetchQueue)
                "mask": In(MASK_BITS),
                "mask_valid_next": In(1),
                "mask_pop": Out(1),
                # result credits of the output paths
                "reserve": Out(1),
                "room_next": In(1),
                "token_return": In(1),
                "beat": Out(stream.Signature(beat_layout(params), always_ready=True)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.params
        tile = TileControl(
            m, self.cmd, command_layout(p), token_slots=self.token_slots,
            token_return=self.token_return,
        )  # fmt: skip
        cmd, issuing = tile.cmd, tile.issuing
        flow = cmd.op
        motions = p.act.max_keypoints + 1
        lead = self.ROW_LEAD

        # rows ▸ (row phase: a slot per motion, at least `lead`) then (columns ▸ motions)
        row = LoopCounter(m, "row", bits_for(p.act.max_grid))
        column = LoopCounter(m, "column", bits_for(p.act.max_grid))
        motion = LoopCounter(m, "motion", bits_for(motions))
        slot = LoopCounter(m, "slot", bits_for(max(motions, lead)))
        with m.If(tile.deriving_limits):
            long_rows = flow & (cmd.keypoints >= lead - 1)  # K + 1 ≥ lead
            m.d.sync += [
                row.limit.eq(cmd.size - 1),
                column.limit.eq(cmd.size - 1),
                motion.limit.eq(Mux(flow, cmd.keypoints, 0)),
                slot.limit.eq(Mux(long_rows, cmd.keypoints, lead - 1)),
            ]
        with m.If(tile.testing_limits):
            m.d.sync += [c for counter in (row, column, motion, slot) for c in counter.test_limit()]

        rows_phase = Signal()  # issuing a row phase (else a pixel phase)
        row_work = Signal()  # the row phase has row terms left (else idle slots)
        k = Signal(count_bits(p))  # FLOW's motion, counting up with `motion`
        k_first = Signal()
        i = Signal(bits_for(p.act.max_grid))  # the row and column, counting up
        j = Signal.like(i)
        with m.If(tile.starting):
            m.d.sync += [
                *row.restart(), *column.restart(), *motion.restart(), *slot.restart(),
                rows_phase.eq(1), row_work.eq(1), k.eq(0), k_first.eq(1), i.eq(0), j.eq(0),
            ]  # fmt: skip

        pixel = ~rows_phase
        works = pixel | row_work
        pixel_done = pixel & motion.last
        row_done = pixel_done & column.last
        tile_end = Signal()
        m.d.comb += tile_end.eq(row_done & row.last)
        motion.step(issuing & works)
        slot.step(issuing & rows_phase)
        column.step(issuing & pixel_done)
        row.step(issuing & row_done)
        with m.If(issuing & works):
            m.d.sync += [k.eq(Mux(motion.last, 0, k + 1)), k_first.eq(motion.last)]
        with m.If(issuing & rows_phase):
            with m.If(row_work & motion.last):
                m.d.sync += row_work.eq(0)
            with m.If(slot.last):
                m.d.sync += rows_phase.eq(0)
        with m.If(issuing & pixel_done):
            m.d.sync += j.eq(Mux(column.last, 0, j + 1))
        with m.If(issuing & row_done):
            m.d.sync += [rows_phase.eq(1), row_work.eq(1), i.eq(i + 1)]

        m.d.comb += [
            self.reserve.eq(issuing & pixel_done),
            self.mask_pop.eq(issuing & pixel & flow),
        ]
        tile.run(tile_end, ~flow | self.mask_valid_next, self.room_next)

        beat = self.beat.payload
        m.d.sync += [
            self.beat.valid.eq(issuing & works),
            beat.row.eq(rows_phase),
            beat.k.eq(Mux(flow, k, cmd.motion)),
            beat.index.eq(Mux(rows_phase, i, j)),
            beat.mask.eq(self.mask),
            beat.first.eq(k_first),
            beat.emit.eq(pixel_done),
            beat.flow.eq(flow),
            beat.end.eq(tile_end),
            beat.tag.eq(cmd.tag),
        ]
        return m
