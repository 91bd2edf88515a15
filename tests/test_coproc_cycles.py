"""The co-processor cycle model (rtl/coproc_cycles.py) on programs small enough to
derive by hand from the RTL's declared latencies. Its error against the RTL on
whole programs is checked where the RTL runs them (tests/test_coproc_rtl.py,
`grace sim --block top`, within 2 %); two short programs here also run on
Amaranth's simulator of the RTL, where the model must count exactly
`FIRST_WAY_IN` fewer cycles (the first instruction's way into its queue and
unit, which it leaves out), so a latency the RTL declares wrongly shows.
"""

from __future__ import annotations

import itertools

import pytest

from compiler.isa import body_fields, decode, encode
from compiler.report import command_cycles
from defs.isa import Buffer, Opcode, Queue
from defs.params import preset
from rtl.coproc import fetch
from rtl.coproc.compute_unit import ComputeUnit
from rtl.coproc.core import QUEUE_LINK_STAGES
from rtl.coproc.decode import DECODE_LATENCY, TAKE_LATENCY
from rtl.coproc.load_unit import LoadUnit
from rtl.coproc.memory_port import MemoryPort
from rtl.coproc.reader import TransferReader
from rtl.coproc.routers import Router
from rtl.coproc.tokens import PUSH_LATENCY, TokenCounter
from rtl.coproc_cycles import program_cycles, stall_probability
from sim.coproc_host import host_image, run_pysim
from sim.coproc_programs import few_layers

PARAMS = preset("tiny")
ENDS = [encode(Opcode.END, PARAMS, {"queue": q}) for q in Queue]
CONV_CYCLES = 5_000  # a made-up price: the chain below needs no real command


def _price(word: int) -> int:
    return command_cycles(decode(word, PARAMS), PARAMS)


def _cycles(words: list[int], latency: int = 1, stalls: int = 0, price=_price) -> int:
    return program_cycles(
        words, PARAMS, latency=latency, stall_threshold=stalls, price=price
    ).cycles


def _load(words: int, *, apart: bool = False, **tokens: int) -> int:
    """`words` conv input words, in one row, or `apart`: each in its own bus word."""
    rows, row_words = (words, 1) if apart else (1, words)
    fields = {"buffer": Buffer.CONV_INPUT, "buffer_addr": 0, "dram_addr": 0,
              "stride": PARAMS.coproc.bus_bytes, "rows": rows, "row_words": row_words}  # fmt: skip
    return encode(Opcode.LOAD, PARAMS, fields, tokens)


def _conv(**tokens: int) -> int:
    return encode(Opcode.CONV, PARAMS, {n: 0 for n, _ in body_fields(Opcode.CONV, PARAMS)}, tokens)


def _first_fetch(latency: int) -> int:
    """The first instruction's dispatch: the fetcher asks START_TO_REQUEST after
    `start` for the instruction's bus words, one a cycle, takes them one a cycle as
    they come (through the port's registers and its FIFO), and the word waits a
    DECODE_LATENCY in the decode register."""
    parts = fetch.parts(PARAMS.coproc.bus_bytes)
    last_request = fetch.START_TO_REQUEST + parts
    trip = MemoryPort.LATENCY + latency + fetch.ANSWER_TO_WORD
    return last_request + trip + parts + DECODE_LATENCY


def _load_alone(words: int, latency: int) -> int:
    """A LOAD decided on at the head (the model starts a unit's first instruction at
    TAKEN, not counting its way into the queue): the rest of the check, then a word a
    cycle (tiny's conv input words are 4 bytes: half a bus word), the last the port's
    registers, `latency` and ANSWER_TO_WORD after its request."""
    return (
        LoadUnit.CHECK_TO_DISPATCH - TAKE_LATENCY + TransferReader.CMD_TO_REQUEST + words
        + MemoryPort.LATENCY + latency + TransferReader.ANSWER_TO_WORD
    )  # fmt: skip


@pytest.mark.parametrize(("words", "latency"), [(64, 1), (256, 1), (256, 20)])
def test_a_single_load_takes_its_fetch_check_words_and_round_trip(words, latency) -> None:
    """... and its last word's way through the router into the engine's buffer."""
    got = _cycles([_load(words), *ENDS], latency)
    assert got == _first_fetch(latency) + _load_alone(words, latency) + Router.DELIVERY_LATENCY


#: Cycles the RTL takes beyond the model on a program: its first instruction's way
#: into its queue and unit.
FIRST_WAY_IN = 3 + QUEUE_LINK_STAGES


@pytest.mark.parametrize("waits", [False, True])
def test_the_rtl_takes_the_models_cycles(waits: bool) -> None:
    """A LOAD of 64 words alone, or with a token a compute SYNC waits for (the push's
    register and the counter, PUSH_LATENCY + TokenCounter.LATENCY), on the RTL."""
    sync = encode(Opcode.SYNC, PARAMS, {"queue": Queue.COMPUTE}, {"pop_prev": 1})
    program = [_load(64, push_next=1), sync, *ENDS] if waits else [_load(64), *ENDS]
    run = run_pysim(PARAMS, host_image(bytes(4096), program), latency=1, preload=True)
    assert run.fault == 0
    assert run.cycles == _cycles(program, latency=1) + FIRST_WAY_IN


def test_a_chain_that_cannot_overlap_is_the_sum_of_its_parts() -> None:
    """LOAD → CONV by a token: the router pushes it WORD_TO_TOKEN after the LOAD's last
    word, the CONV starts a token's latency later, then issues and runs its cycles; the
    compute queue's END retires DONE_TO_RETIRE + 1 edges after the engine's done."""
    latency = 20
    price = lambda word: CONV_CYCLES  # noqa: E731
    load = _first_fetch(latency) + _load_alone(256, latency)
    conv = ComputeUnit.ISSUE_LATENCY + CONV_CYCLES + ComputeUnit.DONE_TO_RETIRE + 1
    chain = [_load(256, push_next=1), _conv(pop_prev=1), *ENDS]
    token = Router.WORD_TO_TOKEN + PUSH_LATENCY + TokenCounter.LATENCY
    assert _cycles(chain, latency, price=price) == load + token + conv
    # without the token they overlap: the CONV (issued at its own fetch) ends last
    apart = [_load(256), _conv(), *ENDS]
    # the second instruction, cycles_per_instruction on
    fetched = _first_fetch(latency) + fetch.cycles_per_instruction(PARAMS.coproc.bus_bytes)
    assert _cycles(apart, latency, price=price) == fetched + conv


def test_stalls_stretch_a_transfer_by_the_share_of_cycles_the_port_can_take() -> None:
    """Words a bus word each want the port every cycle; packed two to a bus word they
    want half of it, which the stalls leave."""
    words, threshold = 4096, 120
    p = stall_probability(threshold)
    assert p == pytest.approx(threshold / 256, abs=1e-3)
    apart = [_load(words, apart=True), *ENDS]
    extra = _cycles(apart, stalls=threshold) - _cycles(apart)
    assert extra == pytest.approx(words * p / (1 - p), abs=10)  # the fetch's few too
    packed = [_load(words), *ENDS]
    assert _cycles(packed, stalls=threshold) - _cycles(packed) < 10


def test_a_layer_gets_slower_with_latency_and_stalls() -> None:
    words = few_layers(PARAMS, seed=3).words
    by_latency = [_cycles(words, latency=n) for n in (1, 10, 20, 40, 63)]
    by_stalls = [_cycles(words, latency=20, stalls=n) for n in (0, 30, 60, 120, 200)]
    assert by_latency == sorted(by_latency) and by_latency[0] < by_latency[-1]
    assert all(a < b for a, b in itertools.pairwise(by_stalls))
    # and no faster than its engines' commands one after another
    compute = sum(_price(w) for w in words if decode(w, PARAMS).op == Opcode.CONV)
    assert by_latency[0] > compute
