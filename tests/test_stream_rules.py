"""The stream-rule checker (sim/stream_rules.py) on planted faults and on correct streams.

A one-entry buffer with a planted fault breaks each rule under back-pressure;
the checker must name the stream, the rule and the cycle, both in Amaranth's
simulator (through the tier-1 harness) and under cocotb on the buffer's Verilog
(through the tier-2 bench, on Icarus). Correct streams pass. The conv engine's
`done` stream, held back most of the time, still returns every token in order.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from defs.params import ArrayParams, GraceParams
from rtl.blocks import component_verilog, toplevel_name
from rtl.conv.engine import TOKEN_SLOTS
from rtl.stream_queue import StreamQueue
from sim.amaranth_stream import run_stream_component
from sim.conv import program, random_case, simulate_amaranth, simulate_cocotb, tags
from sim.stream_function import run_stream_function
from sim.stream_rules import RULES, StreamRules, StreamRuleViolation

WIDTH = 8
WORDS = [int(w) for w in np.random.default_rng(0).integers(0, 1 << WIDTH, 200)]
SIGNED = [w - (1 << WIDTH) if w >> (WIDTH - 1) else w for w in WORDS]
FAULT_RULE = {"drops_valid": 1, "changes_payload": 2}


class Buffer(wiring.Component):
    """One entry from `i` to `o`; `fault` plants a broken stream rule on `o`.

    "drops_valid" gives up an output after one edge whether or not it was
    taken (rule 1); "changes_payload" loads the word on offer at `i` even when
    it cannot take it, so a stalled output changes under the sink (rule 2).
    """

    def __init__(self, width: int, fault: str | None = None) -> None:
        if fault is not None and fault not in FAULT_RULE:
            raise ValueError(f"unknown fault {fault!r}")
        self.fault = fault
        super().__init__({"i": In(stream.Signature(width)), "o": Out(stream.Signature(width))})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        full = Signal()
        word = Signal.like(self.o.payload)
        m.d.comb += [self.i.ready.eq(~full), self.o.valid.eq(full), self.o.payload.eq(word)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [full.eq(1), word.eq(self.i.payload)]
        with m.Elif(self.o.ready if self.fault != "drops_valid" else full):
            m.d.sync += full.eq(0)
        if self.fault == "changes_payload":
            with m.If(self.i.valid):
                m.d.sync += word.eq(self.i.payload)
        return m


def violation(rule: int, name: str) -> str:
    """The message's head, as a regular expression."""
    return rf"stream '{re.escape(name)}': rule {rule} \({RULES[rule]}\) broken at cycle \d+: "


# -- the checker itself -------------------------------------------------------


def feed(rules: StreamRules, samples: list[tuple[int, int, int]]) -> StreamRules:
    for valid, ready, payload in samples:
        rules.sample(bool(valid), bool(ready), payload)
    return rules


def test_legal_streams_pass_and_are_counted() -> None:
    """Idle edges, transfers, a payload changing or valid falling right after a
    transfer, and a long stall with everything held: all legal."""
    rules = feed(
        StreamRules("s"),
        [(0, 0, 9), (1, 1, 1), (1, 1, 2), (0, 1, 3), (1, 0, 4), (1, 0, 4), (1, 1, 4), (0, 0, 7)],
    )
    rules.check()
    assert (rules.transfers, rules.stalls, rules.cycle) == (3, 2, 8)


def test_rule_1_names_the_stream_the_cycle_and_the_offer() -> None:
    rules = StreamRules("engine.o")
    with pytest.raises(StreamRuleViolation) as caught:
        feed(rules, [(0, 1, 0), (1, 0, 0x2A), (1, 0, 0x2A), (0, 0, 0x2A)])
    assert str(caught.value) == (
        "stream 'engine.o': rule 1 (valid held until a transfer) broken at cycle 3: "
        "valid fell without a transfer (offered since cycle 1: 0x2a)"
    )


def test_rule_2_names_the_stream_the_cycle_and_both_payloads() -> None:
    rules = StreamRules("engine.done")
    with pytest.raises(StreamRuleViolation) as caught:
        feed(rules, [(1, 0, 5), (1, 0, 6)])
    assert str(caught.value) == (
        "stream 'engine.done': rule 2 (payload stable while valid and not ready) broken at "
        "cycle 1: payload changed from 0x5 to 0x6 without a transfer (offered since cycle 0)"
    )


def test_not_strict_records_every_violation_and_check_raises_at_the_end() -> None:
    rules = feed(StreamRules("s", strict=False), [(1, 0, 1), (1, 0, 2), (0, 0, 2), (1, 1, 3)])
    assert [re.sub(r" \(.*", "", v) for v in rules.violations] == [
        "stream 's': rule 2",
        "stream 's': rule 1",
    ]
    with pytest.raises(StreamRuleViolation, match=r"rule 2 .* \(and 1 more\)$"):
        rules.check()


def test_reset_forgets_an_offer() -> None:
    rules = feed(StreamRules("s"), [(1, 0, 1)])
    rules.reset()
    feed(rules, [(0, 0, 0), (1, 0, 2)])
    assert rules.cycle == 4 and not rules.violations


# -- the Amaranth adapter, through the tier-1 harness ---------------------------


@pytest.mark.parametrize("fault", list(FAULT_RULE))
def test_amaranth_bench_catches_a_planted_fault(fault: str) -> None:
    with pytest.raises(StreamRuleViolation, match=violation(FAULT_RULE[fault], "Buffer.o")):
        run_stream_component(Buffer(WIDTH, fault), WORDS, valid_prob=0.8, ready_prob=0.5, seed=1)


CORRECT = {
    "buffer": lambda: Buffer(WIDTH),
    "queue-3": lambda: StreamQueue(WIDTH, 3),
    "queue-1": lambda: StreamQueue(WIDTH, 1),
}


@pytest.mark.parametrize("kind", list(CORRECT))
def test_amaranth_bench_passes_correct_streams(kind: str) -> None:
    outputs, _ = run_stream_component(CORRECT[kind](), WORDS, valid_prob=0.8, ready_prob=0.5)
    assert outputs.tolist() == WORDS


# -- the cocotb adapter, through the tier-2 bench on Icarus ---------------------


def run_cocotb_buffer(dut: wiring.Component, block: str, build_root: Path) -> object:
    return run_stream_function(
        verilog=component_verilog(dut, block),
        toplevel=toplevel_name(block),
        words=WORDS,
        expected=SIGNED,
        simulator="icarus",
        build_dir=build_root / "sim" / "stream_rules" / block,
        valid_prob=0.8,
        ready_prob=0.5,
        seed=1,
    )


@pytest.mark.parametrize("fault", list(FAULT_RULE))
def test_cocotb_bench_catches_a_planted_fault(fault: str, build_root: Path) -> None:
    block = f"rules_{fault}"
    run = run_cocotb_buffer(Buffer(WIDTH, fault), block, build_root)
    assert run.result.failed == 1
    log = run.result.log.read_text()
    assert re.search(violation(FAULT_RULE[fault], f"{toplevel_name(block)}.o"), log), log[-3000:]


@pytest.mark.parametrize("kind", ["buffer", "queue-3"])
def test_cocotb_bench_passes_correct_streams(kind: str, build_root: Path) -> None:
    run = run_cocotb_buffer(CORRECT[kind](), f"rules_{kind.replace('-', '_')}", build_root)
    run.result.check()
    assert run.outputs.tolist() == SIGNED


# -- the conv engine's done tokens under heavy back-pressure --------------------

PARAMS = GraceParams(name="conv-test", array=ArrayParams(rows=4, cols=3))


def small_tiles(count: int) -> list:
    """`count` small layers resident side by side, so their tokens queue up."""
    rng = np.random.default_rng(5)
    progs, bases = [], [0, 0, 0]
    for k in range(count):
        case = random_case(rng, PARAMS, channels=int(rng.integers(1, 5)),
                           out_channels=int(rng.integers(1, 6)), size=(2, 3), kernel=1,
                           pool=k % 3 == 1)  # fmt: skip
        prog = program(case, PARAMS, tag=200 + k, in_base=bases[0], weight_base=bases[1],
                       param_base=bases[2])  # fmt: skip
        bases[0] += len(prog.input_writes)
        bases[1] += len(prog.weight_writes) // PARAMS.array.rows
        bases[2] += len(prog.param_writes)
        progs.append(prog)
    return progs


def test_done_tokens_survive_heavy_back_pressure() -> None:
    """Tokens rarely taken (10%) pile up in the engine's token queue; every
    output and token still arrives, in order, both streams keep their rules,
    and `done` was really held back."""
    progs = small_tiles(8)
    run = simulate_amaranth(progs, PARAMS, ready_prob=0.7, done_ready_prob=0.1, seed=3)
    np.testing.assert_array_equal(run.outputs, np.concatenate([p.expected for p in progs]))
    assert run.tokens == tags(progs) == list(range(200, 208))
    assert run.stalls["done"] > 8 and run.stalls["o"] > 0


def test_more_tiles_than_token_slots_wait_for_their_credits() -> None:
    """With more short tiles than the engine has done-token slots and tokens
    taken 0.5% of the time, commands must wait for a slot (the queue has no
    other protection against overflow): every token still arrives, in order."""
    count = 2 * TOKEN_SLOTS
    progs = small_tiles(count)
    run = simulate_amaranth(progs, PARAMS, done_ready_prob=0.005, seed=4, stall_limit=50000)
    np.testing.assert_array_equal(run.outputs, np.concatenate([p.expected for p in progs]))
    assert run.tokens == tags(progs) == list(range(200, 200 + count))


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_done_tokens_survive_heavy_back_pressure_on_verilog(
    simulator: str, build_root: Path
) -> None:
    """The same on the Verilog (the build test_conv_engine.py makes for these parameters)."""
    progs = small_tiles(8)
    run, result = simulate_cocotb(
        progs, PARAMS, simulator=simulator, build_dir=build_root / "sim" / "conv" / PARAMS.key(),
        ready_prob=0.7, done_ready_prob=0.1, seed=3,
    )  # fmt: skip
    result.check()
    np.testing.assert_array_equal(run.outputs, np.concatenate([p.expected for p in progs]))
    assert run.tokens == tags(progs)
    assert run.stalls["done"] > 8 and run.stalls["o"] > 0
