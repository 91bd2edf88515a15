"""Short programs for the co-processor's RTL tests: a few layers, with L3's results.

`few_layers` chains three conv layers as the decoder's blocks do — a down
block (3 × 3, ReLU, 2 × 2 pool), an up block (nearest × 2 upsampling, 3 × 3)
and a 1 × 1 head — each reading what the one before stored once a SYNC has
passed the stores' token to the loads (`sync_stores`), over one image. L3 runs
the program on a copy of the image, and equals L2 (tests/test_compiler_conv.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiler.conv_layer import (
    ConvLayer,
    Image,
    LoweredConv,
    Program,
    emit_conv,
    input_bytes,
    lower_conv,
    sync_stores,
)
from compiler.tensor import Tensor, grouped
from defs.params import GraceParams
from sim.l3.machine import run


@dataclass
class ShortProgram:
    memory: bytearray  # the image the host writes
    words: list[int]
    expected: bytearray  # the image after L3 ran the program
    output: Tensor  # the last layer's map


def _layer(rng: np.random.Generator, c: int, o: int, k: int, **options: object) -> ConvLayer:
    return ConvLayer(
        rng.integers(-128, 128, (o, c, k, k)), rng.integers(-3000, 3000, o),
        rng.integers(1, 1 << 16, o), rng.integers(16, 22, o), 1, k // 2, **options,
    )  # fmt: skip


def few_layers(params: GraceParams, seed: int = 0, size: int = 8) -> ShortProgram:
    rng = np.random.default_rng(seed)
    image, program = Image(), Program(params)
    c = 5
    x = rng.integers(-128, 128, (c, size, size))
    cols = params.array.cols
    x_map = grouped(image.place(input_bytes(x, params)), c, size, size, cols, padded=True)
    down = emit_conv(program, image, _layer(rng, c, 6, 3, relu=True, pool=True), x_map)
    sync_stores(program)
    up = emit_conv(
        program, image, _layer(rng, 6, 7, 3, relu=True, upsample=True), down, after_store=True
    )
    sync_stores(program)
    head = emit_conv(program, image, _layer(rng, 7, 3, 1), up, after_store=True)
    words = program.end()
    expected = bytearray(image.memory)
    run(words, expected, params)
    return ShortProgram(bytearray(image.memory), words, expected, head)


def one_layer(params: GraceParams, seed: int = 1) -> tuple[LoweredConv, bytearray]:
    """A 3 × 3 conv layer (4 → 4 channels on 5 × 5, ReLU) lowered on its own, and the
    image after L3 ran it: the fault and bus tests' program."""
    rng = np.random.default_rng(seed)
    c, o, h, w, k = 4, 4, 5, 5, 3
    layer = ConvLayer(
        rng.integers(-128, 128, (o, c, k, k)), rng.integers(-5000, 5000, o),
        rng.integers(1, 1 << 16, o), rng.integers(16, 24, o), 1, 1, relu=True,
    )  # fmt: skip
    lowered = lower_conv(layer, rng.integers(-128, 128, (c, h, w)), params)
    expected = bytearray(lowered.memory)
    run(lowered.words, expected, params)
    return lowered, expected
