"""L3's conv engine: what one CONV command computes from the engine's buffers.

The instruction-level simulator (L3, docs/isa.md) does not model cycles; it
models state. The conv engine's state is its three buffers — input words of
`cols` int8 channels, weight words of `rows` × `cols` int8, per-channel
requantize constants — and the int32 partial sums of input-channel splitting;
a CONV instruction's body is the engine's tile command. `ConvBuffers` holds
that state (filled word by word, as LOAD instructions and the engine's write
streams fill it), and `run_command` reads a command's operands out of it by
the command's own addressing (`in_base`, `in_plane`, `in_row`, `weight_base`,
`param_base`) and calls L2's `conv2d_int` on them: the results, in the
engine's output order. A command with `partial_in` or `partial_out` runs L2's
steps one by one instead (`conv_accumulate`, then `requantize` and
`avg_pool2`), with the partial sums in between.

The addressing is the engine's (sim/conv.py `program` lays a layer out the
same way): input word `in_base + g·in_plane + y·in_row + x` holds channels
`g·cols …` of pixel (y, x); weight word `weight_base + ((og·G + g)·kh + u)·kw
+ v` holds output channels `og·rows …` (its rows) × input channels `g·cols …`
(its lanes); channel o's constants sit at `param_base + o`. Padding is
`pad_top`/`pad_left` zeros before the (upsampled) input and as many after as
the command's output size needs.

The partial sums (docs/conv_engine.md): element e of a command — its place in
the output order output group ▸ pixel (2 × 2 quads when pooling) ▸ channel,
counting the real channels only — is word e. A `partial_in` command adds word
e to its sum (accumulators + residual × gain, before the bias); a
`partial_out` command writes its sum, wrapped to int32, back to word e. Either
way the command emits its requantized results as any command does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from defs.params import GraceParams
from model.fixed import requantize
from model.fixed_conv import avg_pool2, conv2d_int, conv_accumulate
from sim.l3.words import lanes

IntArray = npt.NDArray[np.int64]


class ConvCommandError(ValueError):
    """A command that reads outside the engine's buffers, or names no output."""


@dataclass
class ConvBuffers:
    """The conv engine's buffers, as words land in them."""

    params: GraceParams
    inputs: IntArray = field(init=False)  # (input_depth, cols)
    weights: IntArray = field(init=False)  # (weight_depth, rows, cols)
    constants: dict[str, IntArray] = field(init=False)  # bias, multiplier, shift, gain
    partials: IntArray = field(init=False)  # (partial_depth,) int32 partial sums

    def __post_init__(self) -> None:
        a, b = self.params.array, self.params.buffers
        self.inputs = np.zeros((b.input_depth, a.cols), np.int64)
        self.weights = np.zeros((b.weight_depth, a.rows, a.cols), np.int64)
        names = ("bias", "multiplier", "shift", "gain")
        self.constants = {n: np.zeros(b.param_depth, np.int64) for n in names}
        self.partials = np.zeros(b.partial_depth, np.int64)

    def write_input(self, addr: int, word: int) -> None:
        n = self.params
        self.inputs[addr] = lanes(word, n.array.cols, n.numeric.act_bits)

    def write_weight(self, addr: int, row: int, word: int) -> None:
        n = self.params
        self.weights[addr, row] = lanes(word, n.array.cols, n.numeric.weight_bits)

    def write_constants(self, addr: int, values: Mapping[str, int]) -> None:
        for name, value in values.items():
            self.constants[name][addr] = value


def run_command(
    buffers: ConvBuffers, command: Mapping[str, int], residual: Sequence[int] = ()
) -> IntArray:
    """The command's results in the engine's output order (output group ▸ pixel ▸ row),
    `residual` being the engine's residual stream for the command (int8, that order).
    A `partial_out` command also leaves its sums in `buffers.partials`."""
    p = buffers.params
    rows, cols = p.array.rows, p.array.cols
    c = command
    groups, out_groups = c["in_groups"], c["out_groups"]
    kh, kw, h, w = c["kernel_h"], c["kernel_w"], c["in_height"], c["in_width"]
    outputs = (out_groups - 1) * rows + c["last_lanes"]
    if min(groups, out_groups, kh, kw, h, w, c["out_height"], c["out_width"]) < 1:
        raise ConvCommandError(f"CONV: an empty operand or output in {dict(command)}")
    if not 1 <= c["last_lanes"] <= rows:
        raise ConvCommandError(
            f"CONV.last_lanes = {c['last_lanes']}: the last output group has 1..{rows} lanes"
        )
    # the fields' reach, checked before any array is built (as the controller can)
    last = c["in_base"] + (groups - 1) * c["in_plane"] + (h - 1) * c["in_row"] + w - 1
    if last >= len(buffers.inputs):
        raise ConvCommandError(
            f"CONV.in_base: input words {c['in_base']}..{last} leave the "
            f"{len(buffers.inputs)}-word input buffer (in_base + (in_groups − 1)·in_plane + "
            "(in_height − 1)·in_row + in_width − 1)"
        )
    last = c["weight_base"] + out_groups * groups * kh * kw - 1
    if last >= len(buffers.weights):
        raise ConvCommandError(
            f"CONV.weight_base: weight words {c['weight_base']}..{last} leave the "
            f"{len(buffers.weights)}-word weight buffer"
        )

    # operands, read by the command's addressing
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    addr = c["in_base"] + np.arange(groups)[:, None, None] * c["in_plane"] + y * c["in_row"] + x
    _inside("input", addr, len(buffers.inputs))
    planes = buffers.inputs[addr]  # (G, H, W, cols)
    inputs = planes.transpose(0, 3, 1, 2).reshape(groups * cols, h, w)
    words = c["weight_base"] + np.arange(out_groups * groups * kh * kw)
    _inside("weight", words, len(buffers.weights))
    weight = buffers.weights[words].reshape(out_groups, groups, kh, kw, rows, cols)
    weight = weight.transpose(0, 4, 1, 5, 2, 3).reshape(out_groups * rows, groups * cols, kh, kw)
    channels = c["param_base"] + np.arange(outputs)
    _inside("parameter", channels, len(buffers.constants["bias"]))
    k = {name: values[channels] for name, values in buffers.constants.items()}

    # the padded (upsampled) input the kernel slides over
    up = 2 if c["upsample"] else 1
    stride = 2 if c["stride2"] else 1
    ho, wo = c["out_height"], c["out_width"]
    source = inputs.repeat(up, axis=1).repeat(up, axis=2)
    need_h, need_w = (ho - 1) * stride + kh, (wo - 1) * stride + kw
    top, left = c["pad_top"], c["pad_left"]
    padded = np.zeros((groups * cols, max(need_h, top + h * up), max(need_w, left + w * up)))
    padded = padded.astype(np.int64)
    padded[:, top : top + h * up, left : left + w * up] = source
    padded = padded[:, :need_h, :need_w]

    res = None
    pool = bool(c["pool"])
    if c["residual"]:
        res = _residual_map(residual, outputs, rows, ho, wo, pool)
    if not (c["partial_in"] or c["partial_out"]):
        y = conv2d_int(
            padded, weight[:outputs], k["bias"], k["multiplier"], k["shift"], p.numeric,
            stride=stride, relu=bool(c["relu"]), pool=pool, residual=res,
            residual_gain=k["gain"] if c["residual"] else None,
        )  # fmt: skip
        return _engine_order(y, rows)

    # input-channel splitting: L2's steps, the partial sums added before the bias
    elements = _element_order(outputs, rows, ho, wo, pool)  # (channel, y, x) per element
    if len(elements[0]) > len(buffers.partials):
        raise ConvCommandError(
            f"CONV: a partial command of {len(elements[0])} output elements; the partial "
            f"sums hold {len(buffers.partials)}"
        )
    sums = conv_accumulate(padded, weight[:outputs], stride=stride)
    if res is not None:
        sums += res * k["gain"].reshape(-1, 1, 1)
    if c["partial_in"]:
        sums[elements] += buffers.partials[: len(elements[0])]
    sums = _wrap(sums, p.numeric.acc_bits)
    if c["partial_out"]:
        buffers.partials[: len(elements[0])] = sums[elements]

    def per_channel(values: IntArray) -> IntArray:
        return values.reshape(-1, 1, 1)

    y = requantize(
        sums, per_channel(k["bias"]), per_channel(k["multiplier"]), per_channel(k["shift"]),
        int(c["relu"]), p.numeric,
    )  # fmt: skip
    return _engine_order(avg_pool2(y) if pool else y, rows)


def _wrap(values: IntArray, bits: int) -> IntArray:
    """Values as a `bits`-bit two's complement register holds them."""
    half = 1 << (bits - 1)
    return ((values + half) & ((1 << bits) - 1)) - half


def _element_order(
    outputs: int, rows: int, ho: int, wo: int, pool: bool
) -> tuple[IntArray, IntArray, IntArray]:
    """(channel, y, x) index arrays of a command's elements in the engine's order:
    output group ▸ pixel (2 × 2 quads when pooling) ▸ channel, the partial sums'."""
    pixels = np.array(_pixels(ho, wo, pool), np.int64).reshape(-1, 2)
    chans, ys, xs = [], [], []
    for og in range(-(-outputs // rows)):
        lanes = np.arange(og * rows, min(outputs, og * rows + rows))
        chans.append(np.tile(lanes, len(pixels)))
        ys.append(np.repeat(pixels[:, 0], len(lanes)))
        xs.append(np.repeat(pixels[:, 1], len(lanes)))
    return np.concatenate(chans), np.concatenate(ys), np.concatenate(xs)


def _inside(what: str, addresses: IntArray, depth: int) -> None:
    if addresses.size and (addresses.min() < 0 or addresses.max() >= depth):
        raise ConvCommandError(
            f"CONV: {what} words {addresses.min()}..{addresses.max()} leave the "
            f"{depth}-word {what} buffer"
        )


def _pixels(ho: int, wo: int, pool: bool) -> list[tuple[int, int]]:
    """Conv output pixels in the engine's issue order (2 × 2 quads when pooling)."""
    if not pool:
        return [(y, x) for y in range(ho) for x in range(wo)]
    return [
        (2 * py + dy, 2 * px + dx)
        for py in range(ho // 2)
        for px in range(wo // 2)
        for dy in range(2)
        for dx in range(2)
    ]


def _residual_map(
    stream: Sequence[int], outputs: int, rows: int, ho: int, wo: int, pool: bool
) -> IntArray:
    """The residual stream (output group ▸ pixel ▸ channel) as an (O, Ho, Wo) map;
    pixels a pooled command never computes stay 0 (pooling drops them)."""
    pixels = _pixels(ho, wo, pool)
    res = np.zeros((outputs, ho, wo), np.int64)
    values = iter(stream)
    for og in range(-(-outputs // rows)):
        channels = range(og * rows, min(outputs, og * rows + rows))
        for yy, xx in pixels:
            for ch in channels:
                try:
                    res[ch, yy, xx] = next(values)
                except StopIteration:
                    raise ConvCommandError("CONV: the residual stream ends early") from None
    return res


def _engine_order(y: IntArray, rows: int) -> IntArray:
    """(O, Ho', Wo') results → output group ▸ pixel (raster) ▸ row."""
    o = y.shape[0]
    parts = [
        y[og * rows : (og + 1) * rows, py, px]
        for og in range(-(-o // rows))
        for py in range(y.shape[1])
        for px in range(y.shape[2])
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)
