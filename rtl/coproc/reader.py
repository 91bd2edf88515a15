"""TransferReader: the ISA's LOAD, external memory to a stream of words.

A transfer is `rows` rows of `row_words` words of `word_bytes` bytes (little
endian, consecutive), row r at byte address `dram_addr + r*stride`, nothing
aligned. Requests for the bus words covering each row go out row after row
without waiting for answers, as far as a credit count allows: every answer must
be taken (the response stream is always ready), so the reader asks only for
what its word FIFO can hold. A gearbox of max_word_bytes + data_bytes bytes
takes a bus word's bytes of the transfer in and gives a word out each cycle.
Words never straddle rows (a row is whole words), so the rows' bytes simply
follow each other. On an err answer the reader stops: the `error` flag stays up
until reset, requests stop, data is dropped, commands are taken and ignored."""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.coproc.bus import check_data_bytes, client_signature


def transfer_layout(max_word_bytes: int) -> data.StructLayout:
    """The LOAD/STORE command fields a transfer needs, plus this transfer's word size."""
    return data.StructLayout(
        {
            "dram_addr": 32,
            "stride": 24,
            "rows": 16,
            "row_words": 16,
            "word_bytes": max_word_bytes.bit_length(),
        }
    )


def byte_mask(count: object, n: int) -> object:
    """8n bits with the low `count` bytes ones."""
    return Cat((count > i).replicate(8) for i in range(n))


class TransferReader(wiring.Component):
    """`cmd` in, read requests out on `mem`, words of the transfer out on `o`."""

    #: Bus words the word FIFO holds by default: the read requests a reader may have
    #: unanswered or untaken (its credit), so a reader alone moves at most this many
    #: words per round trip (rtl/coproc_cycles.py).
    WORD_FIFO_DEPTH = 32
    #: Edges from a taken command to its first request (`busy` is a register).
    CMD_TO_REQUEST = 1
    #: Edges from a read's answer to its word on `o`: the buffered word FIFO's two, then
    #: the gearbox register. Its credit returns one edge earlier, as the gearbox takes it.
    ANSWER_TO_WORD = 3

    def __init__(
        self,
        addr_bits: int,
        data_bytes: int,
        max_word_bytes: int,
        word_fifo_depth: int = WORD_FIFO_DEPTH,
    ) -> None:
        self.shift = check_data_bytes(data_bytes)
        if max_word_bytes < 1 or word_fifo_depth < 2:
            raise ValueError("TransferReader needs max_word_bytes >= 1 and word_fifo_depth >= 2")
        self.addr_bits, self.data_bytes = addr_bits, data_bytes
        self.max_word_bytes, self.word_fifo_depth = max_word_bytes, word_fifo_depth
        super().__init__(
            {
                "cmd": In(stream.Signature(transfer_layout(max_word_bytes))),
                "mem": Out(client_signature(addr_bits, data_bytes)),
                "o": Out(
                    stream.Signature(data.StructLayout({"data": 8 * max_word_bytes, "last": 1}))
                ),
                "error": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        s, nd, nm, depth = self.shift, self.data_bytes, self.max_word_bytes, self.word_fifo_depth
        cmd, req, resp, o = self.cmd.payload, self.mem.request, self.mem.response, self.o
        wb_bits = nm.bit_length()
        m.submodules.words = words = fifo.SyncFIFOBuffered(width=8 * nd, depth=depth)
        m.submodules.spans = spans = fifo.SyncFIFO(width=2 * s + 1, depth=depth)  # lo, count
        m.submodules.shapes = shapes = fifo.SyncFIFO(width=32 + wb_bits, depth=4)

        # requests: the bus words of each row in turn
        busy = Signal()
        row_start, stride = Signal(32), Signal(24)
        rows_left, row_bytes = Signal(16), Signal(16 + wb_bits)
        cur = Signal(32 - s)  # the next bus word to ask for
        credit = Signal(range(depth + 1), init=depth)
        row_end = Signal(33)
        m.d.comb += row_end.eq(row_start + row_bytes - 1)
        first_w, last_w = row_start[s:], row_end[s:]
        at_last = cur == last_w
        lo = Mux(cur == first_w, row_start[:s], 0)
        hi = Mux(at_last, row_end[:s], nd - 1)
        issue = Signal()
        final = at_last & (rows_left == 1)
        m.d.comb += [
            req.valid.eq(busy & (credit != 0) & ~self.error),
            req.payload.addr.eq(cur),
            issue.eq(req.valid & req.ready),
            spans.w_en.eq(issue),
            spans.w_data.eq(Cat(lo[:s], (hi - lo + 1)[: s + 1])),
        ]
        with m.If(issue):
            m.d.sync += cur.eq(cur + 1)
            with m.If(final):
                m.d.sync += busy.eq(0)
            with m.Elif(at_last):
                next_start = row_start + stride
                m.d.sync += [
                    rows_left.eq(rows_left - 1),
                    row_start.eq(next_start),
                    cur.eq(next_start[s:]),
                ]
        with m.If(self.error):
            m.d.comb += self.cmd.ready.eq(1)
        with m.Else():
            m.d.comb += self.cmd.ready.eq((~busy | (issue & final)) & shapes.w_rdy)
            m.d.comb += shapes.w_en.eq(self.cmd.valid & self.cmd.ready)
        m.d.comb += shapes.w_data.eq(Cat(cmd.rows, cmd.row_words, cmd.word_bytes))
        with m.If(shapes.w_en):
            m.d.sync += [
                busy.eq(1),
                row_start.eq(cmd.dram_addr),
                stride.eq(cmd.stride),
                rows_left.eq(cmd.rows),
                row_bytes.eq(cmd.row_words * cmd.word_bytes),
                cur.eq(cmd.dram_addr[s:]),
            ]

        # answers: kept while good; an err stops everything
        m.d.comb += [
            words.w_en.eq(resp.valid & ~resp.payload.error & ~self.error),
            words.w_data.eq(resp.payload.data),
        ]
        with m.If(resp.valid & resp.payload.error):
            m.d.sync += self.error.eq(1)

        # the gearbox: `count` bytes of the transfer, oldest in byte 0
        size = nm + nd
        buf = Signal(8 * size)
        count = Signal(range(size + 1))
        rows, row_words, wb = shapes.r_data[:16], shapes.r_data[16:32], shapes.r_data[32:]
        row_i, word_i = Signal(16), Signal(16)
        emit, take = Signal(), Signal()
        left, kept = Signal(range(size + 1)), Signal(8 * size)
        span_lo, span_n = spans.r_data[:s], spans.r_data[s:]
        piece = (words.r_data >> Cat(C(0, 3), span_lo)) & byte_mask(span_n, nd)
        row_done, last = word_i == row_words - 1, Signal()
        m.d.comb += [
            last.eq(row_done & (row_i == rows - 1)),
            o.valid.eq(shapes.r_rdy & (count >= wb) & ~self.error),
            o.payload.data.eq(buf[: 8 * nm] & byte_mask(wb, nm)),
            o.payload.last.eq(last),
            emit.eq(o.valid & o.ready),
            left.eq(Mux(emit, count - wb, count)),
            kept.eq(Mux(emit, buf >> Cat(C(0, 3), wb), buf)),
            take.eq(words.r_rdy & (left + span_n <= size)),
            words.r_en.eq(take),
            spans.r_en.eq(take),
            shapes.r_en.eq(emit & last),
        ]
        m.d.sync += [
            buf.eq(kept | Mux(take, piece << Cat(C(0, 3), left), 0)),
            count.eq(left + Mux(take, span_n, 0)),
            credit.eq(credit - issue + take),
        ]
        with m.If(emit):
            m.d.sync += word_i.eq(Mux(row_done, 0, word_i + 1))
            m.d.sync += row_i.eq(Mux(last, 0, Mux(row_done, row_i + 1, row_i)))
        return m
