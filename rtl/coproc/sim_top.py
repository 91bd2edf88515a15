"""The co-processor on a simulated memory: what the whole-frame simulations run.

`SimMemory` (simulation only) serves the co-processor's memory port with a
latency and random stalls set at run time; a testbench fills it and reads it
back through the backdoor and drives the control port, so no Python runs per
cycle while a program runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.coproc.control import control_signature
from rtl.coproc.sim_memory import MAX_LATENCY, SimMemory
from rtl.coproc.top import Coprocessor

if TYPE_CHECKING:
    from defs.params import GraceParams


class SimTop(wiring.Component):
    def __init__(
        self, params: GraceParams, depth_words: int, init: list[int] | None = None
    ) -> None:
        self.params, self.depth_words, self.init = params, depth_words, init
        self.coproc = Coprocessor(params)
        bus = params.coproc.bus_bytes
        super().__init__(
            {
                "ctrl": In(control_signature()),
                "irq": Out(1),
                "latency": In(range(MAX_LATENCY + 1), init=1),
                "stall_threshold": In(8),
                "lfsr_seed": In(16),
                "error_from": In(self.coproc.core.addr_bits + 1, init=depth_words),
                "backdoor_addr": In(range(depth_words)),
                "backdoor_wdata": In(8 * bus),
                "backdoor_we": In(1),
                "backdoor_rdata": Out(8 * bus),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.coproc = coproc = self.coproc
        m.submodules.memory = memory = SimMemory(
            coproc.core.addr_bits, self.params.coproc.bus_bytes, self.depth_words, self.init
        )
        wiring.connect(m, coproc.mem, memory.bus)
        wiring.connect(m, wiring.flipped(self.ctrl), coproc.ctrl)
        m.d.comb += [
            self.irq.eq(coproc.irq),
            memory.latency.eq(self.latency),
            memory.stall_threshold.eq(self.stall_threshold),
            memory.lfsr_seed.eq(self.lfsr_seed),
            memory.error_from.eq(self.error_from),
            memory.backdoor_addr.eq(self.backdoor_addr),
            memory.backdoor_wdata.eq(self.backdoor_wdata),
            memory.backdoor_we.eq(self.backdoor_we),
            self.backdoor_rdata.eq(memory.backdoor_rdata),
        ]
        return m
