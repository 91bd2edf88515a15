"""A transfer's reach (docs/isa.md): its last byte must lie inside the memory image.

A LOAD or STORE moves `rows` rows of `row_words` words of `word_bytes`
bytes, the rows `stride` bytes apart from `dram_addr`: its last byte is
dram_addr + (rows − 1)·stride + row_words·word_bytes − 1, which must be below
IMAGE_BYTES, and it must move at least one row of at least one word (as L3's
`_span`); `count` (rows·row_words) is the transfer's words.

The three products are formed by shift and add, one multiplier bit a cycle:
the co-processor's own multiplies would otherwise take DSP blocks the engines
need (the ULX3S top used 161 of the ECP5-85F's 156), and a check of
`LATENCY` cycles per LOAD or STORE hides behind the transfers before it.
Raise `start` for one cycle with the fields; they must hold until `ok` and
`count` are read, `LATENCY` edges later. `start` waits a cycle in a register: the
units raise it as they decide on their head's tokens, and it reset or loaded
every register here in that cycle (the full top's critical path, 11.3 ns).
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

#: Bits of `rows`, `row_words` and so of the serial multiplier.
FIELD_BITS = 16


class TransferCheck(wiring.Component):
    #: `start`'s register, the products' FIELD_BITS steps, their load, the sum's
    #: register and `ok`'s.
    LATENCY = FIELD_BITS + 4

    def __init__(self, word_bytes_bits: int = 8) -> None:
        super().__init__(
            {
                "start": In(1),
                "dram_addr": In(32),
                "stride": In(24),
                "rows": In(FIELD_BITS),
                "row_words": In(FIELD_BITS),
                "word_bytes": In(word_bytes_bits),
                "image_bytes": In(32),
                "ok": Out(1),
                "count": Out(32),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        row_reach = Signal(24 + FIELD_BITS)  # (rows − 1) · stride
        row_bytes = Signal(FIELD_BITS + len(self.word_bytes))  # row_words · word_bytes
        stride = Signal.like(row_reach)  # stride · 2^k
        words = Signal(2 * FIELD_BITS)  # row_words · 2^k
        reach_bits = Signal(FIELD_BITS)  # rows − 1, shifted right k times
        rows_bits = Signal(FIELD_BITS)
        size_bits = Signal(len(self.word_bytes))
        started = Signal()
        m.d.sync += started.eq(self.start)
        with m.If(started):
            m.d.sync += [
                row_reach.eq(0), row_bytes.eq(0), self.count.eq(0),
                stride.eq(self.stride), words.eq(self.row_words),
                reach_bits.eq(self.rows - 1), rows_bits.eq(self.rows),
                size_bits.eq(self.word_bytes),
            ]  # fmt: skip
        with m.Else():
            m.d.sync += [
                stride.eq(stride << 1),
                words.eq(words << 1),
                reach_bits.eq(reach_bits >> 1),
                rows_bits.eq(rows_bits >> 1),
                size_bits.eq(size_bits >> 1),
            ]
            with m.If(reach_bits[0]):
                m.d.sync += row_reach.eq(row_reach + stride)
            with m.If(rows_bits[0]):
                m.d.sync += self.count.eq(self.count + words)
            with m.If(size_bits[0]):
                m.d.sync += row_bytes.eq(row_bytes + words)
        end = Signal(42)  # one past the last byte (a register: the sum then the compare)
        m.d.sync += end.eq(self.dram_addr + row_reach + row_bytes)
        nonempty = (self.rows != 0) & (self.row_words != 0)
        m.d.sync += self.ok.eq(nonempty & (end <= self.image_bytes))
        return m
