"""The cocotb bench the element-wise units share (`sim/act_tb.py`, `sim/softmax_tb.py`,
`sim/heatmap_tb.py`, `sim/motion_tb.py`).

A unit has write streams for its tables and constants, a `cmd` stream of tile
commands, an input stream `i` (the heatmap unit has none), and `o` and `done`.
The host side (`sim.unit_sim.simulate_cocotb`) writes one folder per run;
`run_tiles` writes each tile's tables and constants once the done tokens they
wait for are back, issues the tile's command after them, feeds the input words
in order, gaps on the write streams and the input, takes output words and done
tokens under random back-pressure, checks both output streams against the
stream rules (`sim.stream_rules`), and writes what it saw. Configuration comes
from the folder and the environment so one compiled model serves every run:

    GRACE_<BLOCK>_DIR folder with a .hex file per write stream (named after the
                      port, e.g. table_write.hex), command.hex and input.hex
                      (one hex word per line), expected.hex and mask.hex (the
                      `o` words and the bits of them that carry a result;
                      optional), loads.txt (per tile: its words on each write
                      stream, the done tokens to await before them, and its
                      output words: its token must come after the last) and
                      tags.txt (the done tokens expected, in order; optional)
    GRACE_READY_PROB  probability the output sink accepts on a given cycle
    GRACE_DONE_READY_PROB  the same for done tokens (default: GRACE_READY_PROB)
    GRACE_IN_PROB     probability the input source offers a word on a given cycle
    GRACE_WRITE_PROB  the same for each write stream (each its own pattern)
    GRACE_SEED        seed of the stall and gap patterns: `o`'s from the seed,
                      the others' from "<seed>:done", "<seed>:in" and, for a
                      write port `<name>_write`, "<seed>:<name>"

A tile's writes start once the commands before it are sent and its tokens are
back; its command goes at an edge after its last write's (a run whose writes
all go first carries them on its first tile). The write streams are driven at
once, each word held until taken once offered. It writes out.txt (the `o`
words, hex), tokens.txt (done tags), cycles.txt (edges from the first
command's transfer to the last token's) and stalls.txt (the edges `o`, `done`
and `cmd` offered a value that was not taken).

The loop runs once per clock cycle with Python in it, so it does little there:
handles are looked up once, random draws are skipped when a probability is 1,
and output words are compared with the expected ones only at the end.
"""

from __future__ import annotations

import os
import random
from itertools import accumulate
from pathlib import Path

from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from sim.engine_bench import draws, read_numbers
from sim.stream_rules import watch_cocotb

STALL_LIMIT = 20_000


def _batches(writes: list[list[int]], loads: list[list[int]]) -> list[tuple[list[list[int]], int]]:
    """Each tile's write batch: (its words per write stream, tokens to await first)."""
    batches, at = [], [0] * len(writes)
    for load in loads:
        counts, wait = load[: len(writes)], load[len(writes)]
        batches.append(([w[a : a + n] for w, a, n in zip(writes, at, counts, strict=True)], wait))
        at = [a + n for a, n in zip(at, counts, strict=True)]
    return batches


async def run_tiles(
    dut: object, block: str, write_ports: tuple[str, ...], unit: str, *, has_input: bool = True
) -> None:
    """The bench: `write_ports` name the unit's write streams, in loads.txt's order;
    `has_input` says whether it has an input stream `i`."""
    folder = Path(os.environ[f"GRACE_{block.upper()}_DIR"])
    ready_prob = float(os.environ.get("GRACE_READY_PROB", "1"))
    done_ready_prob = float(os.environ.get("GRACE_DONE_READY_PROB", ready_prob))
    in_prob = float(os.environ.get("GRACE_IN_PROB", "1"))
    write_prob = float(os.environ.get("GRACE_WRITE_PROB", "1"))
    seed = int(os.environ.get("GRACE_SEED", "0"))
    o_draw = draws(random.Random(seed), ready_prob)
    done_draw = draws(random.Random(f"{seed}:done"), done_ready_prob)
    in_draw = draws(random.Random(f"{seed}:in"), in_prob)
    write_draws = [
        draws(random.Random(f"{seed}:{port.removesuffix('_write')}"), write_prob)
        for port in write_ports
    ]
    commands = read_numbers(folder, "command.hex", 16)
    inputs = read_numbers(folder, "input.hex", 16)
    numbers = read_numbers(folder, "loads.txt")
    width = len(write_ports) + 2
    loads = [numbers[k : k + width] for k in range(0, len(numbers), width)]
    ends = list(accumulate(load[-1] for load in loads))  # each tile's last word + 1
    writes = [read_numbers(folder, f"{port}.hex", 16) for port in write_ports]
    batches = _batches(writes, loads)
    tiles = len(commands)
    assert has_input or not inputs, f"{unit}: {len(inputs)} input words, but no input stream"

    Clock(dut.clk, 10, unit="ns").start()
    streams = {"o": watch_cocotb(dut, "o"), "done": watch_cocotb(dut, "done")}
    w_ports = [
        tuple(getattr(dut, f"{port}__{part}") for part in ("valid", "ready", "payload"))
        for port in write_ports
    ]
    cmd_valid, cmd_ready, cmd_payload = dut.cmd__valid, dut.cmd__ready, dut.cmd__payload
    if has_input:
        i_valid, i_ready, i_payload = dut.i__valid, dut.i__ready, dut.i__payload
        i_valid.value = 0
    o_valid, o_ready, o_payload = dut.o__valid, dut.o__ready, dut.o__payload
    done_valid, done_ready, done_payload = dut.done__valid, dut.done__ready, dut.done__payload
    dut.rst.value = 1
    for port in (*(w[0] for w in w_ports), cmd_valid):
        port.value = 0
    o_ready.value = 0
    done_ready.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    outputs: list[int] = []
    tokens: list[int] = []
    batch = 0  # next write batch to start
    writing: list[list[int]] | None = None  # the batch under way, per stream
    at = [0] * len(write_ports)  # its next word per stream
    offered = [False] * len(write_ports)  # that word offered (held until taken)
    driven = [False] * len(write_ports)
    loaded = 0  # commands whose writes have all transferred (at an earlier edge)
    sent = taken = cmd_stalls = 0
    offering = cmd_driven = in_offering = in_driven = False
    cycle = first_edge = last_edge = idle = 0
    draw_o, draw_done = ready_prob < 1, done_ready_prob < 1
    o_take = done_take = True  # what the sinks drive on `ready` this cycle
    o_ready.value = 1
    done_ready.value = 1
    falling, read_only = FallingEdge(dut.clk), ReadOnly()
    while len(tokens) < tiles:
        # a batch starts once the commands before it are sent and its tokens are back
        if writing is None and batch < len(batches):
            words, wait = batches[batch]
            if sent == batch and len(tokens) >= wait:
                writing, at = words, [0] * len(write_ports)
                batch += 1
                if not any(words):  # nothing to write: done at once
                    writing = None
                    loaded += 1
        for k, (valid, _, payload) in enumerate(w_ports):
            wants = not offered[k] and writing is not None and at[k] < len(writing[k])
            if wants and write_draws[k]():
                payload.value = writing[k][at[k]]
                offered[k] = True
            if offered[k] != driven[k]:
                valid.value = int(offered[k])
                driven[k] = offered[k]
        # a command goes once its writes have transferred, at an edge before its own
        offer = sent < loaded
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
        moved = False
        for k, (_, ready, _) in enumerate(w_ports):
            if offered[k] and ready.value == 1:
                at[k] += 1
                offered[k] = False
                moved = True
        if writing is not None and all(a == len(w) for w, a in zip(writing, at, strict=True)):
            writing = None
            loaded += 1
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
        sent_before = len(outputs)  # `o` words at earlier edges
        if o_take and o_valid.value == 1:
            outputs.append(o_payload.value.to_unsigned())
            moved = True
        if done_take and done_valid.value == 1:
            k = len(tokens)
            assert k >= len(ends) or sent_before >= ends[k], (
                f"tile {k}'s done token came with {sent_before} output words sent, "
                f"before its last (word {ends[k]})"
            )
            tokens.append(done_payload.value.to_unsigned())
            last_edge = cycle
            moved = True
        idle = 0 if moved else idle + 1
        assert idle < STALL_LIMIT, (
            f"{unit} stalled after {len(outputs)} output words, {len(tokens)} "
            f"tokens, {sent} commands sent, {batch} write batches started, {taken} of "
            f"{len(inputs)} input words"
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
        masks = read_numbers(folder, "mask.hex", 16) if (folder / "mask.hex").exists() else None
        assert len(outputs) == len(expected), f"{len(outputs)} words, expected {len(expected)}"
        if masks is None:
            masks = [-1] * len(expected)
        bad = [
            i for i, (a, b, m) in enumerate(zip(outputs, expected, masks, strict=True))
            if (a ^ b) & m
        ]  # fmt: skip
        assert not bad, (
            f"{len(bad)} of {len(expected)} output words differ; first at #{bad[0]}: "
            f"got {outputs[bad[0]]:#x}, expected {expected[bad[0]]:#x} (lanes {masks[bad[0]]:#x})"
        )
