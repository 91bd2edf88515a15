"""L3's element-wise engine, softmax unit and warp engine: their state, and what a command does.

Both take their tables and constants on write streams whose payloads carry
their own place (`rtl/act/layouts.py`, `rtl/act/softmax.py`), so a LOAD into
them moves payload words, and `write` applies one. A command consumes its
input words from the unit's input stream (loaded ahead of it) and yields its
output words, computed by L2's own functions: `apply_lut`, `affine_int`'s
`requantize`, `softmax_channels_fixed`'s steps with the loaded exp table.

Every refusal is a `UnitCommandError` naming the command's field (`ACT.pixels`)
or the write (`ACT_PARAM write`), checked as the RTL can check it: from the
fields, the buffers' depths and the streams' fill, before any value is read.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from defs.params import GraceParams
from model.fixed import requantize, round_shift
from model.fixed_ops import LUT_SIZE
from rtl.act.layouts import TABLES, ActOp, param_write_layout, table_write_layout
from rtl.act.softmax import EXP_FRAC_BITS, RECIP_BITS, exp_write_layout, output_numeric
from rtl.warp.layouts import BANKS, feature_write_layout, flow_layout
from sim.l3.words import cached_unpacker, signed
from sim.l3.words import lanes as lanes_of
from sim.warp import warp_banks

IntArray = npt.NDArray[np.int64]


class UnitCommandError(ValueError):
    """A command the unit's state cannot serve (one line)."""


def take(stream: deque[int], count: int, field_name: str, stream_name: str) -> list[int]:
    """`count` words off an input stream, refused (naming the command's field that sizes
    them) when the stream holds fewer: the engine would wait for them forever."""
    if count > len(stream):
        raise UnitCommandError(
            f"{field_name}: the {stream_name} stream holds {len(stream)} words, the command "
            f"needs {count}"
        )
    return [stream.popleft() for _ in range(count)]


def at_least_one(command: Mapping[str, int], unit: str, *names: str) -> None:
    """Sizes a unit iterates over must be 1 or more (an empty tile has no defined end)."""
    for name in names:
        if command[name] < 1:
            raise UnitCommandError(f"{unit}.{name} = {command[name]}: must be 1 or more")


def check_place(write: str, what: str, value: int, depth: int) -> None:
    """A write stream's payload names its own place; it must be one the buffer has."""
    if value >= depth:
        raise UnitCommandError(f"{write} write: {what} = {value}, the buffer holds 0..{depth - 1}")


@dataclass
class ActState:
    """The element-wise engine: per lane its tables and per-channel constants."""

    params: GraceParams
    tables: IntArray = field(init=False)  # (TABLES, 256) entries (u8)
    constants: dict[str, IntArray] = field(init=False)  # (lanes, param_depth) each
    inputs: deque[int] = field(default_factory=deque)

    def __post_init__(self) -> None:
        a = self.params.act
        self.tables = np.zeros((TABLES, LUT_SIZE), np.int64)
        names = ("negate", "bias", "multiplier", "shift")
        self.constants = {n: np.zeros((a.lanes, a.param_depth), np.int64) for n in names}

    def write_table(self, word: int) -> None:
        f = cached_unpacker(table_write_layout)(word)
        self.tables[f["table"], f["index"]] = f["data"]

    def write_param(self, word: int) -> None:
        f = param_write_layout(self.params).from_bits(word)
        lane, addr = int(f.lane), int(f.addr)
        check_place("ACT_PARAM", "lane", lane, self.params.act.lanes)
        check_place("ACT_PARAM", "addr", addr, self.params.act.param_depth)
        shift, most = int(f.data.shift), self.params.numeric.max_shift
        if shift > most:
            raise UnitCommandError(
                f"ACT_PARAM write: shift = {shift} (lane {lane}, addr {addr}), the requantizer "
                f"shifts by 0..{most}"
            )
        for name in self.constants:
            value = getattr(f.data, name)
            self.constants[name][lane, addr] = int(value)  # the layout gives the sign

    def run(self, command: Mapping[str, int]) -> list[int]:
        """The tile's output words (pixel ▸ group, lane l in bits [8l, 8l + 8))."""
        p = self.params
        lanes, bits = p.act.lanes, p.numeric.act_bits
        at_least_one(command, "ACT", "pixels", "groups")
        pixels, groups = command["pixels"], command["groups"]
        if command["op"] == ActOp.TABLE and command["table"] >= TABLES:
            raise UnitCommandError(
                f"ACT.table = {command['table']}: the engine has 0..{TABLES - 1}"
            )
        if command["op"] == ActOp.AFFINE and command["param_base"] + groups > p.act.param_depth:
            raise UnitCommandError(
                f"ACT.param_base: constants {command['param_base']}.."
                f"{command['param_base'] + groups - 1} leave the {p.act.param_depth}-word buffers"
            )
        words = take(self.inputs, pixels * groups, "ACT.pixels", "ACT_INPUT")
        x = np.array([lanes_of(w, lanes, bits) for w in words], np.int64)
        x = x.reshape(pixels, groups, lanes)
        if command["op"] == ActOp.TABLE:
            y = self.tables[command["table"]][x + LUT_SIZE // 2]
        else:
            addr = command["param_base"] + np.arange(groups)
            k = {n: v[:, addr].T[None] for n, v in self.constants.items()}  # (1, G, lanes)
            signed_x = np.where(k["negate"] == 1, -x, x)
            y = requantize(
                signed_x, k["bias"], k["multiplier"], k["shift"], command["relu"], p.numeric
            )
        mask = (1 << bits) - 1
        flat = (y & mask).reshape(-1, lanes)
        return [sum(int(v) << (bits * lane) for lane, v in enumerate(row)) for row in flat]


@dataclass
class SoftmaxState:
    """The softmax unit: its exp table."""

    params: GraceParams
    exp: IntArray = field(default_factory=lambda: np.zeros(LUT_SIZE, np.int64))
    inputs: deque[int] = field(default_factory=deque)

    def write_exp(self, word: int) -> None:
        f = cached_unpacker(exp_write_layout)(word)
        self.exp[f["index"]] = f["data"]

    def run(self, command: Mapping[str, int]) -> list[int]:
        """The tile's masks (u8), pixel by pixel, channel innermost."""
        at_least_one(command, "SOFTMAX", "pixels", "channels")
        c, most = command["channels"], self.params.act.softmax_channels
        if c > most:
            raise UnitCommandError(f"SOFTMAX.channels = {c}: the unit takes 1..{most}")
        words = take(self.inputs, command["pixels"] * c, "SOFTMAX.pixels", "SOFTMAX_INPUT")
        x = np.array([signed(w, 8) for w in words], np.int64).reshape(-1, c)
        e = self.exp[x.max(axis=1, keepdims=True) - x]
        s = e.sum(axis=1, keepdims=True)
        if (s < 1 << EXP_FRAC_BITS).any():
            raise UnitCommandError("SOFTMAX: the exp table's EXP[0] is not 2^15 (load exp_lut's)")
        r = ((1 << (EXP_FRAC_BITS + RECIP_BITS)) + s) // (2 * s)
        out = np.minimum(round_shift(e * r, output_numeric().max_shift), 255)
        return [int(v) for v in out.ravel()]


@dataclass
class WarpState:
    """The warp engine: its four feature banks, and the flow entries loaded ahead."""

    params: GraceParams
    banks: IntArray = field(init=False)  # (BANKS, depth, lanes) int8
    flow: deque[int] = field(default_factory=deque)

    def __post_init__(self) -> None:
        w = self.params.warp
        self.banks = np.zeros((BANKS, w.depth, w.lanes), np.int64)

    def write_feature(self, word: int) -> None:
        f = cached_unpacker(feature_write_layout, self.params)(word)
        check_place("WARP_FEATURE", "addr", f["addr"], self.params.warp.depth)
        self.banks[f["bank"], f["addr"]] = lanes_of(f["data"], self.params.warp.lanes, 8)

    def run(self, command: Mapping[str, int]) -> list[int]:
        """The tile's output words (output pixel ▸ plane, `lanes` int8 each)."""
        c, depth = command, self.params.warp.depth
        at_least_one(c, "WARP", "in_height", "in_width", "planes", "out_height", "out_width")
        # the last plane's last pixel: every tap inside the map reads at or before it
        last = c["in_base"] + (c["planes"] - 1) * c["in_plane"]
        last += ((c["in_height"] - 1) >> 1) * c["in_row"] + ((c["in_width"] - 1) >> 1)
        if last >= depth:
            raise UnitCommandError(
                f"WARP.in_base: the map's words run {c['in_base']}..{last}, the banks hold "
                f"{depth} (in_base + (planes − 1)·in_plane + ((in_height − 1) >> 1)·in_row + "
                "((in_width − 1) >> 1))"
            )
        entries = take(self.flow, c["out_height"] * c["out_width"], "WARP.out_height", "WARP_FLOW")
        unpack = cached_unpacker(flow_layout)
        flow = np.array([[(f := unpack(e))["x"], f["y"], f["occ"]] for e in entries])
        _, out = warp_banks(self.banks, flow.reshape(-1, 3), command, self.params)
        lanes = self.params.warp.lanes
        flat = (out.astype(np.int64) & 0xFF).reshape(-1, lanes)
        return [sum(int(v) << (8 * k) for k, v in enumerate(row)) for row in flat]
