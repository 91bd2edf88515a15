"""StreamQueue (rtl/stream_queue.py): order, flags against a model every edge, full rate.

The head is valid exactly when the model holds an entry that was pushed at
least two edges ago, or one edge ago behind an older entry that has since left
(its read saw it then)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from amaranth.sim import Simulator, SimulatorContext

from boards.build import AFTER_READ
from rtl.stream_queue import StreamQueue
from sim.netlist import synthesize


def run_queue(depth: int, values: list[int], *, push_prob: float, pop_prob: float,
              rng: random.Random, transparent: bool = True) -> tuple[list[int], int]:  # fmt: skip
    """Offer `values` and take them at random; return (what the DUT emitted, cycles).

    The emitted list is `o.payload` sampled wherever `o.valid & o.ready` held
    before an edge, so a queue that drops, repeats or reorders shows in it; the
    model only predicts the flags, checked on every edge."""
    dut = StreamQueue(12, depth, transparent_storage=transparent)
    emitted: list[int] = []
    cycles = 0

    async def bench(ctx: SimulatorContext) -> None:
        nonlocal cycles
        model: list[tuple[int, int]] = []  # (value, cycle it was pushed)
        pending = list(values)
        readable = False  # the head's read has seen it (not written at the last edge)
        offered: int | None = None  # the payload shown while valid and not taken
        while len(emitted) < len(values):
            assert cycles < 20 * len(values) + 20, "the queue stopped moving"
            offer = bool(pending) and rng.random() < push_prob
            want = rng.random() < pop_prob
            ctx.set(dut.i.valid, offer)
            ctx.set(dut.i.payload, pending[0] if pending else 0)
            ctx.set(dut.o.ready, want)
            valid, ready, head = ctx.get(dut.o.valid), ctx.get(dut.i.ready), ctx.get(dut.o.payload)
            assert valid == (bool(model) and readable), f"cycle {cycles}: valid {valid}"
            assert ready == (len(model) < depth), f"cycle {cycles}: ready {ready}"
            if offered is not None:  # the stream rule: a valid payload holds until taken
                assert valid and head == offered, f"cycle {cycles}: head {head} after {offered}"
            if valid and want:
                emitted.append(head)  # the DUT's own output, taken at this edge
            offered = head if valid and not want else None
            await ctx.tick()
            cycles += 1
            if want and valid:
                model.pop(0)
            if offer and ready:
                model.append((pending.pop(0), cycles))
            # the head written at this edge is read at the next one
            readable = bool(model) and model[0][1] < cycles

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return emitted, cycles


@pytest.mark.parametrize("transparent", [True, False])
@pytest.mark.parametrize("depth", [1, 2, 5, 16, 21])
@pytest.mark.parametrize(("push_prob", "pop_prob"), [(0.6, 0.5), (0.9, 0.3), (0.3, 0.9)])
def test_order_and_registered_flags(
    depth: int, push_prob: float, pop_prob: float, transparent: bool
) -> None:
    """Both storage forms: the same flags on the same edges, and exactly the
    offered sequence out (distinct values, so a lost, repeated or swapped entry
    cannot pass)."""
    rng = random.Random(f"{depth} {push_prob} {pop_prob} {transparent}")
    values = rng.sample(range(1 << 12), 300)
    emitted, _ = run_queue(
        depth, values, push_prob=push_prob, pop_prob=pop_prob, rng=rng, transparent=transparent
    )
    assert emitted == values


@pytest.mark.parametrize("depth", [3, 16])
def test_one_per_cycle_when_both_sides_are_willing(depth: int) -> None:
    """From three entries up (shallower, a push behind a popped last entry waits
    for its read, and `ready` is low while full)."""
    values = list(range(200))
    emitted, cycles = run_queue(
        depth, values, push_prob=1.0, pop_prob=1.0, rng=random.Random(depth)
    )
    assert emitted == values
    assert cycles == len(values) + 2  # two edges to fill, then one element per edge


def test_bad_depth() -> None:
    with pytest.raises(ValueError, match="depth must be at least 1"):
        StreamQueue(8, 0)


def test_block_ram_form_has_no_collision_logic(build_root: Path) -> None:
    """iCE40, read as board builds read it: the non-transparent storage carries
    `no_rw_check`, so Yosys adds no collision registers around the block RAM
    (41 plain flip-flops for this queue without it); the transparent form keeps
    its bypass (the commands touch only marked memories)."""
    counts = {
        transparent: synthesize(
            StreamQueue(17, 20, transparent_storage=transparent),
            "ice40",
            build_root / "stream_queue" / f"transparent{int(transparent)}",
            after_read=AFTER_READ,
        )[1]
        for transparent in (False, True)
    }
    assert counts[False].get("SB_RAM40_4K", 0) == 2
    assert counts[False].get("SB_DFF", 0) == 0
    assert counts[True].get("SB_DFF", 0) > 17
