"""cocotb testbench for the heatmap unit's elaborated Verilog.

The host side (`sim.heatmap.simulate_cocotb`) writes one folder per run; this
bench drives the three write streams (grid axis, keypoints, Gaussian table) at
once with random gaps, issues each frame's command after its writes, takes
outputs and done tokens under random back-pressure, checks both output streams
against the stream rules (`sim.stream_rules`), and writes what it saw.
Configuration comes from the environment so one compiled model serves every run:

    GRACE_HEATMAP_DIR  folder with grid/keypoint/gaussian/command .hex files (one
                       hex word per line), expected.hex (the `o` bytes),
                       loads.txt (per frame: its grid, keypoint and table
                       writes, the done tokens to await before them, and its
                       outputs: its token must come after the last) and
                       tags.txt (the done tokens expected, in order)
    GRACE_READY_PROB   probability the output sink accepts on a given cycle
    GRACE_DONE_READY_PROB  the same for done tokens (default: GRACE_READY_PROB)
    GRACE_WRITE_PROB   probability a write stream offers its next word on a given cycle
    GRACE_SEED         seed of the stall and gap patterns
    GRACE_OVERLAP      "1": each frame's writes just before its command, once the
                       tokens loads.txt names are back; else every write first

It writes out.txt (the `o` bytes, hex), tokens.txt (done tags), cycles.txt
(edges from the first command's transfer to the last token's) and stalls.txt
(the edges `o`, `done` and `cmd` offered a value that was not taken). The loop
does little per cycle: handles are looked up once, random draws are skipped
when a probability is 1, and outputs are compared only at the end.
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
#: The write streams, in loads.txt's order.
STREAMS = ("grid", "keypoint", "gaussian")


def _batches(
    words: dict[str, list[int]], loads: list[list[int]], overlap: bool
) -> list[tuple[dict[str, list[int]], int]]:
    """The write batches in order: (words per stream, tokens to await first).

    One batch per frame when overlapped, else one batch of everything.
    """
    if not overlap:
        return [(words, 0)]
    batches, at = [], dict.fromkeys(STREAMS, 0)
    for load in loads:
        batch = {}
        for n, count in zip(STREAMS, load[:3], strict=True):
            batch[n] = words[n][at[n] : at[n] + count]
            at[n] += count
        batches.append((batch, load[3]))
    return batches


class _Writer:
    """One write stream: offers its batch's words in order, with random gaps."""

    def __init__(self, dut: object, name: str, draw: object) -> None:
        self.valid = getattr(dut, f"{name}_write__valid")
        self.ready = getattr(dut, f"{name}_write__ready")
        self.payload = getattr(dut, f"{name}_write__payload")
        self.draw = draw
        self.words: list[int] = []
        self.at = 0
        self.offering = self.driven = False
        self.valid.value = 0

    def start(self, words: list[int]) -> None:
        self.words, self.at = words, 0

    @property
    def done(self) -> bool:
        return self.at == len(self.words)

    def drive(self) -> None:
        """Before the edge: offer the next word (held until taken once offered)."""
        if not self.offering and not self.done and self.draw():
            self.payload.value = self.words[self.at]
            self.offering = True
        if self.offering != self.driven:
            self.valid.value = int(self.offering)
            self.driven = self.offering

    def sample(self) -> bool:
        """In the read-only phase: whether the word transferred at this edge."""
        if self.offering and self.ready.value == 1:
            self.at += 1
            self.offering = False
            return True
        return False


@cocotb.test()
async def heatmap_frames(dut: object) -> None:
    folder = Path(os.environ["GRACE_HEATMAP_DIR"])
    ready_prob = float(os.environ.get("GRACE_READY_PROB", "1"))
    done_ready_prob = float(os.environ.get("GRACE_DONE_READY_PROB", ready_prob))
    write_prob = float(os.environ.get("GRACE_WRITE_PROB", "1"))
    seed = int(os.environ.get("GRACE_SEED", "0"))
    overlap = os.environ.get("GRACE_OVERLAP") == "1"
    o_draw = draws(random.Random(seed), ready_prob)
    done_draw = draws(random.Random(f"{seed}:done"), done_ready_prob)
    commands = read_numbers(folder, "command.hex", 16)
    numbers = read_numbers(folder, "loads.txt")
    loads = [numbers[k : k + 5] for k in range(0, len(numbers), 5)]
    ends = list(accumulate(load[4] for load in loads))  # each frame's last output + 1
    words = {n: read_numbers(folder, f"{n}.hex", 16) for n in STREAMS}
    batches = _batches(words, loads, overlap)
    frames = len(commands)

    Clock(dut.clk, 10, unit="ns").start()
    streams = {"o": watch_cocotb(dut, "o"), "done": watch_cocotb(dut, "done")}
    writers = [_Writer(dut, n, draws(random.Random(f"{seed}:{n}"), write_prob)) for n in STREAMS]
    cmd_valid, cmd_ready, cmd_payload = dut.cmd__valid, dut.cmd__ready, dut.cmd__payload
    o_valid, o_ready, o_payload = dut.o__valid, dut.o__ready, dut.o__payload
    done_valid, done_ready, done_payload = dut.done__valid, dut.done__ready, dut.done__payload
    dut.rst.value = 1
    cmd_valid.value = 0
    o_ready.value = 0
    done_ready.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    outputs: list[int] = []
    tokens: list[int] = []
    batch = 0  # next write batch to start
    writing = False  # a batch is under way
    loaded = 0  # commands whose writes have all transferred (at an earlier edge)
    sent = cmd_stalls = 0
    offering = cmd_driven = False
    cycle = first_edge = last_edge = idle = 0
    draw_o, draw_done = ready_prob < 1, done_ready_prob < 1
    o_take = done_take = True  # what the sinks drive on `ready` this cycle
    o_ready.value = 1
    done_ready.value = 1
    falling, read_only = FallingEdge(dut.clk), ReadOnly()
    while len(tokens) < frames:
        # a batch starts once the commands before it are sent and its tokens are back
        if not writing and batch < len(batches):
            batch_words, wait = batches[batch]
            if (not overlap or sent == batch) and len(tokens) >= wait:
                for writer, n in zip(writers, STREAMS, strict=True):
                    writer.start(batch_words[n])
                batch += 1
                writing = True
        for writer in writers:
            writer.drive()
        # a command goes once its writes have transferred, at an edge before its own
        offer = sent < loaded
        if offer and not offering:
            cmd_payload.value = commands[sent]
            offering = True
        if offer != cmd_driven:
            cmd_valid.value = int(offer)
            cmd_driven = offer
        if draw_o:
            o_take = o_draw()
            o_ready.value = int(o_take)
        if draw_done:
            done_take = done_draw()
            done_ready.value = int(done_take)
        await read_only
        moved = False
        for writer in writers:
            moved |= writer.sample()
        if writing and all(w.done for w in writers):
            writing = False
            loaded = frames if not overlap else loaded + 1
        if offering:
            if cmd_ready.value == 1:
                first_edge = cycle if sent == 0 else first_edge
                sent += 1
                offering = False
                moved = True
            else:
                cmd_stalls += 1
        sent_before = len(outputs)  # outputs at earlier edges
        if o_take and o_valid.value == 1:
            outputs.append(o_payload.value.to_unsigned())
            moved = True
        if done_take and done_valid.value == 1:
            k = len(tokens)
            assert k >= len(ends) or sent_before >= ends[k], (
                f"frame {k}'s done token came with {sent_before} outputs sent, "
                f"before its last (output {ends[k]})"
            )
            tokens.append(done_payload.value.to_unsigned())
            last_edge = cycle
            moved = True
        idle = 0 if moved else idle + 1
        assert idle < STALL_LIMIT, (
            f"heatmap unit stalled after {len(outputs)} outputs, {len(tokens)} tokens, "
            f"{sent} commands sent, {batch} write batches started"
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
    expected = read_numbers(folder, "expected.hex", 16)
    assert len(outputs) == len(expected), f"{len(outputs)} outputs, expected {len(expected)}"
    bad = [k for k, (a, b) in enumerate(zip(outputs, expected, strict=True)) if a != b]
    assert not bad, (
        f"{len(bad)} of {len(expected)} outputs differ; first at #{bad[0]}: "
        f"got {outputs[bad[0]]:#x}, expected {expected[bad[0]]:#x}"
    )
