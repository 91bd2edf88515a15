"""The store queue's unit: STORE, SYNC and END, in program order (docs/coprocessor.md).

A STORE is checked (its source, its reach inside the image), then handed to
the transfer writer with a route naming the engine whose output stream feeds
it; the writer's `done` (every write acknowledged) gives its token to the
compute queue. STOREs follow each other without waiting for their writes; a
SYNC or END that gives a token waits until every STORE before it is done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.coproc import Fault
from defs.isa import Opcode, Source
from rtl.coproc.bus import client_signature
from rtl.coproc.decode import ENTRY, INDEX_BITS, TAKE_LATENCY, fields
from rtl.coproc.transfer_check import TransferCheck
from rtl.coproc.writer import TransferWriter
from rtl.credit_link import CreditLink
from rtl.stream_queue import StreamQueue

if TYPE_CHECKING:
    from defs.params import GraceParams

#: STOREs whose writes may be in flight at once.
IN_FLIGHT = 8


class StoreUnit(wiring.Component):
    #: Edges from a STORE taken at the head (IDLE) to its DISPATCH: TAKEN, the
    #: check's LATENCY cycles in CHECK, then DECIDE's registers.
    CHECK_TO_DISPATCH = TAKE_LATENCY + TransferCheck.LATENCY + 2
    #: Edges from the writer's `done` to the STORE's token pushed (and its end counted).
    DONE_TO_TOKEN = 1
    #: Register stages each way of the links into and out of the route's choice.
    LINK_STAGES = 1
    #: Edges from an engine's output word taken to the writer's input. Each engine's
    #: words come to the route's one-hot choice over a `CreditLink` of their own
    #: (free-running registers out, credits back, a queue at the choice), and the
    #: chosen word goes on to the writer over another. So the choice reads only its
    #: queues' registers and the credits of its link out (`moved`, which loads the
    #: route's count and flags, is one LUT of them), and no wire between it and an
    #: engine or the writer, across the die, sits in a cycle with logic. With a skid
    #: register per engine and one before the writer, the choice spread over 60
    #: columns (seed 16: an engine's flag, its valid, the choice, into the route
    #: queue's pointers, 14.0 ns, 12.0 of it routing). Still left: the route queue,
    #: written by dispatch, and the route's count `left` sit 20-77 columns from the
    #: links' queues, and `moved` reaches them in one cycle (the critical path at
    #: seeds 16 and 17 of issue 17's fourteenth session, docs/coprocessor.md).
    SOURCE_LATENCY = 2 * CreditLink.latency_of(LINK_STAGES)

    def __init__(
        self, params: GraceParams, sources: dict[Source, stream.Signature], addr_bits: int
    ) -> None:
        self.params, self.sources, self.addr_bits = params, sources, addr_bits
        self.word_bytes = {
            s: -(-Shape.cast(sig.members["payload"].shape).width // 8) for s, sig in sources.items()
        }
        self.max_word_bytes = max(self.word_bytes.values())
        super().__init__(
            {
                "head": In(stream.Signature(ENTRY)),
                "halt": In(1),
                "image_bytes": In(32),
                "pop_available": In(1),  # compute → store tokens
                "pop": Out(1),
                "push": Out(2),  # store → compute tokens
                "mem": Out(client_signature(addr_bits, params.coproc.bus_bytes)),
                **{f"{s.name.lower()}_o": In(sig) for s, sig in sources.items()},
                "fault": Out(4),
                "fault_index": Out(INDEX_BITS),
                "retire": Out(1),
                "ended": Out(1),
                "busy": Out(1),
                "stall": Out(1),
                "error": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.params
        m.submodules.check = check = TransferCheck()
        m.submodules.writer = writer = TransferWriter(
            self.addr_bits, p.coproc.bus_bytes, self.max_word_bytes
        )
        wiring.connect(m, wiring.flipped(self.mem), writer.mem)
        m.d.comb += self.error.eq(writer.error)
        route_layout = data.StructLayout({"source": unsigned(3), "count": unsigned(32)})
        m.submodules.routes = routes = StreamQueue(route_layout.size, IN_FLIGHT)
        m.submodules.tokens = tokens = StreamQueue(1, IN_FLIGHT)  # each STORE's push_prev

        # the header is decoded from the queue's head as it is taken (IDLE); the body
        # from a copy of the head registered then (no check or command logic reads
        # the queue's LUT RAM)
        held = Signal.like(self.head.payload)
        header = fields(Opcode.STORE, p, self.head.payload.word).header
        body = fields(Opcode.STORE, p, held.word).body
        source_known = Signal()
        word_bytes = Signal(range(self.max_word_bytes + 1))
        with m.Switch(body.source):
            for s in self.sources:
                with m.Case(s):
                    m.d.comb += [source_known.eq(1), word_bytes.eq(self.word_bytes[s])]
        m.d.comb += [
            check.dram_addr.eq(body.dram_addr),
            check.stride.eq(body.stride),
            check.rows.eq(body.rows),
            check.row_words.eq(body.row_words),
            check.word_bytes.eq(word_bytes),
            check.image_bytes.eq(self.image_bytes),
            writer.cmd.payload.dram_addr.eq(body.dram_addr),
            writer.cmd.payload.stride.eq(body.stride),
            writer.cmd.payload.rows.eq(body.rows),
            writer.cmd.payload.row_words.eq(body.row_words),
            writer.cmd.payload.word_bytes.eq(word_bytes),
            routes.i.payload.eq(Cat(body.source, check.count)),
        ]

        # STOREs handed to the writer whose writes are not all acknowledged
        inflight = Signal(range(IN_FLIGHT + 2))
        done = Signal()
        m.d.comb += [
            done.eq(writer.done.valid & tokens.o.valid),
            writer.done.ready.eq(tokens.o.valid),
            tokens.o.ready.eq(done),
        ]
        # the STORE's end, and its token, from registers: the writer's count compare
        # reaches no token counter
        finished, finished_push = Signal(), Signal()
        m.d.sync += [finished.eq(done), finished_push.eq(done & tokens.o.payload[0])]
        dispatch = Signal()
        m.d.sync += inflight.eq(inflight + dispatch - finished)
        # the head's header into registers as it is taken (IDLE), the decision on them
        # the edge after (TAKEN): no token or queue logic reads the queue's LUT RAM
        pop, push = Signal(), Signal()  # the instruction's pop_prev, push_prev
        is_store, is_end = Signal(), Signal()
        waits = Signal()
        m.d.comb += waits.eq(pop & ~self.pop_available)
        m.d.comb += tokens.i.payload.eq(push)
        push_here = Signal()
        m.d.comb += self.push.eq(push_here + finished_push)

        wait = Signal(range(TransferCheck.LATENCY + 1))
        known, fits = Signal(), Signal()
        with m.FSM():
            with m.State("IDLE"):
                # the head is copied on every idle edge, taken or not: the copies'
                # clock enable is the state, not the queue's `valid` (that net
                # reached the 133 flip-flops of a copy in 9.7 ns on the ULX3S top)
                m.d.sync += [
                    held.eq(self.head.payload),
                    pop.eq(header.pop_prev),
                    push.eq(header.push_prev),
                    is_store.eq(header.opcode == Opcode.STORE),
                    is_end.eq(header.opcode == Opcode.END),
                ]
                with m.If(self.head.valid & ~self.halt):
                    m.next = "TAKEN"
            with m.State("TAKEN"):
                m.d.comb += self.stall.eq(waits)
                with m.If(~self.halt & ~waits):
                    with m.If(is_store):
                        m.d.comb += check.start.eq(1)
                        m.d.sync += wait.eq(TransferCheck.LATENCY)
                        m.next = "CHECK"
                    with m.Elif(~(push & (inflight != 0))):  # SYNC, END
                        m.d.comb += [
                            self.pop.eq(pop),
                            push_here.eq(push),
                            self.head.ready.eq(1),
                            self.retire.eq(1),
                        ]
                        m.d.sync += self.ended.eq(is_end)
                        m.next = "IDLE"
            with m.State("CHECK"):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 1):
                    m.next = "DECIDE"
            with m.State("DECIDE"):  # the answers into registers: dispatch reads registers
                m.d.sync += [known.eq(source_known), fits.eq(check.ok)]
                m.next = "DISPATCH"
            with m.State("DISPATCH"):
                with m.If(~known | ~fits):
                    m.d.sync += [
                        self.fault.eq(Mux(known, Fault.ADDRESS, Fault.ILLEGAL_INSTRUCTION)),
                        self.fault_index.eq(held.index),
                    ]
                    m.next = "FAULT"
                with m.Elif(writer.cmd.ready & routes.i.ready & tokens.i.ready):
                    m.d.comb += [
                        writer.cmd.valid.eq(1),
                        routes.i.valid.eq(1),
                        tokens.i.valid.eq(1),
                        dispatch.eq(1),
                        self.pop.eq(pop),
                        self.head.ready.eq(1),
                        self.retire.eq(1),
                    ]
                    m.next = "IDLE"
            with m.State("FAULT"):
                pass

        # the route in use is a register, loaded from the queue's head as the last one
        # ends: the handshakes read a one-hot source and a registered `last`, not the
        # queue's LUT RAM through a decode and a 32-bit compare
        route = data.View(route_layout, routes.o.payload)
        current = {s: Signal(name=f"from_{s.name.lower()}") for s in self.sources}
        left = Signal(32)  # words of the route after this one
        last = Signal()  # this word is the route's last (`left` is 0)
        moved = Signal()
        m.submodules.to_writer = to_writer = CreditLink(
            unsigned(8 * self.max_word_bytes), self.LINK_STAGES
        )
        wiring.connect(m, to_writer.o, writer.i)
        m.d.comb += moved.eq(to_writer.i.valid & to_writer.i.ready)
        load = Signal()
        m.d.comb += [
            load.eq(routes.o.valid & (~Cat(*current.values()).any() | (moved & last))),
            routes.o.ready.eq(load),
        ]
        with m.If(load):
            m.d.sync += [left.eq(route.count - 1), last.eq(route.count == 1)]
            m.d.sync += [flag.eq(route.source == s) for s, flag in current.items()]
        with m.Elif(moved):
            m.d.sync += [left.eq(left - 1), last.eq(left == 1)]
            with m.If(last):  # no route until the next is loaded: words wait
                m.d.sync += [flag.eq(0) for flag in current.values()]
        for s, signature in self.sources.items():
            m.submodules[f"from_{s.name.lower()}_link"] = link = CreditLink(
                signature.members["payload"].shape, self.LINK_STAGES
            )
            wiring.connect(m, wiring.flipped(getattr(self, f"{s.name.lower()}_o")), link.i)
            o = link.o
            with m.If(current[s]):
                m.d.comb += [
                    to_writer.i.valid.eq(o.valid),
                    to_writer.i.payload.eq(o.payload),
                    o.ready.eq(to_writer.i.ready),
                ]
        m.d.comb += self.busy.eq((self.head.valid & ~self.ended) | (inflight != 0))
        return m
