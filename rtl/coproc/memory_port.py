"""N clients onto one Wishbone B4 pipelined master, round-robin per request.

Requests go out back to back (one per cycle across all clients when the slave
does not stall); the client of each one waits in an in-order tag FIFO, so every
ack or err goes back to the client that asked without the port holding any data.
At `outstanding` requests in flight the port stops offering until answers come.
A request offered while the slave stalls stays offered (the grant is held), as
the pipelined protocol expects of stb and its address."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from rtl.coproc.bus import client_signature, request_layout, wishbone_signature


class MemoryPort(wiring.Component):
    """`clients` request/response pairs (`client_0`, ...) onto `bus`."""

    def __init__(
        self, clients: int, addr_bits: int, data_bytes: int, outstanding: int = 32
    ) -> None:
        if clients < 1 or outstanding < 1:
            raise ValueError("MemoryPort needs at least one client and one outstanding request")
        self.clients, self.addr_bits, self.data_bytes = clients, addr_bits, data_bytes
        self.outstanding = outstanding
        members = {
            f"client_{i}": In(client_signature(addr_bits, data_bytes)) for i in range(clients)
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
        requests = [self.client(i).request for i in range(n)]
        tag_bits = max(1, (n - 1).bit_length())
        m.submodules.tags = tags = fifo.SyncFIFO(
            width=tag_bits + self.addr_bits, depth=self.outstanding
        )

        last = Signal(range(n), init=n - 1)  # the client granted last
        held = Signal()  # a request was offered into a stall: keep offering it
        held_client = Signal(range(n))
        grant = Signal(tag_bits)
        any_valid = Signal()
        # first valid client after `last`, in circular order
        with m.If(held):
            m.d.comb += [grant.eq(held_client), any_valid.eq(1)]
        with m.Else(), m.Switch(last):
            for prev in range(n):
                with m.Case(prev):
                    order = [(prev + 1 + k) % n for k in range(n)]
                    for k, c in enumerate(order):
                        with (m.If if k == 0 else m.Elif)(requests[c].valid):
                            m.d.comb += [grant.eq(c), any_valid.eq(1)]

        chosen = Signal(request_layout(self.addr_bits, self.data_bytes))
        with m.Switch(grant):
            for c in range(n):
                with m.Case(c):
                    m.d.comb += chosen.eq(requests[c].payload)
        m.d.comb += [
            bus.stb.eq(any_valid & tags.w_rdy & (held | ~self.halt)),
            bus.cyc.eq(bus.stb | tags.r_rdy),
            bus.we.eq(chosen.write),
            bus.adr.eq(chosen.addr),
            bus.dat_w.eq(chosen.data),
            # a read asks for every byte (B4: sel marks the bytes expected)
            bus.sel.eq(Mux(chosen.write, chosen.sel, -1)),
        ]
        issue = Signal()
        m.d.comb += issue.eq(bus.stb & ~bus.stall)
        for c in range(n):
            m.d.comb += requests[c].ready.eq(issue & (grant == c))
        m.d.comb += [tags.w_en.eq(issue), tags.w_data.eq(Cat(grant, chosen.addr))]
        with m.If(issue):
            m.d.sync += [last.eq(grant), held.eq(0)]
        with m.Elif(bus.stb):
            m.d.sync += [held.eq(1), held_client.eq(grant)]

        # answers, in order, to the client at the FIFO's head
        answered = bus.ack | bus.err
        head_client, head_addr = tags.r_data[:tag_bits], tags.r_data[tag_bits:]
        m.d.comb += tags.r_en.eq(answered)
        for c in range(n):
            response = self.client(c).response
            m.d.comb += [
                response.valid.eq(answered & (head_client == c)),
                response.payload.data.eq(bus.dat_r),
                response.payload.error.eq(bus.err),
            ]
        with m.If(bus.err & ~self.error):
            m.d.sync += [self.error.eq(1), self.error_addr.eq(head_addr)]
        return m
