"""The per-frame constants the keypoint units share: grid axis, keypoints, Jacobians.

The heatmap unit (heatmaps from keypoints) and the motion unit (sparse motions
and the dense flow) compute from the same three inputs, loaded through streams
of these payloads before a frame's commands:
- the grid axis, `model.fixed_motion.grid_axis(size)` (a per-model table, like
  the sigmoid tables: it depends only on the motion resolution);
- the keypoints of the driving and of the source frame, in the coordinate format
  (`keypoints_to_coords`: COORD_FRAC_BITS fraction bits);
- the composed Jacobians `compose_jacobians(...)`, which stay on the host
  (docs/activation_engine.md §1.3).

The units are bit-exact with L2 for keypoints with |kp_q| ≤ KP_LIMIT_Q (|kp| ≤ 2:
FOMM's soft-argmax keypoints lie in [−1, 1]) and any Jacobian after the host's
clip; the host checks a frame's constants and refuses others (§2.4 there says
why no saturation of the motions would be exact).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import signed, unsigned
from amaranth.lib import data

from defs.limits import bits_for
from model.fixed_motion import COORD_FRAC_BITS, JAC_FRAC_BITS, JAC_LIMIT_BITS, KP_FRAC_BITS

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Largest |keypoint| the units take, in the bitstream's units (2^-KP_FRAC_BITS).
KP_LIMIT_Q = 1 << (KP_FRAC_BITS + 1)
#: Keypoint coordinates on the write stream: ±KP_LIMIT_Q << 6 = ±2^15 needs s17.
KP_BITS = (KP_LIMIT_Q << (COORD_FRAC_BITS - KP_FRAC_BITS)).bit_length() + 1
#: Grid axis entries, −2^14 … 2^14 inclusive.
GRID_BITS = COORD_FRAC_BITS + 2
#: Jacobian entries, ±2^(JAC_LIMIT_BITS + JAC_FRAC_BITS) inclusive: s20.
JAC_BITS = JAC_LIMIT_BITS + JAC_FRAC_BITS + 2


def keypoint_index_bits(p: GraceParams) -> int:
    return bits_for(p.act.max_keypoints)


def grid_write_layout(p: GraceParams) -> data.StructLayout:
    """Entry `index` of the grid axis."""
    return data.StructLayout(
        {"index": unsigned(bits_for(p.act.max_grid)), "value": signed(GRID_BITS)}
    )


def keypoint_write_layout(p: GraceParams) -> data.StructLayout:
    """Keypoint `keypoint` (0-based, without the background) of one frame."""
    return data.StructLayout(
        {
            "keypoint": unsigned(keypoint_index_bits(p)),
            "source": unsigned(1),  # 0: the driving frame's, 1: the source frame's
            "x": signed(KP_BITS),
            "y": signed(KP_BITS),
        }
    )


def jacobian_write_layout(p: GraceParams) -> data.StructLayout:
    """Entry (row, col) of keypoint `keypoint`'s composed Jacobian J_s·J_d⁻¹."""
    return data.StructLayout(
        {
            "keypoint": unsigned(keypoint_index_bits(p)),
            "row": unsigned(1),
            "col": unsigned(1),
            "value": signed(JAC_BITS),
        }
    )
