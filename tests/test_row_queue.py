"""RowQueue (rtl/row_queue.py) against a Python deque, pushes and pops at random."""

from __future__ import annotations

import random
from collections import deque

import pytest
from amaranth.sim import Simulator, SimulatorContext

from rtl.row_queue import RowQueue


@pytest.mark.parametrize("depth", [1, 2, 5, 16, 17])
def test_head_follows_a_deque(depth: int) -> None:
    """The head against the deque on every edge, and the heads the DUT showed
    when popped against the pushed sequence (distinct values: nothing lost,
    repeated or swapped)."""
    dut = RowQueue(12, depth)
    rng = random.Random(depth)
    fresh = iter(rng.sample(range(1 << 12), 800))
    errors: list[str] = []
    pushed: list[int] = []
    popped: list[int] = []  # the DUT's head at each pop

    async def bench(ctx: SimulatorContext) -> None:
        model: deque[int] = deque()
        pending: int | None = None  # pushed at the last edge: at the head from now on
        for cycle in range(800):
            if pending is not None:
                model.append(pending)
                pending = None
            if model and ctx.get(dut.head) != model[0]:
                errors.append(f"cycle {cycle}: head {ctx.get(dut.head)}, expected {model[0]}")
            push = len(model) < depth and rng.random() < 0.6
            pop = bool(model) and rng.random() < 0.5
            data = next(fresh)
            ctx.set(dut.push, push)
            ctx.set(dut.pop, pop)
            ctx.set(dut.data, data)
            if pop:
                popped.append(ctx.get(dut.head))
            if push:
                pushed.append(data)
            await ctx.tick()
            if pop:
                model.popleft()
            if push:
                pending = data

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert not errors, errors[:5]
    assert len(popped) > 100
    assert popped == pushed[: len(popped)]
