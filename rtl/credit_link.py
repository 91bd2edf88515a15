"""CreditLink: a stream between parts that sit apart on the die, through registers
that load on every edge.

Why: a `ready` that must cross from the receiver to the sender in the cycle it is
decided ends on the sender's clock enables, and a valid collected from senders
spread over the die meets the receiver's choice in the same cycle; on the ECP5
co-processor the store unit's choice among the engines' outputs spread over 60
columns (seed 16: 14.0 ns, 12.0 of it routing). Here every register on the way
has no enable and no condition, so the placer may put it anywhere along the
route, and flow control travels the other way as credits: the sender counts the
free entries of a queue at the receiver, and each entry the receiver gives up
comes back as a credit through registers of its own. `i.ready` is one bit of the
sender's count (thermometer code), a register; the receiver's `o` is a
`StreamQueue`'s, registers too.
"""

from __future__ import annotations

from amaranth import Module, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.stream_queue import StreamQueue
from rtl.thermometer import thermometer_next

#: Edges from a word pushed into an empty `StreamQueue` to it offered on `o`.
QUEUE_LATENCY = 2


class CreditLink(wiring.Component):
    """`i` to `o` through `stages` free-running registers each way, into a queue of
    `depth` words (by default the fewest that pass a word every cycle)."""

    def __new__(
        cls, shape: data.ShapeLike, stages: int = 1, depth: int | None = None
    ) -> CreditLink:
        # Validated before the object exists (see StreamQueue).
        if stages < 1:
            raise ValueError(f"CreditLink needs at least one register stage, not {stages}")
        if depth is not None and depth < 1:
            raise ValueError(f"CreditLink needs a queue of at least one word, not {depth}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, shape: data.ShapeLike, stages: int = 1, depth: int | None = None) -> None:
        self.shape, self.stages = shape, stages
        self.depth = self.full_rate_depth(stages) if depth is None else depth
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    @staticmethod
    def latency_of(stages: int) -> int:
        """Edges from a word taken on `i` to it offered on `o` (the receiver's queue empty)."""
        return stages + QUEUE_LATENCY

    @property
    def latency(self) -> int:
        return self.latency_of(self.stages)

    @staticmethod
    def full_rate_depth(stages: int) -> int:
        """The credits a word every cycle needs: a word sent, its trip out, the queue's
        latency, its credit's trip back and the count's register."""
        return 2 * stages + QUEUE_LATENCY + 1

    def elaborate(self, platform: object) -> Module:
        m = Module()
        width = Shape.cast(self.shape).width
        m.submodules.queue = queue = StreamQueue(width, self.depth)
        credit = Signal(self.depth, init=(1 << self.depth) - 1)  # bit k: more than k free
        sent = Signal()
        m.d.comb += [self.i.ready.eq(credit[0]), sent.eq(self.i.valid & credit[0])]

        # the way out: valid and word, `stages` registers with no enable
        valid, word = sent, self.i.payload
        for k in range(self.stages):
            valid_k = Signal(name=f"out_valid_{k}")
            word_k = Signal(width, name=f"out_word_{k}")
            m.d.sync += [valid_k.eq(valid), word_k.eq(word)]
            valid, word = valid_k, word_k
        # a credit means room, so `queue.i.ready` is always up when a word comes
        m.d.comb += [
            queue.i.valid.eq(valid),
            queue.i.payload.eq(word),
            self.o.valid.eq(queue.o.valid),
            self.o.payload.eq(queue.o.payload),
            queue.o.ready.eq(self.o.ready),
        ]

        # the way back: one credit per word the receiver takes
        returned = queue.o.valid & queue.o.ready
        for k in range(self.stages):
            back_k = Signal(name=f"back_{k}")
            m.d.sync += back_k.eq(returned)
            returned = back_k
        m.d.sync += credit.eq(thermometer_next(credit, returned, sent))
        return m
