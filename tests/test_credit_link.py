"""CreditLink (rtl/credit_link.py): order, the stream rules, one word per cycle, and
neither side reaching the other within a cycle."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator, SimulatorContext

from rtl.credit_link import CreditLink
from sim.registered_sides import assert_sides_registered


def run(link: CreditLink, values: list[int], *, push_prob: float, pop_prob: float, seed: int):
    """Offer `values` with probability push_prob, take with pop_prob; the words out and
    the cycles until the last."""
    rng = random.Random(seed)
    emitted: list[int] = []
    cycles = 0

    async def bench(ctx: SimulatorContext) -> None:
        nonlocal cycles
        pending = list(values)
        offered: int | None = None  # a word offered and not taken at the last edge
        offering: int | None = None  # the sender's the same
        while len(emitted) < len(values):
            assert cycles < 40 * len(values) + 40, "the link stopped moving"
            offer = bool(pending) and (offering is not None or rng.random() < push_prob)
            want = rng.random() < pop_prob
            ctx.set(link.i.valid, offer)
            ctx.set(link.i.payload, pending[0] if pending else 0)
            ctx.set(link.o.ready, want)
            valid, head = ctx.get(link.o.valid), ctx.get(link.o.payload)
            ready = ctx.get(link.i.ready)
            if offered is not None:  # a valid word holds until taken
                assert valid and head == offered, f"cycle {cycles}: {head} after {offered}"
            if valid and want:
                emitted.append(head)
            offered = head if valid and not want else None
            offering = pending[0] if offer and not ready else None
            if offer and ready:
                pending.pop(0)
            await ctx.tick()
            cycles += 1

    sim = Simulator(link)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return emitted, cycles


@pytest.mark.parametrize("stages", [1, 2, 3])
@pytest.mark.parametrize(("push_prob", "pop_prob"), [(0.6, 0.5), (0.9, 0.2), (0.3, 0.9), (1, 0.7)])
def test_every_word_once_in_order(stages: int, push_prob: float, pop_prob: float) -> None:
    """Exactly the offered sequence out (distinct values: a word lost in a full queue,
    repeated or swapped cannot pass), whatever the receiver's stalls."""
    rng = random.Random(f"{stages} {push_prob} {pop_prob}")
    values = rng.sample(range(1 << 12), 400)
    link = CreditLink(12, stages)
    emitted, _ = run(link, values, push_prob=push_prob, pop_prob=pop_prob, seed=stages)
    assert emitted == values


@pytest.mark.parametrize("stages", [1, 2, 3])
def test_one_word_per_cycle(stages: int) -> None:
    """With both sides always willing, a word every cycle after the link's latency: the
    credits cover the round trip."""
    values = list(range(200))
    link = CreditLink(8, stages)
    emitted, cycles = run(link, values, push_prob=1, pop_prob=1, seed=0)
    assert emitted == values
    assert cycles == len(values) + link.latency


def test_neither_side_reaches_the_other() -> None:
    """Within a cycle, `o.ready` does not move `i.ready`, and `i.valid` / `i.payload` do
    not move `o.valid` / `o.payload`."""
    assert_sides_registered(CreditLink(12, 1), 12)


def test_no_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one register stage"):
        CreditLink(8, 0)


@pytest.mark.parametrize("depth", [1, 2, 8])
def test_any_depth_keeps_every_word(depth: int) -> None:
    """Fewer credits than the round trip slow the link but lose nothing; more fill a
    deeper queue."""
    rng = random.Random(depth)
    values = rng.sample(range(1 << 12), 300)
    link = CreditLink(12, 2, depth)
    emitted, cycles = run(link, values, push_prob=0.9, pop_prob=0.6, seed=depth)
    assert emitted == values
    if depth < CreditLink.full_rate_depth(2):
        _, cycles = run(CreditLink(12, 2, depth), values, push_prob=1, pop_prob=1, seed=0)
        assert cycles > len(values) + link.latency


def test_no_queue_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one word"):
        CreditLink(8, 1, 0)
