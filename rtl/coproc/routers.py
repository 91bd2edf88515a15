"""Where a reader's words go: to the engine port the LOAD named, one route per LOAD.

Each LOAD leaves a route (its buffer, first address and token) in a small
queue as it is dispatched; the router hands its reader's words, in order, to
that route's engine port, writing buffer words at consecutive addresses (a
conv weight word arrives as `rows` words of one row each), and drops the
route at the transfer's last word — giving the LOAD's token once that word is
in the engine.

Each engine port is fed from a register of its own (`DELIVERY_LATENCY`), which
the placer puts between the router and its engine: fed straight from the
reader's output queue, a word's bits left its LUT RAM for 7 to 13 engine ports
over the die (reaching some 7–8.6 ns after the clock edge on the ULX3S top). The
register is a `SkidRegister`, so the ready the router reads is a register too
(an input stream's engine stalls; the buffer write ports are always ready). A
route's words wait while the last word of the one before is still in its
register, so LOADs finish, and give their tokens, in order.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Module, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.isa import Buffer
from rtl.skid_register import SkidRegister
from rtl.stream_queue import StreamQueue


@dataclass(frozen=True)
class Target:
    """A LOAD's destination: an engine's write port (or input stream)."""

    port: str  # this unit's port name, e.g. "conv_input"
    signature: stream.Signature  # the engine port's, as its producer sees it
    kind: str  # "addressed" (addr, data), "weight" (addr, row, data), "stream" (the payload)
    depth: int = 0  # words of an addressed buffer (0: a stream)
    split: int = 1  # reader words per buffer word: the conv weights' rows

    @property
    def data_bits(self) -> int:
        """Bits a reader word carries: the stream's payload, or an addressed word's data."""
        payload = self.signature.members["payload"].shape
        if self.kind == "stream":
            return Shape.cast(payload).width
        return Shape.cast(payload.members["data"]).width

    @property
    def word_bytes(self) -> int:
        """Bytes of one reader word in memory."""
        return -(-self.data_bits // 8)


def reader_word_layout(max_word_bytes: int) -> data.StructLayout:
    return data.StructLayout({"data": unsigned(8 * max_word_bytes), "last": unsigned(1)})


class Router(wiring.Component):
    """Words into addressed buffers, write streams or input streams; a LOAD's token (if its
    route asks for one) at its last word. The load unit has one for its buffer reader and
    one for its stream reader."""

    #: Edges from a word taken from the reader to its engine port (its register).
    DELIVERY_LATENCY = SkidRegister.LATENCY
    #: Edges from a LOAD's last word taken from the reader to its token pushed: the
    #: delivery register, then the token's register.
    WORD_TO_TOKEN = DELIVERY_LATENCY + 1

    ROUTE = data.StructLayout({"buffer": unsigned(5), "addr": unsigned(16), "push": unsigned(1)})

    def __init__(
        self,
        targets: dict[Buffer, Target],
        max_word_bytes: int,
        depth: int = 4,
        *,
        tokens: bool = True,
    ) -> None:
        #: Routes may ask for a token. Without, a route's words need not wait for the
        #: last word before them to be delivered (the stream reader's LOADs give their
        #: tokens as they are queued), so no engine's ready reaches the route queue.
        self.tokens = tokens
        self.targets, self.depth = targets, depth
        super().__init__(
            {
                "i": In(stream.Signature(reader_word_layout(max_word_bytes))),
                "route": In(self.ROUTE),
                "route_valid": In(1),
                "route_ready": Out(1),
                **{t.port: Out(t.signature) for t in targets.values()},
                "token": Out(1),
                "busy": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.routes = routes = StreamQueue(self.ROUTE.size, self.depth)
        m.d.comb += [
            routes.i.valid.eq(self.route_valid),
            routes.i.payload.eq(self.route),
            self.route_ready.eq(routes.i.ready),
        ]
        # the route in use is a register, loaded from the queue's head as the last one
        # ends: the words' handshakes read a one-hot target and a running address, not
        # the queue's LUT RAM through a decode and an adder
        head = data.View(self.ROUTE, routes.o.payload)
        current = Signal()  # a route is loaded
        to = {b: Signal(name=f"to_{t.port}") for b, t in self.targets.items()}
        addr = Signal(16)  # the next buffer word's address
        push = Signal()
        row = Signal(8)  # reader words of the current buffer word (weights)
        word = self.i.payload.data
        taken = Signal()  # the route's last word, into its delivery register
        delivered = Signal()  # a route's last word, into its engine port
        pending = Signal()  # a route's last word waits in its delivery register
        m.d.comb += taken.eq(self.i.valid & self.i.ready & self.i.payload.last)
        load = Signal()
        m.d.comb += [
            load.eq(routes.o.valid & (~current | taken) & (~pending | delivered | ~self.tokens)),
            routes.o.ready.eq(load),
        ]
        with m.If(load):
            m.d.sync += [current.eq(1), addr.eq(head.addr), push.eq(head.push), row.eq(0)]
            m.d.sync += [flag.eq(head.buffer == b) for b, flag in to.items()]
        with m.Elif(taken):  # no route until the next is loaded: words wait
            m.d.sync += [current.eq(0), *(flag.eq(0) for flag in to.values())]
        with m.If(taken):
            m.d.sync += pending.eq(1)
        with m.Elif(delivered):
            m.d.sync += pending.eq(0)
        token = Signal()  # the delivered last word's route gives a token
        for b, t in self.targets.items():
            port = getattr(self, t.port)
            # the delivery register: the port's word, whether it is a route's last and
            # whether that gives a token; a skid register, so the ready it shows the
            # router is a register too (an input stream's engine stalls)
            delivery = data.StructLayout(
                {"word": port.payload.shape(), "last": unsigned(1), "gives": unsigned(1)}
            )
            m.submodules[f"to_{t.port}_skid"] = skid = SkidRegister(delivery)
            out = skid.o.payload
            m.d.comb += [
                port.valid.eq(skid.o.valid),
                port.payload.eq(out.word),
                skid.o.ready.eq(port.ready),
            ]
            with m.If(skid.o.valid & port.ready & out.last):
                m.d.comb += [delivered.eq(1), token.eq(out.gives)]
            moved = Signal(name=f"{t.port}_moved")
            m.d.comb += [
                moved.eq(self.i.valid & skid.i.ready & to[b]),
                skid.i.valid.eq(self.i.valid & to[b]),
                skid.i.payload.last.eq(self.i.payload.last),
                skid.i.payload.gives.eq(push),
            ]
            with m.If(to[b]):
                m.d.comb += self.i.ready.eq(skid.i.ready)
            if t.kind == "stream":
                m.d.comb += skid.i.payload.word.eq(word[: t.data_bits])
                continue
            m.d.comb += [
                skid.i.payload.word.addr.eq(addr),
                skid.i.payload.word.data.eq(word[: t.data_bits]),
            ]
            advance = moved & ~self.i.payload.last  # the route's next word, if any
            if t.kind == "weight":
                m.d.comb += skid.i.payload.word.row.eq(row)
                with m.If(advance):
                    m.d.sync += row.eq(row + 1)
                    with m.If(row == t.split - 1):
                        m.d.sync += [row.eq(0), addr.eq(addr + 1)]
            else:
                with m.If(advance):
                    m.d.sync += addr.eq(addr + 1)
        # the token from a register: the engine port's ready reaches no token counter
        m.d.sync += self.token.eq(token & self.tokens)
        # LOADs dispatched and not finished (the queue's head shows two edges late)
        inflight = Signal(range(self.depth + 2))
        # (with tokens one route's last word is in flight at a time; without, several
        # may be delivered in one cycle, so a route ends as its last word is taken)
        ended = delivered if self.tokens else taken
        m.d.sync += inflight.eq(inflight + (self.route_valid & routes.i.ready) - ended)
        m.d.comb += self.busy.eq(inflight != 0)
        return m
