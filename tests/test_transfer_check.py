"""TransferCheck (rtl/coproc/transfer_check.py): `ok` and `count`, read exactly `LATENCY`
edges after `start`, against the reach rule of docs/isa.md.

The load and store units read the check `LATENCY` edges after they start it. The
products are serial (one multiplier bit an edge), so a `LATENCY` declared short
would read a product that lacks its top bits: the adversarial cases below are
those whose answer turns on the top bit of `rows − 1` or of `row_words`."""

from __future__ import annotations

import random

from amaranth.sim import Simulator, SimulatorContext

from rtl.coproc.transfer_check import FIELD_BITS, TransferCheck

TOP = 1 << (FIELD_BITS - 1)


def _expected(dram_addr, stride, rows, row_words, word_bytes, image_bytes) -> tuple[int, int]:
    if rows == 0 or row_words == 0:
        return 0, rows * row_words
    end = dram_addr + (rows - 1) * stride + row_words * word_bytes
    return int(end <= image_bytes), rows * row_words


def _cases() -> list[tuple[int, ...]]:
    rng = random.Random(17)
    image = 64 << 20
    cases = [
        # (dram_addr, stride, rows, row_words, word_bytes, image_bytes)
        (0, 8, 1, 1, 8, 8),  # exactly the image
        (1, 8, 1, 1, 8, 8),  # one byte over
        (0, 8, 0, 1, 8, 1024),  # no rows
        (0, 8, 1, 0, 8, 1024),  # no words
        (0, 1, TOP + 1, 1, 1, TOP + 1),  # rows − 1 = TOP: just fits
        (1, 1, TOP + 1, 1, 1, TOP + 1),  # … and one byte over
        (0, 1 << 10, TOP + 1, 1, 1, (TOP << 10) + 1),  # the reach's top bit decides
        (0, 1 << 10, TOP + 1, 1, 1, (TOP << 10)),
        (0, 0, 1, TOP, 1, TOP),  # the row's top bit decides
        (0, 0, 1, TOP, 2, 2 * TOP - 1),
        (0, (1 << 24) - 1, (1 << FIELD_BITS) - 1, (1 << FIELD_BITS) - 1, 255, (1 << 32) - 1),
        ((1 << 32) - 1, 0, 1, 1, 1, (1 << 32) - 1),  # past 32 bits: still refused
    ]
    for _ in range(60):
        rows = rng.choice([rng.randrange(1, 64), rng.randrange(1, 1 << FIELD_BITS), TOP | 1])
        row_words = rng.choice([rng.randrange(1, 64), rng.randrange(1, 1 << FIELD_BITS)])
        word_bytes = rng.choice([1, 2, 8, 16, 255])
        stride = rng.choice([0, word_bytes * row_words, rng.randrange(1 << 24)]) % (1 << 24)
        dram = rng.randrange(image)
        end = dram + (rows - 1) * stride + row_words * word_bytes
        # an image that ends just before, at, or just after the transfer's end
        image_bytes = min(max(end + rng.choice([-1, 0, 1]), 0), (1 << 32) - 1)
        cases.append((dram, stride, rows, row_words, word_bytes, image_bytes))
    return cases


def test_ok_and_count_are_ready_latency_edges_after_start() -> None:
    dut = TransferCheck()
    cases = _cases()
    got: list[tuple[int, int]] = []

    async def bench(ctx: SimulatorContext) -> None:
        for case in cases:
            dram, stride, rows, row_words, word_bytes, image_bytes = case
            ctx.set(dut.dram_addr, dram)
            ctx.set(dut.stride, stride)
            ctx.set(dut.rows, rows)
            ctx.set(dut.row_words, row_words)
            ctx.set(dut.word_bytes, word_bytes)
            ctx.set(dut.image_bytes, image_bytes)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick().repeat(TransferCheck.LATENCY - 1)
            got.append((ctx.get(dut.ok), ctx.get(dut.count)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for case, answer in zip(cases, got, strict=True):
        assert answer == _expected(*case), f"case {case}: got (ok, count) {answer}"
    oks = [ok for ok, _ in got]
    assert 20 < sum(oks) < len(oks) - 20, "the cases must both pass and fail the check"
