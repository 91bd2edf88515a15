"""Payloads and widths of the motion unit (rtl/act/motion.py): command, beat, output.

The widths follow from the keypoint contract the host enforces (|kp_q| ≤
`KP_LIMIT_Q`, |J| ≤ 2^18 after `compose_jacobians`' clip, the grid axis within
±2^14), as docs/activation_engine.md §1.1 measured them; each is derived here
from those limits, so the tests can check the extremes against them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from amaranth import signed, unsigned
from amaranth.lib import data

from defs.limits import TAG_BITS, bits_for
from defs.params import NumericParams, ParamsError
from model.fixed_motion import (
    COORD_FRAC_BITS,
    JAC_FRAC_BITS,
    JAC_LIMIT_BITS,
    KP_FRAC_BITS,
    MASK_FRAC_BITS,
)
from rtl.act.keypoints import KP_LIMIT_Q
from rtl.warp.layouts import FLOW_BITS

if TYPE_CHECKING:
    from defs.params import GraceParams


class MotionOp(IntEnum):
    """What one command of the motion unit emits, one (x, y) per pixel, row-major."""

    MOTION = 0  # map `motion` of affine_motions(kp_d, kp_s, J, S) (0: the identity grid)
    FLOW = 1  # compose_flow(mask, motions), the mask streamed in on `i`


def signed_bits(limit: int) -> int:
    """Bits of a signed value in −limit … limit."""
    return limit.bit_length() + 1


#: |grid axis entry| ≤ 2^14: −1 and +1 are the first and last pixel centres.
GRID_LIMIT = 1 << COORD_FRAC_BITS
#: |keypoint| in the coordinate format: KP_LIMIT_Q << 6 = 2^15.
KP_COORD_LIMIT = KP_LIMIT_Q << (COORD_FRAC_BITS - KP_FRAC_BITS)
#: |J| entries after the host's clip: 2^18, inclusive.
JAC_LIMIT = 1 << (JAC_LIMIT_BITS + JAC_FRAC_BITS)
#: rel = g − kp_d: ±49,152, s17.
REL_BITS = signed_bits(GRID_LIMIT + KP_COORD_LIMIT)
#: The half added before the one rounding of a motion: round_shift(·, 14).
ROUND_HALF = 1 << (JAC_FRAC_BITS - 1)
#: |J00·rx + J01·ry|: the two products of one coordinate, summed.
PRODUCTS_LIMIT = 2 * (GRID_LIMIT + KP_COORD_LIMIT) * JAC_LIMIT
#: T = J·rel (column) + J·rel (row) + kp_s·2^14 + 2^13: the motion before its
#: rounding shift, s36.
TERM_BITS = signed_bits(PRODUCTS_LIMIT + (KP_COORD_LIMIT << JAC_FRAC_BITS) + ROUND_HALF)
#: A motion coordinate, T >> 14: ±1,605,632, s22.
MOTION_LIMIT = ((PRODUCTS_LIMIT + ROUND_HALF) >> JAC_FRAC_BITS) + KP_COORD_LIMIT
MOTION_BITS = signed_bits(MOTION_LIMIT)
#: Mask entries: the softmax's u8 (MASK_FRAC_BITS fraction bits).
MASK_BITS = MASK_FRAC_BITS
#: What enters the output path per coordinate: a motion, or Σ mask·m shifted right
#: by `flow_pre_shift` bits (the rest of the rounding shift is the output path's).
VALUE_BITS = 32


def flow_sum_bits(p: GraceParams) -> int:
    """Σ_k mask_k·m_k over K + 1 ≤ max_keypoints + 1 motions, any masks in 0..255: s34."""
    return signed_bits((p.act.max_keypoints + 1) * ((1 << MASK_BITS) - 1) * MOTION_LIMIT)


def flow_pre_shift(p: GraceParams) -> int:
    """Bits of the flow's rounding shift taken before the output path, so that the sum
    fits its VALUE_BITS input: floor(floor(Σ/2^a + 2^(7−a)) / 2^(8−a)) = round_shift(Σ, 8)."""
    return max(0, flow_sum_bits(p) - VALUE_BITS)


@dataclass(frozen=True)
class CoordinateNumeric(NumericParams):
    """NumericParams for an output path whose "activations" are the warp's s18 coordinates.

    NumericParams keeps act_bits to 2..16 (activations); the requantizer and the
    output path take any width, so this lifts that one bound and checks the rest.
    """

    def __post_init__(self) -> None:
        NumericParams(**{**dataclasses.asdict(self), "act_bits": 2})
        if not 2 <= self.act_bits <= 24:
            raise ParamsError(f"CoordinateNumeric.act_bits = {self.act_bits}: must be in 2..24")


#: The output paths' widths: requantize(value, 0, 1, shift) is
#: saturate(round_shift(value, shift), 18); ×1 is done in logic, not on a DSP.
COORDINATE_NUMERIC = CoordinateNumeric(
    act_bits=FLOW_BITS, acc_bits=VALUE_BITS, bias_bits=8, mult_bits=1, max_shift=MASK_FRAC_BITS
)


def count_bits(p: GraceParams) -> int:
    """Bits of a keypoint count or motion index: 0 .. max_keypoints."""
    return p.act.max_keypoints.bit_length()


def size_bits(p: GraceParams) -> int:
    """Bits of the grid side S: 2 .. max_grid."""
    return p.act.max_grid.bit_length()


def command_layout(p: GraceParams) -> data.StructLayout:
    """One map of S × S (x, y) entries."""
    return data.StructLayout(
        {
            "op": unsigned(1),  # MotionOp
            "size": unsigned(size_bits(p)),  # S, 2 .. max_grid: the grid axis holds grid_axis(S)
            "keypoints": unsigned(count_bits(p)),  # K, 1 .. max_keypoints: FLOW reads K + 1 masks
            "motion": unsigned(count_bits(p)),  # MOTION: which map, 0 .. K
            "tag": unsigned(TAG_BITS),
        }
    )


def beat_layout(p: GraceParams) -> data.StructLayout:
    """One issue slot: a row term (of row `index`) or a pixel's term (of column `index`)."""
    return data.StructLayout(
        {
            "row": unsigned(1),  # a row term: J·(g[i] − kp_d,y) into the row registers
            "k": unsigned(count_bits(p)),  # the motion, 0 .. K (0: the identity)
            "index": unsigned(bits_for(p.act.max_grid)),  # the grid axis entry: i or j
            "mask": unsigned(MASK_BITS),  # FLOW: mask_k of the pixel
            "first": unsigned(1),  # the pixel's first motion: its sums start over
            "emit": unsigned(1),  # the pixel's last motion: its (x, y) leaves
            "flow": unsigned(1),
            "end": unsigned(1),  # the command's last beat
            "tag": unsigned(TAG_BITS),
        }
    )


def output_layout() -> data.StructLayout:
    """One entry of the warp's flow stream, without the occlusion: x, y saturated to s18."""
    return data.StructLayout({"x": signed(FLOW_BITS), "y": signed(FLOW_BITS)})
