"""The co-processor never hangs: every fault ends a run with its code and done.

Short programs in Amaranth's simulator (rtl/coproc/sim_top.py): a lowered conv
layer, bit-exact with L3, then the same program broken one way at a time —
an illegal word, a transfer outside the image, a bus error, a token that never
comes (the watchdog), an engine starved of its input stream, tokens that are
never taken, a program cut short — each must end in done with the fault's
code and, where one is to blame, the instruction's index. A run after a fault
starts clean.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from compiler.conv_layer import read_output
from compiler.isa import body_fields, decode, encode
from defs.coproc import Fault
from defs.isa import Buffer, Opcode, Queue
from defs.params import preset
from rtl.coproc.tokens import MAX as TOKEN_MAX
from sim.coproc_host import HostImage, host_image, run_pysim
from sim.coproc_programs import one_layer

PARAMS = preset("tiny")


@pytest.fixture(scope="module")
def layer_program():
    return one_layer(PARAMS)


def _first(words: list[int], op: Opcode) -> int:
    return next(i for i, w in enumerate(words) if w & 0xF == op)


def _with(words: list[int], index: int, **fields: int) -> list[int]:
    inst = decode(words[index], PARAMS)
    changed = list(words)
    changed[index] = encode(inst.op, PARAMS, inst.fields | fields, inst.tokens)
    return changed


def _end() -> list[int]:
    return [encode(Opcode.END, PARAMS, {"queue": q}) for q in Queue]


@pytest.mark.parametrize(("latency", "stalls"), [(1, 0), (20, 90)])
def test_a_conv_layer_is_bit_exact_with_l3(layer_program, latency: int, stalls: int) -> None:
    lowered, expected = layer_program
    result = run_pysim(
        PARAMS, host_image(lowered.memory, lowered.words), latency=latency, stall_threshold=stalls
    )
    assert result.fault == Fault.NONE
    assert bytes(result.memory) == bytes(expected)
    np.testing.assert_array_equal(
        read_output(lowered, result.memory, PARAMS), read_output(lowered, expected, PARAMS)
    )
    assert result.counters["conv_busy"] > 0 and result.cycles > result.counters["conv_busy"]


def test_illegal_words_are_refused_where_they_stand(layer_program) -> None:
    lowered, _ = layer_program
    words = list(lowered.words)
    k = _first(words, Opcode.CONV)
    words[k] |= 1 << 250  # a bit past the CONV's fields
    result = run_pysim(PARAMS, host_image(lowered.memory, words))
    assert (result.fault, result.fault_index) == (Fault.ILLEGAL_INSTRUCTION, k)
    result = run_pysim(PARAMS, host_image(lowered.memory, [0, *_end()]))  # opcode 0
    assert (result.fault, result.fault_index) == (Fault.ILLEGAL_INSTRUCTION, 0)
    load = encode(Opcode.LOAD, PARAMS, decode(words[0], PARAMS).fields, {"pop_prev": 1})
    result = run_pysim(PARAMS, host_image(lowered.memory, [load, *_end()]))
    assert (result.fault, result.fault_index) == (Fault.ILLEGAL_INSTRUCTION, 0)


def test_transfers_outside_the_image_or_buffer_are_refused(layer_program) -> None:
    lowered, _ = layer_program
    size = len(lowered.memory)
    k = _first(lowered.words, Opcode.LOAD)
    for fields in (
        {"dram_addr": size - 1},
        {"rows": 0},
        {"buffer_addr": PARAMS.buffers.input_depth},
    ):
        words = _with(lowered.words, k, **fields)
        result = run_pysim(PARAMS, host_image(lowered.memory, words))
        assert (result.fault, result.fault_index) == (Fault.ADDRESS, k), fields
    k = _first(lowered.words, Opcode.STORE)
    result = run_pysim(PARAMS, host_image(lowered.memory, _with(lowered.words, k, dram_addr=size)))
    assert (result.fault, result.fault_index) == (Fault.ADDRESS, k)
    result = run_pysim(PARAMS, host_image(lowered.memory, _with(lowered.words, 0, buffer=20)))
    assert (result.fault, result.fault_index) == (Fault.ILLEGAL_INSTRUCTION, 0)


def test_a_bus_error_ends_the_run(layer_program) -> None:
    lowered, _ = layer_program
    # the image's second half answers err: the layer's weights live there
    words = host_image(lowered.memory, lowered.words)
    result = run_pysim(PARAMS, words, error_from=len(lowered.memory) // 2 // 8, soft_reset=True)
    assert result.fault == Fault.BUS_ERROR
    # CONTROL's soft reset then clears the fault and done, and no irq rises meanwhile
    assert result.status_after_reset == 0 and not result.irq_during_reset


def test_a_token_that_never_comes_trips_the_watchdog(layer_program) -> None:
    lowered, expected = layer_program
    k = _first(lowered.words, Opcode.CONV)
    inst = decode(lowered.words[k], PARAMS)
    words = list(lowered.words)
    words[k] = encode(inst.op, PARAMS, inst.fields, inst.tokens | {"pop_next": 1})
    result = run_pysim(PARAMS, host_image(lowered.memory, words), watchdog=500)
    assert result.fault == Fault.WATCHDOG
    assert result.cycles < 5_000
    # the next run starts clean
    result = run_pysim(PARAMS, host_image(lowered.memory, lowered.words))
    assert result.fault == Fault.NONE and bytes(result.memory) == bytes(expected)


def test_an_engine_starved_of_its_stream_trips_the_watchdog() -> None:
    """An ACT over 8 pixels with no input loaded: the engine waits for words forever."""
    command = {name: 0 for name, _ in body_fields(Opcode.ACT, PARAMS)}
    command |= {"pixels": 8, "groups": 1}
    words = [encode(Opcode.ACT, PARAMS, command), *_end()]
    result = run_pysim(PARAMS, host_image(bytes(64), words), watchdog=300)
    assert result.fault == Fault.WATCHDOG


def test_tokens_never_taken_overflow() -> None:
    sync = encode(Opcode.SYNC, PARAMS, {"queue": Queue.LOAD}, {"push_next": 1})
    result = run_pysim(PARAMS, host_image(bytes(64), [sync] * 256 + _end()))
    assert result.fault == Fault.TOKEN_OVERFLOW


def test_an_overflow_by_a_programs_last_token_is_reported() -> None:
    """The overflowing token is the program's last act: a LOAD's, pushed as its transfer
    ends, after the load queue's END has retired. The run must not end before the
    overflow, registered on its way from the router to the fault, is seen."""
    fields = {"buffer": Buffer.CONV_INPUT, "buffer_addr": 0, "dram_addr": 0,
              "stride": PARAMS.coproc.bus_bytes, "rows": 1, "row_words": 4}  # fmt: skip
    load = encode(Opcode.LOAD, PARAMS, fields, {"push_next": 1})
    sync = encode(Opcode.SYNC, PARAMS, {"queue": Queue.LOAD}, {"push_next": 1})
    others = [encode(Opcode.END, PARAMS, {"queue": q}) for q in (Queue.COMPUTE, Queue.STORE)]
    end = encode(Opcode.END, PARAMS, {"queue": Queue.LOAD})
    for syncs, fault in ((TOKEN_MAX, Fault.TOKEN_OVERFLOW), (TOKEN_MAX - 1, Fault.NONE)):
        words = [*others, *[sync] * syncs, load, end]
        result = run_pysim(PARAMS, host_image(bytes(64), words))
        assert result.fault == fault, f"{syncs} tokens before the LOAD's"


def test_a_program_without_its_ends_is_refused(layer_program) -> None:
    lowered, _ = layer_program
    image = host_image(lowered.memory, lowered.words[:-1])
    result = run_pysim(PARAMS, image)
    assert result.fault == Fault.PROGRAM_END
    after_end = [*_end(), lowered.words[0]]
    result = run_pysim(PARAMS, host_image(lowered.memory, after_end))
    assert (result.fault, result.fault_index) == (Fault.ILLEGAL_INSTRUCTION, 3)


def test_a_program_base_off_32_bytes_is_an_address_fault(layer_program) -> None:
    """The fetcher reads whole bus words: a PROGRAM_BASE that is not a multiple of 32 is
    refused (ADDRESS, index 0) and nothing is fetched; the run still ends in done."""
    lowered, _ = layer_program
    good = host_image(lowered.memory, lowered.words)
    (base, count), shift = good.programs[0], 8
    blob = good.blob[:base] + bytes(shift) + good.blob[base:]
    moved = HostImage(blob, good.image_bytes, ((base + shift, count),))
    result = run_pysim(PARAMS, moved)
    assert (result.fault, result.fault_index) == (Fault.ADDRESS, 0)
    assert result.counters["load_busy"] == 0


@pytest.mark.parametrize(
    ("bus_bytes", "odd_half"), [(16, False), (32, False), (64, False), (64, True)]
)
def test_other_bus_widths_fetch_and_run_the_layer(bus_bytes: int, odd_half: bool) -> None:
    """A bus of 16 bytes takes two bus words an instruction, 32 one, 64 half a word each
    (`odd_half`: the program starts in a word's upper half): still bit-exact."""
    params = PARAMS.replace(coproc=dataclasses.replace(PARAMS.coproc, bus_bytes=bus_bytes))
    lowered, expected = one_layer(params)
    memory = bytes(lowered.memory)
    image = host_image(memory, lowered.words)
    if (image.programs[0][0] // 32) % 2 != odd_half:  # move the program by 32 bytes
        base, count = image.programs[0]
        image = HostImage(image.blob[:base] + bytes(32) + image.blob[base:], len(memory),
                          ((base + 32, count),))  # fmt: skip
    assert (image.programs[0][0] // 32) % 2 == odd_half or bus_bytes < 64
    result = run_pysim(params, image)
    assert result.fault == Fault.NONE
    assert bytes(result.memory) == bytes(expected)
