"""cocotb testbench for the element-wise engine's elaborated Verilog.

The host side (`sim.act.simulate_cocotb`) writes one folder per run; this bench
writes the tables and constants, issues each tile command after its writes,
feeds the input words in order with random gaps, takes output words and done
tokens under random back-pressure, checks both output streams against the
stream rules (`sim.stream_rules`), and writes what it saw. Configuration comes
from the environment so one compiled model serves every run:

    GRACE_ACT_DIR     folder with table/param/command/input .hex files (one hex
                      word per line), expected.hex and mask.hex (the `o` words
                      and the bytes of them that carry a channel; optional),
                      loads.txt (per tile: its table writes, its constant
                      writes, the done tokens to await before them, and its
                      output words: its token must come after the last) and
                      tags.txt (the done tokens expected, in order; optional)
    GRACE_READY_PROB  probability the output sink accepts on a given cycle
    GRACE_DONE_READY_PROB  the same for done tokens (default: GRACE_READY_PROB)
    GRACE_IN_PROB     probability the input source offers a word on a given cycle
    GRACE_SEED        seed of the stall pattern
    GRACE_OVERLAP     "1": each tile's writes just before its command, once the
                      tokens loads.txt names are back; else every write first

Both write streams are driven at once. It writes out.txt (the `o` words, hex),
tokens.txt (done tags), cycles.txt (edges from the first command's transfer to
the last token's) and stalls.txt (the edges `o`, `done` and `cmd` offered a
value that was not taken).

The loop runs once per clock cycle with Python in it, so it does little there:
handles are looked up once, random draws are skipped when a probability is 1,
and output words are compared with the expected ones only at the end.
"""

from __future__ import annotations

import os
import random
from itertools import accumulate
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from sim.engine_bench import draws, read_numbers
from sim.stream_rules import watch_cocotb

STALL_LIMIT = 20_000


def _batches(
    table: list[int], param: list[int], loads: list[list[int]], overlap: bool
) -> list[tuple[list[int], list[int], int]]:
    """The write batches in order: (table words, constant words, tokens to await first).

    One batch per tile when overlapped, else one batch of everything.
    """
    if not overlap:
        return [(table, param, 0)]
    batches, t, p = [], 0, 0
    for tables, constants, wait, _ in loads:
        batches.append((table[t : t + tables], param[p : p + constants], wait))
        t, p = t + tables, p + constants
    return batches


@cocotb.test()
async def act_tiles(dut: object) -> None:
    folder = Path(os.environ["GRACE_ACT_DIR"])
    ready_prob = float(os.environ.get("GRACE_READY_PROB", "1"))
    done_ready_prob = float(os.environ.get("GRACE_DONE_READY_PROB", ready_prob))
    in_prob = float(os.environ.get("GRACE_IN_PROB", "1"))
    seed = int(os.environ.get("GRACE_SEED", "0"))
    overlap = os.environ.get("GRACE_OVERLAP") == "1"
    o_draw = draws(random.Random(seed), ready_prob)
    done_draw = draws(random.Random(f"{seed}:done"), done_ready_prob)
    in_draw = draws(random.Random(f"{seed}:in"), in_prob)
    commands = read_numbers(folder, "command.hex", 16)
    inputs = read_numbers(folder, "input.hex", 16)
    numbers = read_numbers(folder, "loads.txt")
    loads = [numbers[k : k + 4] for k in range(0, len(numbers), 4)]
    ends = list(accumulate(load[3] for load in loads))  # each tile's last word + 1
    tables, params = read_numbers(folder, "table.hex", 16), read_numbers(folder, "param.hex", 16)
    batches = _batches(tables, params, loads, overlap)
    tiles = len(commands)

    Clock(dut.clk, 10, unit="ns").start()
    streams = {"o": watch_cocotb(dut, "o"), "done": watch_cocotb(dut, "done")}
    tw_valid, tw_ready, tw_payload = (
        dut.table_write__valid, dut.table_write__ready, dut.table_write__payload
    )  # fmt: skip
    pw_valid, pw_ready, pw_payload = (
        dut.param_write__valid, dut.param_write__ready, dut.param_write__payload
    )  # fmt: skip
    cmd_valid, cmd_ready, cmd_payload = dut.cmd__valid, dut.cmd__ready, dut.cmd__payload
    i_valid, i_ready, i_payload = dut.i__valid, dut.i__ready, dut.i__payload
    o_valid, o_ready, o_payload = dut.o__valid, dut.o__ready, dut.o__payload
    done_valid, done_ready, done_payload = dut.done__valid, dut.done__ready, dut.done__payload
    dut.rst.value = 1
    for port in (tw_valid, pw_valid, cmd_valid, i_valid):
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
    writing: tuple[list[int], list[int], int] | None = None  # the batch under way
    t_pos = p_pos = 0  # its next table and constant word
    t_driven = p_driven = False
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
            wait = batches[batch][2]
            if (not overlap or sent == batch) and len(tokens) >= wait:
                writing, t_pos, p_pos = batches[batch], 0, 0
                batch += 1
                if not writing[0] and not writing[1]:  # nothing to write: done at once
                    writing = None
                    loaded = tiles if not overlap else loaded + 1
        t_want = writing is not None and t_pos < len(writing[0])
        p_want = writing is not None and p_pos < len(writing[1])
        if t_want:
            tw_payload.value = writing[0][t_pos]
        if t_want != t_driven:
            tw_valid.value = int(t_want)
            t_driven = t_want
        if p_want:
            pw_payload.value = writing[1][p_pos]
        if p_want != p_driven:
            pw_valid.value = int(p_want)
            p_driven = p_want
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
        if t_want and tw_ready.value == 1:
            t_pos += 1
            moved = True
        if p_want and pw_ready.value == 1:
            p_pos += 1
            moved = True
        if writing is not None and t_pos == len(writing[0]) and p_pos == len(writing[1]):
            writing = None
            loaded = tiles if not overlap else loaded + 1
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
            f"element-wise engine stalled after {len(outputs)} output words, {len(tokens)} "
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
