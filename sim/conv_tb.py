"""cocotb testbench for the convolution engine's elaborated Verilog.

The host side (`sim.conv.simulate_cocotb`) writes one folder per run; this bench
loads the buffers through the write streams, issues the tile commands back to
back, feeds the residual stream with random gaps, takes outputs and done
tokens under random back-pressure, checks both output streams against the
stream rules (`sim.stream_rules`), and writes what it saw. Configuration comes
from the environment so one compiled model serves every run:

    GRACE_CONV_DIR    folder with input/weight/param/command/residual .hex files
                      (one hex word per line), expected.txt and tags.txt
                      (the done tokens expected, in order; both optional)
    GRACE_READY_PROB  probability the output sink accepts on a given cycle
    GRACE_DONE_READY_PROB  the same for done tokens (default: GRACE_READY_PROB)
    GRACE_RESIDUAL_PROB  probability the residual source offers a value
    GRACE_SEED        seed of the stall pattern
    GRACE_OVERLAP     "1": a ping-pong controller (tile k loads while tile k-1
                      computes, once tile k-2's token is back); loads.txt then
                      gives each tile's input, weight and parameter word counts

It writes out.txt (signed outputs), tokens.txt (done tags), cycles.txt
(edges from the first command's transfer to the last token's) and stalls.txt
(the edges `o`, then `done`, offered a value that was not taken).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from sim.stream_rules import watch_cocotb

STALL_LIMIT = 20_000


def _lines(folder: Path, name: str) -> list[str]:
    path = folder / name
    return path.read_text().splitlines() if path.exists() else []


def _words(folder: Path, name: str) -> list[int]:
    return [int(w, 16) for line in _lines(folder, f"{name}.hex") for w in line.split()]


@cocotb.test()
async def conv_tiles(dut: object) -> None:
    folder = Path(os.environ["GRACE_CONV_DIR"])
    ready_prob = float(os.environ.get("GRACE_READY_PROB", "1"))
    residual_prob = float(os.environ.get("GRACE_RESIDUAL_PROB", "1"))
    done_ready_prob = float(os.environ.get("GRACE_DONE_READY_PROB", ready_prob))
    seed = int(os.environ.get("GRACE_SEED", "0"))
    rng = random.Random(seed)
    done_rng = random.Random(f"{seed}:done")  # o's stall pattern stays what it was
    commands = _words(folder, "command")
    residual = _words(folder, "residual")

    Clock(dut.clk, 10, unit="ns").start()
    streams = {"o": watch_cocotb(dut, "o"), "done": watch_cocotb(dut, "done")}
    dut.rst.value = 1
    for port in ("cmd", "input_write", "weight_write", "param_write", "residual"):
        getattr(dut, f"{port}__valid").value = 0
    dut.o__ready.value = 0
    dut.done__ready.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    ports = ("input_write", "weight_write", "param_write")
    words = {port: _words(folder, port.split("_")[0]) for port in ports}
    overlap = os.environ.get("GRACE_OVERLAP") == "1"
    if not overlap:  # everything first: the write streams are always ready
        for port in ports:
            getattr(dut, f"{port}__valid").value = 1
            for word in words[port]:
                getattr(dut, f"{port}__payload").value = word
                await FallingEdge(dut.clk)
            getattr(dut, f"{port}__valid").value = 0
    # per tile, where its words end in each port's list
    counts = [[int(v) for v in line.split()] for line in _lines(folder, "loads.txt")]
    ends = [[sum(c[i] for c in counts[: k + 1]) for i in range(3)] for k in range(len(counts))]
    position = dict.fromkeys(ports, 0)
    loaded = len(commands) if not overlap else 0  # tiles whose words are all written

    outputs: list[int] = []
    tokens: list[int] = []
    sent = res_sent = 0
    res_offering = False
    cycle = first_edge = last_edge = idle = 0
    while len(tokens) < len(commands):
        # tile `loaded` may overwrite its half once tile loaded-2 is done with it
        loading = loaded < len(commands) and len(tokens) >= loaded - 1
        for i, port in enumerate(ports):
            driving = loading and position[port] < ends[loaded][i]
            if driving:
                getattr(dut, f"{port}__payload").value = words[port][position[port]]
            getattr(dut, f"{port}__valid").value = int(driving)
        offering = sent < loaded  # a command goes only after its tile's words
        if offering:
            dut.cmd__payload.value = commands[sent]
        dut.cmd__valid.value = int(offering)
        if not res_offering and res_sent < len(residual) and rng.random() < residual_prob:
            dut.residual__payload.value = residual[res_sent]
            res_offering = True
        dut.residual__valid.value = int(res_offering)
        dut.o__ready.value = int(rng.random() < ready_prob)
        dut.done__ready.value = int(done_rng.random() < done_ready_prob)
        await ReadOnly()
        moved = False
        for port in ports:
            handshake = (getattr(dut, f"{port}__{end}").value == 1 for end in ("valid", "ready"))
            if all(handshake):
                position[port] += 1
                moved = True
        if loading and all(position[p] == ends[loaded][i] for i, p in enumerate(ports)):
            loaded += 1
        if offering and dut.cmd__ready.value == 1:
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
        if dut.done__valid.value == 1 and dut.done__ready.value == 1:
            tokens.append(int(dut.done__payload.value))
            last_edge = cycle
            moved = True
        idle = 0 if moved else idle + 1
        assert idle < STALL_LIMIT, (
            f"engine stalled after {len(outputs)} outputs, {len(tokens)} tokens, "
            f"{sent} commands sent, {loaded} tiles loaded, write positions {position}"
        )
        await FallingEdge(dut.clk)
        cycle += 1

    (folder / "out.txt").write_text("".join(f"{v}\n" for v in outputs))
    (folder / "tokens.txt").write_text("".join(f"{t}\n" for t in tokens))
    (folder / "cycles.txt").write_text(f"{last_edge - first_edge}\n")
    (folder / "stalls.txt").write_text(f"{streams['o'].stalls}\n{streams['done'].stalls}\n")
    for rules, seen in ((streams["o"], outputs), (streams["done"], tokens)):
        rules.check()
        assert rules.transfers == len(seen), f"{rules.name}: {rules.transfers} ≠ {len(seen)}"
    tags = [int(v) for v in _lines(folder, "tags.txt")]
    assert not tags or tokens == tags, f"done tokens {tokens}, the commands' tags {tags}"
    expected_file = folder / "expected.txt"
    if expected_file.exists():
        expected = [int(v) for v in expected_file.read_text().split()]
        assert len(outputs) == len(expected), f"{len(outputs)} outputs, expected {len(expected)}"
        bad = [i for i, (a, b) in enumerate(zip(outputs, expected, strict=True)) if a != b]
        assert not bad, (
            f"{len(bad)} of {len(expected)} outputs differ; first at #{bad[0]}: "
            f"got {outputs[bad[0]]}, expected {expected[bad[0]]}"
        )
