"""cocotb testbench for the warp engine's elaborated Verilog.

The host side (`sim.warp.simulate_cocotb`) writes one folder per run; this bench
writes the feature banks, issues each tile command after its tile's words,
feeds the flow stream in order with random gaps, takes output words and done
tokens under random back-pressure, checks both output streams against the
stream rules (`sim.stream_rules`), and writes what it saw. Configuration comes
from the environment so one compiled model serves every run:

    GRACE_WARP_DIR    folder with feature/command/flow/expected .hex files (one
                      hex word per line; expected: the `o` words, optional),
                      loads.txt (each tile's feature word count) and tags.txt
                      (the done tokens expected, in order; optional)
    GRACE_READY_PROB  probability the output sink accepts on a given cycle
    GRACE_DONE_READY_PROB  the same for done tokens (default: GRACE_READY_PROB)
    GRACE_FLOW_PROB   probability the flow source offers an entry on a given cycle
    GRACE_SEED        seed of the stall pattern
    GRACE_OVERLAP     "1": a ping-pong controller (tile k loads while tile k-1
                      computes, once tile k-2's token is back)

It writes out.txt (the `o` words, hex), tokens.txt (done tags), cycles.txt
(edges from the first command's transfer to the last token's) and stalls.txt
(the edges `o`, `done` and `cmd` offered a value that was not taken).

The loop runs once per clock cycle with Python in it, so it does little there:
handles are looked up once, random draws are skipped when a probability is 1,
and output words are compared with the expected ones only at the end.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from sim.engine_bench import draws, read_numbers
from sim.stream_rules import watch_cocotb

STALL_LIMIT = 20_000


@cocotb.test()
async def warp_tiles(dut: object) -> None:
    folder = Path(os.environ["GRACE_WARP_DIR"])
    ready_prob = float(os.environ.get("GRACE_READY_PROB", "1"))
    done_ready_prob = float(os.environ.get("GRACE_DONE_READY_PROB", ready_prob))
    flow_prob = float(os.environ.get("GRACE_FLOW_PROB", "1"))
    seed = int(os.environ.get("GRACE_SEED", "0"))
    overlap = os.environ.get("GRACE_OVERLAP") == "1"
    o_draw = draws(random.Random(seed), ready_prob)
    done_draw = draws(random.Random(f"{seed}:done"), done_ready_prob)
    flow_draw = draws(random.Random(f"{seed}:flow"), flow_prob)
    commands = read_numbers(folder, "command.hex", 16)
    features = read_numbers(folder, "feature.hex", 16)
    flow = read_numbers(folder, "flow.hex", 16)
    counts = read_numbers(folder, "loads.txt")
    ends = [sum(counts[: k + 1]) for k in range(len(counts))]  # each tile's last word + 1

    Clock(dut.clk, 10, unit="ns").start()
    streams = {"o": watch_cocotb(dut, "o"), "done": watch_cocotb(dut, "done")}
    fw_valid, fw_payload = dut.feature_write__valid, dut.feature_write__payload
    cmd_valid, cmd_ready, cmd_payload = dut.cmd__valid, dut.cmd__ready, dut.cmd__payload
    flow_valid, flow_ready, flow_payload = dut.flow__valid, dut.flow__ready, dut.flow__payload
    o_valid, o_ready, o_payload = dut.o__valid, dut.o__ready, dut.o__payload
    done_valid, done_ready, done_payload = dut.done__valid, dut.done__ready, dut.done__payload
    dut.rst.value = 1
    for port in (fw_valid, cmd_valid, flow_valid):
        port.value = 0
    o_ready.value = 0
    done_ready.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    if not overlap:  # everything first: feature_write is always ready
        fw_valid.value = 1
        for word in features:
            fw_payload.value = word
            await FallingEdge(dut.clk)
        fw_valid.value = 0
    loaded = len(commands) if not overlap else 0  # tiles whose words are all written
    position = 0  # next feature word

    outputs: list[int] = []
    tokens: list[int] = []
    sent = flowed = cmd_stalls = 0
    writing = offering = cmd_driven = flow_offering = flow_driven = False
    cycle = first_edge = last_edge = idle = 0
    draw_o, draw_done = ready_prob < 1, done_ready_prob < 1
    o_take = done_take = True  # what the sinks drive on `ready` this cycle
    o_ready.value = 1
    done_ready.value = 1
    falling, read_only = FallingEdge(dut.clk), ReadOnly()
    while len(tokens) < len(commands):
        # tile `loaded` may overwrite its half once tile loaded-2 is done with it
        if loaded < len(commands) and len(tokens) >= loaded - 1:
            fw_payload.value = features[position]
            if not writing:
                fw_valid.value = 1
                writing = True
            position += 1  # always ready: this word transfers at the coming edge
            if position == ends[loaded]:
                loaded += 1
        elif writing:
            fw_valid.value = 0
            writing = False
        # a command goes once its tile's last word has transferred
        offer = sent < loaded and not (writing and position <= ends[sent])
        if offer and not offering:
            cmd_payload.value = commands[sent]
            offering = True
        if offer != cmd_driven:
            cmd_valid.value = int(offer)
            cmd_driven = offer
        if not flow_offering and flowed < len(flow) and flow_draw():
            flow_payload.value = flow[flowed]
            flow_offering = True
        if flow_offering != flow_driven:
            flow_valid.value = int(flow_offering)
            flow_driven = flow_offering
        if draw_o:
            o_take = o_draw()
            o_ready.value = int(o_take)
        if draw_done:
            done_take = done_draw()
            done_ready.value = int(done_take)
        await read_only
        moved = writing
        if offering:
            if cmd_ready.value == 1:
                first_edge = cycle if sent == 0 else first_edge
                sent += 1
                offering = False
                moved = True
            else:
                cmd_stalls += 1
        if flow_offering and flow_ready.value == 1:
            flowed += 1
            flow_offering = False
            moved = True
        if o_take and o_valid.value == 1:
            outputs.append(o_payload.value.to_unsigned())
            moved = True
        if done_take and done_valid.value == 1:
            tokens.append(done_payload.value.to_unsigned())
            last_edge = cycle
            moved = True
        idle = 0 if moved else idle + 1
        assert idle < STALL_LIMIT, (
            f"warp engine stalled after {len(outputs)} output words, {len(tokens)} tokens, "
            f"{sent} commands sent, {loaded} tiles loaded, {flowed} of {len(flow)} flow entries"
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
    has_expected = (folder / "expected.hex").exists()
    expected = read_numbers(folder, "expected.hex", 16) if has_expected else None
    if expected is not None:
        assert len(outputs) == len(expected), f"{len(outputs)} words, expected {len(expected)}"
        bad = [i for i, (a, b) in enumerate(zip(outputs, expected, strict=True)) if a != b]
        assert not bad, (
            f"{len(bad)} of {len(expected)} output words differ; first at #{bad[0]}: "
            f"got {outputs[bad[0]]:#x}, expected {expected[bad[0]]:#x}"
        )
