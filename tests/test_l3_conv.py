"""L3's conv engine (sim/l3/conv.py): a command computed from the buffers' words.

What the engine's RTL returns for a command (sim/conv.py's `program`, whose
`expected` the RTL tests prove bit-exact) is what L3 must return from the same
buffer contents and command: checked here on the engine sweeps, at shifted
buffer bases, and on windows of a resident map read with a row pitch wider than
the window (the addressing the compiler's spatial tiles will use); and the
passes of layers split over their input channels, with the partial sums L3
keeps between commands (docs/conv_engine.md), alone and as a program.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth import Shape

from compiler.isa import encode
from defs.isa import Buffer, Opcode, Queue, Source
from defs.params import ArrayParams, BufferParams, GraceParams, preset
from rtl.conv_layouts import (
    channel_param_layout,
    input_write_layout,
    param_write_layout,
    weight_write_layout,
)
from sim.conv import (
    ConvCase,
    ConvProgram,
    engine_order,
    program,
    random_case,
    split_programs,
    sweep_cases,
)
from sim.l3.conv import ConvBuffers, ConvCommandError, run_command
from sim.l3.machine import run, word_bits

SMALL = GraceParams(name="conv-test", array=ArrayParams(rows=4, cols=3))
CONSTANTS = ("bias", "multiplier", "shift", "gain")


def _load(
    params: GraceParams, prog: ConvProgram, buffers: ConvBuffers | None = None
) -> ConvBuffers:
    """The program's write streams, word by word, into the buffers."""
    buffers = buffers or ConvBuffers(params)
    for word in prog.input_writes:
        f = input_write_layout(params).from_bits(word)
        buffers.write_input(int(f.addr), int(f.data))
    for word in prog.weight_writes:
        f = weight_write_layout(params).from_bits(word)
        buffers.write_weight(int(f.addr), int(f.row), int(f.data))
    for word in prog.param_writes:
        f = param_write_layout(params).from_bits(word)
        buffers.write_constants(int(f.addr), {n: int(getattr(f.data, n)) for n in CONSTANTS})
    return buffers


def _residual(prog: ConvProgram, bits: int) -> list[int]:
    half = 1 << (bits - 1)
    return [(v ^ half) - half for v in prog.residual]


@pytest.mark.parametrize("params", [SMALL, preset("tiny"), preset("icebreaker")], ids=str)
def test_commands_compute_what_the_engine_returns(params: GraceParams) -> None:
    """Every sweep case (kernels 1, 3, 7, stride 2, upsampling, pooling, residuals,
    uneven padding, channels that are not multiples of the array), its data at
    shifted bases in buffers that hold other data too."""
    cases = sweep_cases(params, 24, seed=3)
    buffers = ConvBuffers(params)
    rng = np.random.default_rng(4)
    buffers.inputs[:] = rng.integers(-128, 128, buffers.inputs.shape)  # stale data around
    for k, case in enumerate(cases):
        prog = program(case, params, in_base=5 * (k % 2), weight_base=3 * (k % 3), param_base=k % 4)
        _load(params, prog, buffers)
        got = run_command(buffers, prog.command_fields, _residual(prog, params.numeric.act_bits))
        np.testing.assert_array_equal(got, prog.expected, err_msg=case.describe())


def test_a_window_of_a_resident_map() -> None:
    """A 3 × 3 conv over rows 2..7 and columns 3..9 of a resident 5 × 9 × 11 map,
    read with the map's row pitch and plane size: L2's conv of that crop."""
    params, rng = SMALL, np.random.default_rng(5)
    whole = random_case(rng, params, channels=5, out_channels=6, size=(9, 11), kernel=3)
    prog = program(whole, params, in_base=2)
    buffers = _load(params, prog)
    command = dict(prog.command_fields)
    top, left, height, width = 2, 3, 6, 7
    command |= {"in_base": 2 + top * 11 + left, "in_height": height, "in_width": width}
    command |= {"pad_top": 0, "pad_left": 0, "out_height": height - 2, "out_width": width - 2}
    crop = whole.x[:, top : top + height, left : left + width]
    window = ConvCase(
        crop, whole.weight, whole.bias, whole.multiplier, whole.shift, relu=whole.relu
    )
    got = run_command(buffers, command)
    np.testing.assert_array_equal(got, program(window, params).expected)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"in_base": 1020}, r"input words \d+\.\.\d+ leave the 1024-word input buffer"),
        ({"weight_base": 1023}, r"weight words \d+\.\.\d+ leave the 1024-word weight buffer"),
        ({"param_base": 255}, r"parameter words \d+\.\.\d+ leave the 256-word parameter"),
        ({"out_height": 0}, "an empty operand or output"),
    ],
)
def test_commands_reading_outside_the_buffers_are_refused(change: dict, message: str) -> None:
    case = ConvCase(
        np.zeros((3, 4, 4), np.int64), np.zeros((4, 3, 3, 3), np.int64), np.zeros(4, np.int64),
        np.ones(4, np.int64), np.zeros(4, np.int64), padding=1,
    )  # fmt: skip
    prog = program(case, SMALL)
    with pytest.raises(ConvCommandError, match=message):
        run_command(_load(SMALL, prog), prog.command_fields | change)


#: Layers split over their input channel groups: (case settings, chunks, residual pass).
SPLITS = [
    ({"channels": 8, "out_channels": 6, "size": (5, 4), "kernel": 3, "residual": True}, 3, -1),
    ({"channels": 11, "out_channels": 5, "size": (6, 7), "kernel": 3, "pool": True,
      "residual": True, "relu": True}, 4, -1),
    ({"channels": 7, "out_channels": 3, "size": (6, 6), "kernel": 7, "padding": 3,
      "residual": True}, 2, 0),
    ({"channels": 9, "out_channels": 9, "size": (3, 4), "kernel": 1, "upsample": True,
      "pool": True}, 3, -1),
]  # fmt: skip


def _chunks(groups: int, passes: int) -> list[int]:
    """`groups` input groups in `passes` chunks as even as can be (the last the shortest)."""
    return [len(part) for part in np.array_split(np.arange(groups), passes)][::-1]


@pytest.mark.parametrize(
    "params", [SMALL, preset("tiny"), preset("icebreaker")], ids=lambda p: p.name
)
def test_split_commands_compute_what_the_engine_returns(params: GraceParams) -> None:
    """Each pass of a split layer (partial_in / partial_out), run on L3 in order from
    one set of buffers: what the engine returns for it (`program`'s expected, which
    the RTL tests prove), the last pass L2's conv of the whole layer, and the
    partial sums a partial_out pass leaves are its sums in the engine's order."""
    rng = np.random.default_rng(8)
    for settings, passes, residual_pass in SPLITS:
        case = random_case(rng, params, **settings)
        groups = -(-case.x.shape[0] // params.array.cols)
        chunks = _chunks(groups, min(passes, groups))
        progs = split_programs(case, params, chunks, residual_pass=residual_pass, start=(7, 5, 3))
        buffers = ConvBuffers(params)
        for prog in progs:
            _load(params, prog, buffers)
        for prog in progs:
            got = run_command(
                buffers, prog.command_fields, _residual(prog, params.numeric.act_bits)
            )
            np.testing.assert_array_equal(got, prog.expected, err_msg=str(settings))
            if prog.command_fields["partial_out"]:
                kept = engine_order(_pixels_of(prog.sums, case.pool), params.array.rows)
                np.testing.assert_array_equal(buffers.partials[: len(kept)], kept)
        np.testing.assert_array_equal(progs[-1].expected, program(case, params).expected)


def _pixels_of(sums: np.ndarray, pool: bool) -> np.ndarray:
    """Sums (O, Ho, Wo) as a map whose raster order is the engine's pixel order (2 × 2
    quads when pooling), so `engine_order` lists them as the partial sums hold them."""
    if not pool:
        return sums
    o, h, w = sums.shape
    quads = sums[:, : h // 2 * 2, : w // 2 * 2].reshape(o, h // 2, 2, w // 2, 2)
    return quads.transpose(0, 1, 3, 2, 4).reshape(o, 1, -1)


def test_a_partial_command_longer_than_the_partial_sums_is_refused() -> None:
    params = GraceParams(
        name="conv-test", array=ArrayParams(rows=4, cols=3), buffers=BufferParams(partial_depth=16)
    )
    case = random_case(np.random.default_rng(0), params, channels=6, out_channels=5,
                       size=(2, 2), kernel=1)  # fmt: skip
    prog = program(case, params)
    for flag in ("partial_in", "partial_out"):
        with pytest.raises(ConvCommandError, match="20 output elements; the partial sums hold 16"):
            run_command(_load(params, prog), prog.command_fields | {flag: 1})


def _words(params: GraceParams, buffers: ConvBuffers, used: tuple[int, int, int]) -> dict:
    """The buffers' first words as LOADs carry them (docs/isa.md): input words of
    `cols` lanes, weight words of `rows` rows of `cols` lanes, constant words."""
    n = params.numeric
    layout = channel_param_layout(params)
    fields = dict(layout.members)
    offsets, at = {}, 0
    for name, shape in fields.items():
        offsets[name] = at
        at += Shape.cast(shape).width

    def lanes_word(values: np.ndarray, bits: int) -> int:
        return sum((int(v) & ((1 << bits) - 1)) << (k * bits) for k, v in enumerate(values))

    constants = [
        sum(
            (int(buffers.constants[name][a]) & ((1 << Shape.cast(fields[name]).width) - 1))
            << offsets[name]
            for name in CONSTANTS
        )
        for a in range(used[2])
    ]
    return {
        Buffer.CONV_INPUT: [lanes_word(buffers.inputs[a], n.act_bits) for a in range(used[0])],
        Buffer.CONV_WEIGHT: [
            lanes_word(buffers.weights[a].ravel(), n.weight_bits) for a in range(used[1])
        ],
        Buffer.CONV_PARAM: constants,
        Buffer.CONV_RESIDUAL: [],
    }


def test_a_split_layer_runs_as_a_program() -> None:
    """A program of LOADs, one CONV per pass (the partial flags in their bodies) and a
    STORE, run by L3's machine: the stored stream is every pass's results, the last
    pass's L2's conv of the whole layer; the partial sums live in the machine."""
    params = SMALL
    settings, passes, _ = SPLITS[1]
    case = random_case(np.random.default_rng(2), params, **settings)
    progs = split_programs(case, params, _chunks(4, passes))
    buffers = ConvBuffers(params)
    for prog in progs:
        _load(params, prog, buffers)
    f = progs[-1].command_fields
    ends = (
        f["in_base"] + len(progs[-1].input_writes),
        f["weight_base"] + len(progs[-1].weight_writes) // params.array.rows,
        f["param_base"] + len(progs[-1].param_writes),
    )
    words = _words(params, buffers, ends)
    words[Buffer.CONV_RESIDUAL] = [w for p in progs for w in p.residual]
    memory, program_words = bytearray(), []
    for buffer, values in words.items():
        size = -(-word_bits(buffer, params) // 8)
        load = {"buffer": buffer, "buffer_addr": 0, "dram_addr": len(memory), "stride": 0,
                "rows": 1, "row_words": len(values)}  # fmt: skip
        memory += b"".join(v.to_bytes(size, "little") for v in values)
        last = buffer == Buffer.CONV_RESIDUAL
        program_words.append(encode(Opcode.LOAD, params, load, {"push_next": int(last)}))
    for k, prog in enumerate(progs):
        tokens = {"pop_prev": int(k == 0), "push_next": int(k == len(progs) - 1)}
        program_words.append(encode(Opcode.CONV, params, prog.command_fields, tokens))
    expected = np.concatenate([p.expected for p in progs])
    out_addr = len(memory)
    memory += bytes(len(expected))
    store = {"source": Source.CONV, "dram_addr": out_addr, "stride": 0, "rows": 1,
             "row_words": len(expected)}  # fmt: skip
    program_words.append(encode(Opcode.STORE, params, store, {"pop_prev": 1}))
    program_words += [encode(Opcode.END, params, {"queue": q}) for q in Queue]
    machine = run(program_words, memory, params)
    stored = np.frombuffer(bytes(memory[out_addr:]), np.int8).astype(np.int64)
    np.testing.assert_array_equal(stored, expected)
    np.testing.assert_array_equal(
        stored[-len(progs[-1].expected) :], program(case, params).expected
    )
    assert machine.conv.partials.any()
