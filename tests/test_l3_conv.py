"""L3's conv engine (sim/l3/conv.py): a command computed from the buffers' words.

What the engine's RTL returns for a command (sim/conv.py's `program`, whose
`expected` the RTL tests prove bit-exact) is what L3 must return from the same
buffer contents and command: checked here on the engine sweeps, at shifted
buffer bases, and on windows of a resident map read with a row pitch wider than
the window (the addressing the compiler's spatial tiles will use).
"""

from __future__ import annotations

import numpy as np
import pytest

from defs.params import ArrayParams, GraceParams, preset
from rtl.conv_layouts import input_write_layout, param_write_layout, weight_write_layout
from sim.conv import ConvCase, ConvProgram, program, random_case, sweep_cases
from sim.l3.conv import ConvBuffers, ConvCommandError, run_command

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
