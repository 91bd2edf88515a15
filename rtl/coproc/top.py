"""The co-processor: its control registers and its core, behind two bus ports.

`mem` is the external memory master (Wishbone B4 pipelined, `bus_bytes`
wide); `ctrl` the control/status registers (Wishbone classic, 32 bits;
defs/coproc.py `Register`). A start, or CONTROL's soft-reset bit, resets the
core first, so each run begins from nothing left by the last one (a run that
faulted included); the registers keep their values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.coproc.bus import wishbone_signature
from rtl.coproc.control import Control, control_signature
from rtl.coproc.core import Core

if TYPE_CHECKING:
    from defs.params import GraceParams


class Coprocessor(wiring.Component):
    def __init__(self, params: GraceParams) -> None:
        self.params = params
        self.core = Core(params)
        super().__init__(
            {
                "mem": Out(wishbone_signature(self.core.addr_bits, params.coproc.bus_bytes)),
                "ctrl": In(control_signature()),
                "irq": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.control = control = Control(self.params.coproc.bus_bytes)
        wiring.connect(m, wiring.flipped(self.ctrl), control.bus)
        # the core resets on the edge a start is seen, and starts on the next
        clear = Signal()
        start = Signal()
        m.d.comb += clear.eq(control.start | control.soft_reset)
        m.d.sync += start.eq(control.start)
        m.submodules.core = core = ResetInserter(clear)(self.core)
        wiring.connect(m, wiring.flipped(self.mem), core.mem)
        m.d.comb += [
            core.start.eq(start),
            core.program_base.eq(control.program_base),
            core.program_words.eq(control.program_words),
            core.image_bytes.eq(control.image_bytes),
            core.watchdog.eq(control.watchdog),
            control.busy.eq(core.busy | start),
            control.done.eq(core.done),
            control.fault.eq(core.fault),
            control.fault_index.eq(core.fault_index),
            control.events.eq(core.events),
            self.irq.eq(control.irq),
        ]
        return m
