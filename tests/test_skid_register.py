"""SkidRegister (rtl/skid_register.py): order, flags against a model on every edge, one
element per cycle, and the registers it promises.

The model: the stage holds up to two elements; `i.ready` is up while it holds at most
one that is not offered (the skid is empty), `o.valid` while the oldest entered at
least `LATENCY` edges ago."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator, SimulatorContext

from rtl.skid_register import SkidRegister
from sim.registered_sides import assert_sides_registered


def run(values: list[int], *, push_prob: float, pop_prob: float, rng: random.Random):
    dut = SkidRegister(12)
    emitted: list[int] = []
    cycles = 0

    async def bench(ctx: SimulatorContext) -> None:
        nonlocal cycles
        held: list[int] = []  # oldest first: the output register, then the skid
        pending = list(values)
        offered: int | None = None
        while len(emitted) < len(values):
            assert cycles < 20 * len(values) + 20, "the stage stopped moving"
            offer = bool(pending) and rng.random() < push_prob
            want = rng.random() < pop_prob
            ctx.set(dut.i.valid, offer)
            ctx.set(dut.i.payload, pending[0] if pending else 0)
            ctx.set(dut.o.ready, want)
            valid, ready, head = ctx.get(dut.o.valid), ctx.get(dut.i.ready), ctx.get(dut.o.payload)
            assert valid == bool(held), f"cycle {cycles}: valid {valid}, holding {held}"
            assert ready == (len(held) < 2), f"cycle {cycles}: ready {ready}, holding {held}"
            if offered is not None:  # the stream rule: a valid payload holds until taken
                assert valid and head == offered, f"cycle {cycles}: head {head} after {offered}"
            if valid:
                assert head == held[0], f"cycle {cycles}: head {head}, expected {held[0]}"
            if valid and want:
                emitted.append(head)
                held.pop(0)
            offered = head if valid and not want else None
            if offer and ready:
                held.append(pending.pop(0))
            await ctx.tick()
            cycles += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return emitted, cycles


@pytest.mark.parametrize(("push_prob", "pop_prob"), [(0.6, 0.5), (0.9, 0.3), (0.3, 0.9), (1, 1)])
def test_order_and_flags(push_prob: float, pop_prob: float) -> None:
    """Exactly the offered sequence out (distinct values: a lost, repeated or swapped
    element cannot pass), with the model's flags on every edge."""
    rng = random.Random(f"{push_prob} {pop_prob}")
    values = rng.sample(range(1 << 12), 300)
    emitted, cycles = run(values, push_prob=push_prob, pop_prob=pop_prob, rng=rng)
    assert emitted == values
    if push_prob == pop_prob == 1:  # full rate: one per cycle after the register
        assert cycles == len(values) + SkidRegister.LATENCY


def test_neither_side_reaches_the_other() -> None:
    """Within a cycle, `o.ready` does not move `i.ready`, and `i.valid` / `i.payload` do
    not move `o.valid` / `o.payload`: each side sees only the stage's registers (the
    point of the stage). Checked by toggling one side and reading the other before the
    edge, over random traffic."""
    assert_sides_registered(SkidRegister(12), 12)
