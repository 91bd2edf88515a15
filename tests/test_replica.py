"""Replicated registers survive synthesis as separate flip-flops on both FPGA families."""

from __future__ import annotations

from pathlib import Path

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.replica import KEEP_REPLICAS, replica
from sim.netlist import synthesize

COPIES, WIDTH = 4, 8
FLIP_FLOPS = {"ecp5": "TRELLIS_FF", "ice40": "SB_DFF"}


class Fanout(wiring.Component):
    """One input copied into COPIES replicas, each feeding its own adder."""

    def __init__(self) -> None:
        super().__init__({"a": In(WIDTH), "o": Out(WIDTH * COPIES)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        for k in range(COPIES):
            copy = replica(m, self.a, f"copy{k}")
            m.d.sync += self.o.word_select(k, WIDTH).eq(copy + k)
        return m


def flip_flops(counts: dict[str, int], family: str) -> int:
    return sum(n for cell, n in counts.items() if cell.startswith(FLIP_FLOPS[family]))


@pytest.mark.parametrize("family", ["ecp5", "ice40"])
def test_replicas_are_not_merged(family: str, build_root: Path) -> None:
    work = build_root / "replica" / family
    _, merged = synthesize(Fanout(), family, work / "plain", after_read="")
    _, kept = synthesize(Fanout(), family, work / "kept", after_read=KEEP_REPLICAS)
    outputs = WIDTH * COPIES
    # without the command Yosys folds the copies into one register ...
    assert flip_flops(merged, family) <= outputs + WIDTH
    # ... with it every copy is its own
    assert flip_flops(kept, family) >= outputs + COPIES * WIDTH
