"""SkidRegister: a stream stage whose `i.ready`, `o.valid` and `o.payload` are all
registers, one element per cycle.

Why: a consumer's decision (an arbiter's grant, a bus stall) reaching back into the
producer's `ready` ends on the producer's clock enables in the same cycle; on the
ECP5 co-processor those paths crossed half the die. Here the producer sees a
register, and the consumer reads registers. The price is one edge of latency and a
second register (the skid) that catches the element taken while `o` stalls.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


class SkidRegister(wiring.Component):
    """`i` to `o` through a register, with a skid register behind it."""

    #: Edges from an element taken on `i` to it offered on `o`.
    LATENCY = 1

    def __init__(self, shape: data.ShapeLike) -> None:
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        skid = Signal.like(self.i.payload)
        skid_valid = Signal()
        taken, given = Signal(), Signal()
        m.d.comb += [
            self.i.ready.eq(~skid_valid),
            taken.eq(self.i.valid & self.i.ready),
            given.eq(self.o.valid & self.o.ready),
        ]
        # the skid copies `i` on every edge it is empty, so its clock enable is a
        # register; an element it holds is marked by `skid_valid` (on the ECP5
        # co-processor's port, the store writer's request reached the enables of its
        # client's skid through the stall logic, 101 endpoints late at 125 MHz)
        with m.If(~skid_valid):
            m.d.sync += skid.eq(self.i.payload)
        with m.If(~self.o.valid | given):  # the output register is free this edge
            with m.If(skid_valid):
                m.d.sync += [self.o.payload.eq(skid), self.o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload), self.o.valid.eq(taken)]
        with m.Elif(taken):  # the output stalls: the element waits behind it
            m.d.sync += skid_valid.eq(1)
        return m
