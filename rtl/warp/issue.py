"""The warp engine's issue loop: a tile command and its flow entries become beats.

A beat is one output pixel × one plane (a word of `lanes` channels): the loop
nest is pixel row ▸ pixel column ▸ plane. A beat issues only when the pixel's
flow entry is at the head of the flow queue and the output path has a result
slot reserved for it (credits), so the free-running pipeline behind never
stalls; the entry leaves the queue with the pixel's last plane. A tile is
accepted only with a slot reserved for its done token (`token_return`).

Everything a later stage needs travels with the beat (sizes, plane base,
occlusion, tag), so the next tile can start while this one's beats are still
in flight. The flags that enable the counters are registers, computed a cycle
ahead, as in the conv engine's issue loop (docs/conv_engine.md, "Timing").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.limits import DIM_BITS, TAG_BITS
from rtl.pipeline import LoopCounter
from rtl.tile_control import TileControl
from rtl.warp.layouts import command_layout, flow_layout, warp_addr_bits

if TYPE_CHECKING:
    from defs.params import GraceParams


def beat_layout(p: GraceParams) -> data.StructLayout:
    return data.StructLayout(
        {
            "flow": flow_layout(),
            "base": unsigned(warp_addr_bits(p)),  # the plane's first word
            "in_row": unsigned(DIM_BITS),
            "in_height": unsigned(DIM_BITS),
            "in_width": unsigned(DIM_BITS),
            "occlusion": unsigned(1),
            "end": unsigned(1),  # the tile's last beat
            "tag": unsigned(TAG_BITS),
        }
    )


class WarpIssue(wiring.Component):
    """Tile commands and the flow queue's head in, beats out (one per cycle while allowed)."""

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
                # the flow queue's head (rtl.prefetch.PrefetchQueue)
                "flow": In(flow_layout()),
                "flow_valid": In(1),
                "flow_valid_next": In(1),
                "flow_pop": Out(1),
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

        plane = LoopCounter(m, "plane", len(cmd.planes))
        column = LoopCounter(m, "column", DIM_BITS)
        row = LoopCounter(m, "row", DIM_BITS)
        counters = (plane, column, row)
        with m.If(tile.deriving_limits):
            m.d.sync += [
                plane.limit.eq(cmd.planes - 1),
                column.limit.eq(cmd.out_width - 1),
                row.limit.eq(cmd.out_height - 1),
            ]
        with m.If(tile.testing_limits):
            m.d.sync += [s for c in counters for s in c.test_limit()]
        plane_offset = Signal(warp_addr_bits(p))
        with m.If(tile.starting):
            m.d.sync += [s for c in counters for s in c.restart()]
            m.d.sync += plane_offset.eq(0)
        pixel_end = Signal()
        tile_end = Signal()
        m.d.comb += [
            pixel_end.eq(issuing & plane.last),
            tile_end.eq(plane.last & column.last & row.last),
        ]
        plane.step(issuing)
        column.step(pixel_end)
        row.step(pixel_end & column.last)
        with m.If(issuing):
            m.d.sync += plane_offset.eq(Mux(plane.last, 0, plane_offset + cmd.in_plane))

        # A beat issues when the tile runs, its pixel's flow entry is there and a
        # result slot is free: computed a cycle ahead from the next state.
        m.d.comb += [self.reserve.eq(issuing), self.flow_pop.eq(pixel_end)]
        tile.run(tile_end, self.flow_valid_next, self.room_next)

        beat = self.beat.payload
        m.d.sync += [
            self.beat.valid.eq(issuing),
            beat.flow.eq(self.flow),
            beat.base.eq(cmd.in_base + plane_offset),
            beat.in_row.eq(cmd.in_row),
            beat.in_height.eq(cmd.in_height),
            beat.in_width.eq(cmd.in_width),
            beat.occlusion.eq(cmd.occlusion),
            beat.end.eq(tile_end),
            beat.tag.eq(cmd.tag),
        ]
        return m
