"""One conv layer lowered to a program: spatial tiles with halos, double-buffered loads.

The first piece of the compiler (issue 16). A layer's input, weights and
constants are laid out in a memory image in the conv engine's words; the
program loads the weights and constants once, then for each tile of output
rows loads the input rows it reads (its halo included) into one half of the
input buffer while the previous tile computes from the other half, runs the
tile's CONV, and stores its results. Dependency tokens (docs/isa.md) order it:
a tile's input load waits for the CONV two tiles back to free its half; a CONV
waits for its load; a store for its CONV.

Memory layouts (little-endian words of ⌈bits/8⌉ bytes):
- input: word (g, y, x) = channels g·cols … of pixel (y, x), group-major planes;
- weights: word (og, g, u, v), its `rows` rows of `cols` weights;
- constants: one `channel_param_layout` word per output channel;
- output: output group og's plane of Ho × Wo pixels × its lanes (`rows`, fewer
  in the last group), one byte per value, group-major.

Not yet: input-channel splitting (a layer whose weights exceed the weight
buffer is refused), upsampling, pooling and residuals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from compiler.isa import encode
from defs.isa import Buffer, Opcode, Queue, Source
from defs.params import GraceParams
from rtl.conv_layouts import channel_param_layout

IntArray = npt.NDArray[np.int64]


class LoweringError(ValueError):
    """A layer the compiler cannot lower for these parameters (one line, with the sizes)."""


@dataclass(frozen=True)
class ConvLayer:
    """What L2's `conv2d_int` takes for one layer (without upsampling, pooling or residual)."""

    weight: IntArray  # (O, C, kh, kw) int8
    bias: IntArray  # (O,)
    multiplier: IntArray  # (O,)
    shift: IntArray  # (O,)
    stride: int = 1
    padding: int = 0
    relu: bool = False


@dataclass(frozen=True)
class LoweredConv:
    words: list[int]  # the program
    memory: bytearray  # the image: weights, constants, input, room for the output
    output_addr: int
    output_shape: tuple[int, int, int]  # (O, Ho, Wo)
    tiles: int


def _pack(values: npt.ArrayLike, bits: int) -> int:
    word = 0
    for k, v in enumerate(np.asarray(values).ravel()):
        word |= (int(v) & ((1 << bits) - 1)) << (k * bits)
    return word


def _words(values: list[int], bits: int) -> bytes:
    size = -(-bits // 8)
    return b"".join(v.to_bytes(size, "little") for v in values)


def output_size(layer: ConvLayer, height: int, width: int) -> tuple[int, int]:
    _, _, kh, kw = layer.weight.shape
    p, s = layer.padding, layer.stride
    return (height + 2 * p - kh) // s + 1, (width + 2 * p - kw) // s + 1


def lower_conv(
    layer: ConvLayer, x: npt.ArrayLike, params: GraceParams, *, tile_rows: int | None = None
) -> LoweredConv:
    """The layer on input `x` (C, H, W) as a program and memory image."""
    a, b, n = params.array, params.buffers, params.numeric
    rows, cols = a.rows, a.cols
    x = np.asarray(x, dtype=np.int64)
    c, h, w = x.shape
    o, wc, kh, kw = layer.weight.shape
    if wc != c:
        raise LoweringError(f"conv: weights take {wc} input channels, the input has {c}")
    s, pad = layer.stride, layer.padding
    ho, wo = output_size(layer, h, w)
    if ho < 1 or wo < 1:
        raise LoweringError(f"conv: {h}×{w} input gives an empty output")
    groups, out_groups = -(-c // cols), -(-o // rows)
    weight_words = out_groups * groups * kh * kw
    if weight_words > b.weight_depth or o > b.param_depth:
        raise LoweringError(
            f"conv: {weight_words} weight words and {o} channel constants; the buffers hold "
            f"{b.weight_depth} and {b.param_depth} (input-channel splitting is not built)"
        )

    def rows_read(o0: int, o1: int) -> tuple[int, int]:
        """Input rows [i0, i1) that output rows [o0, o1) read."""
        return max(0, o0 * s - pad), min(h, (o1 - 1) * s - pad + kh)

    half = b.input_depth // 2

    def tile_words(t: int) -> int:
        """Input words a tile of t output rows reads at most (an interior tile)."""
        return groups * w * min(h, (t - 1) * s + kh)

    if tile_rows is None:
        tile_rows = max((t for t in range(1, ho + 1) if tile_words(t) <= half), default=0)
    if tile_rows < 1 or tile_words(tile_rows) > half:
        least = max(tile_rows, 1)
        raise LoweringError(
            f"conv: a tile of {least} output rows reads {tile_words(least)} input words; half "
            f"the input buffer holds {half} (width or channel splitting is not built)"
        )

    # -- the memory image ------------------------------------------------------------
    wbits = rows * cols * n.weight_bits
    wg = np.zeros((out_groups * rows, groups * cols, kh, kw), np.int64)
    wg[:o, :c] = layer.weight
    wg = wg.reshape(out_groups, rows, groups, cols, kh, kw).transpose(0, 2, 4, 5, 1, 3)
    weight_image = _words(
        [_pack(word, n.weight_bits) for word in wg.reshape(-1, rows, cols)], wbits
    )
    playout = channel_param_layout(params)
    consts = []
    for ch in range(o):
        fields = {"bias": layer.bias[ch], "multiplier": layer.multiplier[ch]}
        fields |= {"shift": layer.shift[ch], "gain": 0}
        word = 0
        for name, fld in playout:
            word |= (int(fields[name]) & ((1 << fld.width) - 1)) << fld.offset
        consts.append(word)
    param_image = _words(consts, playout.size)
    xg = np.zeros((groups * cols, h, w), np.int64)
    xg[:c] = x
    ibits = cols * n.act_bits
    lanes = xg.reshape(groups, cols, h, w).transpose(0, 2, 3, 1).reshape(-1, cols)
    input_image = _words([_pack(word, n.act_bits) for word in lanes], ibits)
    lanes_of = [min(rows, o - og * rows) for og in range(out_groups)]
    out_bytes = sum(ho * wo * lanes for lanes in lanes_of)

    memory = bytearray()
    places = {}
    for name, blob in (
        ("weights", weight_image),
        ("constants", param_image),
        ("input", input_image),
    ):
        places[name] = len(memory)
        memory += blob + bytes(-len(blob) % 64)  # regions 64-byte aligned
    out_addr = len(memory)
    memory += bytes(out_bytes)

    # -- the program -----------------------------------------------------------------
    words: list[int] = []

    def emit(op: Opcode, fields: dict[str, int], **tokens: int) -> None:
        words.append(encode(op, params, fields, tokens))

    def transfer(addr: int, stride: int, count: int, row_words: int) -> dict[str, int]:
        return {"dram_addr": addr, "stride": stride, "rows": count, "row_words": row_words}

    wsize, psize, isize = -(-wbits // 8), -(-playout.size // 8), -(-ibits // 8)
    emit(Opcode.LOAD, {"buffer": Buffer.CONV_WEIGHT, "buffer_addr": 0}
         | transfer(places["weights"], weight_words * wsize, 1, weight_words))  # fmt: skip
    emit(Opcode.LOAD, {"buffer": Buffer.CONV_PARAM, "buffer_addr": 0}
         | transfer(places["constants"], o * psize, 1, o))  # fmt: skip
    starts = list(range(0, ho, tile_rows))
    for k, o0 in enumerate(starts):
        o1 = min(ho, o0 + tile_rows)
        i0, i1 = rows_read(o0, o1)
        base = half * (k % 2)
        load = {"buffer": Buffer.CONV_INPUT, "buffer_addr": base}
        load |= transfer(places["input"] + i0 * w * isize, h * w * isize, groups, (i1 - i0) * w)
        emit(Opcode.LOAD, load, pop_next=int(k >= 2), push_next=1)
        command = {
            "in_base": base, "in_plane": (i1 - i0) * w, "in_row": w, "in_height": i1 - i0,
            "in_width": w, "in_groups": groups, "upsample": 0, "kernel_h": kh, "kernel_w": kw,
            "stride2": int(s == 2), "pad_top": i0 - (o0 * s - pad), "pad_left": pad,
            "out_height": o1 - o0, "out_width": wo, "out_groups": out_groups,
            "last_lanes": lanes_of[-1], "weight_base": 0, "param_base": 0,
            "relu": int(layer.relu), "pool": 0, "residual": 0, "tag": k % 256,
        }  # fmt: skip
        emit(Opcode.CONV, command, pop_prev=1, push_prev=int(k + 2 < len(starts)), push_next=1)
        plane = out_addr
        for og, lanes in enumerate(lanes_of):
            store = {"source": Source.CONV}
            store |= transfer(plane + o0 * wo * lanes, 0, 1, (o1 - o0) * wo * lanes)
            emit(Opcode.STORE, store, pop_prev=int(og == 0))
            plane += ho * wo * lanes
    for queue in Queue:
        emit(Opcode.END, {"queue": queue})
    return LoweredConv(words, memory, out_addr, (o, ho, wo), len(starts))


def read_output(lowered: LoweredConv, memory: bytearray, params: GraceParams) -> IntArray:
    """The (O, Ho, Wo) int8 results from the image, as the stores left them."""
    o, ho, wo = lowered.output_shape
    rows = params.array.rows
    out = np.zeros((o, ho, wo), np.int64)
    addr = lowered.output_addr
    for og in range(-(-o // rows)):
        lanes = min(rows, o - og * rows)
        plane = np.frombuffer(bytes(memory[addr : addr + ho * wo * lanes]), np.int8)
        out[og * rows : og * rows + lanes] = plane.reshape(ho, wo, lanes).transpose(2, 0, 1)
        addr += ho * wo * lanes
    return out
