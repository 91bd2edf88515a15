"""Instruction fetch: the program's words, in order, from external memory.

The program is PROGRAM_WORDS 32-byte instructions from PROGRAM_BASE, a multiple of
32 (a base that is not raises `misaligned`: the core's ADDRESS fault, index 0,
and nothing is fetched). So every instruction is whole bus words (a bus of 8 to
32 bytes) or one half of a bus word (64 bytes): the fetcher asks for consecutive
bus words, as far as its credit goes, and needs no byte alignment. Why not a
`TransferReader`: its ring of bytes and the word's 32-to-1 byte multiplexers
(some 1,000 LUTs on the ULX3S top) served only a case the program never is,
and they held a share of the top's late endpoints at every seed (95 to 474 of
about 1,100 at 125 MHz, seeds 15 and 16).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.coproc import INSTRUCTION_BYTES
from defs.isa import INSTRUCTION_BITS
from rtl.coproc.bus import check_data_bytes, client_signature
from rtl.coproc.decode import ENTRY, INDEX_BITS
from rtl.thermometer import thermometer_next

#: Bus words the word FIFO holds: the requests the fetcher may have unanswered or
#: untaken (its credit).
WORD_FIFO_DEPTH = 32
#: Edges from `start` to the first request (the counts and the address registered).
START_TO_REQUEST = 1
#: Edges from an answer to its bus word offered to the assembly (the buffered FIFO's).
ANSWER_TO_WORD = 2


def parts(bus_bytes: int) -> int:
    """Bus words taken for an instruction, one a cycle (a 64-byte word gives two
    instructions, a half each, one a cycle)."""
    return max(1, INSTRUCTION_BYTES // bus_bytes)


def requests_per_instruction(bus_bytes: int) -> float:
    return INSTRUCTION_BYTES / bus_bytes


def cycles_per_instruction(bus_bytes: int) -> int:
    """Cycles per instruction at best: one per bus word taken, and the cycle the
    assembled instruction is offered (it takes no word while it waits)."""
    return parts(bus_bytes) + 1


class Fetcher(wiring.Component):
    def __init__(self, addr_bits: int, data_bytes: int) -> None:
        self.shift = check_data_bytes(data_bytes)
        self.addr_bits, self.data_bytes = addr_bits, data_bytes
        super().__init__(
            {
                "start": In(1),  # a pulse: fetch from `base`
                "base": In(32),
                "words": In(32),
                "mem": Out(client_signature(addr_bits, data_bytes, writes=False)),
                "o": Out(stream.Signature(ENTRY)),
                "error": Out(1),  # a bus error answered one of its requests
                "misaligned": Out(1),  # `base` is not a multiple of 32: nothing fetched
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        s, nd = self.shift, self.data_bytes
        req, resp = self.mem.request, self.mem.response
        half = nd > INSTRUCTION_BYTES  # two instructions a bus word
        ibits = INSTRUCTION_BYTES.bit_length() - 1  # base bits below an instruction

        # requests: consecutive bus words from the program's first, `left` of them
        active, more = Signal(), Signal()  # more: `left` != 0, a register
        addr = Signal(self.addr_bits)
        left = Signal(34)
        credit = Signal(WORD_FIFO_DEPTH, init=(1 << WORD_FIFO_DEPTH) - 1)  # bit k: > k left
        issue, take = Signal(), Signal()
        m.d.comb += [
            req.valid.eq(active & more & credit[0] & ~self.error),
            req.payload.addr.eq(addr),
            issue.eq(req.valid & req.ready),
        ]
        # bus words to ask for: whole words an instruction, or (half) an odd first
        # instruction and the words' halves after it
        total = (self.base[ibits] + self.words + 1) >> 1 if half else self.words << (ibits - s)
        with m.If(self.start):
            aligned = self.base[:ibits] == 0
            m.d.sync += [
                active.eq(aligned),
                self.misaligned.eq(~aligned),
                addr.eq(self.base[s:]),
                left.eq(total),
                more.eq(self.words != 0),
            ]
        with m.Elif(issue):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1), more.eq(left != 1)]
        m.d.sync += credit.eq(thermometer_next(credit, take, issue))

        # answers into the word FIFO (a credit says there is room); an error stops it all
        m.submodules.words = words = fifo.SyncFIFOBuffered(width=8 * nd, depth=WORD_FIFO_DEPTH)
        m.d.comb += [
            words.w_en.eq(resp.valid & ~resp.payload.error & ~self.error),
            words.w_data.eq(resp.payload.data),
            words.r_en.eq(take),
        ]
        with m.If(resp.valid & resp.payload.error):
            m.d.sync += self.error.eq(1)

        index = Signal(INDEX_BITS)
        given = Signal()
        m.d.comb += [self.o.payload.index.eq(index), given.eq(self.o.valid & self.o.ready)]
        with m.If(given):
            m.d.sync += index.eq(index + 1)
        if half:
            # the head word's low or high instruction, in turn; the word goes with its
            # high one. A last word's upper half past the program is never offered.
            upper = Signal()
            to_give, giving = Signal(32), Signal()  # giving: to_give != 0, a register
            with m.If(self.start):
                m.d.sync += [to_give.eq(self.words), giving.eq(self.words != 0)]
            with m.Elif(given):
                m.d.sync += [to_give.eq(to_give - 1), giving.eq(to_give != 1)]
            m.d.comb += [
                self.o.valid.eq(words.r_rdy & giving),
                self.o.payload.word.eq(
                    Mux(upper, words.r_data[INSTRUCTION_BITS:], words.r_data[:INSTRUCTION_BITS])
                ),
                take.eq(given & upper),
            ]
            with m.If(given):
                m.d.sync += upper.eq(~upper)
            with m.If(self.start):
                m.d.sync += upper.eq(self.base[ibits])
        else:
            # bus words into one instruction, the first in the low bits
            count = parts(nd)
            assembled = Signal(INSTRUCTION_BITS)
            have = Signal(range(count + 1))
            full = Signal()
            m.d.comb += [
                full.eq(have == count),
                take.eq(words.r_rdy & ~full),
                self.o.valid.eq(full),
                self.o.payload.word.eq(assembled),
            ]
            with m.If(take):
                m.d.sync += [
                    have.eq(have + 1),
                    assembled.eq(Cat(assembled[8 * nd :], words.r_data)),
                ]
            with m.If(given):
                m.d.sync += have.eq(0)
        with m.If(self.start):
            m.d.sync += index.eq(0)
        return m
