"""A stream FIFO whose `ready` and `valid` are registers and whose level has no adder.

Why not `lib.fifo.SyncFIFOBuffered`: its level is a binary count, and the next
level (an adder after the read and write enables) fed its flags in the same
cycle; on ECP5 the conv engine's result FIFO took 7.0 ns there. Here the level
is in thermometer code (rtl/thermometer.py), so every next flag is one LUT of
registers and the two enables. Storage is a `RowQueue`. An entry becomes
`o.valid` two edges after its push when it goes straight to the head, one edge
otherwise, so its read never needs to see the write of the same edge: the
storage's read may be transparent or not, as suits the FPGA, with the same
timing. `transparent_storage=False` spares iCE40 block RAM the bypass
multiplexer of a transparent read, which set the clock there (and, in board
builds, Yosys's old-data collision logic: see `RowQueue`); True suits ECP5 LUT
RAM (Yosys then registers the read address, not the data after the RAM). From
three entries deep the queue passes one element per cycle.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.row_queue import RowQueue
from rtl.thermometer import thermometer_next


class StreamQueue(wiring.Component):
    """`depth` entries of `width` bits from `i` to `o`, in order."""

    def __new__(cls, width: int, depth: int, *, transparent_storage: bool = True) -> StreamQueue:
        # Validated before the object exists, so a rejected one is not reported by
        # Amaranth as an elaboratable that was created but never used.
        if depth < 1:
            raise ValueError(f"StreamQueue depth must be at least 1, not {depth}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, width: int, depth: int, *, transparent_storage: bool = True) -> None:
        self.width, self.depth = width, depth
        self.transparent_storage = transparent_storage
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.entries = storage = RowQueue(
            self.width, self.depth, transparent=self.transparent_storage
        )
        level = Signal(self.depth, name="level")
        # the head was written at the last edge, which its read did not see yet:
        # a push into an empty queue, or into one whose only entry left
        stale = Signal()
        push = Signal()
        pop = Signal()
        m.d.comb += [
            self.i.ready.eq(~level[-1]),
            self.o.valid.eq(level[0] & ~stale),
            self.o.payload.eq(storage.head),
            push.eq(self.i.valid & self.i.ready),
            pop.eq(self.o.valid & self.o.ready),
            storage.data.eq(self.i.payload),
            storage.push.eq(push),
            storage.pop.eq(pop),
        ]
        m.d.sync += [
            level.eq(thermometer_next(level, push, pop)),
            stale.eq(push & ~(level[1] | (level[0] & ~pop)) if self.depth > 1 else push),
        ]
        return m
