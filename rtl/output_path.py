"""The requantizing output path every engine ends in: int32 sums in, int8 stream out.

Per element: (+bias, ×M, >>shift, round half up, saturate, ReLU) in
`rtl.requant.Requantizer`, then an optional 2 × 2 average pool (round half up)
over elements that arrive quad by quad per lane, then a result queue to `o`,
and each tile's tag on `done` after its last element has left `o`.

Like the engines in front of it, it never stalls: `i` is always ready, and a
producer sends an element that yields a result only after reserving a result
slot (`reserve`, granted by `room_next` a cycle ahead), so back-pressure on `o`
reaches the producer as "no room" and never runs through a pipeline. Done
tokens, too, have reserved room: whoever accepts tiles holds at most
`token_slots` of them between acceptance and their token's transfer on `done`
(a credit per tile), so a tile's last element never waits for the token queue
and `o.valid` is a register. The
constants travel with each element, so the path is the same whether they come
from a per-channel buffer (convolution) or from a layer's one scale (warping).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from defs.limits import TAG_BITS, bits_for
from rtl.dsp import platform_target
from rtl.pipeline import CREDIT_RETURN_LATENCY, credit_counter
from rtl.prefetch import PrefetchQueue
from rtl.requant import Requantizer, requant_input_layout
from rtl.row_queue import RowQueue
from rtl.stream_queue import StreamQueue

if TYPE_CHECKING:
    from defs.params import NumericParams


def element_user_layout(lanes: int) -> data.StructLayout:
    """What travels with each element besides the requantizer's inputs."""
    return data.StructLayout(
        {
            "lane": unsigned(bits_for(lanes)),  # pooling keeps one partial sum per lane
            "pool": unsigned(1),
            "quad": unsigned(2),  # position in the 2×2 pooling window, (dy, dx)
            "end": unsigned(1),  # last element of the tile
            "tag": unsigned(TAG_BITS),
        }
    )


class OutputPath(wiring.Component):
    """Elements in (`requant_input_layout` with an `element_user_layout` user), int8 out."""

    #: Edges of the 2×2 pool: P1 registers the lane's partial sum, P2 adds.
    POOL_LATENCY = 2
    #: Edges from a pooled result to `o.valid` through the result queues, and the
    #: done token after it (a StreamQueue: two edges when empty), as simulation
    #: counts them.
    QUEUE_LATENCY = 3
    #: Edges from `i` to `o` without back-pressure.
    LATENCY = Requantizer.FREE_RUNNING_LATENCY + POOL_LATENCY + QUEUE_LATENCY
    #: Edges from a tile's last `o` transfer to its token on `done` (the token
    #: queue, a StreamQueue, when empty).
    TOKEN_LATENCY = 2
    #: Result slots beyond the round trip's edges: the producer decides to issue
    #: a cycle ahead (a registered issue flag).
    SPARE_SLOTS = 1

    def __init__(
        self,
        numeric: NumericParams,
        lanes: int,
        *,
        producer_latency: int,
        token_slots: int,
        dsp_target: str | None = None,
        tags_beside: bool = False,
    ) -> None:
        self.numeric, self.lanes, self.dsp_target = numeric, lanes, dsp_target
        #: Keep a tile's tag in a small queue beside the results, not in each
        #: result entry (ECP5 only; iCE40's result queue is block RAM, where
        #: width is free). It narrows a deep LUT-RAM result queue, whose read
        #: address then fans out to fewer slices: the warp engine's 39-entry
        #: queue set its clock there. The conv engine measured faster without
        #: (153.7 against 145.7 MHz with the default placer seed).
        self.tags_beside = tags_beside
        #: Done tokens the queue holds: the tiles in flight its user allows.
        self.token_slots = token_slots
        #: Results in flight between a reservation and the output stream: the
        #: producer's edges to `i`, this path's to `o`, the slot's return, and
        #: spares; fewer and a producer of one element per cycle waits for room.
        self.slots = producer_latency + self.LATENCY + CREDIT_RETURN_LATENCY + self.SPARE_SLOTS
        user = element_user_layout(lanes)
        super().__init__(
            {
                "i": In(
                    stream.Signature(requant_input_layout(numeric, user.size), always_ready=True)
                ),
                "reserve": In(1),  # an element that will yield a result takes a slot now
                "room_next": Out(1),  # a slot is free after this edge
                "o": Out(stream.Signature(signed(numeric.act_bits))),
                "done": Out(stream.Signature(unsigned(TAG_BITS))),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        n = self.numeric
        # iCE40 block RAM pays for a transparent read with bypass logic
        big_die = platform_target(platform, self.dsp_target) != "ice40"
        m.submodules.requant = rq = Requantizer(
            n, element_user_layout(self.lanes).size, free_running=True, dsp_target=self.dsp_target
        )
        m.d.comb += [rq.i.valid.eq(self.i.valid), rq.i.payload.eq(self.i.payload)]
        m.d.comb += rq.o.ready.eq(1)

        # -- 2×2 average pool (round half up) ----------------------------------
        value = rq.o.payload.value
        user = data.View(element_user_layout(self.lanes), rq.o.payload.user)
        # Two stages: P1 registers the lane's partial sum, P2 adds. The rounding
        # half (+2 before >> 2) enters with a window's first element, registered
        # in P1, so P2 has one carry chain, not two in a row.
        # The partial sums live in a small memory read without a clock (LUT RAM
        # on ECP5, whose read multiplexer is inside the RAM slices: a rows-way
        # multiplexer over flip-flops took most of a cycle). No forwarding is
        # needed from P2's write to P1's read as long as consecutive elements of
        # one lane arrive at least two cycles apart (the conv engine's lanes count
        # up within a vector, and a vector is followed by an idle cycle).
        # (at least two entries: a one-entry memory has a zero-width address)
        m.submodules.pool_partials = partials = Memory(
            shape=signed(n.act_bits + 2), depth=max(2, self.lanes), init=[]
        )
        partial_write = partials.write_port()
        partial_read = partials.read_port(domain="comb")
        p1_valid = Signal()
        p1_value = Signal.like(value)
        p1_user = Signal(element_user_layout(self.lanes))
        p1_sum = Signal(signed(n.act_bits + 2))  # the lane's partial sum so far
        p1_absorb = p1_user.pool & (p1_user.quad != 3)
        p1_biased = Signal(signed(n.act_bits + 2))  # value + 2: a window's first partial
        p1_total = Signal(signed(n.act_bits + 2))
        p1_kept = Signal(signed(n.act_bits + 2))  # what P2 leaves in the lane's partial
        m.d.comb += [
            p1_total.eq(p1_sum + p1_value),
            p1_kept.eq(Mux(p1_user.quad.any(), p1_total, p1_biased)),
            partial_read.addr.eq(user.lane),
            partial_write.addr.eq(p1_user.lane),
            partial_write.data.eq(p1_kept),
            partial_write.en.eq(p1_valid & p1_absorb),
        ]
        m.d.sync += [
            p1_valid.eq(rq.o.valid),
            p1_value.eq(value),
            p1_biased.eq(value + 2),
            p1_user.eq(user),
            p1_sum.eq(partial_read.data),
        ]
        tag_beside = self.tags_beside and big_die
        out_fields = {"value": signed(n.act_bits), "end": unsigned(1)}
        out_entry = data.StructLayout(out_fields | ({} if tag_beside else {"tag": TAG_BITS}))
        result = Signal(out_entry)
        result_valid = Signal()
        result_tag = Signal(TAG_BITS) if tag_beside else result.tag
        m.d.sync += [
            result_valid.eq(p1_valid & ~p1_absorb),
            result.value.eq(Mux(p1_user.pool, p1_total >> 2, p1_value)),
            result.end.eq(p1_user.end),
            result_tag.eq(p1_user.tag),
        ]

        # -- result queue, output stream, done tokens ---------------------------
        out_pop = Signal()
        m.d.comb += self.room_next.eq(
            credit_counter(m, self.slots, give_back=out_pop, take=self.reserve, name="results")[1]
        )
        # as deep as the credits: a result always finds room
        # (StreamQueue's storage reads transparently where that is the cheap form)
        m.submodules.results = out_fifo = StreamQueue(
            out_entry.size, self.slots, transparent_storage=big_die
        )
        # the output stream reads a queue with registered flags: `o.ready` reaches
        # two registers, not the FIFO's pointers
        m.submodules.results_next = out_queue = PrefetchQueue(out_entry.size)
        wiring.connect(m, out_fifo.o, out_queue.i)
        head = data.View(out_entry, out_queue.head)
        # With `tags_beside`, a tile's tag is pushed with its last result and
        # read as that result leaves, at least three edges later; the tiles in
        # flight hold token credits, so the queue never fills.
        if tag_beside:
            m.submodules.tags = tags = RowQueue(TAG_BITS, self.token_slots)
            m.d.comb += [
                tags.data.eq(result_tag),
                tags.push.eq(result_valid & result.end),
                tags.pop.eq(out_pop & head.end),
            ]
            done_tag = tags.head
        else:
            done_tag = head.tag
        # a tile's token follows its last element; the queue always has room for
        # it (the tiles in flight hold token credits), so its `i.ready` is unused
        m.submodules.done_tokens = done_queue = StreamQueue(
            TAG_BITS, self.token_slots, transparent_storage=big_die
        )
        wiring.connect(m, wiring.flipped(self.done), done_queue.o)
        m.d.comb += [
            out_fifo.i.payload.eq(result),
            out_fifo.i.valid.eq(result_valid),
            self.o.valid.eq(out_queue.head_valid),
            self.o.payload.eq(head.value),
            out_pop.eq(self.o.valid & self.o.ready),
            out_queue.pop.eq(out_pop),
            done_queue.i.valid.eq(out_pop & head.end),
            done_queue.i.payload.eq(done_tag),
        ]
        return m


def lanes_in_lockstep(
    m: Module, paths: list[OutputPath], *, reserve: object, o: object, done: object
) -> Signal:
    """Join one output path per lane into an engine's `o` (a word of the lanes'
    results, lane 0 in the low bits) and `done`; return their `room_next`.

    The paths see the same elements, reservations and `ready`, so they move in
    lockstep and lane 0's flags speak for all (the other lanes' tokens are
    dropped).
    """
    first = paths[0]
    for path in paths:
        m.d.comb += [path.reserve.eq(reserve), path.o.ready.eq(o.ready)]
    m.d.comb += [o.valid.eq(first.o.valid), o.payload.eq(Cat(*[p.o.payload for p in paths]))]
    wiring.connect(m, wiring.flipped(done), first.done)
    for path in paths[1:]:
        m.d.comb += path.done.ready.eq(1)
    return first.room_next
