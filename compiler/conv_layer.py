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

Memory layouts (little-endian words of ⌈bits/8⌉ bytes; maps as `compiler.tensor`
describes them):
- input: any `Tensor` whose planes hold whole bytes per channel: each run of
  `cols` channels of a plane is one input group, read as one input word per
  pixel (the conv input layout, planes of `cols`, is one LOAD per tile). A
  plane whose channels are not a multiple of `cols` reads bytes past its last
  channel: those lanes meet zero weights, so nothing they hold matters;
- weights: word (og, g, u, v), its `rows` rows of `cols` weights, input
  channels in the physical order the input's groups give them;
- constants: one `channel_param_layout` word per output channel;
- output, and a residual: output group og's channels in one plane (the
  output layout: planes of pixels × its lanes, `rows`, fewer in the last
  group, one byte per value), or any `Tensor` given for the output.

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

from compiler.isa import decode, encode
from compiler.tensor import LoweringError, Plane, Tensor, grouped, transfer_fields
from defs.isa import Buffer, Opcode, Queue, Source
from defs.params import GraceParams
from model.fixed_decoder import QConv
from rtl.conv_layouts import channel_param_layout

IntArray = npt.NDArray[np.int64]

__all__ = ["LoweringError", "Tensor", "emit_conv", "lower_conv"]


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


def from_qconv(q: QConv, order: IntArray | None = None) -> ConvLayer:
    """The compiler's view of one of L2's fused convolutions; with `order`, input channel
    k of the map it reads is L2's input channel order[k]."""
    if q.groups != 1:
        raise LoweringError("a depthwise conv (the blur) runs as its polyphase form")
    weight = q.weight if order is None else q.weight[:, order]
    return ConvLayer(
        weight, q.bias, q.multiplier, q.shift, q.stride, q.padding, q.relu, q.upsample,
        q.pool, q.residual_gain,
    )  # fmt: skip


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
            raise LoweringError(
                f"conv: output row {o0} starts no tile that fits: the input buffer (or its "
                f"half) holds {fits} rows of this width (width or channel splitting is not built)"
            )
        i0, i1, _ = geo.reads(o0, o1)
        if i1 - i0 > fits:
            raise LoweringError(
                f"conv: output rows {o0}..{o1 - 1} read {i1 - i0} input rows; the input buffer "
                f"(or its half) holds {fits} rows of this width (width or channel splitting is "
                "not built)"
            )
        tiles.append((o0, o1))
        o0 = o1
    return tiles


#: Bytes after each region of an image: a conv input group read from a plane whose
#: channels end mid-word reads up to `cols` − 1 bytes past it (zero-weighted).
SLACK = 64


class Image:
    """A memory image being laid out: regions appended, each 64-byte aligned and followed
    by `SLACK` bytes."""

    def __init__(self) -> None:
        self.memory = bytearray()

    def place(self, blob: bytes) -> int:
        """`blob` in a region of its own; its address."""
        addr = len(self.memory)
        self.memory += blob + bytes(-len(blob) % 64 + SLACK)
        return addr

    def reserve(self, size: int) -> int:
        """`size` zero bytes for results; their address."""
        return self.place(bytes(size))

    def output(self, channels: int, height: int, width: int, rows: int) -> Tensor:
        """Room for a map in the conv engine's output layout (planes of `rows` lanes)."""
        return grouped(self.reserve(channels * height * width), channels, height, width, rows)


class Program:
    """Instruction words being emitted for one set of parameters."""

    def __init__(self, params: GraceParams) -> None:
        self.params = params
        self.words: list[int] = []
        self.steps: list[str] = []  # the step (layer) each word belongs to: the report's rows
        self.step = "program"

    def emit(self, op: Opcode, fields: dict[str, int], **tokens: int) -> None:
        self.words.append(encode(op, self.params, fields, tokens))
        self.steps.append(self.step)

    def end(self) -> list[int]:
        """The words, each queue closed by its END."""
        for queue in Queue:
            self.emit(Opcode.END, {"queue": queue})
        return self.words


transfer = transfer_fields


def input_bytes(x: npt.ArrayLike, params: GraceParams) -> bytes:
    """(C, H, W) int8 in the conv engine's input layout: group planes of `cols`-channel words."""
    cols, bits = params.array.cols, params.numeric.act_bits
    x = np.asarray(x, dtype=np.int64)
    c, h, w = x.shape
    groups = -(-c // cols)
    xg = np.zeros((groups * cols, h, w), np.int64)
    xg[:c] = x
    lanes = xg.reshape(groups, cols, h, w).transpose(0, 2, 3, 1).reshape(-1, cols)
    if bits == 8:  # a word's bytes are its lanes
        return lanes.astype(np.int8).tobytes()
    return _words([_pack(v, bits) for v in lanes], cols * bits)


@dataclass(frozen=True)
class InputGroup:
    """One input group of a layer: `cols` bytes of each pixel of `plane` from channel
    `offset` on, `channels` of them real (the rest meet zero weights)."""

    plane: Plane
    offset: int
    channels: int


def input_groups(x: Tensor, cols: int) -> list[InputGroup]:
    """The input's groups, plane by plane; a plane's channels in runs of `cols`."""
    groups = []
    for plane in x.planes:
        if plane.channel_bytes != 1:
            raise LoweringError("conv: an input plane of payload slots is not a conv input")
        for off in range(0, plane.channels, cols):
            groups.append(InputGroup(plane, off, min(cols, plane.channels - off)))
    return groups


def physical_channels(groups: list[InputGroup], cols: int) -> IntArray:
    """Where each input channel (in the map's order) sits among the groups' lanes."""
    return np.concatenate([g * cols + np.arange(grp.channels) for g, grp in enumerate(groups)])


def _constants_bytes(
    layer: ConvLayer, params: GraceParams, physical: IntArray, groups: int
) -> tuple[bytes, bytes]:
    """The layer's weight words (input channel c in lane `physical[c]`, zero elsewhere)
    and channel constants, as its loads read them."""
    rows, cols, n = params.array.rows, params.array.cols, params.numeric
    o, _, kh, kw = layer.weight.shape
    out_groups = -(-o // rows)
    wg = np.zeros((out_groups * rows, groups * cols, kh, kw), np.int64)
    wg[:o, physical] = layer.weight
    wg = wg.reshape(out_groups, rows, groups, cols, kh, kw).transpose(0, 2, 4, 5, 1, 3)
    if n.weight_bits == 8:  # a word's bytes are its weights, row by row
        weight_bytes = wg.astype(np.int8).tobytes()
    else:
        words = [_pack(v, n.weight_bits) for v in wg.reshape(-1, rows, cols)]
        weight_bytes = _words(words, rows * cols * n.weight_bits)
    playout = channel_param_layout(params)
    gain = np.zeros(o, np.int64) if layer.gain is None else np.asarray(layer.gain)
    consts = []
    for ch in range(o):
        values = {"bias": layer.bias[ch], "multiplier": layer.multiplier[ch]}
        values |= {"shift": layer.shift[ch], "gain": gain[ch]}
        consts.append(sum((int(values[f]) & ((1 << d.width) - 1)) << d.offset for f, d in playout))
    return weight_bytes, _words(consts, playout.size)


def _check_output(out: Tensor, lanes_of: list[int], rows: int, shape: tuple[int, int, int]) -> None:
    if out.shape != shape:
        raise LoweringError(f"conv: the output map is {out.shape}, the layer gives {shape}")
    for og, lanes in enumerate(lanes_of):
        plane, _ = out.locate(og * rows, lanes)
        if plane.channel_bytes != 1 and lanes * plane.channel_bytes != plane.pixel_bytes:
            raise LoweringError("conv: an output group's slots are not evenly spaced")


def emit_conv(
    program: Program,
    image: Image,
    layer: ConvLayer,
    x: Tensor,
    *,
    residual: Tensor | None = None,
    out: Tensor | None = None,
    tile_rows: int | None = None,
    after_store: bool = False,
) -> Tensor:
    """The layer's instructions, reading its input map `x` and its residual (before
    pooling) from the image, its weights and constants placed in `image`, its results
    stored into `out` (room in the output layout reserved when not given). With
    `after_store`, its first load waits for a token the compute queue passes on once
    the stores before it are done (`sync_stores`). Returns the results' map."""
    params = program.params
    a, b, n = params.array, params.buffers, params.numeric
    rows, cols = a.rows, a.cols
    c, h, w = x.shape
    o, wc, kh, kw = layer.weight.shape
    if wc != c:
        raise LoweringError(f"conv: weights take {wc} input channels, the input has {c}")
    if layer.pool and (layer.upsample or residual is not None):
        raise LoweringError("conv: pooling with upsampling or a residual is not built")
    if (residual is None) != (layer.gain is None):
        raise LoweringError("conv: a residual and its gain come together")
    if n.act_bits != 8:
        raise LoweringError(f"conv: maps are laid out a byte a value; act_bits is {n.act_bits}")
    ho, wo = conv_size(layer, h, w)
    if ho < 1 or wo < 1 or (layer.pool and min(ho, wo) < 2):
        raise LoweringError(f"conv: {h}×{w} input gives an empty output")
    in_groups = input_groups(x, cols)
    groups, out_groups = len(in_groups), -(-o // rows)
    # output groups per pass: as many as the weight and parameter buffers hold; when one
    # group's weights do not fit, a pass per output group over chunks of input groups,
    # the partial sums carried on chip between them (docs/conv_engine.md)
    group_words = groups * kh * kw
    per_pass = min(b.weight_depth // group_words, b.param_depth // rows, out_groups)
    chunk = groups if per_pass >= 1 else b.weight_depth // (kh * kw)
    if chunk < 1:
        raise LoweringError(
            f"conv: one input group's {kh}×{kw} taps take {kh * kw} weight words; the weight "
            f"buffer holds {b.weight_depth}"
        )
    chunks = [(q, min(groups, q + chunk)) for q in range(0, groups, chunk)]
    per_pass = max(1, per_pass)
    passes = [(g, min(out_groups, g + per_pass)) for g in range(0, out_groups, per_pass)]
    geo, geo_w = _Geometry(layer, h, kh), _Geometry(layer, w, kw)
    end = 2 * (ho // 2) if layer.pool else ho  # pooling drops an odd last row
    end_w = 2 * (wo // 2) if layer.pool else wo
    # a split tile's sums wait in the partial memory: at most partial_depth elements
    elements = b.partial_depth // rows if len(chunks) > 1 else None
    tiles, buffers = _plan(geo, geo_w, end, end_w, chunk, b.input_depth, tile_rows, elements)
    if len(chunks) > 1:
        buffers = 1  # a chunk's weights and input load once the CONV before is done
    half = b.input_depth // buffers
    lanes_of = [min(rows, o - og * rows) for og in range(out_groups)]
    pool = 2 if layer.pool else 1
    out_h, out_w = ho // pool, wo // pool
    if residual is not None:
        _check_output(residual, lanes_of, rows, (o, ho, wo))
    if out is None:
        out = image.output(o, out_h, out_w, rows)
    _check_output(out, lanes_of, rows, (o, out_h, out_w))

    physical = physical_channels(in_groups, cols)
    weights, constants = _constants_bytes(layer, params, physical, groups)
    weights_addr, constants_addr = image.place(weights), image.place(constants)
    wsize = -(-(rows * cols * n.weight_bits) // 8)
    psize = -(-channel_param_layout(params).size // 8)
    emit = program.emit
    split = len(chunks) > 1
    steps = [
        (p, t, q) for p in range(len(passes)) for t in range(len(tiles)) for q in range(len(chunks))
    ]
    for index, (p_index, k, q_index) in enumerate(steps):
        (g0, g1), (o0, o1, c0, c1), (q0, q1) = passes[p_index], tiles[k], chunks[q_index]
        first_step, last_step = index == 0, index == len(steps) - 1
        loads: list[dict[str, int]] = []
        pass_start = k == 0 and q_index == 0
        if pass_start or split:  # the pass's weights (a split: the chunk's)
            channels = range(g0 * rows, min(o, g1 * rows))
            if split:  # output group g0's words of input groups q0 .. q1
                addr = weights_addr + (g0 * groups + q0) * kh * kw * wsize
                fields = transfer(addr, 0, 1, (q1 - q0) * kh * kw)
            else:
                addr = weights_addr + g0 * group_words * wsize
                fields = transfer(addr, 0, 1, (g1 - g0) * group_words)
            loads.append({"buffer": Buffer.CONV_WEIGHT, "buffer_addr": 0} | fields)
            if pass_start:
                fields = transfer(constants_addr + channels[0] * psize, 0, 1, len(channels))
                loads.append({"buffer": Buffer.CONV_PARAM, "buffer_addr": 0} | fields)
        i0, i1, pad_top = geo.reads(o0, o1)
        j0, j1, pad_left = geo_w.reads(c0, c1)
        base = half * (k % buffers)
        takes_residual = residual is not None and q_index == len(chunks) - 1
        if takes_residual:  # the tile's residual stream: group ▸ pixel ▸ lane
            for og in range(g0, g1):
                plane, first = residual.locate(og * rows, lanes_of[og])
                for fields in _rows(plane, first, lanes_of[og], (o0, o1), (c0, c1), wo):
                    loads.append({"buffer": Buffer.CONV_RESIDUAL, "buffer_addr": 0} | fields)
        loads += _input_loads(in_groups[q0:q1], (i0, i1), (j0, j1), w, base, cols)
        # the step's first load waits: for the stores before the layer, for the CONV
        # `buffers` tiles back (its input half), or for the pass's (or chunk's) last CONV
        # (the weights and constants it overwrites)
        waits = (not first_step or after_store) if split or pass_start else k >= buffers
        for j, load in enumerate(loads):
            first, last = j == 0, j == len(loads) - 1
            emit(Opcode.LOAD, load, pop_next=int(first and waits), push_next=int(last))
        command = {
            "in_base": base, "in_plane": (i1 - i0) * (j1 - j0), "in_row": j1 - j0,
            "in_height": i1 - i0, "in_width": j1 - j0, "in_groups": q1 - q0,
            "upsample": int(layer.upsample), "kernel_h": kh, "kernel_w": kw,
            "stride2": int(layer.stride == 2), "pad_top": pad_top, "pad_left": pad_left,
            "out_height": o1 - o0, "out_width": c1 - c0, "out_groups": g1 - g0,
            "last_lanes": lanes_of[g1 - 1], "weight_base": 0, "param_base": 0,
            "relu": int(layer.relu), "pool": int(layer.pool), "residual": int(takes_residual),
            "tag": index % 256,
        }  # fmt: skip
        # a split's chunks after the first add the partial sums, all but the last keep them
        command["partial_in"] = int(split and q_index > 0)
        command["partial_out"] = int(split and q_index < len(chunks) - 1)
        # a token to the load queue frees what the next waiting step overwrites
        if split:
            frees = not last_step
        else:
            last_pass = p_index == len(passes) - 1
            frees = k + buffers < len(tiles) or (k == len(tiles) - 1 and not last_pass)
        emit(Opcode.CONV, command, pop_prev=1, push_prev=int(frees), push_next=1)
        for og in range(g0, g1):  # a split's partial tiles store too: the last overwrites
            plane, first = out.locate(og * rows, lanes_of[og])
            span = (o0 // pool, o1 // pool), (c0 // pool, c1 // pool)
            for j, fields in enumerate(_rows(plane, first, lanes_of[og], *span, out_w)):
                store = {"source": Source.CONV} | fields
                emit(Opcode.STORE, store, pop_prev=int(og == g0 and j == 0))
    return out


def _rows(
    plane: Plane,
    channel: int,
    count: int,
    rows: tuple[int, int],
    cols: tuple[int, int],
    width: int,
) -> list[dict[str, int]]:
    """The transfers of `count` channels of the map's rows × columns: a row per map row
    when the plane holds just these channels (a transfer's fields stay short), else a
    row per pixel (one transfer per map row when the columns are a band)."""
    (r0, r1), (c0, c1) = rows, cols
    if plane.channel_bytes == 1 and count == plane.pixel_bytes:
        row = width * count
        first = plane.addr + channel + r0 * row + c0 * count
        return [transfer(first, row, r1 - r0, (c1 - c0) * count)]
    if (c0, c1) == (0, width):
        return [plane.transfer(channel, count, r0 * width, (r1 - r0) * width)]
    return [plane.transfer(channel, count, r * width + c0, c1 - c0) for r in range(r0, r1)]


def _bands(geo_w: _Geometry, end_w: int, count: int) -> list[tuple[int, int]] | None:
    """`count` near-equal bands of output columns, each starting where a tile may."""
    edges = [0]
    for i in range(1, count):
        e = end_w * i // count
        while e > edges[-1] and not geo_w.may_start(e):
            e -= 1
        if e <= edges[-1]:
            return None
        edges.append(e)
    return list(zip(edges, [*edges[1:], end_w], strict=True))


def _plan(
    geo: _Geometry,
    geo_w: _Geometry,
    end: int,
    end_w: int,
    groups: int,
    depth: int,
    tile_rows: int | None,
    elements: int | None = None,
) -> tuple[list[tuple[int, int, int, int]], int]:
    """Tiles (o0, o1, c0, c1) and how many input buffers (halves) they take turns in.

    Whole rows when they fit, else the fewest bands of columns whose tiles do; double
    buffered when every tile fits half the buffer. With `elements`, a tile has at most
    that many output pixels (a split's partial sums)."""
    least = 2 if geo.layer.pool else 1
    for count in range(1, end_w + 1):
        bands = _bands(geo_w, end_w, count)
        if bands is None:
            continue
        if elements is not None and any(elements // (c1 - c0) < least for c0, c1 in bands):
            continue
        for buffers in (2, 1):
            try:
                tiles = []
                for c0, c1 in bands:
                    j0, j1, _ = geo_w.reads(c0, c1)
                    fits = depth // buffers // (groups * (j1 - j0))
                    cap = tile_rows
                    if elements is not None:
                        most = elements // (c1 - c0)
                        cap = most if cap is None else min(cap, most)
                    tiles += [(o0, o1, c0, c1) for o0, o1 in _tiles(geo, end, fits, cap)]
                return tiles, buffers
            except LoweringError:
                continue
    j0, j1, _ = geo_w.reads(0, 1)
    i0, i1, _ = geo.reads(0, 2 if geo.layer.pool else 1)
    raise LoweringError(
        f"conv: one output pixel reads {i1 - i0} × {j1 - j0} pixels × {groups} groups of "
        f"input words; the input buffer holds {depth} (input-channel splitting is not built)"
    )


def _input_loads(
    groups: list[InputGroup],
    rows_read: tuple[int, int],
    cols_read: tuple[int, int],
    width: int,
    base: int,
    cols: int,
) -> list[dict[str, int]]:
    """The LOADs of input rows [i0, i1) × columns [j0, j1) into the buffer from `base`
    on, group-major.

    A group whose plane is `cols` bytes a pixel is runs of input words: whole rows are
    one run, and groups of such planes evenly spaced in memory share one LOAD (a row
    each: the conv input layout takes one LOAD); a band of columns is a row per input
    row. Any other group gathers its word of each pixel (a row per pixel, a LOAD per
    input row when the columns are a band)."""
    (i0, i1), (j0, j1) = rows_read, cols_read
    band = j1 - j0
    pixels = (i1 - i0) * band
    whole_rows = (j0, j1) == (0, width)
    loads: list[dict[str, int]] = []
    shared = False  # the last load is a run of whole words that the next may join
    for g, grp in enumerate(groups):
        plane = grp.plane
        addr = plane.addr + (i0 * width + j0) * plane.pixel_bytes + grp.offset
        buffer_addr = base + g * pixels
        whole = plane.pixel_bytes == cols and grp.offset == 0
        if whole and shared and whole_rows:
            last = loads[-1]
            step = addr - last["dram_addr"]
            if last["rows"] == 1 or step == last["rows"] * last["stride"]:
                last["stride"] = step // last["rows"]
                last["rows"] += 1
                continue
        target = {"buffer": Buffer.CONV_INPUT, "buffer_addr": buffer_addr}
        if whole and whole_rows:
            loads.append(target | transfer(addr, 0, 1, pixels))
        elif whole:
            loads.append(target | transfer(addr, width * plane.pixel_bytes, i1 - i0, band))
        elif whole_rows:
            loads.append(target | transfer(addr, plane.pixel_bytes, pixels, 1))
        else:
            for r in range(i1 - i0):
                row = {"buffer": Buffer.CONV_INPUT, "buffer_addr": buffer_addr + r * band}
                first = addr + r * width * plane.pixel_bytes
                loads.append(row | transfer(first, plane.pixel_bytes, band, 1))
        shared = whole and whole_rows
    return loads


def sync_stores(program: Program) -> None:
    """Order what follows after every store so far: the last store gives the compute
    queue a token, a SYNC there passes it to the load queue, whose next instruction
    must take it (`emit_conv(after_store=True)`). Tokens join neighbouring queues
    only, so a store reaches the loads through the compute queue."""
    inst = decode(program.words[-1], program.params)
    if inst.op != Opcode.STORE or inst.tokens["push_prev"]:
        raise LoweringError("sync_stores: the program does not end with a store to sync on")
    program.words[-1] = encode(
        Opcode.STORE, program.params, inst.fields, inst.tokens | {"push_prev": 1}
    )
    program.emit(Opcode.SYNC, {"queue": Queue.COMPUTE}, pop_next=1, push_prev=1)


def lower_conv(
    layer: ConvLayer,
    x: npt.ArrayLike,
    params: GraceParams,
    *,
    residual: npt.ArrayLike | None = None,
    tile_rows: int | None = None,
) -> LoweredConv:
    """One layer on input `x` (C, H, W) (and `residual`, (O, Ho, Wo) before pooling) as a
    program and its memory image; tiles of at most `tile_rows` output rows if given."""
    x = np.asarray(x, dtype=np.int64)
    image, program = Image(), Program(params)
    c, h, w = x.shape
    cols, rows = params.array.cols, params.array.rows
    x_map = grouped(image.place(input_bytes(x, params)), c, h, w, cols, padded=True)
    res_map = None
    if residual is not None:
        res = np.asarray(residual, dtype=np.int64)
        want = (layer.weight.shape[0], *conv_size(layer, h, w))
        if res.shape != want:
            raise LoweringError(f"conv: residual {res.shape}, the output is {want}")
        res_map = grouped(image.place(_plane_bytes(res, rows)), *want, rows)
    out = emit_conv(program, image, layer, x_map, residual=res_map, tile_rows=tile_rows)
    tiles = sum(1 for word in program.words if word & 0xF == Opcode.CONV)
    return LoweredConv(program.end(), image.memory, out.planes[0].addr, out.shape, tiles)


def _plane_bytes(values: IntArray, rows: int) -> bytes:
    """(O, H, W) int8 as the output layout holds it: group planes of pixel × lanes."""
    o = values.shape[0]
    parts = [
        values[og * rows : og * rows + rows].transpose(1, 2, 0).astype(np.int8).tobytes()
        for og in range(-(-o // rows))
    ]
    return b"".join(parts)


def read_map(x: Tensor, memory: bytearray, *, signed: bool = True) -> IntArray:
    """The (C, H, W) values of a map (int8, or uint8 unless `signed`) from the image."""
    pixels = x.height * x.width
    parts = []
    for plane in x.planes:
        span = (pixels - 1) * plane.pixel_bytes + plane.channels * plane.channel_bytes
        raw = np.frombuffer(bytes(memory[plane.addr : plane.addr + span]), np.uint8)
        index = (
            np.arange(pixels)[:, None] * plane.pixel_bytes
            + np.arange(plane.channels)[None, :] * plane.channel_bytes
        )
        values = raw[index].astype(np.int64)
        if signed:
            values = np.where(values > 127, values - 256, values)
        parts.append(values.T.reshape(plane.channels, x.height, x.width))
    return np.concatenate(parts)


def read_output(lowered: LoweredConv, memory: bytearray, params: GraceParams) -> IntArray:
    """The (O, Ho, Wo) int8 results from the image, as the stores left them."""
    o, ho, wo = lowered.output_shape
    return read_map(grouped(lowered.output_addr, o, ho, wo, params.array.rows), memory)
