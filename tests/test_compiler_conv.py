"""A conv layer lowered to a program (compiler/conv_layer.py) and run on L3 (sim/l3).

L3 = L2: the program's stores leave in memory exactly L2's `conv2d_int` of the
layer, whatever the tiling. L3 runs the load queue first whenever it may, so a
missing or misplaced token lets a load overwrite the half of the input buffer a
tile still computes from, and the results go wrong: the token scheme is tested
by the same comparison. L3's refusals name the instruction and the field.
"""

from __future__ import annotations

import numpy as np
import pytest

from compiler.conv_layer import (
    ConvLayer,
    Image,
    LoweringError,
    Program,
    conv_size,
    emit_conv,
    lower_conv,
    read_map,
    read_output,
)
from compiler.isa import decode, encode
from compiler.tensor import grouped
from defs.isa import Buffer, Opcode, Queue, Source
from defs.params import ArrayParams, BufferParams, GraceParams, preset
from model.fixed_conv import conv2d_int
from sim.l3.machine import ProgramError, run

SMALL = GraceParams(name="conv-test", array=ArrayParams(rows=4, cols=3))
#: (C, O, H, W, kernel, stride, padding): odd channel counts, 1 × 1 maps, 7 × 7
#: heads, stride 2, no padding.
SHAPES = [
    (5, 7, 10, 9, 3, 1, 1),
    (3, 16, 24, 20, 7, 1, 3),
    (16, 32, 20, 20, 3, 2, 1),
    (4, 4, 1, 1, 1, 1, 0),
    (7, 9, 13, 11, 3, 1, 0),
    (2, 5, 9, 8, 3, 2, 0),
]
#: The decoder's fused forms: (C, O, H, W, option) with 3 × 3 kernels, padding 1:
#: a hourglass down block (pool), an up block (upsample), a bottleneck's second
#: conv (residual); odd sizes, so pooling drops a row and a column.
FUSED = [
    (5, 7, 11, 9, "pool"),
    (16, 8, 16, 16, "pool"),
    (6, 5, 9, 7, "upsample"),
    (16, 16, 12, 10, "upsample"),
    (7, 7, 10, 9, "residual"),
    (16, 16, 16, 16, "residual"),
]


def _layer(
    rng: np.random.Generator, c: int, o: int, k: int, s: int, p: int, **options: object
) -> ConvLayer:
    return ConvLayer(
        rng.integers(-128, 128, (o, c, k, k)), rng.integers(-5000, 5000, o),
        rng.integers(1, 1 << 16, o), rng.integers(16, 24, o), s, p, relu=bool(rng.integers(2)),
        **options,
    )  # fmt: skip


def _run(layer: ConvLayer, x: np.ndarray, params: GraceParams, **options) -> np.ndarray:
    lowered = lower_conv(layer, x, params, **options)
    memory = bytearray(lowered.memory)
    run(lowered.words, memory, params)
    return read_output(lowered, memory, params)


def _l2(layer: ConvLayer, x: np.ndarray, params: GraceParams, residual=None) -> np.ndarray:
    return conv2d_int(
        x, layer.weight, layer.bias, layer.multiplier, layer.shift, params.numeric,
        stride=layer.stride, padding=layer.padding, relu=layer.relu, upsample=layer.upsample,
        pool=layer.pool, residual=residual, residual_gain=layer.gain,
    )  # fmt: skip


@pytest.mark.parametrize("params", [SMALL, preset("tiny"), preset("ulx3s-85f")], ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_l3_runs_the_lowered_layer_as_l2_computes_it(params: GraceParams, shape: tuple) -> None:
    c, o, h, w, k, s, p = shape
    rng = np.random.default_rng(sum(shape))
    layer, x = _layer(rng, c, o, k, s, p), rng.integers(-128, 128, (c, h, w))
    np.testing.assert_array_equal(_run(layer, x, params), _l2(layer, x, params))


@pytest.mark.parametrize("params", [SMALL, preset("tiny")], ids=str)
@pytest.mark.parametrize("shape", FUSED, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("tile_rows", [None, 2, 3])
def test_fused_options_tile_as_l2_computes_them(params, shape: tuple, tile_rows) -> None:
    """Pooling (tiles on pooling pairs), upsampling (tiles starting on a pixel's first
    upsampled row) and a residual (its stream loaded tile by tile)."""
    c, o, h, w, option = shape
    rng = np.random.default_rng(c * o + h)
    options = {option: True} if option != "residual" else {"gain": rng.integers(0, 3000, o)}
    layer = _layer(rng, c, o, 3, 1, 1, **options)
    x = rng.integers(-128, 128, (c, h, w))
    up = 2 if option == "upsample" else 1
    residual = rng.integers(-128, 128, (o, h * up, w * up)) if option == "residual" else None
    got = _run(layer, x, params, residual=residual, tile_rows=tile_rows)
    np.testing.assert_array_equal(got, _l2(layer, x, params, residual))


def test_a_tile_that_does_not_fit_half_the_buffer_takes_it_whole() -> None:
    """Tiles in turn through the whole input buffer when half is too small for one
    (tiny's 16-channel down block on 64²: two pooled rows read 4 × 256 words)."""
    rng = np.random.default_rng(12)
    layer = _layer(rng, 16, 32, 3, 1, 1, pool=True)
    x = rng.integers(-128, 128, (16, 64, 64))
    lowered = lower_conv(layer, x, preset("tiny"))
    assert lowered.tiles == 32  # pooled pairs of rows, one at a time
    np.testing.assert_array_equal(_run(layer, x, preset("tiny")), _l2(layer, x, preset("tiny")))


@pytest.mark.parametrize("tile_rows", [1, 2, 3])
def test_every_tiling_gives_the_same_layer(tile_rows: int) -> None:
    """Tiles of 1, 2 and 3 output rows (halos overlapping, the input buffer's halves
    alternating, the tokens ordering every load after the CONV two tiles back)."""
    rng = np.random.default_rng(tile_rows)
    layer, x = _layer(rng, 5, 6, 3, 1, 1), rng.integers(-128, 128, (5, 11, 7))
    lowered = lower_conv(layer, x, SMALL, tile_rows=tile_rows)
    assert lowered.tiles == -(-11 // tile_rows)
    np.testing.assert_array_equal(_run(layer, x, SMALL, tile_rows=tile_rows), _l2(layer, x, SMALL))


@pytest.mark.parametrize(
    ("params", "shape", "option"),
    [
        (preset("tiny"), (32, 64, 16, 16), "pool"),  # tiny's down block: 1,152 weight words
        (preset("icebreaker"), (16, 32, 20, 20), "residual"),
        (preset("icebreaker"), (16, 16, 9, 7), "upsample"),
    ],
    ids=["tiny-pool", "icebreaker-residual", "icebreaker-upsample"],
)
def test_layers_wider_than_the_weight_buffer_run_in_passes(params, shape, option) -> None:
    """Output groups in passes, each loading its weights and constants once the pass
    before is done (a load that does not wait for it overwrites weights in use)."""
    c, o, h, w = shape
    rng = np.random.default_rng(o)
    options = {option: True} if option != "residual" else {"gain": rng.integers(0, 3000, o)}
    layer = _layer(rng, c, o, 3, 1, 1, **options)
    assert -(-o // params.array.rows) * -(-c // params.array.cols) * 9 > params.buffers.weight_depth
    x = rng.integers(-128, 128, (c, h, w))
    up = 2 if option == "upsample" else 1
    residual = rng.integers(-128, 128, (o, h * up, w * up)) if option == "residual" else None
    got = _run(layer, x, params, residual=residual, tile_rows=3)
    np.testing.assert_array_equal(got, _l2(layer, x, params, residual))


#: An input buffer of 64 words: rows wider than a few pixels run in bands of columns.
NARROW = SMALL.replace(buffers=BufferParams(input_depth=64))
#: (C, O, H, W, kernel, stride, padding, option)
BANDS = [
    (5, 7, 6, 40, 3, 1, 1, None),
    (3, 4, 9, 31, 7, 1, 3, None),
    (4, 6, 9, 33, 3, 2, 1, None),
    (2, 5, 7, 25, 3, 2, 0, None),
    (5, 7, 8, 37, 3, 1, 1, "pool"),
    (3, 5, 5, 40, 3, 1, 1, "upsample"),
    (6, 6, 6, 29, 3, 1, 1, "residual"),
]


@pytest.mark.parametrize("shape", BANDS, ids=lambda s: "x".join(map(str, s)))
def test_rows_wider_than_the_buffer_run_in_bands_of_columns(shape: tuple) -> None:
    """Bands of output columns, each reading its columns' halo (padding only at the
    map's edges), pooling bands on pairs and upsampling bands on a pixel's first copy."""
    c, o, h, w, k, s, p, option = shape
    rng = np.random.default_rng(h * w + k)
    options = {} if option in (None, "residual") else {option: True}
    if option == "residual":
        options = {"gain": rng.integers(0, 3000, o)}
    layer = _layer(rng, c, o, k, s, p, **options)
    x = rng.integers(-128, 128, (c, h, w))
    residual = None
    if option == "residual":
        residual = rng.integers(-128, 128, (o, h, w))
    lowered = lower_conv(layer, x, NARROW, residual=residual)
    commands = [decode(word, NARROW) for word in lowered.words]
    widths = {i.fields["out_width"] for i in commands if i.op == Opcode.CONV}
    assert max(widths) < conv_size(layer, h, w)[1]  # the rows were split
    got = _run(layer, x, NARROW, residual=residual)
    np.testing.assert_array_equal(got, _l2(layer, x, NARROW, residual))


def test_bands_gather_an_output_layout() -> None:
    """A layer reading the one before in its output layout (planes of 4 lanes, read as
    groups of 3: words gathered a pixel at a time), in bands of columns."""
    rng = np.random.default_rng(44)
    layer = _layer(rng, 10, 5, 3, 1, 1)
    x = rng.integers(-128, 128, (10, 6, 30))
    image, program = Image(), Program(NARROW)
    blob = b"".join(x[g : g + 4].transpose(1, 2, 0).astype(np.int8).tobytes() for g in (0, 4, 8))
    x_map = grouped(image.place(blob), 10, 6, 30, 4)
    out = emit_conv(program, image, layer, x_map)
    memory = bytearray(image.memory)
    run(program.end(), memory, NARROW)
    np.testing.assert_array_equal(read_map(out, memory), _l2(layer, x, NARROW))


#: A 64-word weight buffer and 32 partial sums: 3 × 3 layers of more than 21 input
#: groups split over their input channels, in tiles of at most 8 pixels of 4 lanes.
SPLIT = SMALL.replace(buffers=BufferParams(weight_depth=64, partial_depth=32))
#: (C, O, H, W, kernel, stride, padding, option): two and three chunks, the last
#: output group narrower, pooling, upsampling, a residual, stride 2, a 7 × 7 head.
SPLITS = [
    (24, 7, 5, 6, 3, 1, 1, None),
    (48, 5, 4, 7, 3, 1, 1, None),
    (24, 6, 6, 8, 3, 1, 1, "pool"),
    (24, 4, 3, 4, 3, 1, 1, "upsample"),
    (27, 8, 4, 5, 3, 1, 1, "residual"),
    (24, 5, 7, 7, 3, 2, 1, None),
    (6, 3, 6, 6, 7, 1, 3, None),
]


@pytest.mark.parametrize("shape", SPLITS, ids=lambda s: "x".join(map(str, s[:5])) + f"-{s[7]}")
def test_layers_split_over_their_input_channels(shape: tuple) -> None:
    """An output group whose weights exceed the buffer runs as chunks of its input
    groups, the partial sums carried on chip between them; the last chunk takes the
    residual and requantizes, pooling or not."""
    c, o, h, w, k, s, p, option = shape
    rng = np.random.default_rng(c * o + h * w)
    options = {} if option in (None, "residual") else {option: True}
    if option == "residual":
        options = {"gain": rng.integers(0, 3000, o)}
    layer = _layer(rng, c, o, k, s, p, **options)
    x = rng.integers(-128, 128, (c, h, w))
    residual = rng.integers(-128, 128, (o, h, w)) if option == "residual" else None
    lowered = lower_conv(layer, x, SPLIT, residual=residual)
    commands = [i for i in map(lambda word: decode(word, SPLIT), lowered.words)]
    partial = [i for i in commands if i.op == Opcode.CONV and i.fields["partial_out"]]
    assert partial, "the layer was not split"
    got = _run(layer, x, SPLIT, residual=residual)
    np.testing.assert_array_equal(got, _l2(layer, x, SPLIT, residual))


def test_layers_that_do_not_fit_are_refused() -> None:
    rng = np.random.default_rng(0)
    head = _layer(rng, 3, 4, 7, 1, 3)  # one input group's 49 taps
    with pytest.raises(LoweringError, match=r"one input group's 7×7 taps take 49 weight words"):
        lower_conv(
            head,
            rng.integers(-128, 128, (3, 8, 8)),
            SMALL.replace(buffers=BufferParams(weight_depth=32)),
        )
    head = _layer(rng, 3, 4, 7, 1, 3)  # one output pixel reads 7 × 7 words
    with pytest.raises(LoweringError, match="one output pixel reads 4 × 4 pixels × 1 groups"):
        lower_conv(
            head,
            rng.integers(-128, 128, (3, 4, 1100)),
            NARROW.replace(buffers=BufferParams(input_depth=16)),
        )


# -- L3's refusals ---------------------------------------------------------------------


def _end(*skip: Queue) -> list[int]:
    return [encode(Opcode.END, SMALL, {"queue": q}) for q in Queue if q not in skip]


def _load(**fields: int) -> dict[str, int]:
    base = {"buffer": Buffer.CONV_INPUT, "buffer_addr": 0, "dram_addr": 0, "stride": 0}
    return base | {"rows": 1, "row_words": 1} | fields


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ([0, *_end()], "instruction 0: opcode 0 is not an instruction"),
        (_end(Queue.STORE), "the store queue does not end with END"),
        (
            [encode(Opcode.LOAD, SMALL, _load(), {"pop_prev": 1}), *_end()],
            "instruction 0: LOAD.pop_prev on the load queue, which has no such neighbour",
        ),
        (
            [encode(Opcode.SYNC, SMALL, {"queue": 1}, {"pop_prev": 1}), *_end()],
            r"can never finish: instruction 0 \(SYNC, compute queue\) waits for a token from "
            "the load queue",
        ),
        (
            [encode(Opcode.LOAD, SMALL, _load(dram_addr=60, row_words=2)), *_end()],
            r"instruction 0: LOAD.dram_addr: bytes 60..65 leave the 64-byte memory image",
        ),
        (
            [encode(Opcode.LOAD, SMALL, _load(buffer_addr=1023, row_words=2)), *_end()],
            r"instruction 0: LOAD.buffer_addr: words 1023..1024 overrun the 1024-word CONV_INPUT",
        ),
        (
            [encode(Opcode.LOAD, SMALL, _load(buffer=20)), *_end()],
            r"instruction 0: LOAD.buffer = 20: no such buffer \(docs/isa.md\)",
        ),
    ],
)
def test_l3_refuses_illegal_programs(words: list[int], message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        run(words, bytearray(64), SMALL)


def test_a_store_of_more_than_was_computed_is_refused() -> None:
    store = {"source": Source.CONV, "dram_addr": 0, "stride": 0, "rows": 1, "row_words": 4}
    words = [encode(Opcode.STORE, SMALL, store), *_end()]
    with pytest.raises(ProgramError, match=r"0: STORE.rows: 4 words to store, the CONV"):
        run(words, bytearray(64), SMALL)
