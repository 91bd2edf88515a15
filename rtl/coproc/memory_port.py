"""N clients onto one Wishbone B4 pipelined master, round-robin per request.

Each client's requests wait in its own `SkidRegister`, so its `ready` is a
register and the grant reads registers only. Requests go out back to back (one
per cycle across all clients when the slave does not stall), each from a
register an edge after it is granted;
the client of each one waits in an in-order tag FIFO, so every ack or err goes
back, through a register, to the client that asked.
At `outstanding` requests in flight the port stops offering until answers come.
A client named in `read_only` sends addresses only, so its slot holds no data.
A request offered while the slave stalls stays offered (it waits in its
register), as the pipelined protocol expects of stb and its address."""

from __future__ import annotations

from collections.abc import Collection

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from rtl.coproc.bus import client_signature, request_layout, wishbone_signature
from rtl.skid_register import SkidRegister


class MemoryPort(wiring.Component):
    """`clients` request/response pairs (`client_0`, ...) onto `bus`."""

    #: Edges the port adds to a client's round trip: the client's skid register and
    #: the offered request's register before the bus, the answer's after it.
    LATENCY = SkidRegister.LATENCY + 2

    def __init__(
        self,
        clients: int,
        addr_bits: int,
        data_bytes: int,
        outstanding: int = 32,
        *,
        read_only: Collection[int] = (),
    ) -> None:
        if clients < 1 or outstanding < 1:
            raise ValueError("MemoryPort needs at least one client and one outstanding request")
        if not set(read_only) <= set(range(clients)):
            raise ValueError(f"read_only names clients 0 to {clients - 1}, not {sorted(read_only)}")
        self.clients, self.addr_bits, self.data_bytes = clients, addr_bits, data_bytes
        self.outstanding = outstanding
        self.writes = [i not in read_only for i in range(clients)]
        members = {
            f"client_{i}": In(client_signature(addr_bits, data_bytes, writes=self.writes[i]))
            for i in range(clients)
        }
        members |= {
            "bus": Out(wishbone_signature(addr_bits, data_bytes)),
            "error": Out(1),
            "error_addr": Out(addr_bits),
            # no new request is offered (one stalled stays offered): a halted run drains
            "halt": In(1),
        }
        super().__init__(members)

    def client(self, i: int) -> wiring.PureInterface:
        return getattr(self, f"client_{i}")

    def elaborate(self, platform: object) -> Module:
        m = Module()
        n, bus = self.clients, self.bus
        requests = []
        for i in range(n):
            slot = SkidRegister(self.client(i).request.payload.shape())
            m.submodules[f"slot_{i}"] = slot
            wiring.connect(m, wiring.flipped(self.client(i).request), slot.i)
            requests.append(slot.o)
        tag_bits = max(1, (n - 1).bit_length())
        m.submodules.tags = tags = fifo.SyncFIFO(
            width=tag_bits + self.addr_bits, depth=self.outstanding
        )

        last = Signal(range(n), init=n - 1)  # the client granted last
        grant = Signal(tag_bits)
        any_valid = Signal()
        # first valid client after `last`, in circular order
        with m.Switch(last):
            for prev in range(n):
                with m.Case(prev):
                    order = [(prev + 1 + k) % n for k in range(n)]
                    for k, c in enumerate(order):
                        with (m.If if k == 0 else m.Elif)(requests[c].valid):
                            m.d.comb += [grant.eq(c), any_valid.eq(1)]

        # the granted request waits in a register for the bus: stb, its address and
        # data are registers, so neither the slave's address decode nor the clients'
        # grant logic reaches the other in one cycle (on the ECP5 top the grant ran
        # into the on-chip memory's address and the readers' next request)
        offered = Signal()
        offered_client = Signal(tag_bits)
        offer = Signal(request_layout(self.addr_bits, self.data_bytes))
        issue = Signal()
        m.d.comb += [
            bus.stb.eq(offered & tags.w_rdy),
            bus.cyc.eq(bus.stb | tags.r_rdy),
            bus.we.eq(offer.write),
            bus.adr.eq(offer.addr),
            bus.dat_w.eq(offer.data),
            # a read asks for every byte (B4: sel marks the bytes expected)
            bus.sel.eq(Mux(offer.write, offer.sel, -1)),
            issue.eq(bus.stb & ~bus.stall),
        ]
        chosen = Signal(request_layout(self.addr_bits, self.data_bytes))
        with m.Switch(grant):
            for c in range(n):
                with m.Case(c):
                    if self.writes[c]:
                        m.d.comb += chosen.eq(requests[c].payload)
                    else:  # a read: no data, no byte selects
                        m.d.comb += chosen.addr.eq(requests[c].payload.addr)
        take = Signal()  # a client's request into the register
        m.d.comb += take.eq(any_valid & ~self.halt & (~offered | issue))
        for c in range(n):
            m.d.comb += requests[c].ready.eq(take & (grant == c))
        with m.If(take):
            m.d.sync += [offered.eq(1), offered_client.eq(grant), offer.eq(chosen), last.eq(grant)]
        with m.Elif(issue):
            m.d.sync += offered.eq(0)
        m.d.comb += [tags.w_en.eq(issue), tags.w_data.eq(Cat(offered_client, offer.addr))]

        # answers, in order, to the client at the FIFO's head, from registers: the
        # slave's ack and data reach no client's logic in the cycle they come
        answered = bus.ack | bus.err
        head_client, head_addr = tags.r_data[:tag_bits], tags.r_data[tag_bits:]
        m.d.comb += tags.r_en.eq(answered)
        answer_data, answer_error = Signal.like(bus.dat_r), Signal()
        m.d.sync += [answer_data.eq(bus.dat_r), answer_error.eq(bus.err)]
        for c in range(n):
            response = self.client(c).response
            m.d.sync += response.valid.eq(answered & (head_client == c))
            m.d.comb += [
                response.payload.data.eq(answer_data),
                response.payload.error.eq(answer_error),
            ]
        with m.If(bus.err & ~self.error):
            m.d.sync += [self.error.eq(1), self.error_addr.eq(head_addr)]
        return m
