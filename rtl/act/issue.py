"""The element-wise engine's issue loop: a tile command and its input words become beats.

A beat is one input word (`lanes` channels of one pixel); the loop nest is
pixel ▸ channel group. A beat issues only when its word heads the input queue
and the output path has a result slot reserved for it, so the free-running
pipeline behind never stalls; a tile is accepted only with a slot reserved for
its done token. What later stages need travels with the beat, as in the warp
engine's issue loop (`rtl/warp/issue.py`), whose timing rules it follows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.limits import TAG_BITS
from rtl.act.layouts import command_layout, param_addr_bits
from rtl.pipeline import LoopCounter
from rtl.tile_control import TileControl

if TYPE_CHECKING:
    from defs.params import GraceParams


def beat_layout(p: GraceParams) -> data.StructLayout:
    cmd = command_layout(p).members
    return data.StructLayout(
        {
            "word": unsigned(p.act.lanes * p.numeric.act_bits),
            "param_addr": unsigned(param_addr_bits(p)),  # the group's constants
            "op": cmd["op"],
            "table": cmd["table"],
            "relu": cmd["relu"],
            "end": unsigned(1),  # the tile's last beat
            "tag": unsigned(TAG_BITS),
        }
    )


class ActIssue(wiring.Component):
    """Tile commands and the input queue's head in, beats out (one per cycle while allowed)."""

    #: Edges from a command's transfer to its first beat issuing.
    SETUP_LATENCY = TileControl.SETUP_LATENCY
    #: Edges from a beat issuing to `beat.valid`.
    LATENCY = 1

    def __init__(self, params: GraceParams, *, token_slots: int) -> None:
        self.params = params
        self.token_slots = token_slots
        width = params.act.lanes * params.numeric.act_bits
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(params))),
                # the input queue's head (rtl.prefetch.PrefetchQueue)
                "word": In(width),
                "word_valid_next": In(1),
                "word_pop": Out(1),
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

        group = LoopCounter(m, "group", len(cmd.groups))
        pixel = LoopCounter(m, "pixel", len(cmd.pixels))
        with m.If(tile.deriving_limits):
            m.d.sync += [group.limit.eq(cmd.groups - 1), pixel.limit.eq(cmd.pixels - 1)]
        with m.If(tile.testing_limits):
            m.d.sync += [*group.test_limit(), *pixel.test_limit()]
        param_addr = Signal(param_addr_bits(p))
        with m.If(tile.starting):
            m.d.sync += [*group.restart(), *pixel.restart(), param_addr.eq(cmd.param_base)]
        tile_end = Signal()
        m.d.comb += tile_end.eq(group.last & pixel.last)
        group.step(issuing)
        pixel.step(issuing & group.last)
        with m.If(issuing):
            m.d.sync += param_addr.eq(Mux(group.last, cmd.param_base, param_addr + 1))

        # A beat issues when the tile runs, its word is there and a result slot is
        # free: computed a cycle ahead from the next state.
        m.d.comb += [self.reserve.eq(issuing), self.word_pop.eq(issuing)]
        tile.run(tile_end, self.word_valid_next, self.room_next)

        beat = self.beat.payload
        m.d.sync += [
            self.beat.valid.eq(issuing),
            beat.word.eq(self.word),
            beat.param_addr.eq(param_addr),
            beat.op.eq(cmd.op),
            beat.table.eq(cmd.table),
            beat.relu.eq(cmd.relu),
            beat.end.eq(tile_end),
            beat.tag.eq(cmd.tag),
        ]
        return m
