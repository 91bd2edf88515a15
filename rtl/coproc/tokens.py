"""The dependency tokens between neighbouring queues (docs/isa.md), as counters.

One counter per direction: load → compute, compute → load, compute → store,
store → compute. A queue's instruction may run when every counter it pops from
is above zero; it takes one from each as it starts and adds one to each it
pushes to when done. A counter never wraps: a push that would carry it past
`MAX` raises `overflow` (the TOKEN_OVERFLOW fault) and is not counted, so
no token is ever lost or made up silently (sim/formal_tokens.py proves it).
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from defs.isa import Queue

#: The four directions, (giver, taker).
CHANNELS = (
    (Queue.LOAD, Queue.COMPUTE),
    (Queue.COMPUTE, Queue.LOAD),
    (Queue.COMPUTE, Queue.STORE),
    (Queue.STORE, Queue.COMPUTE),
)

#: Bits of a counter: tokens given and not yet taken, at most.
TOKEN_BITS = 8
MAX = (1 << TOKEN_BITS) - 1


def channel_name(giver: Queue, taker: Queue) -> str:
    return f"{giver.name.lower()}_to_{taker.name.lower()}"


class TokenCounter(wiring.Component):
    """Tokens of one direction. `push` adds 0..2 (two units of a queue may finish in
    one cycle); `pop` takes one and must only be raised while `available`."""

    #: Edges from a push to the token being `available` (`count` is a register).
    LATENCY = 1

    def __init__(self, bits: int = TOKEN_BITS) -> None:
        # `bits` below TOKEN_BITS only for proofs that must reach the maximum in a few cycles
        self.bits = bits
        self.max = (1 << bits) - 1
        super().__init__(
            {
                "push": In(2),
                "pop": In(1),
                "available": Out(1),
                "overflow": Out(1),
                "count": Out(bits),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        after = Signal(self.bits + 2)
        m.d.comb += after.eq(self.count + self.push - self.pop)
        with m.If(after > self.max):
            m.d.sync += self.overflow.eq(1)
        with m.Else():
            m.d.sync += self.count.eq(after)
        m.d.comb += self.available.eq(self.count != 0)
        return m
