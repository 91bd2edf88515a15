"""Host side of the convolution engine: lay a layer out in its buffers, predict its output.

`ConvCase` is one convolution (int8 tensors and per-channel constants); `program`
turns it into the engine's view of the world — buffer words, one tile command,
the residual stream — in the layout docs/conv_engine.md defines, and `expected`
is the L2 reference (`model.fixed_conv.conv2d_int`) reordered into the engine's
output order. `split_programs` runs a layer as passes over chunks of its input
channel groups, the int32 partial sums carried between them in the engine.
Both simulators (Amaranth here, cocotb in `sim.conv_tb`) share it.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from amaranth.sim import Simulator, SimulatorContext

from defs.limits import DIM_BITS, GROUP_BITS, MAX_KERNEL, MAX_PAD, TAG_BITS
from defs.params import GraceParams
from model.conv_shape import ConvShape
from model.fixed import int_range, requantize
from model.fixed_conv import avg_pool2, conv2d_int, conv_accumulate
from rtl.conv import ConvEngine
from rtl.conv_layouts import (
    command_layout,
    input_write_layout,
    param_write_layout,
    weight_write_layout,
)
from sim.engine_bench import collect_outputs, read_numbers, run_engine_bench, send
from sim.runner import SimResult
from sim.stream_function import pack
from sim.stream_rules import watch_amaranth

IntArray = npt.NDArray[np.int64]


class ConvProgramError(ValueError):
    """The layer does not fit the engine's buffers or command fields."""


@dataclass
class ConvCase:
    """One convolution for the engine, with everything L2 needs to compute it."""

    x: IntArray  # (C, H, W) int8
    weight: IntArray  # (O, C, kh, kw) int8
    bias: IntArray  # (O,)
    multiplier: IntArray  # (O,)
    shift: IntArray  # (O,)
    stride: int = 1
    padding: int = 0
    relu: bool = False
    upsample: bool = False
    pool: bool = False
    residual: IntArray | None = None  # (O, Ho, Wo) int8, before pooling
    gain: IntArray | None = None  # (O,) unsigned
    padding_w: int | None = None  # left/right padding when it differs from `padding`

    @property
    def shape(self) -> ConvShape:
        c, h, w = self.x.shape
        o, _, kh, kw = self.weight.shape
        return ConvShape(
            c, o, h, w, kh, kw, self.stride, self.padding, self.padding_w, self.upsample, self.pool,
            residual=self.residual is not None,
        )  # fmt: skip

    @property
    def conv_size(self) -> tuple[int, int]:
        """Output height and width of the convolution, before pooling."""
        return self.shape.conv_size

    def describe(self) -> str:
        flags = [f for f in ("relu", "pool") if getattr(self, f)]
        flags += ["residual"] if self.residual is not None else []
        return f"{self.shape.describe()} {'+'.join(flags)}".strip()


def fold_taps(case: ConvCase) -> ConvCase:
    """The host-side layout of `ConvShape.fold_taps`: horizontal taps become channels.

    x'[c·k_w + v, y, j] = x[c, y, j + v - pad] and w'[o, c·k_w + v, u, 0] = w[o, c, u, v],
    so the engine's k_h × 1 convolution of x' equals the k_h × k_w one of x.
    """
    case.shape.fold_taps()  # refuses what the fold cannot do
    c, h, _ = case.x.shape
    o, _, kh, kw = case.weight.shape
    _, wo = case.conv_size
    pad = case.shape.pad_left
    padded = np.pad(case.x, ((0, 0), (0, 0), (pad, pad)))
    x = np.stack([padded[:, :, v : v + wo] for v in range(kw)], axis=1).reshape(c * kw, h, wo)
    weight = case.weight.transpose(0, 1, 3, 2).reshape(o, c * kw, kh, 1)
    return dataclasses.replace(case, x=x, weight=weight, padding_w=0)


def fold_rows(case: ConvCase, fold: int) -> ConvCase:
    """The host-side layout of `ConvShape.fold_rows`: output rows become output channels.

    x'[c·F + r, Y', j] = x[c, F·Y' + r, j] (zero past x) and
    w'[o·F + p, c·F + r, u' + above, v] = w[o, c, F·u' + r − p + pad, v] where
    that row exists (zero elsewhere); the constants repeat per p. Then the
    engine's output channel o·F + p, row Y, is the layer's channel o, row
    F·Y + p (`unfold_rows` puts them back).
    """
    folded = case.shape.fold_rows(fold)  # refuses what the fold cannot do
    c, h, w = case.x.shape
    o, _, kh, kw = case.weight.shape
    above = folded.padding
    x = np.zeros((c, folded.height * fold, w), dtype=np.int64)  # ≥ h rows
    x[:, :h] = case.x
    x = x.reshape(c, folded.height, fold, w).transpose(0, 2, 1, 3).reshape(c * fold, -1, w)
    weight = np.zeros((o, fold, c, fold, folded.kernel_h, kw), dtype=np.int64)
    for p, r, tap in itertools.product(range(fold), range(fold), range(folded.kernel_h)):
        u = fold * (tap - above) + r - p + case.padding
        if 0 <= u < kh:
            weight[:, p, :, r, tap] = case.weight[:, :, u]
    return dataclasses.replace(
        case,
        x=x,
        weight=weight.reshape(o * fold, c * fold, folded.kernel_h, kw),
        bias=np.repeat(case.bias, fold),
        multiplier=np.repeat(case.multiplier, fold),
        shift=np.repeat(case.shift, fold),
        gain=None if case.gain is None else np.repeat(case.gain, fold),
        padding=above,
        padding_w=case.shape.pad_left,
    )


def unfold_rows(y: IntArray, fold: int, height: int) -> IntArray:
    """The folded layer's output (O·F, Y, W) as the layer's own (O, height, W)."""
    channels, rows, width = y.shape
    out = y.reshape(channels // fold, fold, rows, width).transpose(0, 2, 1, 3)
    return out.reshape(channels // fold, rows * fold, width)[:, :height]


def random_case(
    rng: np.random.Generator,
    params: GraceParams,
    *,
    channels: int,
    out_channels: int,
    size: tuple[int, int],
    kernel: int,
    stride: int = 1,
    padding: int | None = None,
    relu: bool = False,
    upsample: bool = False,
    pool: bool = False,
    residual: bool = False,
) -> ConvCase:
    """Random int8 data and constants that keep the accumulator inside int32."""
    n = params.numeric
    lo, hi = int_range(n.act_bits)
    h, w = size
    pad = kernel // 2 if padding is None else padding
    case = ConvCase(
        x=rng.integers(lo, hi + 1, (channels, h, w)),
        weight=rng.integers(lo + 1, hi + 1, (out_channels, channels, kernel, kernel)),
        bias=rng.integers(-(1 << 14), 1 << 14, out_channels),
        # a multiplier/shift pair that maps the typical accumulator onto the int8 range
        multiplier=rng.integers(1 << (n.mult_bits - 1), 1 << n.mult_bits, out_channels),
        shift=np.full(out_channels, 0),
        stride=stride,
        padding=pad,
        relu=relu,
        upsample=upsample,
        pool=pool,
    )
    typical = np.sqrt(channels * kernel * kernel) * 64 * 64
    case.shift[:] = min(n.max_shift, int(np.log2(typical * (1 << n.mult_bits) / 64)))
    case.shift += rng.integers(-2, 3, out_channels)
    case.shift = np.clip(case.shift, 0, n.max_shift)
    if residual:
        ho, wo = case.conv_size
        case.residual = rng.integers(lo, hi + 1, (out_channels, ho, wo))
        case.gain = rng.integers(0, 1 << n.gain_bits, out_channels)
    return case


def _evenly_padded(case: ConvCase) -> tuple[IntArray, int]:
    """The input and the padding L2 takes: L2 pads evenly, so uneven padding is
    applied here and the convolution runs unpadded."""
    x, padding = case.x, case.padding
    if case.shape.pad_left != padding:
        if case.upsample:
            raise ConvProgramError("uneven padding with upsampling is not supported")
        x = np.pad(x, ((0, 0), (padding, padding), (case.shape.pad_left,) * 2))
        padding = 0
    return x, padding


def reference(case: ConvCase, params: GraceParams) -> IntArray:
    """L2's output tensor (O, Ho, Wo), pooled if the case pools."""
    x, padding = _evenly_padded(case)
    return conv2d_int(
        x,
        case.weight,
        case.bias,
        case.multiplier,
        case.shift,
        params.numeric,
        stride=case.stride,
        padding=padding,
        relu=case.relu,
        upsample=case.upsample,
        pool=case.pool,
        residual=case.residual,
        residual_gain=case.gain,
    )


def wrap(values: npt.ArrayLike, bits: int) -> IntArray:
    """Values as a `bits`-bit two's complement register holds them."""
    half = 1 << (bits - 1)
    return ((np.asarray(values, dtype=np.int64) + half) & ((1 << bits) - 1)) - half


def engine_sums(case: ConvCase, params: GraceParams, carried: IntArray | None = None) -> IntArray:
    """The engine's int32 sums (O, Ho, Wo) of a case before the bias: L2's accumulators
    (`conv_accumulate`), plus residual × gain and the partial sums `carried` in,
    wrapped as the engine's 32-bit sums wrap."""
    x, padding = _evenly_padded(case)
    acc = conv_accumulate(
        x, case.weight, stride=case.stride, padding=padding, upsample=case.upsample
    )
    if case.residual is not None:
        acc = acc + case.residual * np.asarray(case.gain, dtype=np.int64).reshape(-1, 1, 1)
    if carried is not None:
        acc = acc + carried
    return wrap(acc, params.numeric.acc_bits)


def outputs_of_sums(sums: IntArray, case: ConvCase, params: GraceParams) -> IntArray:
    """What the engine emits for sums (O, Ho, Wo): L2's requantize (bias, multiplier,
    shift, ReLU), then its 2 × 2 pool if the case pools."""

    def per_channel(v: npt.ArrayLike) -> IntArray:
        return np.asarray(v, dtype=np.int64).reshape(-1, 1, 1)

    y = requantize(
        sums, per_channel(case.bias), per_channel(case.multiplier), per_channel(case.shift),
        int(case.relu), params.numeric,
    )  # fmt: skip
    return avg_pool2(y) if case.pool else y


def engine_order(y: IntArray, rows: int) -> IntArray:
    """An output tensor (O, Ho', Wo') as the engine emits it: output group ▸ pixel ▸ lane."""
    order = [
        y[og * rows : (og + 1) * rows, py, px]
        for og in range(-(-y.shape[0] // rows))
        for py in range(y.shape[1])
        for px in range(y.shape[2])
    ]
    return np.concatenate(order) if order else np.zeros(0, np.int64)


def _pixel_order(height: int, width: int, pool: bool) -> list[tuple[int, int]]:
    """Conv output pixels in issue order: raster, or raster of 2×2 quads when pooling."""
    if not pool:
        return [(y, x) for y in range(height) for x in range(width)]
    return [
        (2 * py + dy, 2 * px + dx)
        for py in range(height // 2)
        for px in range(width // 2)
        for dy in range(2)
        for dx in range(2)
    ]


@dataclass
class ConvProgram:
    """Everything the host sends the engine for one case, as packed stream words."""

    input_writes: list[int]
    weight_writes: list[int]
    param_writes: list[int]
    command: int
    residual: list[int]
    expected: IntArray  # engine output order
    useful_macs: int
    command_fields: dict[str, int] = field(default_factory=dict)
    #: the tile's int32 sums (O, Ho, Wo) before the bias: what a partial_out tile
    #: leaves in the engine's partial sums
    sums: IntArray | None = None


def program(
    case: ConvCase,
    params: GraceParams,
    *,
    tag: int = 1,
    in_base: int = 0,
    weight_base: int = 0,
    param_base: int = 0,
    partial_in: bool = False,
    partial_out: bool = False,
    carried: IntArray | None = None,
) -> ConvProgram:
    """Buffer images, the tile command and the residual stream of one case.

    The bases place the case's data in the buffers, so several cases can be
    resident at once (what a controller's double buffering does). `partial_in`
    adds the partial sums the engine holds, which the caller says are `carried`
    (the `sums` of the partial_out tile before); `partial_out` keeps this tile's
    sums there (`split_programs` chains them).
    """
    rows, cols = params.array.rows, params.array.cols
    n = params.numeric
    c, h, w = case.x.shape
    o, wc, kh, kw = case.weight.shape
    if wc != c:
        raise ConvProgramError(f"weights expect {wc} input channels, the input has {c}")
    if not (1 <= kh <= MAX_KERNEL and 1 <= kw <= MAX_KERNEL):
        raise ConvProgramError(f"kernel {kh}×{kw}: the engine takes 1..{MAX_KERNEL} per side")
    if case.stride not in (1, 2):
        raise ConvProgramError(f"stride {case.stride}: the engine takes 1 or 2")
    if not (0 <= case.padding <= MAX_PAD and 0 <= case.shape.pad_left <= MAX_PAD):
        raise ConvProgramError(f"padding {case.padding}: the engine takes 0..{MAX_PAD}")
    ho, wo = case.conv_size
    if ho < 1 or wo < 1 or (case.pool and (ho < 2 or wo < 2)):
        raise ConvProgramError(f"output {ho}×{wo} is empty{' after pooling' if case.pool else ''}")
    elements = o * len(_pixel_order(ho, wo, case.pool))
    if (partial_in or partial_out) and elements > params.buffers.partial_depth:
        raise ConvProgramError(
            f"a partial tile of {elements} output elements; the partial sums hold "
            f"{params.buffers.partial_depth} (split the tile's pixels or output groups)"
        )
    if max(h, w, ho, wo) >= 1 << DIM_BITS:
        raise ConvProgramError(f"sizes must stay below {1 << DIM_BITS}")
    groups, out_groups = -(-c // cols), -(-o // rows)
    if max(groups, out_groups) > (1 << GROUP_BITS) - 1:
        raise ConvProgramError(
            f"{groups} input / {out_groups} output channel groups: a command counts at most "
            f"{(1 << GROUP_BITS) - 1}; split the layer's channels"
        )
    plane = h * w
    weight_words = out_groups * groups * kh * kw
    for what, end, depth in (
        ("input", in_base + groups * plane, params.buffers.input_depth),
        ("weight", weight_base + weight_words, params.buffers.weight_depth),
        ("parameter", param_base + o, params.buffers.param_depth),
    ):
        if end > depth:
            raise ConvProgramError(
                f"{what} data ends at word {end}; the {what} buffer holds {depth} "
                f"(split the layer into tiles or raise BufferParams)"
            )

    # input: word (g, y, x) = channels g·cols .. g·cols + cols - 1 of pixel (y, x)
    xg = np.zeros((groups * cols, h, w), dtype=np.int64)
    xg[:c] = case.x
    lanes = xg.reshape(groups, cols, h, w).transpose(0, 2, 3, 1).reshape(-1, cols)
    input_words = _pack_lanes(lanes, n.act_bits)
    input_writes = pack(
        input_write_layout(params),
        {"addr": in_base + np.arange(len(input_words)), "data": input_words},
    )

    # weights: word (og, g, u, v), row r = output channel og·rows + r
    wg = np.zeros((out_groups * rows, groups * cols, kh, kw), dtype=np.int64)
    wg[:o, :c] = case.weight
    wg = wg.reshape(out_groups, rows, groups, cols, kh, kw).transpose(0, 2, 4, 5, 1, 3)
    wg = wg.reshape(-1, rows, cols)  # (word, row, lane)
    addr = weight_base + np.repeat(np.arange(wg.shape[0]), rows)
    row = np.tile(np.arange(rows), wg.shape[0])
    weight_writes = pack(
        weight_write_layout(params),
        {"addr": addr, "row": row, "data": _pack_lanes(wg.reshape(-1, cols), n.weight_bits)},
    )

    gain = np.zeros(o, dtype=np.int64) if case.gain is None else case.gain
    param_layout = param_write_layout(params)
    param_fields = {
        "addr": param_base + np.arange(o),
        "data": pack(
            param_layout["data"].shape,
            {"bias": case.bias, "multiplier": case.multiplier, "shift": case.shift, "gain": gain},
        ),
    }
    param_writes = pack(param_layout, param_fields)

    fields = {
        "in_base": in_base,
        "in_plane": plane,
        "in_row": w,
        "in_height": h,
        "in_width": w,
        "in_groups": groups,
        "upsample": int(case.upsample),
        "kernel_h": kh,
        "kernel_w": kw,
        "stride2": int(case.stride == 2),
        "pad_top": case.padding,
        "pad_left": case.shape.pad_left,
        "out_height": ho,
        "out_width": wo,
        "out_groups": out_groups,
        "last_lanes": o - (out_groups - 1) * rows,
        "weight_base": weight_base,
        "param_base": param_base,
        "relu": int(case.relu),
        "pool": int(case.pool),
        "residual": int(case.residual is not None),
        "partial_in": int(partial_in),
        "partial_out": int(partial_out),
        "tag": tag,
    }
    command = pack(command_layout(params), {k: [v] for k, v in fields.items()})[0]

    pixels = _pixel_order(ho, wo, case.pool)
    residual: list[int] = []
    if case.residual is not None:
        mask = (1 << n.act_bits) - 1
        for og in range(out_groups):
            chans = range(og * rows, min(o, og * rows + rows))
            residual += [int(case.residual[ch, y, x]) & mask for y, x in pixels for ch in chans]

    sums = None
    if partial_in or partial_out:
        carried = np.zeros((o, ho, wo), np.int64) if carried is None else carried
        sums = engine_sums(case, params, carried if partial_in else None)
        y = outputs_of_sums(sums, case, params)
    else:
        y = reference(case, params)
    useful = o * c * kh * kw * len(pixels)
    return ConvProgram(
        input_writes, weight_writes, param_writes, command, residual, engine_order(y, rows),
        useful, fields, sums,
    )  # fmt: skip


def split_case(case: ConvCase, chunks: list[int], cols: int) -> list[ConvCase]:
    """The layer as chunks of its input channels: chunk j takes the next `chunks[j]`
    channel groups of `cols` (the last group may be short), with their weights."""
    groups = -(-case.x.shape[0] // cols)
    if sum(chunks) != groups or min(chunks) < 1:
        raise ConvProgramError(f"chunks {chunks} do not split {groups} input groups")
    parts, start = [], 0
    for count in chunks:
        lo, hi = start * cols, min(case.x.shape[0], (start + count) * cols)
        parts.append(dataclasses.replace(case, x=case.x[lo:hi], weight=case.weight[:, lo:hi]))
        start += count
    return parts


def split_programs(
    case: ConvCase,
    params: GraceParams,
    chunks: list[int],
    *,
    residual_pass: int = -1,
    tag: int = 1,
    bases: list[tuple[int, int, int]] | None = None,
    start: tuple[int, int, int] = (0, 0, 0),
) -> list[ConvProgram]:
    """A layer as passes over chunks of its input channel groups (`split_case`), one
    tile each, int32 partial sums carried between them in the engine: every pass
    but the first reads them (`partial_in`), every pass but the last keeps them
    (`partial_out`). Pass `residual_pass` takes the residual; every pass emits
    its results, the last one the layer's (L2's conv of the whole layer). Tags
    count up from `tag`; `bases` gives each pass's (input, weight, parameter)
    bases, by default one after another in the buffers from `start`.
    """
    parts = split_case(case, chunks, params.array.cols)
    passes = len(parts)
    residual_pass %= passes
    progs: list[ConvProgram] = []
    carried = None
    used = list(start)
    for j, part in enumerate(parts):
        if j != residual_pass:
            part = dataclasses.replace(part, residual=None)
        in_base, weight_base, param_base = used if bases is None else bases[j]
        prog = program(
            part, params, tag=tag + j, in_base=in_base, weight_base=weight_base,
            param_base=param_base, partial_in=j > 0, partial_out=j < passes - 1,
            carried=carried,
        )  # fmt: skip
        carried = prog.sums
        progs.append(prog)
        used = [
            in_base + len(prog.input_writes),
            weight_base + len(prog.weight_writes) // params.array.rows,
            param_base + len(prog.param_writes),
        ]
    return progs


def _pack_lanes(values: IntArray, bits: int) -> list[int]:
    """Rows of signed lane values → one unsigned word per row (lane 0 in the low bits)."""
    mask = (1 << bits) - 1
    words = []
    for lanes in np.asarray(values, dtype=np.int64).tolist():
        word = 0
        for k, v in enumerate(lanes):
            word |= (v & mask) << (k * bits)
        words.append(word)
    return words


def tags(progs: list[ConvProgram]) -> list[int]:
    """The done tokens the programs' commands return, in order (tags as the field holds them)."""
    return [p.command_fields["tag"] & ((1 << TAG_BITS) - 1) for p in progs]


@dataclass(frozen=True)
class ConvRun:
    outputs: IntArray
    tokens: list[int]  # done tags, in arrival order
    cycles: int  # from the first command's transfer to the last done token's
    # per output stream ("o", "done"): edges it offered a value that was not taken
    stalls: dict[str, int] = field(default_factory=dict)


def simulate_amaranth(
    progs: list[ConvProgram],
    params: GraceParams,
    *,
    ready_prob: float = 1.0,
    residual_prob: float = 1.0,
    seed: int = 0,
    stall_limit: int = 5000,
    dsp_target: str | None = None,
    overlap_loads: bool = False,
    done_ready_prob: float | None = None,
) -> ConvRun:
    """Load every program's buffers, issue their commands back to back, collect outputs.

    Outputs and done tokens leave under random back-pressure (`ready_prob`;
    `done_ready_prob` for the tokens, the same by default, drawn from a stream
    of its own) and residual values arrive with random gaps (`residual_prob`);
    cycles are counted from the first command's transfer to the last done
    token's. Both output streams are checked against the stream rules
    (`sim.stream_rules`, raising `StreamRuleViolation`), and the tokens must be
    the commands' tags in order. `dsp_target` elaborates a board's form of the
    engine (e.g. "ice40") instead of the twin.

    `overlap_loads` runs a ping-pong controller instead of loading everything
    first: tile k's words are written while tile k-1 computes, as soon as tile
    k-2 (whose buffer half it reuses) has returned its token, then its command
    follows. The caller places alternate tiles in two halves of the buffers.
    """
    dut = ConvEngine(params, dsp_target=dsp_target)
    rng = random.Random(seed)
    outputs: list[int] = []
    tokens: list[int] = []
    token_edges: list[int] = []
    marks: dict[str, int] = {}
    act_bits = params.numeric.act_bits
    residual = [w for prog in progs for w in prog.residual]

    async def load(ctx: SimulatorContext, prog: ConvProgram) -> int:
        edges = 0
        for port, words in (
            (dut.input_write, prog.input_writes),
            (dut.weight_write, prog.weight_writes),
            (dut.param_write, prog.param_writes),
        ):
            for word in words:
                edges += await send(ctx, port, word)
        return edges

    async def loader(ctx: SimulatorContext) -> None:
        edge = 0
        if not overlap_loads:
            for prog in progs:
                edge += await load(ctx, prog)
        for k, prog in enumerate(progs):
            if overlap_loads:
                while len(tokens) < k - 1:  # tile k-2 still reads this half
                    await ctx.tick()
                    edge += 1
                edge += await load(ctx, prog)
            edge += await send(ctx, dut.cmd, prog.command)
            marks.setdefault("start", edge)

    async def residual_source(ctx: SimulatorContext) -> None:
        for word in residual:
            while rng.random() >= residual_prob:
                await ctx.tick()
            await send(
                ctx, dut.residual, word - (1 << act_bits) if word >> (act_bits - 1) else word
            )

    async def sink(ctx: SimulatorContext) -> None:
        loads = sum(len(p.input_writes) + len(p.weight_writes) + len(p.param_writes) for p in progs)
        await collect_outputs(
            ctx, dut, tiles=len(progs), outputs=outputs, tokens=tokens, token_edges=token_edges,
            seed=seed, ready_prob=ready_prob, done_ready_prob=done_ready_prob,
            idle_limit=stall_limit + loads, engine="conv engine",
        )  # fmt: skip

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(loader)
    sim.add_testbench(residual_source)
    sim.add_testbench(sink)
    streams = {n: watch_amaranth(sim, getattr(dut, n), f"ConvEngine.{n}") for n in ("o", "done")}
    sim.run()
    for rules, seen in ((streams["o"], outputs), (streams["done"], tokens)):
        rules.check()
        assert rules.transfers == len(seen), f"{rules.name}: {rules.transfers} ≠ {len(seen)}"
    assert tokens == tags(progs), f"done tokens {tokens}, the commands' tags {tags(progs)}"
    stalls = {name: rules.stalls for name, rules in streams.items()}
    cycles = token_edges[-1] - marks["start"]
    return ConvRun(np.array(outputs, dtype=np.int64), tokens, cycles, stalls)


def simulate_cocotb(
    progs: list[ConvProgram],
    params: GraceParams,
    *,
    simulator: str,
    build_dir: Path,
    ready_prob: float = 1.0,
    residual_prob: float = 1.0,
    seed: int = 0,
    waves: bool = False,
    overlap_loads: bool = False,
    done_ready_prob: float | None = None,
) -> tuple[ConvRun, SimResult]:
    """The same as `simulate_amaranth`, on the elaborated Verilog under cocotb.

    The bench fails the cocotb test (see `SimResult.check`) on a broken stream
    rule, a wrong output or a done token that is not its command's tag.
    """
    act_mask = (1 << params.numeric.act_bits) - 1
    expected = np.concatenate([p.expected for p in progs])
    done_prob = ready_prob if done_ready_prob is None else done_ready_prob
    work, result = run_engine_bench(
        "conv",
        params,
        simulator=simulator,
        build_dir=build_dir,
        seed=seed,
        words={
            "input": [w for p in progs for w in p.input_writes],
            "weight": [w for p in progs for w in p.weight_writes],
            "param": [w for p in progs for w in p.param_writes],
            "command": [p.command for p in progs],
            "residual": [w & act_mask for p in progs for w in p.residual],
        },
        texts={
            "loads.txt": "".join(
                f"{len(p.input_writes)} {len(p.weight_writes)} {len(p.param_writes)}\n"
                for p in progs
            ),
            "expected.txt": "".join(f"{v}\n" for v in expected.tolist()),
            "tags.txt": "".join(f"{t}\n" for t in tags(progs)),
        },
        env={
            "GRACE_READY_PROB": repr(ready_prob),
            "GRACE_DONE_READY_PROB": repr(done_prob),
            "GRACE_RESIDUAL_PROB": repr(residual_prob),
            "GRACE_SEED": str(seed),
            "GRACE_OVERLAP": str(int(overlap_loads)),
        },
        waves=waves,
    )
    cycles = read_numbers(work, "cycles.txt")
    run = ConvRun(
        np.array(read_numbers(work, "out.txt"), dtype=np.int64),
        read_numbers(work, "tokens.txt"),
        cycles[0] if cycles else 0,
        dict(zip(("o", "done"), read_numbers(work, "stalls.txt"), strict=False)),
    )
    return run, result


#: Fused-option sets the shape sweep cycles through (every flag alone and in pairs).
FLAG_SETS: tuple[dict[str, bool], ...] = (
    {},
    {"relu": True},
    {"pool": True, "relu": True},
    {"upsample": True},
    {"residual": True},
    {"upsample": True, "pool": True},
    {"residual": True, "relu": True},
    {"pool": True},
)


def sweep_cases(
    params: GraceParams, count: int, seed: int, *, max_cycles: int = 4000
) -> list[ConvCase]:
    """`count` random layers covering every kernel (1, 3, 7), stride and fused option.

    Channel counts are drawn so that most are not multiples of the array, sizes
    go down to 1×1, and each case is shrunk until it runs in `max_cycles` so the
    sweep stays quick in a simulator.
    """
    from rtl.conv_cycles import tile_cycles

    rng = np.random.default_rng(seed)
    cases: list[ConvCase] = []
    k = 0
    while len(cases) < count:
        kernel = (1, 3, 7)[k % 3]
        stride = 1 + (k // 3) % 2
        flags = FLAG_SETS[(k // 6) % len(FLAG_SETS)]
        k += 1
        channels = int(rng.integers(1, 3 * params.array.cols + 2))
        out_channels = int(rng.integers(1, 2 * params.array.rows + 2))
        size = (int(rng.integers(1, 10)), int(rng.integers(1, 10)))
        padding = int(rng.integers(0, kernel // 2 + 2)) if kernel > 1 else 0
        for _ in range(40):
            shape = ConvShape(
                channels,
                out_channels,
                *size,
                kernel,
                kernel,
                stride,
                padding,
                upsample=flags.get("upsample", False),
                pool=flags.get("pool", False),
            )
            ho, wo = shape.conv_size
            fits = ho >= 1 and wo >= 1 and not (shape.pool and (ho < 2 or wo < 2))
            if fits and tile_cycles(params, shape).cycles <= max_cycles:
                cases.append(
                    random_case(
                        rng,
                        params,
                        channels=channels,
                        out_channels=out_channels,
                        size=size,
                        kernel=kernel,
                        stride=stride,
                        padding=padding,
                        **flags,
                    )
                )
                break
            # too small: grow the input; too slow: shrink it and the channel counts
            step = 1 if not fits else -1
            size = (max(1, size[0] - step), max(1, size[1] - step))
            if fits:
                channels = max(1, channels - 1)
                out_channels = max(1, out_channels - 1)
    return cases
