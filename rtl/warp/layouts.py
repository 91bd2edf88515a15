"""Payloads of the warp engine's streams: the tile command, feature writes and flow entries.

The command is the contract between a controller (or a test) and the engine,
documented in docs/warp_engine.md ("Streams and the tile command"). Widths come
from the parameters object and the hardware limits (defs/limits.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import signed, unsigned
from amaranth.lib import data

from defs.limits import DIM_BITS, GROUP_BITS, TAG_BITS, bits_for
from model.fixed_ops import OCC_BITS

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Flow coordinates on the stream: signed, with `model.fixed_motion.COORD_FRAC_BITS`
#: fraction bits (±2^14 = the centres of the first and last pixel). A producer
#: saturates wider values to this width; that changes no result (the engine
#: saturates c + 2^14 to 17 bits, exact for every map size: docs/warp_engine.md §1.9).
FLOW_BITS = 18
#: Banks of the feature buffer: (row parity, column parity), bank = 2·(y & 1) + (x & 1).
BANKS = 4


def warp_addr_bits(p: GraceParams) -> int:
    return bits_for(p.warp.depth)


def command_layout(p: GraceParams) -> data.StructLayout:
    """One tile: every output pixel of a group of channel planes."""
    a = warp_addr_bits(p)
    return data.StructLayout(
        {
            # the map in the banks: plane g's pixel (y, x) is in bank (y & 1, x & 1)
            # at in_base + g·in_plane + (y >> 1)·in_row + (x >> 1)
            "in_base": unsigned(a),
            "in_plane": unsigned(a),  # ceil(H/2)·ceil(W/2)
            "in_row": unsigned(DIM_BITS),  # ceil(W/2)
            "in_height": unsigned(DIM_BITS),  # H ≥ 1: taps outside read 0; y scales by H − 1
            "in_width": unsigned(DIM_BITS),  # W ≥ 1
            "planes": unsigned(GROUP_BITS),  # words per output pixel: ceil(channels / lanes)
            "out_height": unsigned(DIM_BITS),  # flow entries = out_height · out_width
            "out_width": unsigned(DIM_BITS),
            "occlusion": unsigned(1),  # × occ / 2^8, fused into the one rounding
            "tag": unsigned(TAG_BITS),
        }
    )


def feature_write_layout(p: GraceParams) -> data.StructLayout:
    """One bank word: `lanes` channels of one pixel (lane 0 in the low byte).

    The data comes first, in whole bytes, so that a program can lay the words'
    places out in memory once and have an engine's STORE fill in their data
    bytes (docs/isa.md, "Payload slots")."""
    return data.StructLayout(
        {
            "data": unsigned(p.warp.lanes * p.numeric.act_bits),
            "addr": unsigned(warp_addr_bits(p)),
            "bank": unsigned(2),
        }
    )


def flow_layout() -> data.StructLayout:
    """One output pixel's occlusion and sampling position (x, y).

    The occlusion byte comes first, so that the motion unit's {x, y} words
    (`rtl.act.motion_layouts.output_layout`) stored one byte in and the
    occlusion table's bytes stored at the start build flow entries in memory."""
    return data.StructLayout(
        {"occ": unsigned(OCC_BITS), "x": signed(FLOW_BITS), "y": signed(FLOW_BITS)}
    )
