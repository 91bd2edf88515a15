"""The load queue's unit: LOAD, SYNC and END, in program order (docs/coprocessor.md).

A LOAD into a buffer or write stream goes to the buffer reader; its words are
handed to the engine's write port by a `Router`, which gives the LOAD's
token to the compute queue when the last word is written. A LOAD into an
input stream (`INPUT_STREAMS`) cannot finish before its engine runs the
command that takes the words, which waits for this queue's tokens: it is
queued for the stream reader and gives its token as it is queued (after every
buffer LOAD before it has finished, so a token never overtakes one). SYNC and
END take and give their tokens the same way. Each LOAD is checked first: its
buffer, its reach inside the image, its words inside the buffer; a fault
stops the unit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.coproc import INPUT_STREAMS, Fault
from defs.isa import Buffer, Opcode
from rtl.coproc.bus import client_signature
from rtl.coproc.decode import ENTRY, INDEX_BITS, TAKE_LATENCY, fields
from rtl.coproc.reader import TRANSFER_FIELDS, TransferReader, transfer_layout
from rtl.coproc.routers import Router, Target
from rtl.coproc.transfer_check import TransferCheck
from rtl.stream_queue import StreamQueue

if TYPE_CHECKING:
    from defs.params import GraceParams


class LoadUnit(wiring.Component):
    #: Edges from a LOAD taken at the head (IDLE) to its dispatch: TAKEN, the check's
    #: LATENCY cycles in CHECK, then DECIDE's registers.
    CHECK_TO_DISPATCH = TAKE_LATENCY + TransferCheck.LATENCY + 2

    def __init__(self, params: GraceParams, targets: dict[Buffer, Target], addr_bits: int) -> None:
        self.params, self.targets, self.addr_bits = params, targets, addr_bits
        self.max_word_bytes = max(t.word_bytes for t in targets.values())
        reads = client_signature(addr_bits, params.coproc.bus_bytes, writes=False)
        super().__init__(
            {
                "head": In(stream.Signature(ENTRY)),
                "halt": In(1),
                "image_bytes": In(32),
                # tokens: taken from the compute queue, given to it
                "pop_available": In(1),
                "pop": Out(1),
                "push": Out(2),
                "mem_buffer": Out(reads),
                "mem_stream": Out(reads),
                **{t.port: Out(t.signature) for t in targets.values()},
                "fault": Out(4),
                "fault_index": Out(INDEX_BITS),
                "retire": Out(1),
                "ended": Out(1),
                "busy": Out(1),
                "stall": Out(1),
                "error": Out(1),  # a bus error seen by either reader
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.params
        bus = p.coproc.bus_bytes
        depth = p.coproc.stream_loads
        m.submodules.check = check = TransferCheck()
        buffered = {b: t for b, t in self.targets.items() if b not in INPUT_STREAMS}
        streamed = {b: t for b, t in self.targets.items() if b in INPUT_STREAMS}
        # each reader as wide as its own targets' words: the stream reader's word
        # multiplexers (32 to 1, a byte each) stop at the widest stream word
        buffer_bytes = max(t.word_bytes for t in buffered.values())
        stream_bytes = max(t.word_bytes for t in streamed.values())
        m.submodules.buffer_reader = buffer_reader = TransferReader(
            self.addr_bits, bus, buffer_bytes
        )
        m.submodules.stream_reader = stream_reader = TransferReader(
            self.addr_bits, bus, stream_bytes
        )
        wiring.connect(m, wiring.flipped(self.mem_buffer), buffer_reader.mem)
        wiring.connect(m, wiring.flipped(self.mem_stream), stream_reader.mem)
        m.d.comb += self.error.eq(buffer_reader.error | stream_reader.error)

        m.submodules.buffer_router = buffer_router = Router(buffered, buffer_bytes)
        m.submodules.stream_router = stream_router = Router(
            streamed, stream_bytes, depth, tokens=False
        )
        wiring.connect(m, buffer_reader.o, buffer_router.i)
        wiring.connect(m, stream_reader.o, stream_router.i)
        for b, t in self.targets.items():
            router = stream_router if b in INPUT_STREAMS else buffer_router
            wiring.connect(m, wiring.flipped(getattr(self, t.port)), getattr(router, t.port))
        # the stream LOADs wait here for the stream reader
        m.submodules.stream_cmds = stream_cmds = StreamQueue(
            stream_reader.cmd.payload.shape().size, depth
        )
        stream_cmd = data.View(stream_reader.cmd.payload.shape(), stream_cmds.i.payload)
        m.d.comb += [
            stream_reader.cmd.valid.eq(stream_cmds.o.valid),
            stream_reader.cmd.payload.eq(stream_cmds.o.payload),
            stream_cmds.o.ready.eq(stream_reader.cmd.ready),
        ]

        # the header is decoded from the queue's head as it is taken (IDLE); the body
        # from a copy of the head registered then, so no check, command or room logic
        # reads the queue's LUT RAM (the 4 x 4 top's critical path ran from it into
        # the check's adders)
        held = Signal.like(self.head.payload)
        header = fields(Opcode.LOAD, p, self.head.payload.word).header
        body = fields(Opcode.LOAD, p, held.word).body
        opcode = Signal(4)
        m.d.comb += opcode.eq(header.opcode)
        buffer = Signal(5)
        m.d.comb += buffer.eq(body.buffer)

        # the LOAD's reader command: weights move as `rows` words of one row each
        target_known = Signal()
        is_stream = Signal()
        word_bytes = Signal(range(self.max_word_bytes + 1))  # of a reader word
        buffer_word_bytes = Signal(8)  # of a buffer word: `split` reader words
        reader_words = Signal(32)  # row_words in reader words (constant factors: no DSP)
        buffer_depth = Signal(32)
        with m.Switch(buffer):
            for b, t in self.targets.items():
                with m.Case(b):
                    m.d.comb += [
                        target_known.eq(1),
                        is_stream.eq(b in INPUT_STREAMS),
                        word_bytes.eq(t.word_bytes),
                        buffer_word_bytes.eq(t.word_bytes * t.split),
                        reader_words.eq(body.row_words * t.split),
                        buffer_depth.eq(t.depth),
                    ]
        cmd = Signal(transfer_layout(self.max_word_bytes))
        m.d.comb += [
            cmd.dram_addr.eq(body.dram_addr),
            cmd.stride.eq(body.stride),
            cmd.rows.eq(body.rows),
            cmd.row_words.eq(reader_words),
            cmd.word_bytes.eq(word_bytes),
            check.dram_addr.eq(body.dram_addr),
            check.stride.eq(body.stride),
            check.rows.eq(body.rows),
            check.row_words.eq(body.row_words),
            check.word_bytes.eq(buffer_word_bytes),
            check.image_bytes.eq(self.image_bytes),
        ]
        # whether the words fit (an addressed buffer's from buffer_addr; a stream's
        # start is 0), in two steps of registers: the room during CHECK, from the head;
        # then, in DECIDE, the check's count against it
        room = Signal(32)  # words from buffer_addr to the buffer's end
        addr_inside = Signal()  # buffer_addr <= the buffer's depth
        addressed = Signal()
        at_zero = Signal()
        in_buffer = Signal()
        m.d.comb += in_buffer.eq(Mux(addressed, addr_inside & (check.count <= room), at_zero))

        # the head's header into registers as it is taken (IDLE), the decision on them
        # the edge after (TAKEN): no token or queue logic reads the queue's LUT RAM
        pop, push = Signal(), Signal()  # the instruction's pop_next, push_next
        is_load, is_end = Signal(), Signal()
        waits = Signal()  # a token it needs has not come
        m.d.comb += waits.eq(pop & ~self.pop_available)
        # a token given on leaving this unit waits for every buffer LOAD before it
        push_waits = Signal()
        m.d.comb += push_waits.eq(push & buffer_router.busy)

        push_here = Signal()
        m.d.comb += self.push.eq(push_here + buffer_router.token)
        wait = Signal(range(TransferCheck.LATENCY + 1))
        known, fits, streamed_load = Signal(), Signal(), Signal()
        with m.FSM():
            with m.State("IDLE"):
                # the head is copied on every idle edge, taken or not: the copies'
                # clock enable is the state, not the queue's `valid` (that net
                # reached the 133 flip-flops of a copy in 9.7 ns on the ULX3S top)
                m.d.sync += [
                    held.eq(self.head.payload),
                    pop.eq(header.pop_next),
                    push.eq(header.push_next),
                    is_load.eq(opcode == Opcode.LOAD),
                    is_end.eq(opcode == Opcode.END),
                ]
                with m.If(self.head.valid & ~self.halt):
                    m.next = "TAKEN"
            with m.State("TAKEN"):
                m.d.comb += self.stall.eq(waits)
                with m.If(~self.halt & ~waits):
                    with m.If(is_load):
                        m.d.comb += check.start.eq(1)
                        m.d.sync += wait.eq(TransferCheck.LATENCY)
                        m.next = "CHECK"
                    with m.Elif(~push_waits):  # SYNC, END
                        m.d.comb += [
                            self.pop.eq(pop),
                            push_here.eq(push),
                            self.head.ready.eq(1),
                            self.retire.eq(1),
                        ]
                        m.d.sync += self.ended.eq(is_end)
                        m.next = "IDLE"
            with m.State("CHECK"):
                m.d.sync += [
                    wait.eq(wait - 1),
                    room.eq(buffer_depth - body.buffer_addr),
                    addr_inside.eq(body.buffer_addr <= buffer_depth),
                    addressed.eq(buffer_depth != 0),
                    at_zero.eq(body.buffer_addr == 0),
                ]
                with m.If(wait == 1):
                    m.next = "DECIDE"
            with m.State("DECIDE"):  # the answers into registers: dispatch reads registers
                m.d.sync += [
                    known.eq(target_known),
                    fits.eq(check.ok & in_buffer),
                    streamed_load.eq(is_stream),
                ]
                m.next = "DISPATCH"
            with m.State("DISPATCH"):
                with m.If(~known):
                    m.d.sync += [
                        self.fault.eq(Fault.ILLEGAL_INSTRUCTION),
                        self.fault_index.eq(held.index),
                    ]
                    m.next = "FAULT"
                with m.Elif(~fits):
                    m.d.sync += [
                        self.fault.eq(Fault.ADDRESS),
                        self.fault_index.eq(held.index),
                    ]
                    m.next = "FAULT"
                with (
                    m.Elif(streamed_load),
                    m.If(stream_cmds.i.ready & stream_router.route_ready & ~push_waits),
                ):
                    m.d.comb += [
                        stream_cmds.i.valid.eq(1),
                        stream_router.route_valid.eq(1),
                        self.pop.eq(pop),
                        push_here.eq(push),
                        self.head.ready.eq(1),
                        self.retire.eq(1),
                    ]
                    m.next = "IDLE"
                with m.Elif(buffer_reader.cmd.ready & buffer_router.route_ready):
                    m.d.comb += [
                        buffer_reader.cmd.valid.eq(1),
                        buffer_router.route_valid.eq(1),
                        self.pop.eq(pop),
                        self.head.ready.eq(1),
                    ]
                    m.next = "IDLE"
            with m.State("FAULT"):
                pass
        m.d.comb += [
            # (a field each: the readers' word_bytes fields are as wide as their words)
            *(Value.cast(getattr(stream_cmd, f)).eq(getattr(cmd, f)) for f in TRANSFER_FIELDS),
            *(
                Value.cast(getattr(buffer_reader.cmd.payload, f)).eq(getattr(cmd, f))
                for f in TRANSFER_FIELDS
            ),
            stream_router.route.buffer.eq(buffer),  # (its tokens go when queued: push 0)
            buffer_router.route.buffer.eq(buffer),
            buffer_router.route.addr.eq(body.buffer_addr),
            buffer_router.route.push.eq(push),
            self.busy.eq((self.head.valid & ~self.ended) | buffer_router.busy),
        ]
        return m
