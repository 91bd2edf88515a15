"""A two-entry queue whose ready and head-valid flags are registers.

Why: a consumer that decides late in a cycle whether it takes an element (the
conv engine's output unit: `emit` is an AND of several flags) would otherwise
drive a FIFO's read enable, and through it the FIFO's pointer, level and memory
enables, in the same cycle. On the iCE40 that chain held the conv engine below
50 MHz. Here the consumer's `pop` reaches only this queue's two entries and its
count; upstream sees `i.ready` from a register, so a FIFO in front is read by
its own registered flags alone.

Two entries keep one element per cycle flowing: with one held, a pop and a
push in the same cycle leave one held and `i.ready` stays high.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


class PrefetchQueue(wiring.Component):
    """`head` is the oldest element while `head_valid`; `pop` (only then) removes it."""

    CAPACITY = 2

    def __init__(self, width: int) -> None:
        self.width = width
        super().__init__(
            {
                "i": In(stream.Signature(width)),
                "head": Out(width),
                "head_valid": Out(1),
                "head_valid_next": Out(1),  # head_valid after this edge
                "pop": In(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        first = Signal(self.width)  # the head
        second = Signal(self.width)
        # occupancy as two flags, not a count: every next state is one LUT of
        # (valid, full, push, pop), no carry chain after the consumer's decision
        valid = Signal()  # at least one entry
        full = Signal()  # both entries
        m.d.comb += [
            self.head.eq(first),
            self.head_valid.eq(valid),
            self.i.ready.eq(~full),
        ]
        push = self.i.valid & ~full
        pop = self.pop & valid
        kept_one = Signal()  # an entry is left once the pop is done
        kept_two = Signal()
        m.d.comb += [kept_one.eq(full | (valid & ~pop)), kept_two.eq(full & ~pop)]
        # Each entry is a one-input or two-input multiplexer whose select is a
        # register, behind an enable: `second` takes the input whenever it is
        # free (it matters only once the queue is full), `first` takes `second`
        # or the input whenever the head moves or is empty. What an upstream
        # queue's storage reads thus reaches a flip-flop through one LUT at most
        # (ECP5: a priority multiplexer here was two, on a path that set builds'
        # clocks), and the consumer's late `pop` only drives enables.
        with m.If(~full):
            m.d.sync += second.eq(self.i.payload)
        with m.If(pop | ~valid):
            m.d.sync += first.eq(Mux(full, second, self.i.payload))
        m.d.comb += self.head_valid_next.eq(kept_one | push)
        m.d.sync += [valid.eq(self.head_valid_next), full.eq(kept_two | (kept_one & push))]
        return m
