"""Payloads of the heatmap unit's own streams, and the widths its exactness rests on.

The grid axis and the keypoints arrive as `rtl.act.keypoints`' payloads, shared
with the motion unit; only the command and the Gaussian table's loads are the
heatmap unit's. The widths are those docs/activation_engine.md §1.1 and §2.4
derive: with each offset g − kp saturated to ±DELTA_LIMIT, a squared distance
fits SQUARE_BITS per axis, and the unit equals L2 for every table of at most
MAX_TABLE entries (beyond the saturation both read 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import unsigned
from amaranth.lib import data

from defs.limits import TAG_BITS, bits_for
from defs.params import NumericParams
from model.fixed_motion import COORD_FRAC_BITS, DIST_FRAC_BITS

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Width of an offset g − kp once saturated (signed): ±DELTA_LIMIT.
DELTA_BITS = 14
#: The saturation bound, symmetric so that a square fits SQUARE_BITS.
DELTA_LIMIT = (1 << (DELTA_BITS - 1)) - 1
#: Right shift from a squared distance (2 · COORD_FRAC_BITS fraction bits) to
#: the table index (DIST_FRAC_BITS), rounding half up.
DIST_SHIFT = 2 * COORD_FRAC_BITS - DIST_FRAC_BITS
#: The rounding half, added once per element (stored with the row's square).
ROUNDING = 1 << (DIST_SHIFT - 1)
#: One axis's square plus the rounding half: 67,100,673 at most, u26.
SQUARE_BITS = (DELTA_LIMIT**2 + ROUNDING).bit_length()
#: The table index of two saturated squares: 8,190 at most, u13.
INDEX_BITS = ((2 * DELTA_LIMIT**2 + ROUNDING) >> DIST_SHIFT).bit_length()
#: The smallest index a saturated offset gives (4,095): the unit equals L2 for a
#: table of at most this many entries (an offset beyond the bound then reads 0
#: in L2 too). fomm-256's table (`gaussian_table(0.01)`) has 1,818.
MAX_TABLE = (DELTA_LIMIT**2 + ROUNDING) >> DIST_SHIFT

#: The output path's numbers: requantize(G_d − G_s, bias 0, × 1, >> 0) is exactly
#: saturate(G_d − G_s, 8), the ×1 in logic (no DSP). The accumulator is 16 bits,
#: not the 9 the difference needs, because the requantizer multiplies in 16-bit
#: slices and expects a product wider than one slice.
OUTPUT_NUMERIC = NumericParams(act_bits=8, acc_bits=16, bias_bits=8, mult_bits=1, max_shift=1)


def command_layout(p: GraceParams) -> data.StructLayout:
    """One frame's heatmaps: a grid of `size` × `size` pixels, `keypoints` Gaussians each."""
    return data.StructLayout(
        {
            "size": unsigned(bits_for(p.act.max_grid + 1)),  # 2 .. max_grid
            "keypoints": unsigned(bits_for(p.act.max_keypoints + 1)),  # 1 .. max_keypoints
            "tag": unsigned(TAG_BITS),
        }
    )


def gaussian_write_layout(p: GraceParams) -> data.StructLayout:
    """Entry `index` of the Gaussian table (`model.fixed_motion.gaussian_table`)."""
    return data.StructLayout(
        {"index": unsigned(bits_for(p.act.gaussian_depth)), "data": unsigned(8)}
    )
