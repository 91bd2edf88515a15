"""One conv layer lowered to a program: spatial tiles with halos, double-buffered loads.

The first piece of the compiler (issue 16). A layer's input, weights and
constants are laid out in a memory image in the conv engine's words; the
program loads the weights and constants once, then for each tile of output
rows loads the input rows it reads (its halo included) into one half of the
input buffer while the previous tile computes from the other half, runs the
tile's CONV, and stores its results. Dependency tokens (docs/isa.md) order it:
a tile's input load waits for the CONV two tiles back to free its half; a CONV
waits for its load; a store for its CONV. The engine's fused options follow
the layer: nearest ×2 upsampling on read, 2 × 2 average pooling, a residual
entering the accumulator (its stream loaded tile by tile).

Memory layouts (little-endian words of ⌈bits/8⌉ bytes):
- input: word (g, y, x) = channels g·cols … of pixel (y, x), group-major planes;
- weights: word (og, g, u, v), its `rows` rows of `cols` weights;
- constants: one `channel_param_layout` word per output channel;
- output, and a residual: output group og's plane of pixels × its lanes
  (`rows`, fewer in the last group), one byte per value, group-major.

A layer whose weights or constants exceed their buffers runs in passes over
its output groups, each loading its own weights and constants once the last
CONV of the pass before is done (the input is read again per pass).

Not yet: input-channel splitting (an output group whose weights alone exceed
the weight buffer is refused), pooling with a residual, pooling with
upsampling.
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
    """What L2's `conv2d_int` takes for one layer."""

    weight: IntArray  # (O, C, kh, kw) int8
    bias: IntArray  # (O,)
    multiplier: IntArray  # (O,)
    shift: IntArray  # (O,)
    stride: int = 1
    padding: int = 0
    relu: bool = False
    upsample: bool = False
    pool: bool = False
    gain: IntArray | None = None  # (O,): the residual's gain when the layer takes one


@dataclass(frozen=True)
class LoweredConv:
    words: list[int]  # the program
    memory: bytearray  # the image: weights, constants, input, residual, room for the output
    output_addr: int
    output_shape: tuple[int, int, int]  # (O, Ho, Wo), pooled if the layer pools
    tiles: int


def _pack(values: npt.ArrayLike, bits: int) -> int:
    word = 0
    for k, v in enumerate(np.asarray(values).ravel()):
        word |= (int(v) & ((1 << bits) - 1)) << (k * bits)
    return word


def _words(values: list[int], bits: int) -> bytes:
    size = -(-bits // 8)
    return b"".join(v.to_bytes(size, "little") for v in values)


def conv_size(layer: ConvLayer, height: int, width: int) -> tuple[int, int]:
    """The convolution's output size, before pooling."""
    _, _, kh, kw = layer.weight.shape
    up = 2 if layer.upsample else 1
    p, s = layer.padding, layer.stride
    return (height * up + 2 * p - kh) // s + 1, (width * up + 2 * p - kw) // s + 1


@dataclass(frozen=True)
class _Geometry:
    """Rows: which input rows a tile of output rows reads, and where tiles may start."""

    layer: ConvLayer
    height: int
    kh: int

    def reads(self, o0: int, o1: int) -> tuple[int, int, int]:
        """(first input row, end input row, pad_top) of output rows [o0, o1)."""
        s, p = self.layer.stride, self.layer.padding
        first, last = o0 * s - p, (o1 - 1) * s - p + self.kh  # on the (upsampled) input
        if self.layer.upsample:
            i0, i1 = max(0, first // 2), min(self.height, -(-last // 2))
            return i0, i1, 2 * i0 - first
        i0, i1 = max(0, first), min(self.height, last)
        return i0, i1, i0 - first

    def may_start(self, o0: int) -> bool:
        """A tile may start here: on a pooling pair, and (upsampling) on a pixel's first
        upsampled row, the engine's padding being zeros before the read, never a skip."""
        first = o0 * self.layer.stride - self.layer.padding
        if self.layer.pool and o0 % 2:
            return False
        return not self.layer.upsample or first <= 0 or first % 2 == 0


def _tiles(geo: _Geometry, end: int, fits: int, tile_rows: int | None) -> list[tuple[int, int]]:
    """Output row ranges, each as long as `tile_rows` and the input buffer's half (`fits`
    input rows) allow, ending where the next tile may start."""
    tiles, o0 = [], 0
    while o0 < end:
        o1 = o0 + 1
        while o1 < end and (tile_rows is None or o1 - o0 < tile_rows):
            i0, i1, _ = geo.reads(o0, o1 + 1)
            if i1 - i0 > fits:
                break
            o1 += 1
        while o1 < end and not geo.may_start(o1):
            o1 -= 1
        if o1 <= o0:
            raise LoweringError(f"conv: no tile can start at output row {o0 + 1}")
        i0, i1, _ = geo.reads(o0, o1)
        if i1 - i0 > fits:
            raise LoweringError(
                f"conv: output rows {o0}..{o1 - 1} read {i1 - i0} input rows; half the input "
                f"buffer holds {fits} rows of this width (width or channel splitting is not built)"
            )
        tiles.append((o0, o1))
        o0 = o1
    return tiles


def lower_conv(
    layer: ConvLayer,
    x: npt.ArrayLike,
    params: GraceParams,
    *,
    residual: npt.ArrayLike | None = None,
    tile_rows: int | None = None,
) -> LoweredConv:
    """The layer on input `x` (C, H, W) (and `residual`, (O, Ho, Wo) before pooling) as
    a program and memory image; tiles of at most `tile_rows` output rows if given."""
    a, b, n = params.array, params.buffers, params.numeric
    rows, cols = a.rows, a.cols
    x = np.asarray(x, dtype=np.int64)
    c, h, w = x.shape
    o, wc, kh, kw = layer.weight.shape
    if wc != c:
        raise LoweringError(f"conv: weights take {wc} input channels, the input has {c}")
    if layer.pool and (layer.upsample or residual is not None):
        raise LoweringError("conv: pooling with upsampling or a residual is not built")
    if (residual is None) != (layer.gain is None):
        raise LoweringError("conv: a residual and its gain come together")
    ho, wo = conv_size(layer, h, w)
    if ho < 1 or wo < 1 or (layer.pool and min(ho, wo) < 2):
        raise LoweringError(f"conv: {h}×{w} input gives an empty output")
    groups, out_groups = -(-c // cols), -(-o // rows)
    # output groups per pass: as many as the weight and parameter buffers hold
    group_words = groups * kh * kw
    per_pass = min(b.weight_depth // group_words, b.param_depth // rows, out_groups)
    if per_pass < 1:
        raise LoweringError(
            f"conv: one output group takes {group_words} weight words; the weight buffer "
            f"holds {b.weight_depth} (input-channel splitting is not built)"
        )
    passes = [(a, min(out_groups, a + per_pass)) for a in range(0, out_groups, per_pass)]
    half = b.input_depth // 2
    geo = _Geometry(layer, h, kh)
    end = 2 * (ho // 2) if layer.pool else ho  # pooling drops an odd last row
    if groups * w > half:
        raise LoweringError(
            f"conv: an input row is {groups} × {w} = {groups * w} words; half the input buffer "
            f"holds {half} (width splitting is not built)"
        )
    tiles = _tiles(geo, end, half // (groups * w), tile_rows)
    lanes_of = [min(rows, o - og * rows) for og in range(out_groups)]
    pool = 2 if layer.pool else 1
    out_h, out_w = ho // pool, wo // pool

    # -- the memory image ------------------------------------------------------------
    wbits, ibits = rows * cols * n.weight_bits, cols * n.act_bits
    wg = np.zeros((out_groups * rows, groups * cols, kh, kw), np.int64)
    wg[:o, :c] = layer.weight
    wg = wg.reshape(out_groups, rows, groups, cols, kh, kw).transpose(0, 2, 4, 5, 1, 3)
    playout = channel_param_layout(params)
    gain = np.zeros(o, np.int64) if layer.gain is None else np.asarray(layer.gain)
    consts = []
    for ch in range(o):
        values = {"bias": layer.bias[ch], "multiplier": layer.multiplier[ch]}
        values |= {"shift": layer.shift[ch], "gain": gain[ch]}
        consts.append(sum((int(values[f]) & ((1 << d.width) - 1)) << d.offset for f, d in playout))
    xg = np.zeros((groups * cols, h, w), np.int64)
    xg[:c] = x
    lanes = xg.reshape(groups, cols, h, w).transpose(0, 2, 3, 1).reshape(-1, cols)
    blobs = {
        "weights": _words([_pack(v, n.weight_bits) for v in wg.reshape(-1, rows, cols)], wbits),
        "constants": _words(consts, playout.size),
        "input": _words([_pack(v, n.act_bits) for v in lanes], ibits),
    }
    if residual is not None:
        res = np.asarray(residual, dtype=np.int64)
        if res.shape != (o, ho, wo):
            raise LoweringError(f"conv: residual {res.shape}, the output is {(o, ho, wo)}")
        blobs["residual"] = _plane_bytes(res, rows)
    memory, places = bytearray(), {}
    for name, blob in blobs.items():
        places[name] = len(memory)
        memory += blob + bytes(-len(blob) % 64)  # regions 64-byte aligned
    out_addr = len(memory)
    memory += bytes(o * out_h * out_w)

    # -- the program -----------------------------------------------------------------
    words: list[int] = []

    def emit(op: Opcode, fields: dict[str, int], **tokens: int) -> None:
        words.append(encode(op, params, fields, tokens))

    def transfer(addr: int, stride: int, count: int, row_words: int) -> dict[str, int]:
        return {"dram_addr": addr, "stride": stride, "rows": count, "row_words": row_words}

    isize, wsize, psize = -(-ibits // 8), -(-wbits // 8), -(-playout.size // 8)
    planes = [out_addr + sum(out_h * out_w * n for n in lanes_of[:og]) for og in range(out_groups)]
    rplanes = [sum(ho * wo * n for n in lanes_of[:og]) for og in range(out_groups)]
    for p_index, (g0, g1) in enumerate(passes):
        # the pass's weights and constants, once its previous pass's last CONV is done
        channels = range(g0 * rows, min(o, g1 * rows))
        load = {"buffer": Buffer.CONV_WEIGHT, "buffer_addr": 0}
        load |= transfer(
            places["weights"] + g0 * group_words * wsize, 0, 1, (g1 - g0) * group_words
        )
        emit(Opcode.LOAD, load, pop_next=int(p_index > 0))
        load = {"buffer": Buffer.CONV_PARAM, "buffer_addr": 0}
        emit(
            Opcode.LOAD,
            load | transfer(places["constants"] + channels[0] * psize, 0, 1, len(channels)),
        )
        last_pass = p_index == len(passes) - 1
        for k, (o0, o1) in enumerate(tiles):
            i0, i1, pad_top = geo.reads(o0, o1)
            base = half * (k % 2)
            if residual is not None:  # the tile's residual stream: group ▸ pixel ▸ lane
                for og in range(g0, g1):
                    lanes, count = lanes_of[og], (o1 - o0) * wo * lanes_of[og]
                    first = places["residual"] + rplanes[og] + o0 * wo * lanes
                    load = {"buffer": Buffer.CONV_RESIDUAL, "buffer_addr": 0}
                    emit(Opcode.LOAD, load | transfer(first, 0, 1, count))
            load = {"buffer": Buffer.CONV_INPUT, "buffer_addr": base}
            load |= transfer(places["input"] + i0 * w * isize, h * w * isize, groups, (i1 - i0) * w)
            emit(Opcode.LOAD, load, pop_next=int(k >= 2), push_next=1)
            command = {
                "in_base": base, "in_plane": (i1 - i0) * w, "in_row": w, "in_height": i1 - i0,
                "in_width": w, "in_groups": groups, "upsample": int(layer.upsample),
                "kernel_h": kh, "kernel_w": kw, "stride2": int(layer.stride == 2),
                "pad_top": pad_top, "pad_left": layer.padding, "out_height": o1 - o0,
                "out_width": wo, "out_groups": g1 - g0, "last_lanes": lanes_of[g1 - 1],
                "weight_base": 0, "param_base": 0, "relu": int(layer.relu),
                "pool": int(layer.pool), "residual": int(residual is not None),
                "tag": (p_index * len(tiles) + k) % 256,
            }  # fmt: skip
            # a token frees the input half two tiles on, and the last tile's frees
            # the weights and constants for the next pass (its loads take it)
            frees = k + 2 < len(tiles) or (k == len(tiles) - 1 and not last_pass)
            emit(Opcode.CONV, command, pop_prev=1, push_prev=int(frees), push_next=1)
            for og in range(g0, g1):
                lanes = lanes_of[og]
                first, count = o0 // pool * out_w * lanes, (o1 - o0) // pool * out_w * lanes
                store = {"source": Source.CONV} | transfer(planes[og] + first, 0, 1, count)
                emit(Opcode.STORE, store, pop_prev=int(og == g0))
    for queue in Queue:
        emit(Opcode.END, {"queue": queue})
    return LoweredConv(words, memory, out_addr, (o, out_h, out_w), len(tiles) * len(passes))


def _plane_bytes(values: IntArray, rows: int) -> bytes:
    """(O, H, W) int8 as the output layout holds it: group planes of pixel × lanes."""
    o = values.shape[0]
    parts = [
        values[og * rows : og * rows + rows].transpose(1, 2, 0).astype(np.int8).tobytes()
        for og in range(-(-o // rows))
    ]
    return b"".join(parts)


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
