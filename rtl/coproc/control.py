"""The control/status registers (defs/coproc.py `Register`) on a Wishbone classic port.

The host writes the program's base and length, the image's size and the
watchdog's limit, then CONTROL.start; it polls STATUS (or watches `irq`) for
done and reads the fault and the counters. 32-bit registers at word
addresses; a read or write is acknowledged the cycle after it is offered. A
start or a soft reset while busy is ignored: every run ends in done (a
fault's too), and requests in flight would answer the next run. The counters
count cycles of one run: they clear at start and hold at done.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from defs.coproc import COUNTER_NAMES, Register
from defs.isa import ISA_VERSION

#: Word-address bits of the control port.
CONTROL_ADDR_BITS = 6


def control_signature() -> wiring.Signature:
    """A Wishbone classic slave, 32 bits, as its master sees it."""
    return wiring.Signature(
        {
            "cyc": Out(1),
            "stb": Out(1),
            "we": Out(1),
            "adr": Out(CONTROL_ADDR_BITS),
            "dat_w": Out(32),
            "dat_r": In(32),
            "ack": In(1),
        }
    )


class Control(wiring.Component):
    def __init__(self, bus_bytes: int, watchdog: int = 1 << 20) -> None:
        self.bus_bytes, self.watchdog_init = bus_bytes, watchdog
        super().__init__(
            {
                "bus": In(control_signature()),
                # to the core
                "start": Out(1),
                "soft_reset": Out(1),
                "program_base": Out(32),
                "program_words": Out(32),
                "image_bytes": Out(32),
                "watchdog": Out(32, init=watchdog),
                # from the core
                "busy": In(1),
                "done": In(1),
                "fault": In(8),
                "fault_index": In(32),
                "events": In(len(COUNTER_NAMES)),
                "irq": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        cycles = Signal(64)
        counters = [Signal(32, name=f"count_{n}") for n in COUNTER_NAMES]
        with m.If(self.busy):
            m.d.sync += cycles.eq(cycles + 1)
            for i, counter in enumerate(counters):
                m.d.sync += counter.eq(counter + self.events[i])
        with m.If(self.start):
            m.d.sync += [cycles.eq(0), *(c.eq(0) for c in counters)]

        readable = {
            Register.STATUS: self.busy | (self.done << 1) | (self.fault << 8),
            Register.FAULT_INDEX: self.fault_index,
            Register.PROGRAM_BASE: self.program_base,
            Register.PROGRAM_WORDS: self.program_words,
            Register.IMAGE_BYTES: self.image_bytes,
            Register.WATCHDOG: self.watchdog,
            Register.VERSION: ISA_VERSION | (self.bus_bytes << 8),
            Register.CYCLES: cycles[:32],
            Register.CYCLES + 1: cycles[32:],
            **{Register.COUNTERS + i: c for i, c in enumerate(counters)},
        }
        writable = {
            Register.PROGRAM_BASE: self.program_base,
            Register.PROGRAM_WORDS: self.program_words,
            Register.IMAGE_BYTES: self.image_bytes,
            Register.WATCHDOG: self.watchdog,
        }
        request = self.bus.cyc & self.bus.stb & ~self.bus.ack
        m.d.sync += [self.bus.ack.eq(request), self.start.eq(0), self.soft_reset.eq(0)]
        with m.If(request):
            with m.Switch(self.bus.adr):
                for address, value in readable.items():
                    with m.Case(address):
                        m.d.sync += self.bus.dat_r.eq(value)
            with m.If(self.bus.we), m.Switch(self.bus.adr):
                for address, register in writable.items():
                    with m.Case(address):
                        m.d.sync += register.eq(self.bus.dat_w)
                with m.Case(Register.CONTROL):
                    m.d.sync += [
                        self.start.eq(self.bus.dat_w[0] & ~self.busy),
                        # not while busy: requests in flight would answer the next run
                        self.soft_reset.eq(self.bus.dat_w[1] & ~self.busy),
                    ]
        m.d.comb += self.irq.eq(self.done)
        return m
