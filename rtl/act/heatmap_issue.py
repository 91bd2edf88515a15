"""The heatmap unit's issue loop: a frame command becomes beats, one per cycle.

The loop nest is row i ▸ (set-up: keypoint k) then (column j ▸ channel c = 0..K):
- a set-up beat squares the row's offsets g[i] − kp_y,k of keypoint k (driving
  and source); the unit keeps them for the row, so the heatmaps are separable
  and no element needs a product of its own beyond its column's squares;
- channel 0 of each pixel is the background, an output of 0;
- channel c ≥ 1 is an element: keypoint k = c − 1 at column j.
Only background and element beats yield an output, so only they reserve a
result slot; the loop otherwise follows the element-wise engine's timing rules
(`rtl/act/issue.py`): what later stages need travels with the beat.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.limits import TAG_BITS, bits_for
from rtl.act.heatmap_layouts import command_layout
from rtl.act.keypoints import keypoint_index_bits
from rtl.pipeline import LoopCounter
from rtl.tile_control import TileControl

if TYPE_CHECKING:
    from defs.params import GraceParams


def beat_layout(p: GraceParams) -> data.StructLayout:
    return data.StructLayout(
        {
            "row_setup": unsigned(1),  # square the row's offsets of `keypoint`; no output
            "background": unsigned(1),  # channel 0: an output of 0
            "grid_index": unsigned(bits_for(p.act.max_grid)),  # the row i, or the column j
            "keypoint": unsigned(keypoint_index_bits(p)),
            "end": unsigned(1),  # the frame's last beat
            "tag": unsigned(TAG_BITS),
        }
    )


def beats_per_frame(size: int, keypoints: int) -> int:
    """Beats of one command: per row, K set-up beats and S pixels of K + 1 channels."""
    return size * (keypoints + size * (keypoints + 1))


class HeatmapIssue(wiring.Component):
    """Frame commands in, beats out (one per cycle while a result slot is free)."""

    #: Edges from a command's transfer to its first beat issuing.
    SETUP_LATENCY = TileControl.SETUP_LATENCY
    #: Edges from a beat issuing to `beat.valid`.
    LATENCY = 1

    def __init__(self, params: GraceParams, *, token_slots: int) -> None:
        self.params = params
        self.token_slots = token_slots
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(params))),
                # result credits of the output path
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
        grid_bits = bits_for(p.act.max_grid)

        row = LoopCounter(m, "row", grid_bits)
        setup = LoopCounter(m, "setup", keypoint_index_bits(p))  # k in the row's set-up
        column = LoopCounter(m, "column", grid_bits)
        channel = LoopCounter(m, "channel", len(cmd.keypoints))  # c = 0..K
        counters = (row, setup, column, channel)
        with m.If(tile.deriving_limits):
            m.d.sync += [
                row.limit.eq(cmd.size - 1),
                setup.limit.eq(cmd.keypoints - 1),
                column.limit.eq(cmd.size - 1),
                channel.limit.eq(cmd.keypoints),
            ]
        with m.If(tile.testing_limits):
            m.d.sync += [s for c in counters for s in c.test_limit()]

        in_setup = Signal()  # the row's set-up beats issue
        background = Signal()  # the next pixel beat is channel 0
        row_index = Signal(grid_bits)
        column_index = Signal(grid_bits)
        keypoint = Signal(keypoint_index_bits(p))
        with m.If(tile.starting):
            m.d.sync += [s for c in counters for s in c.restart()]
            m.d.sync += [
                in_setup.eq(1),
                background.eq(1),
                row_index.eq(0),
                column_index.eq(0),
                keypoint.eq(0),
            ]
        pixel_beat = issuing & ~in_setup
        setup.step(issuing & in_setup)
        channel.step(pixel_beat)
        column.step(pixel_beat & channel.last)
        row.step(pixel_beat & channel.last & column.last)
        with m.If(issuing & in_setup):
            m.d.sync += keypoint.eq(Mux(setup.last, 0, keypoint + 1))
            with m.If(setup.last):
                m.d.sync += in_setup.eq(0)
        with m.If(pixel_beat):
            m.d.sync += background.eq(channel.last)
            with m.If(channel.last):
                m.d.sync += [
                    keypoint.eq(0),
                    column_index.eq(Mux(column.last, 0, column_index + 1)),
                ]
                with m.If(column.last):
                    m.d.sync += [in_setup.eq(1), row_index.eq(row_index + 1)]
            with m.Elif(~background):
                m.d.sync += keypoint.eq(keypoint + 1)
        tile_end = Signal()
        m.d.comb += tile_end.eq(~in_setup & row.last & column.last & channel.last)

        # A beat issues when the frame runs and a result slot is free (set-up
        # beats take none, but wait like the others): computed a cycle ahead.
        m.d.comb += self.reserve.eq(pixel_beat)
        tile.run(tile_end, self.room_next)

        beat = self.beat.payload
        m.d.sync += [
            self.beat.valid.eq(issuing),
            beat.row_setup.eq(in_setup),
            beat.background.eq(~in_setup & background),
            beat.grid_index.eq(Mux(in_setup, row_index, column_index)),
            beat.keypoint.eq(keypoint),
            beat.end.eq(tile_end),
            beat.tag.eq(cmd.tag),
        ]
        return m
