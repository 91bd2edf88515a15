"""Tier 1: the two-entry prefetch queue keeps order, never loses or invents an
element, and streams one element per cycle when both sides are always willing."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator, SimulatorContext

from rtl.prefetch import PrefetchQueue


def run_queue(
    values: list[int], *, push_prob: float, pop_prob: float, rng: random.Random
) -> tuple[list[int], int]:
    """Push `values` and pop them at random; return (what the DUT gave, cycles).

    The popped list is the DUT's `head` sampled wherever `pop & head_valid`
    held before an edge; the model only predicts the flags, checked every edge."""
    dut = PrefetchQueue(16)
    popped: list[int] = []
    cycles = 0

    async def bench(ctx: SimulatorContext) -> None:
        nonlocal cycles
        model: list[int] = []  # what the queue must hold
        pending = list(values)
        shown: int | None = None  # the head while valid and not popped: it must stay
        while len(popped) < len(values):
            assert cycles < 20 * len(values) + 20, "the queue stopped moving"
            offer = bool(pending) and rng.random() < push_prob
            ctx.set(dut.i.valid, offer)
            ctx.set(dut.i.payload, pending[0] if pending else 0)
            want = rng.random() < pop_prob
            ctx.set(dut.pop, want)
            valid, head, ready = ctx.get(dut.head_valid), ctx.get(dut.head), ctx.get(dut.i.ready)
            # the flags are what the model says, before this edge
            assert valid == bool(model), f"cycle {cycles}: head_valid {valid}"
            assert ready == (len(model) < PrefetchQueue.CAPACITY), f"cycle {cycles}: ready {ready}"
            if shown is not None:
                assert valid and head == shown, f"cycle {cycles}: head {head} after {shown}"
            if want and valid:
                popped.append(head)  # the DUT's own output, taken at this edge
                model.pop(0)
            shown = head if valid and not want else None
            if offer and ready:
                model.append(pending.pop(0))
            await ctx.tick()
            cycles += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return popped, cycles


@pytest.mark.parametrize("seed", range(6))
def test_order_and_flags_under_random_push_and_pop(seed: int) -> None:
    """Distinct values, so a lost, repeated or swapped element cannot pass."""
    rng = random.Random(seed)
    values = rng.sample(range(1 << 16), 200)
    probs = [(0.3, 0.9), (0.9, 0.3), (0.7, 0.7)][seed % 3]
    popped, _ = run_queue(values, push_prob=probs[0], pop_prob=probs[1], rng=rng)
    assert popped == values


def test_one_element_per_cycle_when_both_sides_are_willing() -> None:
    values = list(range(100))
    popped, cycles = run_queue(values, push_prob=1.0, pop_prob=1.0, rng=random.Random(0))
    assert popped == values
    assert cycles == len(values) + 1  # one cycle to fill, then one per element
