"""cocotb testbench for the convolution engine's elaborated Verilog.

The host side (`sim.conv.simulate_cocotb`) writes one folder per run; this bench
loads the buffers through the write streams, issues the tile commands back to
back, feeds the residual stream with random gaps, takes outputs under random
back-pressure, and writes what it saw. Configuration comes from the
environment so one compiled model serves every run:

    GRACE_CONV_DIR    folder with input/weight/param/command/residual .hex files
                      (one hex word per line) and expected.txt (optional)
    GRACE_READY_PROB  probability the output sink accepts on a given cycle
    GRACE_RESIDUAL_PROB  probability the residual source offers a value
    GRACE_SEED        seed of the stall pattern

It writes out.txt (signed outputs), tokens.txt (done tags) and cycles.txt
(edges from the first command's transfer to the last token's).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

STALL_LIMIT = 20_000


def _words(folder: Path, name: str) -> list[int]:
    path = folder / f"{name}.hex"
    return [int(w, 16) for w in path.read_text().split()] if path.exists() else []


@cocotb.test()
async def conv_tiles(dut: object) -> None:
    folder = Path(os.environ["GRACE_CONV_DIR"])
    ready_prob = float(os.environ.get("GRACE_READY_PROB", "1"))
    residual_prob = float(os.environ.get("GRACE_RESIDUAL_PROB", "1"))
    rng = random.Random(int(os.environ.get("GRACE_SEED", "0")))
    commands = _words(folder, "command")
    residual = _words(folder, "residual")

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for port in ("cmd", "input_write", "weight_write", "param_write", "residual"):
        getattr(dut, f"{port}__valid").value = 0
    dut.o__ready.value = 0
    dut.done__ready.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    # Buffer loads: the write streams are always ready, one word per cycle.
    for port in ("input_write", "weight_write", "param_write"):
        words = _words(folder, port.split("_")[0])
        getattr(dut, f"{port}__valid").value = 1
        for word in words:
            getattr(dut, f"{port}__payload").value = word
            await FallingEdge(dut.clk)
        getattr(dut, f"{port}__valid").value = 0

    outputs: list[int] = []
    tokens: list[int] = []
    sent = res_sent = 0
    res_offering = False
    cycle = first_edge = last_edge = idle = 0
    while len(tokens) < len(commands):
        if sent < len(commands):
            dut.cmd__payload.value = commands[sent]
        dut.cmd__valid.value = int(sent < len(commands))
        if not res_offering and res_sent < len(residual) and rng.random() < residual_prob:
            dut.residual__payload.value = residual[res_sent]
            res_offering = True
        dut.residual__valid.value = int(res_offering)
        dut.o__ready.value = int(rng.random() < ready_prob)
        await ReadOnly()
        moved = False
        if sent < len(commands) and dut.cmd__ready.value == 1:
            first_edge = cycle if sent == 0 else first_edge
            sent += 1
            moved = True
        if res_offering and dut.residual__ready.value == 1:
            res_sent += 1
            res_offering = False
            moved = True
        if dut.o__valid.value == 1 and dut.o__ready.value == 1:
            outputs.append(dut.o__payload.value.to_signed())
            moved = True
        if dut.done__valid.value == 1:
            tokens.append(int(dut.done__payload.value))
            last_edge = cycle
            moved = True
        idle = 0 if moved else idle + 1
        assert idle < STALL_LIMIT, f"engine stalled after {len(outputs)} outputs"
        await FallingEdge(dut.clk)
        cycle += 1

    (folder / "out.txt").write_text("".join(f"{v}\n" for v in outputs))
    (folder / "tokens.txt").write_text("".join(f"{t}\n" for t in tokens))
    (folder / "cycles.txt").write_text(f"{last_edge - first_edge}\n")
    expected_file = folder / "expected.txt"
    if expected_file.exists():
        expected = [int(v) for v in expected_file.read_text().split()]
        assert len(outputs) == len(expected), f"{len(outputs)} outputs, expected {len(expected)}"
        bad = [i for i, (a, b) in enumerate(zip(outputs, expected, strict=True)) if a != b]
        assert not bad, (
            f"{len(bad)} of {len(expected)} outputs differ; first at #{bad[0]}: "
            f"got {outputs[bad[0]]}, expected {expected[bad[0]]}"
        )
