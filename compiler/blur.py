"""The key frame's anti-alias blur as a dense conv: its polyphase form, and its lowering.

Once per GOP `encode_source_int` blurs the int8 key frame with
`QuantizedDecoder.antialias`: a depthwise k × k conv of stride s and padding p
(FOMM's AntiAliasInterpolation2d). The conv engine runs dense convs of stride
1 or 2. Split each channel into its s² phase planes and the blur becomes a
dense stride-1 conv (docs/activation_engine.md §2.4):

    x'[c·s² + a·s + b, Y, X]     = x[c, s·Y + a + u0 − p, s·X + b + v0 − p]  (0 outside x)
    w'[c, c·s² + a·s + b, U, V]  = w[c, u0 + s·U + a, v0 + s·V + b]         (0 off colour c)

(u0, v0) is the first kernel row and column kept. Keeping only the quantized
kernel's non-zero window (9 × 9 of fomm's 13 × 13) makes the polyphase kernel
3 × 3 instead of 4 × 4. Each output channel keeps the blur's bias, multiplier
and shift, so the engine's requantize gives L2's numbers, bit for bit.

`emit_blur` lowers it into a program: a TABLE tile quantizes the key frame,
and a STORE per frame row puts the row's bytes where the polyphase map holds
them (phase row a's plane holds channels (b, c) of each phase pixel, so a
frame row is one run of bytes), then one conv over the map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from compiler.conv_layer import ConvLayer, Image, Program, emit_conv, sync_stores
from compiler.tensor import CHUNK_PIXELS, Plane, Tensor, transfer_fields
from defs.isa import Buffer, Opcode, Source
from defs.limits import GROUP_BITS, MAX_KERNEL, MAX_PAD
from model.fixed_decoder import QConv
from rtl.act.layouts import ActOp

IntArray = npt.NDArray[np.int64]
Support = Literal["nonzero", "full"]

#: The widest count the command's group fields hold (`in_groups`, `out_groups`).
MAX_GROUPS = (1 << GROUP_BITS) - 1


class BlurLayoutError(ValueError):
    """The blur cannot run on the conv engine as laid out here (one line)."""


@dataclass(frozen=True)
class PhaseAxis:
    """One axis of the polyphase form: phase row Y, phase a reads x at s·Y + a + offset.

    `start` is the first kernel tap kept and `taps` the polyphase kernel's side,
    so the taps start .. start + s·taps − 1 are covered (zero beyond the kernel).
    """

    stride: int
    size: int  # the frame's side
    out: int  # the blurred side
    start: int
    taps: int
    offset: int  # start − padding

    @property
    def zeros_before(self) -> int:
        """Leading phase rows wholly before the frame (every phase reads padding)."""
        return max(0, -self.offset // self.stride)

    @property
    def zeros_from(self) -> int:
        """The first phase row wholly past the frame."""
        return max(0, -(-(self.size - self.offset) // self.stride))

    def pad(self, first: int, end: int) -> int:
        """The engine's zero padding for output rows first .. end − 1.

        The stride-1 conv reads phase rows first .. end + taps − 2. The engine's
        padding stands in for `t` of them at each end, which is exact only where
        those rows are zero anyway; the rest are stored (zeros included).
        """
        reach = end + self.taps - 1
        top, bottom = self.zeros_before - first, reach - self.zeros_from
        keep_one = (reach - first - 1) // 2  # at least one stored row
        return max(0, min(MAX_PAD, self.taps - 1, top, bottom, keep_one))

    def stored(self, first: int, end: int) -> range:
        """The phase rows the buffer holds for output rows first .. end − 1."""
        t = self.pad(first, end)
        return range(first + t, end + self.taps - 1 - t)

    def gather(self, rows: range) -> tuple[IntArray, npt.NDArray[np.bool_]]:
        """Frame indices (s, len(rows)) of each phase's rows, and where they are inside it."""
        source = (
            self.stride * np.asarray(rows)[None, :] + np.arange(self.stride)[:, None] + self.offset
        )
        inside = (source >= 0) & (source < self.size)
        return np.clip(source, 0, self.size - 1), inside


@dataclass(frozen=True)
class Polyphase:
    """One blur's polyphase form on one frame size: both axes and the weights' window."""

    channels: int
    stride: int
    rows: PhaseAxis
    cols: PhaseAxis

    @property
    def phases(self) -> int:
        return self.stride * self.stride

    @property
    def out_size(self) -> tuple[int, int]:
        return self.rows.out, self.cols.out


def check_blur(q: QConv) -> None:
    """Refuse what is not a plain depthwise conv (one kernel per channel, nothing fused)."""
    o, per_group, kh, kw = q.weight.shape
    if q.groups == 1 or q.groups != o or per_group != 1:
        raise BlurLayoutError(
            f"blur: a depthwise conv is needed (groups = channels, one input each); this one "
            f"has groups {q.groups}, weight {tuple(q.weight.shape)}: run it as a dense conv"
        )
    if kh != kw:
        raise BlurLayoutError(f"blur: kernel {kh}×{kw} is not square; QConv has one padding")
    if q.upsample or q.pool or q.residual_gain is not None:
        raise BlurLayoutError("blur: upsampling, pooling or a residual on a blur is not laid out")
    if q.stride < 1 or q.padding < 0:
        raise BlurLayoutError(f"blur: stride {q.stride} and padding {q.padding} are impossible")


def _window(weight: IntArray, axis: int, support: Support) -> tuple[int, int]:
    """(first, length) of the kernel taps kept along one axis."""
    if support == "full":
        return 0, weight.shape[axis]
    if support != "nonzero":
        raise BlurLayoutError(f"blur: support {support!r}; choose 'nonzero' or 'full'")
    other = 3 if axis == 2 else 2
    used = np.flatnonzero(np.any(weight != 0, axis=(0, 1, other)))
    if used.size == 0:  # an all-zero kernel: one tap, the output is requantize(bias)
        return 0, 1
    return int(used[0]), int(used[-1] - used[0] + 1)


def polyphase(q: QConv, height: int, width: int, *, support: Support = "nonzero") -> Polyphase:
    """The blur's polyphase form on an H × W frame, with the smallest kernel that covers
    the quantized kernel's non-zero taps (or the full kernel)."""
    check_blur(q)
    s, p = q.stride, q.padding
    k = q.weight.shape[2]
    out_h, out_w = ((side + 2 * p - k) // s + 1 for side in (height, width))
    if out_h < 1 or out_w < 1:
        raise BlurLayoutError(f"blur: a {k}×{k} kernel leaves nothing of a {height}×{width} frame")
    axes = []
    for axis, size, out in ((2, height, out_h), (3, width, out_w)):
        start, length = _window(q.weight, axis, support)
        taps = -(-length // s)
        if taps > MAX_KERNEL:
            raise BlurLayoutError(
                f"blur: {length} kernel taps at stride {s} need {taps} polyphase taps a side; "
                f"the engine takes at most {MAX_KERNEL} (split the taps into partial sums)"
            )
        axes.append(PhaseAxis(s, size, out, start, taps, start - p))
    return Polyphase(q.weight.shape[0], s, *axes)


def phase_planes(x: npt.ArrayLike, geo: Polyphase, rows: range, cols: range) -> IntArray:
    """x' (C·s², len(rows), len(cols)) of a (C, H, W) frame: phase rows and columns given."""
    xi = np.asarray(x, dtype=np.int64)
    if xi.shape != (geo.channels, geo.rows.size, geo.cols.size):
        want = (geo.channels, geo.rows.size, geo.cols.size)
        raise BlurLayoutError(f"blur: the frame is {xi.shape}, the layout is for {want}")
    ri, r_in = geo.rows.gather(rows)
    ci, c_in = geo.cols.gather(cols)
    # (C, a, Y, b, X) → (C, a, b, Y, X): channel c·s² + a·s + b
    planes = xi[:, ri[:, :, None, None], ci[None, None, :, :]]
    planes = np.where((r_in[:, :, None, None] & c_in[None, None]), planes, 0)
    planes = planes.transpose(0, 1, 3, 2, 4)
    return planes.reshape(geo.channels * geo.phases, len(rows), len(cols))


def phase_weights(q: QConv, geo: Polyphase, colours: range) -> IntArray:
    """w' (n, n·s², K_h, K_w) for colours c0 .. c0 + n − 1: block diagonal, zero elsewhere."""
    s, kh, kw = geo.stride, geo.rows.taps, geo.cols.taps
    u0, v0 = geo.rows.start, geo.cols.start
    window = np.zeros((len(colours), s * kh, s * kw), dtype=np.int64)
    part = np.asarray(q.weight, dtype=np.int64)[colours.start : colours.stop, 0, u0:, v0:]
    part = part[:, : s * kh, : s * kw]
    window[:, : part.shape[1], : part.shape[2]] = part
    # (n, U, a, V, b) → (n, a, b, U, V)
    blocks = window.reshape(-1, kh, s, kw, s).transpose(0, 2, 4, 1, 3)
    n = len(colours)
    weight = np.zeros((n, n, geo.phases, kh, kw), dtype=np.int64)
    weight[np.arange(n), np.arange(n)] = blocks.reshape(n, geo.phases, kh, kw)
    return weight.reshape(n, n * geo.phases, kh, kw)


def emit_blur(
    program: Program,
    image: Image,
    q: QConv,
    frame_addr: int,
    shape: tuple[int, int, int],
    out: Tensor,
) -> Tensor:
    """The blurred key frame into `out`, from the key frame's bytes at `frame_addr`
    ((H, W, C), each b stored as b ⊕ 0x80), quantized by table 0 (loaded by the
    source program before). Its conv waits for the stores before it."""
    h, w, c = shape
    geo = polyphase(q, h, w)
    s = geo.stride
    rows_p = geo.rows.out + geo.rows.taps - 1  # every phase row the conv reads: no padding
    cols_p = geo.cols.out + geo.cols.taps - 1
    pixel = s * c  # a phase pixel of plane a: channels (b, colour)
    plane_bytes = rows_p * cols_p * pixel
    base = image.reserve(s * plane_bytes)  # rows and columns outside the frame stay zero
    x = Tensor(tuple(Plane(base + a * plane_bytes, pixel, pixel) for a in range(s)), rows_p, cols_p)
    junk = image.reserve(w * c)  # frame bytes no phase pixel reads

    program.step = "blur"
    x0 = max(0, geo.cols.offset)  # the frame columns phase pixels read
    x1 = min(w, geo.cols.offset + cols_p * s)
    band = max(1, CHUNK_PIXELS // w)  # frame rows per TABLE tile
    for y0 in range(0, h, band):
        y1 = min(h, y0 + band)
        load = {"buffer": Buffer.ACT_INPUT, "buffer_addr": 0}
        load |= transfer_fields(frame_addr + y0 * w * c, 0, 1, (y1 - y0) * w * c)
        program.emit(Opcode.LOAD, load, push_next=1)
        command = {"op": ActOp.TABLE, "pixels": (y1 - y0) * w, "groups": c, "param_base": 0}
        command |= {"table": 0, "relu": 0, "tag": (y0 // band) % 256}
        program.emit(Opcode.ACT, command, pop_prev=1, push_next=1)
        first = True
        for y in range(y0, y1):  # frame row y is phase row Y of plane a: one run of bytes
            phase_row, a = divmod(y - geo.rows.offset, s)
            inside = 0 <= phase_row < rows_p and x0 < x1
            runs = [(0, x0, None), (x0, x1, a), (x1, w, None)] if inside else [(0, w, None)]
            for start, end, plane in runs:
                if end <= start:
                    continue
                if plane is None:
                    addr = junk
                else:
                    addr = x.planes[plane].addr + phase_row * cols_p * pixel
                    addr += (start - geo.cols.offset) * c
                store = {"source": Source.ACT} | transfer_fields(addr, 0, 1, (end - start) * c)
                program.emit(Opcode.STORE, store, pop_prev=int(first))
                first = False
    # the map's channel t = a·s·C + b·C + colour is the polyphase form's colour·s² + a·s + b
    a, b, colour = np.meshgrid(np.arange(s), np.arange(s), np.arange(c), indexing="ij")
    order = (colour * s * s + a * s + b).ravel()
    weight = phase_weights(q, geo, range(c))[:, order]
    layer = ConvLayer(weight, q.bias, q.multiplier, q.shift, 1, 0, q.relu)
    sync_stores(program)
    return emit_conv(program, image, layer, x, out=out, after_store=True)
