"""Instruction fetch: the program's words, in order, from external memory.

The program is PROGRAM_WORDS 32-byte words from PROGRAM_BASE. The fetcher
asks its transfer reader for them in chunks of at most 65,535 instructions (a
transfer's `rows` field), eight bytes a word, and assembles four words into
each instruction; the reader only requests what its buffer can take, so a
full queue downstream simply stops the fetch.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from defs.coproc import INSTRUCTION_BYTES
from defs.isa import INSTRUCTION_BITS
from rtl.coproc.bus import client_signature
from rtl.coproc.decode import ENTRY, INDEX_BITS
from rtl.coproc.reader import TransferReader

#: Bytes the fetcher reads per reader word.
FETCH_WORD_BYTES = 8
CHUNK = 0xFFFF
#: Edges from `start` to the first command offered to the reader (its fields formed).
START_TO_COMMAND = 2
#: Reader words per instruction, taken one a cycle.
PARTS = INSTRUCTION_BYTES // FETCH_WORD_BYTES
#: Cycles per instruction at best: one per reader word, and the cycle it is offered
#: (the assembled word takes no reader word while it waits to be dispatched).
CYCLES_PER_INSTRUCTION = PARTS + 1


class Fetcher(wiring.Component):
    def __init__(self, addr_bits: int, data_bytes: int) -> None:
        self.addr_bits, self.data_bytes = addr_bits, data_bytes
        super().__init__(
            {
                "start": In(1),  # a pulse: fetch from `base`
                "base": In(32),
                "words": In(32),
                "mem": Out(client_signature(addr_bits, data_bytes, writes=False)),
                "o": Out(stream.Signature(ENTRY)),
                "error": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.reader = reader = TransferReader(
            self.addr_bits, self.data_bytes, FETCH_WORD_BYTES
        )
        wiring.connect(m, wiring.flipped(self.mem), reader.mem)
        m.d.comb += self.error.eq(reader.error)

        # the next command's fields are registers, formed the cycle after the last
        # command (or the start) from registers: nothing between the counts and the
        # reader's command but its own registers
        remaining = Signal(32)  # instructions not yet asked of the reader
        addr = Signal(32)  # the first of them
        chunk = Signal(16)
        formed = Signal()  # `chunk` and `more` follow `remaining`
        more = Signal()
        active = Signal()
        m.d.comb += [
            reader.cmd.valid.eq(active & formed & more),
            reader.cmd.payload.dram_addr.eq(addr),
            reader.cmd.payload.stride.eq(INSTRUCTION_BYTES),
            reader.cmd.payload.rows.eq(chunk),
            reader.cmd.payload.row_words.eq(INSTRUCTION_BYTES // FETCH_WORD_BYTES),
            reader.cmd.payload.word_bytes.eq(FETCH_WORD_BYTES),
        ]
        with m.If(~formed):
            m.d.sync += [
                chunk.eq(Mux(remaining > CHUNK, CHUNK, remaining)),
                more.eq(remaining != 0),
                formed.eq(1),
            ]
        with m.If(reader.cmd.valid & reader.cmd.ready):
            m.d.sync += [
                remaining.eq(remaining - chunk),
                addr.eq(addr + chunk * INSTRUCTION_BYTES),
                formed.eq(0),
            ]

        # four reader words make one instruction, the first in the low bits
        parts = PARTS
        assembled = Signal(INSTRUCTION_BITS)
        have = Signal(range(parts + 1))
        index = Signal(INDEX_BITS)
        full = Signal()
        m.d.comb += [
            full.eq(have == parts),
            reader.o.ready.eq(~full),
            self.o.valid.eq(full),
            self.o.payload.word.eq(assembled),
            self.o.payload.index.eq(index),
        ]
        width = 8 * FETCH_WORD_BYTES
        with m.If(reader.o.valid & reader.o.ready):
            m.d.sync += [
                assembled.eq(
                    (assembled >> width)
                    | (reader.o.payload.data[:width] << (INSTRUCTION_BITS - width))
                ),
                have.eq(have + 1),
            ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [have.eq(0), index.eq(index + 1)]

        with m.If(self.start):
            m.d.sync += [
                active.eq(1),
                remaining.eq(self.words),
                addr.eq(self.base),
                formed.eq(0),
                have.eq(0),
                index.eq(0),
            ]
        return m
