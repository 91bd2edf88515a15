"""A Wishbone B4 pipelined slave for simulation: memory with latency, random stalls and errors.

Every knob is a runtime input, so one Verilator build serves every setting, and
no Python runs per cycle. Each request reads or writes the storage on the cycle
it is taken (a read returns the data of that moment); its answer waits in a
FIFO stamped with the cycle it is due, exactly `latency` cycles later, so
answers stay in order. Stalls come from a 16-bit LFSR (loaded from `lfsr_seed`
on the first cycle after reset). The backdoor lets a testbench fill the memory
and read it back one word per cycle without bus traffic; it wins over a bus
write on the same cycle, so use it while the bus is idle."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import fifo, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rtl.coproc.bus import check_data_bytes, wishbone_signature

MAX_LATENCY = 63
_DUE_BITS = 7  # a cycle counter twice the longest wait, so `due == now` is unambiguous


class SimMemory(wiring.Component):
    """`depth_words` words of `data_bytes` bytes behind `bus` (word addresses)."""

    def __init__(
        self, addr_bits: int, data_bytes: int, depth_words: int, init: list[int] | None = None
    ) -> None:
        check_data_bytes(data_bytes)
        if not 1 <= depth_words <= 1 << addr_bits:
            raise ValueError(f"depth_words {depth_words} does not fit {addr_bits} address bits")
        self.addr_bits, self.data_bytes, self.depth_words = addr_bits, data_bytes, depth_words
        self.init = list(init or [])
        width = 8 * data_bytes
        super().__init__(
            {
                "bus": In(wishbone_signature(addr_bits, data_bytes)),
                "latency": In(range(MAX_LATENCY + 1), init=1),
                "stall_threshold": In(8),
                "lfsr_seed": In(16),
                "error_from": In(addr_bits + 1, init=depth_words),
                "backdoor_addr": In(range(depth_words)),
                "backdoor_wdata": In(width),
                "backdoor_we": In(1),
                "backdoor_rdata": Out(width),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        bus, width = self.bus, 8 * self.data_bytes
        m.submodules.storage = storage = Memory(
            shape=unsigned(width), depth=self.depth_words, init=self.init
        )
        write = storage.write_port(granularity=8)
        bus_read = storage.read_port()
        back_read = storage.read_port()
        m.submodules.answers = answers = fifo.SyncFIFO(width=width + 1 + _DUE_BITS, depth=64)

        # stalls: a Galois LFSR, seeded on the first cycle after reset
        lfsr = Signal(16, init=1)
        seeded = Signal()
        m.d.sync += seeded.eq(1)
        with m.If(~seeded):
            m.d.sync += lfsr.eq(Mux(self.lfsr_seed == 0, 1, self.lfsr_seed))
        with m.Else():
            m.d.sync += lfsr.eq((lfsr >> 1) ^ Mux(lfsr[0], 0xB400, 0))
        m.d.comb += bus.stall.eq(lfsr[:8] < self.stall_threshold)

        taken = Signal()
        failed = Signal()
        addr = bus.adr[: max(1, (self.depth_words - 1).bit_length())]
        m.d.comb += [
            taken.eq(bus.cyc & bus.stb & ~bus.stall),
            failed.eq(bus.adr >= self.error_from),
            bus_read.addr.eq(addr),
            back_read.addr.eq(self.backdoor_addr),
            self.backdoor_rdata.eq(back_read.data),
        ]
        with m.If(self.backdoor_we):
            m.d.comb += [
                write.addr.eq(self.backdoor_addr),
                write.data.eq(self.backdoor_wdata),
                write.en.eq(-1),
            ]
        with m.Else():
            m.d.comb += [
                write.addr.eq(addr),
                write.data.eq(bus.dat_w),
                write.en.eq(Mux(taken & bus.we & ~failed, bus.sel, 0)),
            ]

        # one cycle later the read data is there: answer now (latency 1) or queue it
        now = Signal(_DUE_BITS)
        m.d.sync += now.eq(now + 1)
        latency = Mux(self.latency == 0, 1, self.latency)
        pending, pending_err, pending_due = Signal(), Signal(), Signal(_DUE_BITS)
        m.d.sync += [pending.eq(taken), pending_err.eq(failed), pending_due.eq(now + latency)]
        direct = Signal()
        m.d.comb += [
            direct.eq(pending & (pending_due == now)),
            answers.w_en.eq(pending & ~direct),
            answers.w_data.eq(Cat(bus_read.data, pending_err, pending_due)),
        ]
        head_data = answers.r_data[:width]
        head_err = answers.r_data[width]
        head_due = answers.r_data[width + 1 :]
        due = Signal()
        m.d.comb += due.eq(answers.r_rdy & (head_due == now))
        m.d.comb += answers.r_en.eq(due & ~direct)
        with m.If(direct):
            m.d.comb += [
                bus.dat_r.eq(bus_read.data),
                bus.ack.eq(~pending_err),
                bus.err.eq(pending_err),
            ]
        with m.Elif(due):
            m.d.comb += [bus.dat_r.eq(head_data), bus.ack.eq(~head_err), bus.err.eq(head_err)]
        return m
