"""TransferWriter: the ISA's STORE, a stream of words to external memory.

Each word's low `word_bytes` bytes go to the next byte addresses of its row
(the layout of TransferReader, reader.py). Bytes gather in a window of two bus
words (the upper one as wide as a word reaches): when the lower one is
complete, or the row ends, it goes out as a write with `sel` on exactly the
bytes of the transfer, so memory around is never touched. A word is at most
one bus word (store words are 1 to 5 bytes), so it fills at most the window; a
row that ends in the upper half takes one more cycle to write it. Writes go out
without waiting for acks; `done` gives one element per command once every write
of it is acknowledged (counted in order: the answers come in order). An err
answer raises the sticky `error` flag; the writer goes on, so `done` still comes
and nothing waits forever."""

from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.coproc.bus import check_data_bytes, client_signature, request_layout
from rtl.coproc.reader import byte_mask, transfer_layout
from rtl.stream_queue import StreamQueue


class TransferWriter(wiring.Component):
    """`cmd` and words `i` in, write requests out on `mem`, `done` per command."""

    #: Words of the input and write queues (three pass one per cycle).
    QUEUE_DEPTH = 3
    #: Commands' ends (writes issued by a command's last) the `ends` FIFO holds, and the
    #: ends waiting beyond which no command is taken: room stays for this command's and
    #: for those whose last write still waits in the write queue (one a command at most).
    ENDS_DEPTH = 4 + QUEUE_DEPTH
    ENDS_TAKING_COMMANDS = ENDS_DEPTH - 1 - QUEUE_DEPTH
    #: Edges from a word taken on `i` to its write offered: through the word queue (two),
    #: the window, then the write queue (two).
    WORD_TO_WRITE = 5
    #: Edges from the last write's answer to `done` (the answers are counted in a register).
    ACK_TO_DONE = 1
    #: Edges from a command taken on `cmd` (while IDLE) to IDLE taking it from its register.
    HOLD_LATENCY = 1

    def __init__(self, addr_bits: int, data_bytes: int, max_word_bytes: int) -> None:
        self.shift = check_data_bytes(data_bytes)
        if not 1 <= max_word_bytes <= data_bytes:
            raise ValueError(
                f"max_word_bytes must be 1 to data_bytes ({data_bytes}), not {max_word_bytes}"
            )
        self.addr_bits, self.data_bytes, self.max_word_bytes = addr_bits, data_bytes, max_word_bytes
        super().__init__(
            {
                "cmd": In(stream.Signature(transfer_layout(max_word_bytes))),
                "i": In(stream.Signature(8 * max_word_bytes)),
                "mem": Out(client_signature(addr_bits, data_bytes)),
                "done": Out(stream.Signature(1)),
                "error": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        s, nd, nm = self.shift, self.data_bytes, self.max_word_bytes
        req, resp = self.mem.request, self.mem.response
        # the command waits in a register, taken while IDLE: `cmd.ready` reads registers
        # only, so the store unit's dispatch does not run into the writer's field
        # registers' clock enables in the same cycle
        cmd = Signal.like(self.cmd.payload)
        held, idle, taken = Signal(), Signal(), Signal()
        m.d.comb += self.cmd.ready.eq(~held & idle)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [held.eq(1), cmd.eq(self.cmd.payload)]
        with m.Elif(taken):
            m.d.sync += held.eq(0)
        m.submodules.ends = ends = fifo.SyncFIFO(width=16, depth=self.ENDS_DEPTH)

        row_start, stride = Signal(32), Signal(24)
        rows_left, row_words, words_left = Signal(16), Signal(16), Signal(16)
        wb = Signal(nm.bit_length())
        base = Signal(32 - s)  # the window's lower bus word
        pos = Signal(s)  # the next byte's place in the window
        # a word of at most `nm` bytes placed at most at byte nd - 1 reaches byte
        # nd + nm - 2: the window's bytes beyond never change (36 registers Yosys kept
        # on the ULX3S top, on its enable of 197 pins; boards/stuck.py)
        window_bytes = nd + nm - 1
        window, sel = Signal(8 * window_bytes), Signal(window_bytes)

        # words in and writes out through queues whose ready and valid are registers, so
        # neither the engine feeding `i` nor the window waits on the bus's answer
        m.submodules.words = words = StreamQueue(8 * nm, self.QUEUE_DEPTH)
        wiring.connect(m, wiring.flipped(self.i), words.i)
        word = words.o
        write_layout = data.StructLayout(
            {"request": request_layout(self.addr_bits, nd), "final": 1}
        )
        m.submodules.writes = writes = StreamQueue(write_layout.size, self.QUEUE_DEPTH)
        offered = data.View(write_layout, writes.o.payload)
        m.d.comb += [
            req.valid.eq(writes.o.valid),
            req.payload.eq(offered.request),
            writes.o.ready.eq(req.ready),
        ]
        free = writes.i.ready
        out = data.View(write_layout, writes.i.payload)

        # What a word decides by (its row's end, the transfer's, the window's) is held in
        # registers formed a word ahead, so no compare of a 16-bit count or adder sits
        # between the word queue's head and the window's enables (the full top's
        # critical path: `words_left == 1` and `pos + wb` into a clock enable, 12.4 ns).
        end = Signal(s + 1)  # pos + wb: the place after this word
        row_end, last_row = Signal(), Signal()  # words_left == 1, rows_left == 1

        def start_row(first: object, words: object, word_bytes: object) -> list:
            """A row from byte address `first` of `words` words of `word_bytes` bytes."""
            return [
                words_left.eq(words),
                row_end.eq(words == 1),
                base.eq(first[s:]),
                pos.eq(first[:s]),
                end.eq(first[:s] + word_bytes),
                window.eq(0),
                sel.eq(0),
            ]

        def next_row() -> None:
            with m.If(last_row):
                m.next = "IDLE"
            with m.Else():
                start = row_start + stride
                m.d.sync += [
                    rows_left.eq(rows_left - 1),
                    last_row.eq(rows_left == 2),
                    row_start.eq(start),
                    *start_row(start, row_words, wb),
                ]
                m.next = "RUN"

        placed = window | ((word.payload & byte_mask(wb, nm)) << Cat(C(0, 3), pos))
        placed_sel = sel | (Cat((wb > k) for k in range(nm)) << pos)
        # The write queue sees its next entry whether it is written or not, chosen by
        # the state alone (a register): gated by the word's handshake and the window's
        # decisions, its LUT RAM write data sat 4–6 LUTs deep (the ULX3S top's 324
        # endpoints over 8 ns in this writer).
        flushing = Signal()  # the row's last bytes, in the upper half
        m.d.comb += [
            out.request.addr.eq(base),
            out.request.data.eq(Mux(flushing, window[: 8 * nd], placed[: 8 * nd])),
            out.request.sel.eq(Mux(flushing, sel[:nd], placed_sel[:nd])),
            out.request.write.eq(1),
            out.final.eq(Mux(flushing, last_row, row_end & last_row & (end <= nd))),
        ]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [
                    idle.eq(1),
                    taken.eq(held & (ends.w_level <= self.ENDS_TAKING_COMMANDS)),
                ]
                with m.If(taken):
                    m.d.sync += [row_start.eq(cmd.dram_addr), stride.eq(cmd.stride)]
                    m.d.sync += [rows_left.eq(cmd.rows), last_row.eq(cmd.rows == 1)]
                    m.d.sync += [row_words.eq(cmd.row_words), wb.eq(cmd.word_bytes)]
                    m.d.sync += start_row(cmd.dram_addr, cmd.row_words, cmd.word_bytes)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += word.ready.eq(free)
                with m.If(word.valid & free):
                    m.d.sync += [words_left.eq(words_left - 1), row_end.eq(words_left == 2)]
                    m.d.sync += [pos.eq(end[:s]), end.eq(end[:s] + wb)]
                    m.d.sync += [window.eq(placed), sel.eq(placed_sel)]
                    with m.If(end[s] | row_end):  # the lower bus word is done
                        m.d.comb += writes.i.valid.eq(1)
                        m.d.sync += [
                            base.eq(base + 1),
                            window.eq(placed[8 * nd :]),
                            sel.eq(placed_sel[nd:]),
                        ]
                    with m.If(row_end):
                        with m.If(end > nd):
                            m.next = "FLUSH"
                        with m.Else():
                            next_row()
            # the row's last bytes, in the upper half
            with m.State("FLUSH"):
                m.d.comb += flushing.eq(1)
                with m.If(free):
                    m.d.comb += writes.i.valid.eq(1)
                    next_row()

        # done: when the answers counted reach the writes issued by a command's end (or
        # passed them while an earlier `done` waited); counts wrap, so compare by difference
        issued, answered = Signal(16), Signal(16)
        sent = req.valid & req.ready
        m.d.sync += [issued.eq(issued + sent), answered.eq(answered + resp.valid)]
        m.d.comb += [ends.w_en.eq(sent & offered.final), ends.w_data.eq(issued + 1)]
        m.d.comb += [
            self.done.valid.eq(ends.r_rdy & ~(answered - ends.r_data)[15]),
            ends.r_en.eq(self.done.valid & self.done.ready),
        ]
        with m.If(resp.valid & resp.payload.error):
            m.d.sync += self.error.eq(1)
        return m
