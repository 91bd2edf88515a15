"""External memory served from block RAM: a Wishbone B4 pipelined slave for board tests.

A board top without its SDRAM or DDR3 controller yet (boards/coproc_top.py)
serves the co-processor's memory port from on-chip RAM: a request every
cycle, never a stall, each answered `LATENCY` edges later, and `err` for a word
address past the RAM. The read data leaves through a register beside each block
RAM tile: Yosys maps this RAM without the tiles' output registers, and on the
ULX3S top its 16 tiles' data reached the port's answer register in 8.3 ns of
routing after the tiles' clock-to-out. A second register follows, which the
placer can put between the tiles and the port (added with other changes; its
effect alone is not measured).
"""

from __future__ import annotations

from amaranth import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from rtl.coproc.bus import check_data_bytes, wishbone_signature


class OnChipMemory(wiring.Component):
    #: Edges from a request taken to its `ack` or `err`: the RAM's read, then the
    #: data's registers.
    LATENCY = 3

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
        # the answer's stages after the request: the RAM's read, then the data's registers
        valid = [Signal(name=f"valid_{k}") for k in range(self.LATENCY)]
        failed = [Signal(name=f"failed_{k}") for k in range(self.LATENCY)]
        data = [Signal.like(bus.dat_r, name=f"data_{k}") for k in range(1, self.LATENCY)]
        m.d.sync += [valid[0].eq(taken), failed[0].eq(taken & ~inside)]
        m.d.sync += [v.eq(before) for v, before in zip(valid[1:], valid, strict=False)]
        m.d.sync += [f.eq(before) for f, before in zip(failed[1:], failed, strict=False)]
        m.d.sync += [d.eq(before) for d, before in zip(data, [read.data, *data], strict=False)]
        m.d.comb += [
            bus.ack.eq(valid[-1] & ~failed[-1]),
            bus.err.eq(valid[-1] & failed[-1]),
            bus.dat_r.eq(data[-1]),
        ]
        return m
