"""cocotb testbench for any stream-in → stream-out block (`i` → `o`, one output per input).

The host side (`sim.stream_function`) writes packed input payloads, one hex word
per line, and optionally the expected outputs; this bench drives them with
random valid gaps and random output back-pressure, records every output and the
cycle count, and fails on any mismatch or on a broken stream rule on `o`
(`sim.stream_rules`). Configuration comes from environment variables so one
compiled model serves every run:

    GRACE_STIM        input payloads (hex, one per line)
    GRACE_EXPECT      expected outputs (signed decimal, one per line; optional)
    GRACE_OUT         where to write the outputs (same format)
    GRACE_CYCLES      where to write the cycle count
    GRACE_VALID_PROB  probability the source offers a word on a given cycle
    GRACE_READY_PROB  probability the sink accepts on a given cycle
    GRACE_SEED        seed of the stall pattern
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from sim.stream_rules import watch_cocotb

# Cycles without any transfer after which the bench declares the design hung.
STALL_LIMIT = 2000


def _read_lines(name: str) -> list[str]:
    return Path(os.environ[name]).read_text().split()


@cocotb.test()
async def stream_function(dut: object) -> None:
    stimulus = [int(word, 16) for word in _read_lines("GRACE_STIM")]
    expected = (
        [int(v) for v in _read_lines("GRACE_EXPECT")] if os.environ.get("GRACE_EXPECT") else None
    )
    valid_prob = float(os.environ.get("GRACE_VALID_PROB", "1"))
    ready_prob = float(os.environ.get("GRACE_READY_PROB", "1"))
    rng = random.Random(int(os.environ.get("GRACE_SEED", "0")))

    Clock(dut.clk, 10, unit="ns").start()
    rules = watch_cocotb(dut, "o")
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    outputs: list[int] = []
    sent = 0
    offering = False
    cycle = first_edge = last_edge = 0
    idle = 0
    while len(outputs) < len(stimulus):
        # Falling edge: choose this cycle's inputs. A word once offered stays
        # offered, unchanged, until it transfers (stream rule).
        if not offering and sent < len(stimulus) and rng.random() < valid_prob:
            dut.i__payload.value = stimulus[sent]
            offering = True
        dut.i__valid.value = int(offering)
        dut.o__ready.value = int(rng.random() < ready_prob)
        await ReadOnly()
        # What the coming rising edge will transfer.
        moved = False
        if offering and dut.i__ready.value == 1:
            if sent == 0:
                first_edge = cycle
            sent += 1
            offering = False
            moved = True
        if dut.o__valid.value == 1 and dut.o__ready.value == 1:
            outputs.append(dut.o__payload.value.to_signed())
            last_edge = cycle
            moved = True
        idle = 0 if moved else idle + 1
        assert idle < STALL_LIMIT, (
            f"no transfer for {STALL_LIMIT} cycles after {sent} inputs and {len(outputs)} outputs"
        )
        await FallingEdge(dut.clk)
        cycle += 1

    Path(os.environ["GRACE_OUT"]).write_text("\n".join(map(str, outputs)) + "\n")
    Path(os.environ["GRACE_CYCLES"]).write_text(f"{last_edge - first_edge + 1}\n")
    rules.check()
    assert rules.transfers == len(outputs), f"{rules.name}: {rules.transfers} ≠ {len(outputs)}"
    if expected is not None:
        mismatches = [i for i, (a, b) in enumerate(zip(outputs, expected, strict=True)) if a != b]
        assert not mismatches, (
            f"{len(mismatches)} of {len(expected)} outputs differ; first at #{mismatches[0]}: "
            f"got {outputs[mismatches[0]]}, expected {expected[mismatches[0]]}"
        )
