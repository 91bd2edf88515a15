"""The co-processor: its control registers and its core, behind two bus ports.

`mem` is the external memory master (Wishbone B4 pipelined, `bus_bytes`
wide); `ctrl` the control/status registers (Wishbone classic, 32 bits;
defs/coproc.py `Register`). A start, or CONTROL's soft-reset bit, resets the
core first, so each run begins from nothing left by the last one (a run that
faulted included); the registers keep their values.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.coproc.bus import wishbone_signature
from rtl.coproc.control import Control, control_signature
from rtl.coproc.core import Core

if TYPE_CHECKING:
    from collections.abc import Mapping

    from defs.params import GraceParams


class Coprocessor(wiring.Component):
    #: Edges from a start written to CONTROL to the core's `start`: the core has reset.
    START_LATENCY = 3

    def __init__(
        self, params: GraceParams, mac_sites: Mapping[tuple[int, int], str] | None = None
    ) -> None:
        """`mac_sites`: the conv engine's multipliers' sites (a board's floorplan) or None."""
        self.params = params
        self.core = Core(params, mac_sites)
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
        # a start (or soft reset) is registered here and again in each part of the core
        # (its copies), which resets two edges after this register; the start reaches
        # the core the cycle after that (START_LATENCY)
        clear = Signal()
        clearing = Signal()  # the cycle the core's copies are up
        m.d.sync += [clear.eq(control.start | control.soft_reset), clearing.eq(clear)]
        start = [Signal(name=f"start_{k}") for k in range(self.START_LATENCY)]
        m.d.sync += [start[0].eq(control.start)]
        m.d.sync += [later.eq(earlier) for earlier, later in itertools.pairwise(start)]
        m.submodules.core = core = self.core
        wiring.connect(m, wiring.flipped(self.mem), core.mem)
        m.d.comb += [
            core.clear.eq(clear),
            core.start.eq(start[-1]),
            core.program_base.eq(control.program_base),
            core.program_words.eq(control.program_words),
            core.image_bytes.eq(control.image_bytes),
            core.watchdog.eq(control.watchdog),
            control.busy.eq(core.busy | Cat(start).any()),
            # (the last run's done, until the core has reset for this one)
            control.done.eq(core.done & ~clear & ~clearing),
            control.fault.eq(core.fault),
            control.fault_index.eq(core.fault_index),
            control.events.eq(core.events),
            self.irq.eq(control.irq),
        ]
        return m
