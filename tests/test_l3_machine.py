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
from defs.params import ActParams, GraceParams, WarpParams, preset
from rtl.act.heatmap_layouts import gaussian_write_layout
from rtl.act.keypoints import grid_write_layout, jacobian_write_layout, keypoint_write_layout
from rtl.act.layouts import ActOp, param_write_layout
from rtl.act.softmax import command_layout as softmax_command
from rtl.conv_layouts import channel_param_layout
from rtl.warp.layouts import feature_write_layout
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
    with pytest.raises(
        ProgramError,
        match=r"instruction 0: SOFTMAX\.pixels: the SOFTMAX_INPUT stream holds 0 words",
    ):
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


# -- L3's refusals: each names the instruction's index and the field --------------------


def _ends(params: GraceParams = TINY) -> list[int]:
    return [encode(Opcode.END, params, {"queue": q}) for q in Queue]


def _load(
    buffer: Buffer,
    count: int,
    params: GraceParams = TINY,
    *,
    buffer_addr: int = 0,
    tokens: dict[str, int] | None = None,
) -> int:
    """A LOAD of `count` words from byte 0."""
    fields = {"buffer": buffer, "buffer_addr": buffer_addr, "dram_addr": 0, "stride": 0}
    return encode(Opcode.LOAD, params, fields | {"rows": 1, "row_words": count}, tokens)


def _refusal(words: list[int], memory: bytes, params: GraceParams = TINY) -> str:
    with pytest.raises(ProgramError) as info:
        run(words, bytearray(memory), params)
    assert "\n" not in str(info.value)
    return str(info.value)


def _words(values: list[int], buffer: Buffer, params: GraceParams = TINY) -> bytes:
    size = -(-word_bits(buffer, params) // 8)
    return b"".join(v.to_bytes(size, "little") for v in values)


ACT = {"op": ActOp.TABLE, "pixels": 2, "groups": 1, "param_base": 0, "table": 0, "relu": 0}
PULL, PUSH = {"pop_prev": 1}, {"push_next": 1}


def test_transfers_move_at_least_a_word() -> None:
    load = {"buffer": Buffer.ACT_INPUT, "buffer_addr": 0, "dram_addr": 0, "stride": 0}
    words = [encode(Opcode.LOAD, TINY, load | {"rows": 0, "row_words": 1}), *_ends()]
    assert _refusal(words, bytes(8)) == ("instruction 0: LOAD.rows = 0: a transfer moves 1 or more")


def test_a_stream_takes_buffer_addr_0() -> None:
    words = [_load(Buffer.ACT_INPUT, 1, buffer_addr=5), *_ends()]
    assert _refusal(words, bytes(8)).startswith(
        "instruction 0: LOAD.buffer_addr = 5: ACT_INPUT is a stream"
    )


def test_bits_set_in_a_words_padding_are_refused() -> None:
    """A 69-bit CONV_PARAM word in 9 bytes with bit 71 set (NumPy's ValueError from the
    layout before), and a 44-bit WARP_FLOW entry with bit 47 set (refused only at the
    WARP command before, by the same ValueError)."""
    words = [_load(Buffer.CONV_PARAM, 1), *_ends()]
    assert _refusal(words, bytes(8) + b"\x80") == (
        "instruction 0: LOAD.dram_addr: word 0 (byte 0) sets bits beyond the 69-bit CONV_PARAM word"
    )
    words = [_load(Buffer.WARP_FLOW, 2), *_ends()]
    assert _refusal(words, bytes(11) + b"\x80") == (
        "instruction 0: LOAD.dram_addr: word 1 (byte 6) sets bits beyond the 44-bit WARP_FLOW word"
    )


def test_constants_the_requantizer_cannot_shift_by_are_refused() -> None:
    """A shift of 48..63 fits the 6-bit field but not the requantizer (max_shift 47):
    NumPy-side ValueError from requantize at the command before."""
    conv = channel_param_layout(TINY).const({"shift": 48, "multiplier": 1}).as_bits()
    words = [_load(Buffer.CONV_PARAM, 1), *_ends()]
    assert _refusal(words, _words([conv], Buffer.CONV_PARAM)) == (
        "instruction 0: LOAD.dram_addr: word 0 (byte 0): CONV_PARAM shift = 48, the "
        "requantizer shifts by 0..47"
    )
    act = param_write_layout(TINY).const({"addr": 2, "data": {"shift": 63}}).as_bits()
    words = [_load(Buffer.ACT_PARAM, 1), *_ends()]
    assert _refusal(words, _words([act], Buffer.ACT_PARAM)) == (
        "instruction 0: LOAD.dram_addr: word 0 (byte 0): ACT_PARAM write: shift = 63 (lane 0, "
        "addr 2), the requantizer shifts by 0..47"
    )


def test_a_pop_no_push_gives_names_the_instruction_that_waits() -> None:
    words = [
        _load(Buffer.ACT_INPUT, 2, tokens=PUSH),
        encode(Opcode.ACT, TINY, ACT | {"tag": 0}, PULL),
        encode(Opcode.SYNC, TINY, {"queue": Queue.COMPUTE}, PULL),
        *_ends(),
    ]
    assert _refusal(words, bytes(2)) == (
        "the program can never finish: instruction 2 (SYNC, compute queue) waits for a token "
        "from the load queue (SYNC.pop_prev: its token 2, the load queue gives 1)"
    )


def test_a_push_no_pop_takes_is_refused() -> None:
    """A token left over would be taken by whatever program runs next."""
    words = [_load(Buffer.ACT_INPUT, 2, tokens=PUSH), *_ends()]
    assert _refusal(words, bytes(2)) == (
        "instruction 0: LOAD.push_next: a token the compute queue never takes (it takes 0 of "
        "the 1 the load queue gives)"
    )


def test_a_cycle_of_waits_names_every_waiting_flag() -> None:
    """Balanced tokens, but each queue waits for the other first."""
    words = [
        _load(Buffer.ACT_INPUT, 2, tokens={"pop_next": 1, "push_next": 1}),
        encode(Opcode.SYNC, TINY, {"queue": Queue.COMPUTE}, {"pop_prev": 1, "push_prev": 1}),
        *_ends(),
    ]
    assert _refusal(words, bytes(2)) == (
        "the program can never finish: instruction 0 (LOAD, load queue) waits for a token "
        "from the compute queue (LOAD.pop_next); instruction 1 (SYNC, compute queue) waits "
        "for a token from the load queue (SYNC.pop_prev)"
    )


def test_words_left_in_a_stream_are_refused() -> None:
    """Loaded and never consumed, computed and never stored: named with the instruction
    that left the last of them."""
    assert _refusal([_load(Buffer.ACT_INPUT, 3), *_ends()], bytes(3)) == (
        "instruction 0: LOAD.buffer = ACT_INPUT: the program ends with 3 of the stream's "
        "words never consumed (this LOAD loaded the last of them)"
    )
    store = {"source": Source.ACT, "dram_addr": 4, "stride": 0, "rows": 1, "row_words": 1}
    words = [
        _load(Buffer.ACT_INPUT, 2, tokens=PUSH),
        encode(Opcode.ACT, TINY, ACT | {"tag": 0}, PULL | PUSH),
        encode(Opcode.STORE, TINY, store, PULL),
        *_ends(),
    ]
    assert _refusal(words, bytes(8)) == (
        "instruction 1: ACT: the program ends with 1 of the ACT output stream's words never "
        "stored (this ACT produced the last of them)"
    )


def _command(op: Opcode, loads: list[tuple[Buffer, int]], command: dict, params=TINY) -> str:
    """The refusal of a compute instruction after loads of zero words."""
    words = [_load(b, n, params) for b, n in loads]
    words.append(encode(op, params, command))
    return _refusal([*words, *_ends(params)], bytes(4096), params)


WARP = {"in_base": 0, "in_plane": 6, "in_row": 2, "in_height": 3, "in_width": 4, "planes": 2,
        "out_height": 1, "out_width": 1, "occlusion": 0, "tag": 0}  # fmt: skip


@pytest.mark.parametrize(
    ("op", "loads", "command", "message"),
    [
        (Opcode.ACT, [(Buffer.ACT_INPUT, 2)], ACT | {"pixels": 0, "tag": 0},
         "instruction 1: ACT.pixels = 0: must be 1 or more"),
        (Opcode.ACT, [(Buffer.ACT_INPUT, 2)],
         ACT | {"op": ActOp.AFFINE, "groups": 2, "pixels": 1, "param_base": 255, "tag": 0},
         "instruction 1: ACT.param_base: constants 255..256 leave the 256-word buffers"),
        (Opcode.SOFTMAX, [(Buffer.SOFTMAX_INPUT, 33)], {"pixels": 1, "channels": 33, "tag": 0},
         "instruction 1: SOFTMAX.channels = 33: the unit takes 1..32"),
        (Opcode.SOFTMAX, [], {"pixels": 1, "channels": 0, "tag": 0},
         "instruction 0: SOFTMAX.channels = 0: must be 1 or more"),
        (Opcode.WARP, [(Buffer.WARP_FLOW, 1)], WARP | {"planes": 0},
         "instruction 1: WARP.planes = 0: must be 1 or more"),
        (Opcode.WARP, [(Buffer.WARP_FLOW, 1)], WARP | {"in_base": 1016},
         "instruction 1: WARP.in_base: the map's words run 1016..1025, the banks hold 1024 "),
        (Opcode.WARP, [], WARP, "instruction 0: WARP.out_height: the WARP_FLOW stream holds 0 "),
        (Opcode.HEATMAP, [], {"size": 1, "keypoints": 1, "tag": 0},
         "instruction 0: HEATMAP.size = 1: the unit takes 2..128"),
        (Opcode.MOTION, [], {"op": 0, "size": 4, "keypoints": 0, "motion": 0, "tag": 0},
         "instruction 0: MOTION.keypoints = 0: the unit takes 1..16"),
        (Opcode.MOTION, [], {"op": 0, "size": 4, "keypoints": 2, "motion": 3, "tag": 0},
         "instruction 0: MOTION.motion = 3: a frame of 2 keypoints has maps 0..2"),
        (Opcode.MOTION, [(Buffer.MOTION_MASK, 47)],
         {"op": 1, "size": 4, "keypoints": 2, "motion": 0, "tag": 0},
         "instruction 1: MOTION.size: the MOTION_MASK stream holds 47 words, the command "
         "needs 48"),
    ],
)  # fmt: skip
def test_commands_outside_a_units_buffers_or_streams_are_refused(op, loads, command, message):
    """Each refusal names the command's field; before, ACT with pixels 0 read a float
    array (IndexError), AFFINE with groups 0 took the max of nothing (ValueError), WARP
    beyond its banks raised AssertionError and with planes 0 NumPy's ValueError, and a
    SOFTMAX of 0 channels reshaped to (-1, 0) (ValueError)."""
    assert _command(op, loads, command).startswith(message)


@pytest.mark.parametrize(
    ("params", "buffer", "fields", "message"),
    [
        (TINY.replace(name="warp-1000", warp=WarpParams(depth=1000)), Buffer.WARP_FEATURE,
         {"addr": 1000, "bank": 1}, "WARP_FEATURE write: addr = 1000, the buffer holds 0..999"),
        (TINY.replace(name="act-3", act=ActParams(lanes=3)), Buffer.ACT_PARAM,
         {"lane": 3}, "ACT_PARAM write: lane = 3, the buffer holds 0..2"),
        (TINY.replace(name="grid-100", act=ActParams(max_grid=100)), Buffer.HEATMAP_GRID,
         {"index": 100}, "grid write: index = 100, the buffer holds 0..99"),
        (TINY.replace(name="kp-10", act=ActParams(max_keypoints=10)), Buffer.MOTION_KEYPOINT,
         {"keypoint": 12}, "keypoint write: keypoint = 12, the buffer holds 0..9"),
        (TINY.replace(name="kp-10", act=ActParams(max_keypoints=10)), Buffer.MOTION_JACOBIAN,
         {"keypoint": 10}, "Jacobian write: keypoint = 10, the buffer holds 0..9"),
        (TINY.replace(name="gauss-2000", act=ActParams(gaussian_depth=2000)),
         Buffer.HEATMAP_GAUSSIAN, {"index": 2001}, "Gaussian write: index = 2001, the buffer "
         "holds 0..1999"),
    ],
)  # fmt: skip
def test_writes_to_places_a_buffer_lacks_are_refused(params, buffer, fields, message) -> None:
    """Places a payload field can name but the buffer lacks (depths that are not powers
    of two): NumPy's IndexError before."""
    layout = {
        Buffer.WARP_FEATURE: feature_write_layout,
        Buffer.ACT_PARAM: param_write_layout,
        Buffer.HEATMAP_GRID: grid_write_layout,
        Buffer.MOTION_KEYPOINT: keypoint_write_layout,
        Buffer.MOTION_JACOBIAN: jacobian_write_layout,
        Buffer.HEATMAP_GAUSSIAN: gaussian_write_layout,
    }[buffer](params)
    word = layout.const(fields).as_bits()
    words = [_load(buffer, 2, params), *_ends(params)]
    got = _refusal(words, _words([0, word], buffer, params), params)
    assert (
        got == f"instruction 0: LOAD.dram_addr: word 1 (byte {len(_words([0], buffer, params))}"
        f"): {message}"
    )
