"""thermometer_next (rtl/thermometer.py) against a plain count, random steps."""

from __future__ import annotations

import random

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator, SimulatorContext

from rtl.thermometer import thermometer_next


@pytest.mark.parametrize("size", [1, 2, 7, 20])
def test_tracks_a_count(size: int) -> None:
    m = Module()
    level, up, down = Signal(size), Signal(), Signal()
    m.d.sync += level.eq(thermometer_next(level, up, down))
    rng = random.Random(size)
    errors: list[str] = []

    async def bench(ctx: SimulatorContext) -> None:
        count = 0
        for cycle in range(600):
            step_up = count < size and rng.random() < 0.5
            step_down = count > 0 and rng.random() < 0.5
            ctx.set(up, step_up)
            ctx.set(down, step_down)
            await ctx.tick()
            count += step_up - step_down
            if ctx.get(level) != (1 << count) - 1:
                errors.append(f"cycle {cycle}: {ctx.get(level):b} for a count of {count}")

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not errors, errors[:5]
