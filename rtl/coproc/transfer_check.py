"""A transfer's reach (docs/isa.md): its last byte must lie inside the memory image.

A LOAD or STORE moves `rows` rows of `row_words` words of `word_bytes`
bytes, the rows `stride` bytes apart from `dram_addr`: its last byte is
dram_addr + (rows − 1)·stride + row_words·word_bytes − 1, which must be below
IMAGE_BYTES, and it must move at least one row of at least one word (as L3's
`_span`). The check is pipelined: the answer for fields held steady appears
`LATENCY` edges later; `count` (rows·row_words) is the transfer's words.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class TransferCheck(wiring.Component):
    LATENCY = 2

    def __init__(self, word_bytes_bits: int = 8) -> None:
        super().__init__(
            {
                "dram_addr": In(32),
                "stride": In(24),
                "rows": In(16),
                "row_words": In(16),
                "word_bytes": In(word_bytes_bits),
                "image_bytes": In(32),
                "ok": Out(1),
                "count": Out(32),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        row_reach = Signal(40)  # (rows - 1) · stride
        row_bytes = Signal(16 + len(self.word_bytes))
        nonempty = Signal()
        m.d.sync += [
            row_reach.eq((self.rows - 1) * self.stride),
            row_bytes.eq(self.row_words * self.word_bytes),
            nonempty.eq((self.rows != 0) & (self.row_words != 0)),
            self.count.eq(self.rows * self.row_words),
        ]
        end = Signal(42)  # one past the last byte
        m.d.comb += end.eq(self.dram_addr + row_reach + row_bytes)
        m.d.sync += self.ok.eq(nonempty & (end <= self.image_bytes))
        return m
