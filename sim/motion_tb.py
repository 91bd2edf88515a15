"""cocotb testbench for the motion unit's elaborated Verilog.

The host side (`sim.motion.simulate_cocotb`) writes one folder per run; this
bench writes each frame's constants on the three write streams (with random
gaps) once the commands before it are done, issues the commands, feeds the mask
bytes in order with random gaps, takes `o` entries and done tokens under random
back-pressure, checks both output streams against the stream rules
(`sim.stream_rules`), and writes what it saw. Configuration comes from the
environment so one compiled model serves every run:

    GRACE_MOTION_DIR  folder with grid/keypoint/jacobian/command/input .hex files
                      (one hex word per line), expected.hex (the `o` words;
                      optional), loads.txt (per command: its grid, keypoint and
                      Jacobian writes, the done tokens to await before them, and
                      its output entries: its token must come after the last)
                      and tags.txt (the done tokens expected, in order)
    GRACE_READY_PROB  probability the output sink accepts on a given cycle
    GRACE_DONE_READY_PROB  the same for done tokens (default: GRACE_READY_PROB)
    GRACE_IN_PROB     probability the mask source offers a byte on a given cycle
    GRACE_WRITE_PROB  the same for each constant write stream
    GRACE_SEED        seed of the stall patterns

It writes out.txt (the `o` words, hex), tokens.txt (done tags), cycles.txt
(edges from the first command's transfer to the last token's) and stalls.txt
(the edges `o`, `done` and `cmd` offered a value that was not taken). The loop
runs once per clock cycle with Python in it, so it does little there.
"""

from __future__ import annotations

import os
import random
from itertools import accumulate, pairwise
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from sim.engine_bench import draws, read_numbers
from sim.stream_rules import watch_cocotb

STALL_LIMIT = 20_000
#: The constant write streams, in loads.txt's order, and their .hex files.
WRITES = (("grid_write", "grid"), ("keypoint_write", "keypoint"), ("jacobian_write", "jacobian"))


class _Writer:
    """One constant write stream: its batches, the one under way, gaps drawn per cycle."""

    def __init__(self, dut: object, port: str, words: list[int], counts: list[int], draw) -> None:
        self.valid = getattr(dut, f"{port}__valid")
        self.ready = getattr(dut, f"{port}__ready")
        self.payload = getattr(dut, f"{port}__payload")
        starts = [0, *accumulate(counts)]
        self.batches = [words[a:b] for a, b in pairwise(starts)]
        self.draw = draw
        self.batch: list[int] = []
        self.pos = 0
        self.offering = self.driven = False
        self.valid.value = 0

    def start(self, k: int) -> None:
        self.batch, self.pos = self.batches[k], 0

    @property
    def busy(self) -> bool:
        return self.pos < len(self.batch)

    def drive(self) -> None:
        if not self.offering and self.busy and self.draw():
            self.payload.value = self.batch[self.pos]
            self.offering = True
        if self.offering != self.driven:
            self.valid.value = int(self.offering)
            self.driven = self.offering

    def sample(self) -> bool:
        if self.offering and self.ready.value == 1:
            self.pos += 1
            self.offering = False
            return True
        return False


@cocotb.test()
async def motion_commands(dut: object) -> None:
    folder = Path(os.environ["GRACE_MOTION_DIR"])
    ready_prob = float(os.environ.get("GRACE_READY_PROB", "1"))
    done_ready_prob = float(os.environ.get("GRACE_DONE_READY_PROB", ready_prob))
    in_prob = float(os.environ.get("GRACE_IN_PROB", "1"))
    write_prob = float(os.environ.get("GRACE_WRITE_PROB", "1"))
    seed = int(os.environ.get("GRACE_SEED", "0"))
    o_draw = draws(random.Random(seed), ready_prob)
    done_draw = draws(random.Random(f"{seed}:done"), done_ready_prob)
    in_draw = draws(random.Random(f"{seed}:in"), in_prob)
    commands = read_numbers(folder, "command.hex", 16)
    inputs = read_numbers(folder, "input.hex", 16)
    numbers = read_numbers(folder, "loads.txt")
    loads = [numbers[k : k + 5] for k in range(0, len(numbers), 5)]
    ends = list(accumulate(load[4] for load in loads))  # each command's last entry + 1
    waits = [load[3] for load in loads]
    tiles = len(commands)

    Clock(dut.clk, 10, unit="ns").start()
    streams = {"o": watch_cocotb(dut, "o"), "done": watch_cocotb(dut, "done")}
    writers = [
        _Writer(
            dut, port, read_numbers(folder, f"{name}.hex", 16), [load[k] for load in loads],
            draws(random.Random(f"{seed}:{name}"), write_prob),
        )
        for k, (port, name) in enumerate(WRITES)
    ]  # fmt: skip
    cmd_valid, cmd_ready, cmd_payload = dut.cmd__valid, dut.cmd__ready, dut.cmd__payload
    i_valid, i_ready, i_payload = dut.i__valid, dut.i__ready, dut.i__payload
    o_valid, o_ready, o_payload = dut.o__valid, dut.o__ready, dut.o__payload
    done_valid, done_ready, done_payload = dut.done__valid, dut.done__ready, dut.done__payload
    dut.rst.value = 1
    cmd_valid.value = 0
    i_valid.value = 0
    o_ready.value = 0
    done_ready.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    outputs: list[int] = []
    tokens: list[int] = []
    loading = -1  # the command whose writes are under way (or done, once not busy)
    sent = taken = cmd_stalls = 0
    offering = cmd_driven = in_offering = in_driven = False
    cycle = first_edge = idle = last_edge = 0
    draw_o, draw_done = ready_prob < 1, done_ready_prob < 1
    o_take = done_take = True
    o_ready.value = 1
    done_ready.value = 1
    falling, read_only = FallingEdge(dut.clk), ReadOnly()
    while len(tokens) < tiles:
        # command `sent`'s writes start once the tokens it awaits are back
        if loading < sent < tiles and len(tokens) >= waits[sent]:
            loading = sent
            for writer in writers:
                writer.start(sent)
        for writer in writers:
            writer.drive()
        # a command goes once its writes have transferred, at an edge before its own
        offer = loading == sent < tiles and not any(w.busy for w in writers)
        if offer and not offering:
            cmd_payload.value = commands[sent]
            offering = True
        if offer != cmd_driven:
            cmd_valid.value = int(offer)
            cmd_driven = offer
        if not in_offering and taken < len(inputs) and in_draw():
            i_payload.value = inputs[taken]
            in_offering = True
        if in_offering != in_driven:
            i_valid.value = int(in_offering)
            in_driven = in_offering
        if draw_o:
            o_take = o_draw()
            o_ready.value = int(o_take)
        if draw_done:
            done_take = done_draw()
            done_ready.value = int(done_take)
        await read_only
        moved = any([writer.sample() for writer in writers])
        if offering:
            if cmd_ready.value == 1:
                first_edge = cycle if sent == 0 else first_edge
                sent += 1
                offering = False
                moved = True
            else:
                cmd_stalls += 1
        if in_offering and i_ready.value == 1:
            taken += 1
            in_offering = False
            moved = True
        sent_before = len(outputs)  # `o` entries at earlier edges
        if o_take and o_valid.value == 1:
            outputs.append(o_payload.value.to_unsigned())
            moved = True
        if done_take and done_valid.value == 1:
            k = len(tokens)
            assert sent_before >= ends[k], (
                f"command {k}'s done token came with {sent_before} entries sent, "
                f"before its last (entry {ends[k]})"
            )
            tokens.append(done_payload.value.to_unsigned())
            last_edge = cycle
            moved = True
        idle = 0 if moved else idle + 1
        assert idle < STALL_LIMIT, (
            f"motion unit stalled after {len(outputs)} entries, {len(tokens)} tokens, "
            f"{sent} commands sent, {taken} of {len(inputs)} mask bytes"
        )
        await falling
        cycle += 1

    (folder / "out.txt").write_text("".join(f"{v:x}\n" for v in outputs))
    (folder / "tokens.txt").write_text("".join(f"{t}\n" for t in tokens))
    (folder / "cycles.txt").write_text(f"{last_edge - first_edge}\n")
    (folder / "stalls.txt").write_text(
        f"{streams['o'].stalls}\n{streams['done'].stalls}\n{cmd_stalls}\n"
    )
    for rules, seen in ((streams["o"], outputs), (streams["done"], tokens)):
        rules.check()
        assert rules.transfers == len(seen), f"{rules.name}: {rules.transfers} ≠ {len(seen)}"
    tags = read_numbers(folder, "tags.txt")
    assert not tags or tokens == tags, f"done tokens {tokens}, the commands' tags {tags}"
    if (folder / "expected.hex").exists():
        expected = read_numbers(folder, "expected.hex", 16)
        assert len(outputs) == len(expected), f"{len(outputs)} entries, expected {len(expected)}"
        bad = [i for i, (a, b) in enumerate(zip(outputs, expected, strict=True)) if a != b]
        assert not bad, (
            f"{len(bad)} of {len(expected)} entries differ; first at #{bad[0]}: "
            f"got {outputs[bad[0]]:#x}, expected {expected[bad[0]]:#x}"
        )
