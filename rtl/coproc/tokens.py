"""The dependency tokens between neighbouring queues (docs/isa.md), as counters.

One counter per direction: load → compute, compute → load, compute → store,
store → compute. A queue's instruction may run when every counter it pops from
is above zero; it takes one from each as it starts and adds one to each it
pushes to when done. A counter never wraps: a push that would carry it past
`MAX` raises `overflow` (the TOKEN_OVERFLOW fault) and is not counted, so
no token is ever lost or made up silently (sim/formal_tokens.py proves it).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
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

#: Edges a push waits in the core's register before it reaches its counter: the
#: units decide a push in the cycle they let an instruction go, and the counter's
#: sums and compares after that decision were the full top's critical path (route
#: → the load unit's dispatch → push → count, 14.7 ns).
PUSH_LATENCY = 1

#: Bits of a counter: tokens given and not yet taken, at most.
TOKEN_BITS = 8
MAX = (1 << TOKEN_BITS) - 1


def channel_name(giver: Queue, taker: Queue) -> str:
    return f"{giver.name.lower()}_to_{taker.name.lower()}"


class TokenCounter(wiring.Component):
    """Tokens of one direction. `push` adds 0..2 (two units of a queue may finish in
    one cycle); `pop` takes one and must only be raised while `available`."""

    #: Edges from a push to the token being `available` (`count` and `available` are
    #: registers).
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
        # `push` and `pop` come late in the cycle (an engine's done, a queue head's
        # decode): every sum and compare is formed from `count` alone, and the two
        # only choose among them (the ECP5 top's slowest path was head → pop → an
        # 8-bit add → the compare → count).
        ceiling = self.max
        stays = Signal()  # the update fits: not past MAX
        m.d.comb += stays.eq(
            (self.push == 0)
            | ((self.push == 1) & (self.pop | (self.count != ceiling)))
            | ((self.push == 2) & Mux(self.pop, self.count != ceiling, self.count < ceiling - 1))
        )
        after = Signal(self.bits)
        after_nonzero = Signal()  # `after != 0`, chosen like `after`
        with m.Switch(Cat(self.pop, self.push)):
            with m.Case(0b001):  # −1
                m.d.comb += [after.eq(self.count - 1), after_nonzero.eq(self.count != 1)]
            with m.Case(0b000, 0b011):  # ±0
                m.d.comb += [after.eq(self.count), after_nonzero.eq(self.count != 0)]
            with m.Case(0b010, 0b101):  # +1
                m.d.comb += [after.eq(self.count + 1), after_nonzero.eq(1)]
            with m.Default():  # +2
                m.d.comb += [after.eq(self.count + 2), after_nonzero.eq(1)]
        with m.If(stays):
            m.d.sync += [self.count.eq(after), self.available.eq(after_nonzero)]
        with m.Else():
            m.d.sync += self.overflow.eq(1)
        return m
