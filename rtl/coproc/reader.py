"""TransferReader: the ISA's LOAD, external memory to a stream of words.

A transfer is `rows` rows of `row_words` words of `word_bytes` bytes (little
endian, consecutive), row r at byte address `dram_addr + r*stride`, nothing
aligned. Requests for the bus words covering each row go out row after row
without waiting for answers, as far as a credit count allows: every answer must
be taken (the response stream is always ready), so the reader asks only for
what its word FIFO can hold. Words never straddle rows (a row is whole words),
so the rows' bytes simply follow each other through a ring of bytes: each
answer's bytes of the transfer are written at the ring's write pointer, each
word is read at its read pointer. On an err answer the reader stops: the
`error` flag stays up until reset, requests stop, data is dropped, commands are
taken and ignored.

Why a ring and not a shift register: a shifting gearbox moves its bytes by the
word just taken and then places the next answer behind them, two variable
shifts in series in one cycle (22 ns on the ECP5). Here every decision of a
cycle reads only registers (the pointers, the byte count, the head of each
FIFO), a byte is written in place and a word read through one multiplexer, and
the words leave through a `StreamQueue`, so the ready of the engine port they
feed never reaches back in.
"""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal, Value
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.coproc.bus import check_data_bytes, client_signature
from rtl.stream_queue import StreamQueue
from rtl.thermometer import thermometer_next


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


#: The fields of `transfer_layout`, in order (the same at every word size).
TRANSFER_FIELDS = tuple(name for name, _ in transfer_layout(1))


def byte_mask(count: object, n: int) -> object:
    """8n bits with the low `count` bytes ones."""
    return Cat((count > i).replicate(8) for i in range(n))


def shift_add(a: Value, b: Value) -> Value:
    """a · b as a balanced tree of sums of `a` shifted by `b`'s set bits (in LUTs: Yosys
    maps the `*` operator onto a DSP)."""
    terms: list[Value] = [Mux(b[k], a << k, 0) for k in range(len(b))] or [C(0, 1)]
    while len(terms) > 1:
        terms = [x + y for x, y in zip(terms[::2], terms[1::2], strict=False)] + (
            terms[-1:] if len(terms) % 2 else []
        )
    return terms[0]


def ring_bytes(max_word_bytes: int, data_bytes: int) -> int:
    """The ring's size: a power of two with room for a bus word whenever the ring holds
    less than a word and a bus word (wb + nd - 1 bytes), so at full rate an answer is
    taken in every cycle a word is given."""
    return 1 << (max_word_bytes + 2 * data_bytes - 2).bit_length()


class TransferReader(wiring.Component):
    """`cmd` in, read requests out on `mem`, words of the transfer out on `o`."""

    #: Bus words the word FIFO holds by default: the read requests a reader may have
    #: unanswered or untaken (its credit), so a reader alone moves at most this many
    #: words per round trip (rtl/coproc_cycles.py).
    WORD_FIFO_DEPTH = 32
    #: Edges from a taken command to its first request: it waits in a register, then
    #: the row's bytes (two halves of a shift-and-add multiply of registers), their
    #: last (the halves' sum less one), then the first row's fields are formed into
    #: registers, so every request reads registers only.
    CMD_TO_REQUEST = 5
    #: Of those, the edge in the command register: a command that waits there while
    #: the previous transfer ends is taken FINAL_TO_CMD after its last request.
    HOLD_LATENCY = 1
    #: Edges from a transfer's last request to the next command taken.
    FINAL_TO_CMD = 1
    #: Edges from a read's answer to its word on `o`: the buffered word FIFO's two, the
    #: landing register, the ring's write, the word's register, then the output queue's
    #: two. Its credit returns as the FIFO gives it up.
    ANSWER_TO_WORD = 7
    #: Edges from an answer to its credit coming back (the ring takes its bytes).
    ANSWER_TO_CREDIT = 2
    #: Cycles a transfer's first word waits after the last word of the transfer
    #: before it, when its bytes are already in the ring (the word size's change).
    #: Its requests go out CMD_TO_REQUEST after the last one before, so its bytes are
    #: there that early only when the output stalls: the cycle model leaves it out
    #: (on tiny's frame the RTL's cycles moved by +1 and +98 with it and the routers'
    #: and store unit's register stages, which the model counts; model −0.10 %).
    WORD_GAP = 1
    #: Words of the output queue (three pass one word per cycle).
    OUTPUT_DEPTH = 3

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
                "mem": Out(client_signature(addr_bits, data_bytes, writes=False)),
                "o": Out(
                    stream.Signature(data.StructLayout({"data": 8 * max_word_bytes, "last": 1}))
                ),
                "error": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        self._requests(m)
        self._ring(m)
        return m

    def _requests(self, m: Module) -> None:
        """The bus words of each row in turn, as far as the credit goes."""
        s, nd, depth = self.shift, self.data_bytes, self.word_fifo_depth
        req = self.mem.request
        # the command waits in a register: `cmd.ready` is a register, so the unit that
        # hands it over decides without this reader's state in its cycle
        cmd = Signal.like(self.cmd.payload)
        held = Signal()
        taken = Signal()  # IDLE takes the held command
        m.d.comb += self.cmd.ready.eq(~held)
        with m.If(self.cmd.valid & ~held):
            m.d.sync += [held.eq(1), cmd.eq(self.cmd.payload)]
        with m.Elif(taken):
            m.d.sync += held.eq(0)
        wb_bits = self.max_word_bytes.bit_length()
        m.submodules.spans = self.spans = spans = fifo.SyncFIFOBuffered(
            width=2 * s + 1, depth=depth
        )  # each request's byte count and landing turn (`_ring`)
        m.submodules.shapes = self.shapes = shapes = fifo.SyncFIFOBuffered(
            width=32 + wb_bits, depth=4
        )  # each command's rows, row_words and word_bytes, for the ring
        # the credit in thermometer code (bit k: more than k left), so "some credit"
        # is a register, not a compare before `issue` and its ~150 clock enables
        self.credit = credit = Signal(depth, init=(1 << depth) - 1)
        self.issue = issue = Signal()

        # Each row's first bus word `cur`, its first byte's place `lo` and its bus words
        # after the first, `left`, follow from the row's start and the row's bytes;
        # the next row's are formed while this one's requests go out (`next_*`), so a
        # row change, and every request, reads registers only: no compare of wide
        # addresses, no adder between them and the request.
        row_start, stride = Signal(32), Signal(24)
        row_words, word_bytes = Signal(16), Signal(wb_bits)
        # row_words · word_bytes, as the sums of the low and the high bits' partial
        # products: a multiply in LUTs beside the reader (on a DSP, the product left
        # one of the die's last free multiplier sites in 7–8 ns of routing)
        half = (wb_bits + 1) // 2
        product_lo, product_hi = Signal(16 + half), Signal(16 + wb_bits)
        last_byte = Signal(16 + wb_bits)  # row_bytes − 1: a row's last byte after its first
        rows_left = Signal(16)
        last_row = Signal()  # rows_left == 1
        cur = Signal(32 - s)  # the next bus word to ask for
        left = Signal(16 + wb_bits)  # bus words of the row after `cur`
        row_lo, end_lo = Signal(s), Signal(s)  # the row's first and last byte in their words
        at_first = Signal()
        next_start = Signal(32)  # the next row's first byte
        next_lo, next_end_lo = Signal(s), Signal(s)
        next_left = Signal.like(left)

        def form_next(lo: object) -> list:
            """The next row's fields, from its first byte's place `lo` in its bus word."""
            reach = Signal(len(last_byte) + 1)
            m.d.comb += reach.eq(lo + last_byte)
            return [next_lo.eq(lo), next_end_lo.eq(reach[:s]), next_left.eq(reach[s:])]

        # left == 0, a register: a 19-bit compare before the span's count and the turn's
        # running sum was the full top's deepest path (boards/depth.py)
        at_last = Signal()
        lo = Mux(at_first, row_lo, 0)
        hi = Mux(at_last, end_lo, nd - 1)
        span_n = (hi - lo + 1)[: s + 1]
        # The ring's write pointer when this answer lands is the sum of the spans before
        # it, so the answer's turn (its first byte's place less that pointer, mod nd) is
        # known as it is asked for: the ring rotates by a register, not by a subtraction
        # in the cycle it lands (the 4 x 4 top's critical path, 11.2 ns).
        wp_low = Signal(s)  # the write pointer's low bits once every span asked lands
        with m.If(issue):
            m.d.sync += wp_low.eq(wp_low + span_n)
        m.d.comb += [
            spans.w_data.eq(Cat(span_n, (lo - wp_low)[:s])),
            spans.w_en.eq(issue),
            shapes.w_data.eq(Cat(cmd.rows, cmd.row_words, cmd.word_bytes)),
            req.payload.addr.eq(cur),
            issue.eq(req.valid & req.ready),
        ]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += taken.eq(held & (self.error | shapes.w_rdy))
                with m.If(held & ~self.error & shapes.w_rdy):
                    m.d.comb += shapes.w_en.eq(1)
                    m.d.sync += [
                        row_start.eq(cmd.dram_addr),
                        stride.eq(cmd.stride),
                        rows_left.eq(cmd.rows),
                        last_row.eq(cmd.rows == 1),
                        row_words.eq(cmd.row_words),
                        word_bytes.eq(cmd.word_bytes),
                    ]
                    m.next = "PRODUCT"
            with m.State("PRODUCT"):
                m.d.sync += [
                    product_lo.eq(shift_add(row_words, word_bytes[:half])),
                    product_hi.eq(shift_add(row_words, word_bytes[half:]) << half),
                ]
                m.next = "SETUP"
            with m.State("SETUP"):
                m.d.sync += last_byte.eq(product_lo + product_hi - 1)
                m.next = "FIRST"
            with m.State("FIRST"):  # the first row's fields in place, the second's formed
                m.d.sync += [
                    cur.eq(row_start[s:]),
                    row_lo.eq(row_start[:s]),
                    at_first.eq(1),
                    next_start.eq(row_start + stride),
                ]
                reach = Signal(len(last_byte) + 1)
                m.d.comb += reach.eq(row_start[:s] + last_byte)
                m.d.sync += [end_lo.eq(reach[:s]), left.eq(reach[s:]), at_last.eq(reach[s:] == 0)]
                m.d.sync += form_next((row_start[:s] + stride[:s])[:s])
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += req.valid.eq(credit[0] & ~self.error)
                with m.If(self.error):
                    m.next = "IDLE"
                with m.Elif(issue):
                    m.d.sync += [cur.eq(cur + 1), left.eq(left - 1), at_last.eq(left == 1)]
                    m.d.sync += at_first.eq(0)
                    with m.If(at_last & last_row):
                        m.next = "IDLE"
                    with m.Elif(at_last):  # the next row's fields in place, the one after's formed
                        m.d.sync += [
                            rows_left.eq(rows_left - 1),
                            last_row.eq(rows_left == 2),
                            cur.eq(next_start[s:]),
                            row_lo.eq(next_lo),
                            end_lo.eq(next_end_lo),
                            left.eq(next_left),
                            at_last.eq(next_left == 0),
                            at_first.eq(1),
                            next_start.eq(next_start + stride),
                        ]
                        m.d.sync += form_next((next_lo + stride[:s])[:s])

    def _ring(self, m: Module) -> None:
        """Answers into the ring at its write pointer, words out at its read pointer."""
        s, nd, nm, depth = self.shift, self.data_bytes, self.max_word_bytes, self.word_fifo_depth
        resp, spans, shapes, credit = self.mem.response, self.spans, self.shapes, self.credit
        size = ring_bytes(nm, nd)
        ring_bits = size.bit_length() - 1
        m.submodules.words = words = fifo.SyncFIFOBuffered(width=8 * nd, depth=depth)
        m.submodules.out = out = StreamQueue(8 * nm + 1, self.OUTPUT_DEPTH)
        m.d.comb += [
            words.w_en.eq(resp.valid & ~resp.payload.error & ~self.error),
            words.w_data.eq(resp.payload.data),
            self.o.valid.eq(out.o.valid),
            self.o.payload.eq(out.o.payload),
            out.o.ready.eq(self.o.ready),
        ]
        with m.If(resp.valid & resp.payload.error):
            m.d.sync += self.error.eq(1)

        ring = [Signal(8, name=f"ring_{j}") for j in range(size)]
        wp = Signal(range(size))
        # the read pointer plus i for each byte i of a word, kept as registers (at[0] is
        # the read pointer `rp`): each byte's select reads its own register, not an
        # adder after rp (with the ring's 32-to-1 multiplexers, the ULX3S top's
        # critical path at seed 2). A copy per bit of the word (replicas) made the
        # top worse (built with a skid register on the port: the load unit's late
        # endpoints 337 -> 821 at 125 MHz), the copies' next value routed to all
        # eight and the multiplexers spread further.
        at = [Signal(ring_bits, init=i % size, name=f"rp_plus_{i}") for i in range(nm)]
        count = Signal(range(size + 1))  # bytes in the ring or on their way to it
        filled = Signal(range(size + 1))  # bytes in the ring
        span_n, span_turn = spans.r_data[: s + 1], spans.r_data[s + 1 :]
        rows, row_words, wb = shapes.r_data[:16], shapes.r_data[16:32], shapes.r_data[32:]
        take, emit = Signal(), Signal()
        m.d.comb += [
            # room for a whole bus word, whatever this cycle's word takes out
            take.eq(words.r_rdy & spans.r_rdy & (count <= size - nd)),
            words.r_en.eq(take),
            spans.r_en.eq(take),
        ]
        # An answer lands in two steps. Taken, it is rotated so that its byte for ring
        # byte j sits at place j mod nd, and registered with its place and count; the
        # edge after, each ring byte copies its place of the landed word. So each
        # answer bit reaches nd places, not the ring's every byte through a byte
        # multiplexer (the 4 x 4 top's routing-bound critical path).
        landed = Signal(8 * nd)
        landed_valid = Signal()
        landed_n = Signal.like(span_n)
        landed_to = Signal(size)  # the ring bytes it fills
        turn = span_turn if s else C(0, 1)  # answer byte (i + turn) mod nd goes to place i
        m.d.sync += [
            landed_valid.eq(take),
            landed_n.eq(span_n),
            landed_to.eq(Cat(((C(j, range(size)) - wp)[:ring_bits] < span_n) for j in range(size))),
            landed.eq(
                Cat(words.r_data.word_select((i + turn)[:s] if s else 0, 8) for i in range(nd))
            ),
        ]
        for j in range(size):  # byte j holds the landed word's place j mod nd
            with m.If(landed_valid & landed_to[j]):
                m.d.sync += ring[j].eq(landed.word_select(j % nd, 8))

        # a word: wb bytes from rp, once the ring has them; the row and transfer ends
        # the word's row and place in it, counted from 1
        row_i, word_i = Signal(16, init=1), Signal(16, init=1)
        # whether the word is its row's last and the transfer's, registers formed from
        # the next counts against the shape at the FIFO's head; they hold whenever a word
        # may go (`steady`: the head was there the cycle before), so the FIFO's read
        # enable and the counts read no 16-bit compare (before: 52 endpoints late at
        # 125 MHz, the shape FIFO's head register enabled through them)
        row_done, last = Signal(), Signal()
        # An emitted word waits in a register before the output queue, so the queue's
        # LUT RAM write enable reads registers, not the `filled >= wb` compare (the 4 x 4
        # top's critical path after batch 8). The register takes the word at `rp` on
        # every edge it is free, emitted or not (`word_held` says which), so its bits'
        # clock enables read no compare either (on the ULX3S top, 6.8 ns of routing
        # after the compare to the load unit's 65).
        word = Signal.like(out.i.payload)
        word_held = Signal()
        free = Signal()
        # Whether the ring holds a word is a register, `filled >= wb` formed a cycle
        # ahead from the next `filled`; it holds for the shape at the FIFO's head when
        # that shape was there the cycle before and was not taken (`steady`). So a
        # transfer's first word waits a cycle after the last word of the one before
        # (WORD_GAP), and emit is one LUT of registers: the compare's carry chain
        # before emit, and its adders after, set the ULX3S top's clock (12.3 ns).
        #
        # Every next value below that depends on `emit` is formed both ways from
        # registers, and `emit` only chooses between them at the last LUT: `emit`
        # fans out to some 150 flip-flops, and the carry chains of the counts and
        # compares after it set the ULX3S top's clock (seed 15: emit, the word
        # count's adder, its compare, `filled`'s adder and compare, 11.5 ns).
        enough, steady = Signal(), Signal()
        kept, given = Signal.like(filled), Signal.like(filled)  # `filled` without / with emit
        m.d.comb += [kept.eq(filled + Mux(landed_valid, landed_n, 0)), given.eq(kept - wb)]
        m.d.sync += [
            filled.eq(Mux(emit, given, kept)),
            enough.eq(Mux(emit, given >= wb, kept >= wb)),
            steady.eq(shapes.r_rdy & ~shapes.r_en),
        ]
        # the counts after an emitted word: the next in the row, or the next row's first
        # (`row_done`), or the transfer's first again (`last`)
        word_after = Mux(row_done, 1, word_i + 1)
        row_after = Mux(row_done, Mux(last, 1, row_i + 1), row_i)
        ends_after, ends_kept = Signal(), Signal()  # the word's row ends, emitted or not
        m.d.comb += [
            ends_after.eq(word_after == row_words),
            ends_kept.eq(word_i == row_words),
        ]
        with m.If(emit):
            m.d.sync += [
                word_i.eq(word_after),
                row_i.eq(row_after),
                row_done.eq(ends_after),
                last.eq(ends_after & (row_after == rows)),
            ]
        with m.Else():
            m.d.sync += [row_done.eq(ends_kept), last.eq(ends_kept & (row_i == rows))]
        m.d.comb += [
            free.eq(~word_held | out.i.ready),
            emit.eq(steady & enough & free & ~self.error),
            out.i.valid.eq(word_held),
            out.i.payload.eq(word),
            shapes.r_en.eq(emit & last),
        ]
        with m.If(free):
            m.d.sync += [
                word_held.eq(emit),
                word.eq(
                    Cat(
                        Cat(Cat(ring).word_select(at[i], 8) for i in range(nm)) & byte_mask(wb, nm),
                        last,
                    )
                ),
            ]
        count_kept = Signal.like(count)  # `count` without an emitted word
        m.d.comb += count_kept.eq(count + Mux(take, span_n, 0))
        m.d.sync += [
            count.eq(Mux(emit, count_kept - wb, count_kept)),
            credit.eq(thermometer_next(credit, take, self.issue)),
        ]
        with m.If(take):
            m.d.sync += wp.eq(wp + span_n)
        with m.If(emit):
            m.d.sync += [a.eq(a + wb) for a in at]
