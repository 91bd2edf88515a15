"""L3's machine runs the warp and element-wise engines' and the units' instructions.

Each test lays a unit's host words (its write streams, inputs and command, as
the unit's own tests send them) into a memory image, as a program of LOADs,
the compute instruction and a STORE of its output stream, and runs it on L3:
the stored words are what the unit is proven to return.
"""

from __future__ import annotations

import numpy as np
import pytest

from compiler.isa import decode, encode
from defs.isa import Buffer, Opcode, Queue, Source
from defs.params import preset
from rtl.act.softmax import command_layout as softmax_command
from sim.act import place as place_act
from sim.act import sweep_cases as act_cases
from sim.heatmap import place as heatmap_place
from sim.heatmap import sweep_cases as heatmap_cases
from sim.l3.machine import ProgramError, run, source_bits, word_bits
from sim.motion import frame_cases, frame_writes, random_frame, unpack_entries
from sim.motion import place as motion_place
from sim.softmax import expected as softmax_expected
from sim.softmax import place as place_softmax
from sim.softmax import sweep_cases as softmax_cases
from sim.warp import program as warp_program
from sim.warp import random_case as warp_case

TINY = preset("tiny")


def _program(
    loads: list[tuple[Buffer, list[int]]], op: Opcode, command: dict, source: Source, outputs: int
) -> tuple[list[int], bytearray, int]:
    """(words, memory, output address): the loads, the command, the store, the ENDs."""
    memory, words = bytearray(), []
    for buffer, values in loads:
        size = -(-word_bits(buffer, TINY) // 8)
        transfer = {"dram_addr": len(memory), "stride": 0, "rows": 1, "row_words": len(values)}
        memory += b"".join(v.to_bytes(size, "little") for v in values)
        if values:
            load = {"buffer": buffer, "buffer_addr": 0} | transfer
            words.append(encode(Opcode.LOAD, TINY, load))
    last = decode(words[-1], TINY)  # the last load signals the compute queue
    words[-1] = encode(Opcode.LOAD, TINY, last.fields, {"push_next": 1})
    words.append(encode(op, TINY, command, {"pop_prev": 1, "push_next": 1}))
    out_addr = len(memory)
    size = -(-source_bits(source, TINY) // 8)
    memory += bytes(outputs * size)
    store = {"source": source, "dram_addr": out_addr, "stride": 0, "rows": 1, "row_words": outputs}
    words.append(encode(Opcode.STORE, TINY, store, {"pop_prev": 1}))
    words += [encode(Opcode.END, TINY, {"queue": q}) for q in Queue]
    return words, memory, out_addr


def _stored(memory: bytearray, addr: int, count: int, source: Source) -> list[int]:
    size = -(-source_bits(source, TINY) // 8)
    return [
        int.from_bytes(memory[addr + k * size : addr + (k + 1) * size], "little")
        for k in range(count)
    ]


@pytest.mark.parametrize("occlusion", [False, True])
def test_a_warp_program(occlusion: bool) -> None:
    rng = np.random.default_rng(3)
    case = warp_case(rng, TINY, 5, (9, 7), (6, 5), occlusion=occlusion)
    prog = warp_program(case, TINY)
    loads = [(Buffer.WARP_FEATURE, prog.feature_writes), (Buffer.WARP_FLOW, prog.flow)]
    count = len(prog.expected) // TINY.warp.lanes
    words, memory, out = _program(loads, Opcode.WARP, prog.command_fields, Source.WARP, count)
    run(words, memory, TINY)
    got = np.array(_stored(memory, out, count, Source.WARP), np.int64)
    np.testing.assert_array_equal(got.astype(np.uint8).view(np.int8), prog.expected)


def test_act_programs() -> None:
    for prog in place_act(act_cases(TINY, 8, seed=4, max_beats=120), TINY):
        loads = [(Buffer.ACT_TABLE, prog.table_writes), (Buffer.ACT_PARAM, prog.param_writes)]
        loads.append((Buffer.ACT_INPUT, prog.inputs))
        words, memory, out = _program(
            loads, Opcode.ACT, prog.command_fields, Source.ACT, prog.words
        )
        run(words, memory, TINY)
        got = np.array(_stored(memory, out, prog.words, Source.ACT))[:, None] & 0xFF
        np.testing.assert_array_equal(got[prog.mask], prog.expected[prog.mask])


def test_softmax_programs() -> None:
    cases = softmax_cases(TINY, 6, seed=6)
    got = []
    for case, tile in zip(cases, place_softmax(cases, TINY), strict=True):
        exp = tile.writes["exp_write"] or place_softmax([case], TINY)[0].writes["exp_write"]
        loads = [(Buffer.SOFTMAX_EXP, exp), (Buffer.SOFTMAX_INPUT, tile.inputs)]
        fields = softmax_command(TINY).from_bits(tile.command)
        command = {n: int(getattr(fields, n)) for n in ("pixels", "channels", "tag")}
        words, memory, out = _program(loads, Opcode.SOFTMAX, command, Source.SOFTMAX, tile.words)
        run(words, memory, TINY)
        got += _stored(memory, out, tile.words, Source.SOFTMAX)
    np.testing.assert_array_equal(got, softmax_expected(cases))


def test_a_command_without_its_inputs_is_refused() -> None:
    command = {"pixels": 2, "channels": 3, "tag": 0}
    words = [
        encode(Opcode.SOFTMAX, TINY, command),
        *[encode(Opcode.END, TINY, {"queue": q}) for q in Queue],
    ]
    with pytest.raises(ProgramError, match="instruction 0: SOFTMAX: SOFTMAX: the input stream"):
        run(words, bytearray(16), TINY)


def test_heatmap_programs() -> None:
    for prog in heatmap_place(heatmap_cases(TINY, 6, seed=9), TINY):
        loads = [
            (Buffer.HEATMAP_GRID, prog.writes["grid"]),
            (Buffer.HEATMAP_KEYPOINT, prog.writes["keypoint"]),
            (Buffer.HEATMAP_GAUSSIAN, prog.writes["gaussian"]),
        ]
        command = {"size": prog.size, "keypoints": prog.keypoints, "tag": prog.tag}
        words, memory, out = _program(loads, Opcode.HEATMAP, command, Source.HEATMAP, prog.outputs)
        run(words, memory, TINY)
        got = np.array(_stored(memory, out, prog.outputs, Source.HEATMAP), np.int64)
        np.testing.assert_array_equal(got.astype(np.uint8).view(np.int8), prog.expected)


def test_motion_programs() -> None:
    """A frame's K + 1 motion maps and its flow, each in a program of its own."""
    rng = np.random.default_rng(10)
    for kp, jac in (("corners", "limit"), ("random", "translation"), ("extreme", "random")):
        frame = random_frame(rng, 4, 6, kp=kp, jac=jac)
        writes = frame_writes(frame, TINY)
        for prog in motion_place(frame_cases(rng, frame, ("random", "full")), TINY):
            loads = [
                (Buffer.MOTION_GRID, writes.grid),
                (Buffer.MOTION_KEYPOINT, writes.keypoints),
                (Buffer.MOTION_JACOBIAN, writes.jacobians),
                (Buffer.MOTION_MASK, prog.inputs),
            ]
            fields = prog.command_fields
            words, memory, out = _program(loads, Opcode.MOTION, fields, Source.MOTION, prog.entries)
            run(words, memory, TINY)
            got = unpack_entries(_stored(memory, out, prog.entries, Source.MOTION))
            np.testing.assert_array_equal(got, prog.expected, err_msg=prog.case.describe())
