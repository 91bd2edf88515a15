"""A stream stage's two sides see only its registers: the check, over random traffic.

Within a cycle, `o.ready` must not move `i.ready`, and `i.valid` / `i.payload`
must not move `o.valid` / `o.payload` (the point of `SkidRegister` and
`CreditLink`: neither a consumer's decision nor a producer's offer reaches the
other side in the cycle it is made). Toggling one side and reading the other
before the edge shows any combinational path between them.
"""

from __future__ import annotations

import random

from amaranth.lib import wiring
from amaranth.sim import Simulator, SimulatorContext


def assert_sides_registered(dut: wiring.Component, width: int, cycles: int = 400) -> None:
    """Drive `dut` (streams `i`, `o` of `width`-bit payloads) at random for `cycles`
    edges, checking at each that neither side's inputs move the other side's outputs."""
    rng = random.Random(5)

    async def bench(ctx: SimulatorContext) -> None:
        for cycle in range(cycles):
            ctx.set(dut.o.ready, 0)
            ready_if_stalled = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, 1)
            assert ctx.get(dut.i.ready) == ready_if_stalled, f"cycle {cycle}: o.ready → i.ready"
            ctx.set(dut.i.valid, 0)
            out = ctx.get(dut.o.valid), ctx.get(dut.o.payload)
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, rng.randrange(1 << width))
            moved = (ctx.get(dut.o.valid), ctx.get(dut.o.payload))
            assert moved == out, f"cycle {cycle}: i → o"
            ctx.set(dut.i.valid, rng.random() < 0.7)
            ctx.set(dut.o.ready, rng.random() < 0.5)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
