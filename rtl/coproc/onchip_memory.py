"""External memory served from block RAM: a Wishbone B4 pipelined slave for board tests.

A board top without its SDRAM or DDR3 controller yet (boards/coproc_top.py)
serves the co-processor's memory port from on-chip RAM: a request every
cycle, never a stall, each answered `LATENCY` edges later, and `err` for a word
address past the RAM. The read data leaves through a register beside each block
RAM tile: Yosys maps this RAM without the tiles' output registers, and on the
ULX3S top its 16 tiles' data reached the port's answer register in 8.3 ns of
routing after the tiles' clock-to-out.
"""

from __future__ import annotations

from amaranth import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from rtl.coproc.bus import check_data_bytes, wishbone_signature


class OnChipMemory(wiring.Component):
    #: Edges from a request taken to its `ack` or `err`: the RAM's read, then the
    #: data's register.
    LATENCY = 2

    def __init__(
        self, addr_bits: int, data_bytes: int, depth_words: int, init: list[int] | None = None
    ) -> None:
        check_data_bytes(data_bytes)
        self.data_bytes, self.depth_words, self.init = data_bytes, depth_words, list(init or [])
        super().__init__({"bus": In(wishbone_signature(addr_bits, data_bytes))})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        bus = self.bus
        m.submodules.ram = ram = Memory(
            shape=unsigned(8 * self.data_bytes), depth=self.depth_words, init=self.init
        )
        read = ram.read_port()
        write = ram.write_port(granularity=8)
        taken = Signal()
        inside = Signal()
        m.d.comb += [
            bus.stall.eq(0),
            taken.eq(bus.cyc & bus.stb),
            inside.eq(bus.adr < self.depth_words),
            read.addr.eq(bus.adr),
            write.addr.eq(bus.adr),
            write.data.eq(bus.dat_w),
        ]
        with m.If(taken & bus.we & inside):
            m.d.comb += write.en.eq(bus.sel)
        read_valid, read_failed = Signal(), Signal()  # the RAM's read is out
        answered, failed = Signal(), Signal()
        data = Signal.like(bus.dat_r)
        m.d.sync += [
            read_valid.eq(taken),
            read_failed.eq(taken & ~inside),
            answered.eq(read_valid),
            failed.eq(read_failed),
            data.eq(read.data),
        ]
        m.d.comb += [
            bus.ack.eq(answered & ~failed),
            bus.err.eq(answered & failed),
            bus.dat_r.eq(data),
        ]
        return m
