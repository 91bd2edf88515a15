"""The per-GOP source encoding's feature path lowered to one program (issue 16).

`encode_source_int` turns the decoded key frame into the source features every
inter frame of the GOP warps: the frame quantized to int8 (`quantize_image`),
then the generator's first conv and its down blocks. As a program:
- the frame's bytes (each b stored as b ⊕ 0x80, the int8 whose table index is b)
  run through TABLE tiles of the element-wise engine holding `quantize_image`'s
  table, one per input group of the first conv (a load gathering the group's
  bytes of each pixel), and are stored straight into the conv engine's input
  layout (a store row per pixel, into the first bytes of its word);
- each conv layer follows (`compiler.conv_layer.emit_conv`), the stores of one
  layer ordered before the next one's loads through the compute queue.

Each layer reads the one before in its output layout (group planes of `rows`
lanes), gathered into input words where the array is not square. The blur of
the small key frame follows in the decoder's source program (`compiler/blur.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from compiler.conv_layer import (
    Image,
    LoweringError,
    Program,
    emit_conv,
    from_qconv,
    input_bytes,
    sync_stores,
    transfer,
)
from compiler.payload import table_bytes
from compiler.tensor import Tensor, grouped, pixel_chunks
from defs.isa import Buffer, Opcode, Source
from defs.params import GraceParams
from model.fixed_decoder import QuantizedDecoder, quantize_image
from model.fixed_ops import LUT_SIZE
from rtl.act.layouts import ActOp


@dataclass(frozen=True)
class LoweredSource:
    words: list[int]
    memory: bytearray
    features_addr: int  # the source features, in the conv engine's output layout
    features_shape: tuple[int, int, int]


def emit_source(
    program: Program,
    image: Image,
    q: QuantizedDecoder,
    frame_addr: int,
    shape: tuple[int, int, int],
    *,
    features: Tensor | None = None,
    tile_rows: int | None = None,
) -> Tensor:
    """The source features of the key frame (H, W, C) whose bytes, each b stored as
    b ⊕ 0x80, are at `frame_addr`; stored into `features` when given. The TABLE
    tiles use table 0."""
    params = program.params
    cols = params.array.cols
    h, w, c = shape
    if params.act.lanes != 1:
        raise LoweringError("the key frame's table tile is laid out for a 1-lane engine")
    # quantize_image's table: index b (the byte b stored as b ⊕ 0x80, read as int8 b − 128)
    ramp = np.arange(LUT_SIZE, dtype=np.uint8).reshape(1, LUT_SIZE, 1)  # (H, W, C)
    table_addr = image.place(table_bytes(0, quantize_image(ramp).ravel()))
    x_addr = image.place(input_bytes(np.zeros((c, h, w), np.int64), params))
    word_bytes = -(-(cols * params.numeric.act_bits) // 8)

    program.step = "quantize"
    load = {"buffer": Buffer.ACT_TABLE, "buffer_addr": 0} | transfer(table_addr, 0, 1, LUT_SIZE)
    program.emit(Opcode.LOAD, load)
    tag = 0
    for g in range(-(-c // cols)):  # TABLE tiles per input group of the first conv
        channels = min(cols, c - g * cols)
        for p0, n in pixel_chunks(h * w):  # each within a transfer's 16-bit row count
            load = {"buffer": Buffer.ACT_INPUT, "buffer_addr": 0}  # the group's bytes a pixel
            load |= transfer(frame_addr + p0 * c + g * cols, c, n, channels)
            program.emit(Opcode.LOAD, load, push_next=1)
            command = {"op": ActOp.TABLE, "pixels": n, "groups": channels, "param_base": 0}
            command |= {"table": 0, "relu": 0, "tag": tag % 256}
            program.emit(Opcode.ACT, command, pop_prev=1, push_next=1)
            # each pixel's bytes into the first bytes of its word in group g's plane
            plane = x_addr + (g * h * w + p0) * word_bytes
            store = {"source": Source.ACT} | transfer(plane, word_bytes, n, channels)
            program.emit(Opcode.STORE, store, pop_prev=1)
            tag += 1

    x = grouped(x_addr, c, h, w, cols, padded=True)  # the first conv reads the input layout
    convs = (q.first, *q.down_blocks)
    for k, q_conv in enumerate(convs):
        program.step = "first" if k == 0 else f"down{k - 1}"
        sync_stores(program)
        out = features if k == len(convs) - 1 else None
        try:
            x = emit_conv(
                program, image, from_qconv(q_conv), x, out=out, after_store=True,
                tile_rows=tile_rows,
            )  # fmt: skip
        except LoweringError as exc:
            raise LoweringError(f"{program.step}: {exc}") from None
    return x


def lower_source(
    q: QuantizedDecoder, frame: npt.ArrayLike, params: GraceParams, *, tile_rows: int | None = None
) -> LoweredSource:
    """The key frame (H, W, C) uint8 → its source features, as a program and image."""
    pixels = np.asarray(frame, dtype=np.uint8)
    image, program = Image(), Program(params)
    frame_addr = image.place((pixels ^ 0x80).tobytes())  # H, W, C: the tile's input order
    x = emit_source(program, image, q, frame_addr, pixels.shape, tile_rows=tile_rows)
    return LoweredSource(program.end(), image.memory, x.planes[0].addr, x.shape)
