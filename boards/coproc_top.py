"""The co-processor on a board with its memory on chip: what `grace build --block top` builds.

The memory port is served by block RAM (rtl/coproc/onchip_memory.py) until a
board top puts an SDRAM or DDR3 controller there; a boot sequencer writes
the control registers (the program at address 0, the RAM as the image, the
watchdog) and starts the co-processor again each time it is done; the LED
shows the interrupt. Nothing the co-processor computes is constant to the
synthesis tools: its program and data come from a RAM it writes.
"""

from __future__ import annotations

from collections.abc import Mapping

from amaranth import Elaboratable, Module, Signal
from amaranth.lib import io, wiring

from defs.coproc import Register
from defs.params import GraceParams
from rtl.coproc.onchip_memory import OnChipMemory
from rtl.coproc.top import Coprocessor

#: Bus words of on-chip memory: 32 KB at 8 bytes a word (16 DP16KD on ECP5).
MEMORY_WORDS = 4096


class CoprocBoardTop(Elaboratable):
    def __init__(
        self,
        params: GraceParams,
        depth_words: int = MEMORY_WORDS,
        mac_sites: Mapping[tuple[int, int], str] | None = None,
    ) -> None:
        self.params, self.depth_words = params, depth_words
        self.coproc = Coprocessor(params, mac_sites)
        #: Flip-flops outside the co-processor and its memory (the boot sequencer's, and
        #: the two before the LED).
        self.flip_flops = 6

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.coproc = coproc = self.coproc
        bus = self.params.coproc.bus_bytes
        m.submodules.memory = memory = OnChipMemory(coproc.core.addr_bits, bus, self.depth_words)
        wiring.connect(m, coproc.mem, memory.bus)
        writes = [
            (Register.IMAGE_BYTES, self.depth_words * bus),
            (Register.PROGRAM_BASE, 0),
            (Register.PROGRAM_WORDS, self.depth_words * bus // 32),
            (Register.WATCHDOG, 1 << 16),
            (Register.CONTROL, 1),
        ]
        step = Signal(range(len(writes) + 1))
        ctrl = coproc.ctrl
        with m.Switch(step):
            for k, (register, value) in enumerate(writes):
                with m.Case(k):
                    m.d.comb += [
                        ctrl.cyc.eq(1),
                        ctrl.stb.eq(1),
                        ctrl.we.eq(1),
                        ctrl.adr.eq(register),
                        ctrl.dat_w.eq(value),
                    ]
                    with m.If(ctrl.ack):
                        m.d.sync += step.eq(k + 1)
            with m.Case(len(writes)), m.If(coproc.irq):  # running: start again when done
                m.d.sync += step.eq(len(writes) - 1)
        if platform is not None:
            # through two registers: the pad is fixed, the core is not; unregistered,
            # the one net from `irq` to the pad was late at 9.2-10.2 ns in several builds
            m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
            irq = [Signal(name=f"irq_{k}") for k in range(2)]
            m.d.sync += [irq[0].eq(coproc.irq), irq[1].eq(irq[0])]
            m.d.comb += led.o.eq(irq[1])
        return m
