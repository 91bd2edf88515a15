"""What the dispatcher needs of an instruction word: is it legal, and which queue runs it.

The same checks as `compiler.isa.decode` and L3's (docs/isa.md): opcode 0 and
the unlisted ones are illegal, as is a bit set past the opcode's fields, a
SYNC or END naming queue 3, and a token flag naming a neighbour the queue
lacks (the load queue's previous, the store queue's next). Field positions
come from the ISA table through `rtl.isa`'s layouts, so they cannot drift.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from amaranth import Cat, Module, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from defs.isa import FIELDS, INSTRUCTION_BITS, QUEUE_OF, Opcode, Queue
from rtl.isa import header_layout, instruction_layout

if TYPE_CHECKING:
    from amaranth.hdl import Value

    from defs.params import GraceParams


def fields(op: Opcode, params: GraceParams, word: Value) -> data.View:
    """The word seen as `op`'s instruction: `.header.pop_prev`, `.body.dram_addr`, ..."""
    return data.View(instruction_layout(op, params), word)


def body_end(op: Opcode, params: GraceParams) -> int:
    """The first bit past `op`'s fields: every bit from here on must be zero."""
    layout = instruction_layout(op, params)
    return header_layout().size + layout.members["body"].size


def padding_segments(params: GraceParams) -> list[tuple[int, int]]:
    """The word's bits from the shortest instruction's end on, cut at every opcode's end:
    an opcode's padding is clear when the segments from its end on are all zero."""
    ends = sorted({body_end(op, params) for op in Opcode} | {INSTRUCTION_BITS})
    return list(itertools.pairwise(ends))


def segments_clear(word: Value, params: GraceParams) -> Value:
    """One bit per `padding_segments`: that segment of `word` is all zero. Registered
    before the `Decoder` (DECODE_LATENCY), so its wide zero tests and the opcode's
    choice among them are not in one cycle."""
    return Cat(*(word[a:b] == 0 for a, b in padding_segments(params)))


class Decoder(wiring.Component):
    """Combinational: `legal` and `queue` of `word`, given `clear`, its padding segments'
    zero tests (`segments_clear`)."""

    def __init__(self, params: GraceParams) -> None:
        self.params = params
        self.segments = padding_segments(params)
        super().__init__(
            {
                "word": In(INSTRUCTION_BITS),
                "clear": In(len(self.segments)),
                "legal": Out(1),
                "queue": Out(2),
                "end": Out(1),  # an END: its queue ends
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        header = data.View(header_layout(), self.word[: header_layout().size])
        queue = Signal(2)
        padding_clear = Signal()
        with m.Switch(header.opcode):
            for op in Opcode:
                with m.Case(op):
                    end = body_end(op, self.params)
                    mine = [k for k, (a, _) in enumerate(self.segments) if a >= end]
                    m.d.comb += padding_clear.eq(Cat(*(self.clear[k] for k in mine)).all())
                    if op in QUEUE_OF:
                        m.d.comb += queue.eq(QUEUE_OF[op])
                    else:  # SYNC and END carry their queue
                        assert FIELDS[op][0].name == "queue"
                        m.d.comb += queue.eq(fields(op, self.params, self.word).body.queue)
        known = Signal()
        m.d.comb += known.eq(0)
        for op in Opcode:
            with m.If(header.opcode == op):
                m.d.comb += known.eq(1)
        # the load queue has no previous neighbour, the store queue no next one
        stray = Signal()
        m.d.comb += stray.eq(
            ((queue == Queue.LOAD) & (header.pop_prev | header.push_prev))
            | ((queue == Queue.STORE) & (header.pop_next | header.push_next))
        )
        m.d.comb += [
            self.legal.eq(known & padding_clear & (queue != 3) & ~stray),
            self.queue.eq(queue),
            self.end.eq(header.opcode == Opcode.END),
        ]
        return m


#: Edges from the fetcher's instruction to its dispatch: its padding segments' zero
#: tests are registered with the word, then the decoder's answers (rtl/coproc/core.py),
#: so dispatch reads registers only.
DECODE_LATENCY = 2
#: Edges from an instruction taken at its queue's head (a unit's IDLE, which
#: registers its header) to the unit deciding on it (TAKEN): tokens, SYNC and END.
TAKE_LATENCY = 1

#: Bits of an instruction's index in the program (fomm-256's frame has 164,441).
INDEX_BITS = 24

#: Queue entries: the word and its index (for a fault's report).
ENTRY = data.StructLayout({"word": unsigned(INSTRUCTION_BITS), "index": unsigned(INDEX_BITS)})
