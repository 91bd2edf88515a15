"""L3's element-wise engine, softmax unit and warp engine: their state, and what a command does.

Both take their tables and constants on write streams whose payloads carry
their own place (`rtl/act/layouts.py`, `rtl/act/softmax.py`), so a LOAD into
them moves payload words, and `write` applies one. A command consumes its
input words from the unit's input stream (loaded ahead of it) and yields its
output words, computed by L2's own functions: `apply_lut`, `affine_int`'s
`requantize`, `softmax_channels_fixed`'s steps with the loaded exp table.
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
from sim.l3.words import lanes as lanes_of
from sim.l3.words import signed
from sim.warp import warp_banks

IntArray = npt.NDArray[np.int64]


class UnitCommandError(ValueError):
    """A command the unit's state cannot serve (one line)."""


def take(stream: deque[int], count: int, what: str) -> list[int]:
    if count > len(stream):
        raise UnitCommandError(
            f"{what}: the input stream holds {len(stream)} words, the command needs {count}"
        )
    return [stream.popleft() for _ in range(count)]


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
        f = table_write_layout().from_bits(word)
        self.tables[int(f.table), int(f.index)] = int(f.data)

    def write_param(self, word: int) -> None:
        f = param_write_layout(self.params).from_bits(word)
        lane, addr = int(f.lane), int(f.addr)
        if lane >= self.params.act.lanes or addr >= self.params.act.param_depth:
            raise UnitCommandError(f"ACT: constants for lane {lane}, word {addr}: no such place")
        for name in self.constants:
            value = getattr(f.data, name)
            self.constants[name][lane, addr] = int(value)  # the layout gives the sign

    def run(self, command: Mapping[str, int]) -> list[int]:
        """The tile's output words (pixel ▸ group, lane l in bits [8l, 8l + 8))."""
        p = self.params
        lanes, bits = p.act.lanes, p.numeric.act_bits
        words = take(self.inputs, command["pixels"] * command["groups"], "ACT")
        x = np.array([lanes_of(w, lanes, bits) for w in words])
        x = x.reshape(command["pixels"], command["groups"], lanes)
        if command["op"] == ActOp.TABLE:
            y = self.tables[command["table"]][x + LUT_SIZE // 2]
        else:
            addr = command["param_base"] + np.arange(command["groups"])
            if addr.max() >= p.act.param_depth:
                raise UnitCommandError(f"ACT: constants {addr[0]}..{addr[-1]} leave the buffer")
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

    exp: IntArray = field(default_factory=lambda: np.zeros(LUT_SIZE, np.int64))
    inputs: deque[int] = field(default_factory=deque)

    def write_exp(self, word: int) -> None:
        f = exp_write_layout().from_bits(word)
        self.exp[int(f.index)] = int(f.data)

    def run(self, command: Mapping[str, int]) -> list[int]:
        """The tile's masks (u8), pixel by pixel, channel innermost."""
        c = command["channels"]
        words = take(self.inputs, command["pixels"] * c, "SOFTMAX")
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
        f = feature_write_layout(self.params).from_bits(word)
        self.banks[int(f.bank), int(f.addr)] = lanes_of(int(f.data), self.params.warp.lanes, 8)

    def run(self, command: Mapping[str, int]) -> list[int]:
        """The tile's output words (output pixel ▸ plane, `lanes` int8 each)."""
        entries = take(self.flow, command["out_height"] * command["out_width"], "WARP")
        layout = flow_layout()
        flow = np.array(
            [[int(getattr(layout.from_bits(e), n)) for n in ("x", "y", "occ")] for e in entries]
        )
        _, out = warp_banks(self.banks, flow.reshape(-1, 3), command, self.params)
        lanes = self.params.warp.lanes
        flat = (out.astype(np.int64) & 0xFF).reshape(-1, lanes)
        return [sum(int(v) << (8 * k) for k, v in enumerate(row)) for row in flat]
