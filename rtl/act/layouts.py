"""Payloads of the element-wise engine's streams: the tile command and its buffer loads.

Widths come from the parameters object and the hardware limits (defs/limits.py).
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from amaranth import unsigned
from amaranth.lib import data

from defs.limits import DIM_BITS, GROUP_BITS, TAG_BITS, bits_for
from model.fixed_ops import LUT_IN_BITS
from rtl.requant import requant_input_layout

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Tables each lane holds (the decoder has two: occlusion and output sigmoid).
TABLES = 2


class ActOp(IntEnum):
    """What a tile computes on each int8 element x of channel c."""

    TABLE = 0  # table[x + 128], the 8 bits as they are (model.fixed_ops.apply_lut)
    AFFINE = 1  # requantize(±x + bias_c, M_c, s_c, relu) (model.fixed_conv.affine_int)


def param_addr_bits(p: GraceParams) -> int:
    return bits_for(p.act.param_depth)


def command_layout(p: GraceParams) -> data.StructLayout:
    """One tile: `pixels` × `groups` input words, each `lanes` channels."""
    return data.StructLayout(
        {
            "op": unsigned(1),  # ActOp
            "pixels": unsigned(2 * DIM_BITS),
            "groups": unsigned(GROUP_BITS),  # words per pixel: ceil(channels / lanes)
            # AFFINE: lane l of group g is channel g·lanes + l; its constants are
            # at param_base + g in lane l's buffer
            "param_base": unsigned(param_addr_bits(p)),
            "table": unsigned(bits_for(TABLES)),  # TABLE: which table
            "relu": unsigned(1),  # AFFINE
            "tag": unsigned(TAG_BITS),
        }
    )


def table_write_layout() -> data.StructLayout:
    """One table entry, written into every lane's copy."""
    return data.StructLayout(
        {
            "table": unsigned(bits_for(TABLES)),
            "index": unsigned(LUT_IN_BITS),  # x + 128
            "data": unsigned(8),
        }
    )


def param_layout(p: GraceParams) -> data.StructLayout:
    """One channel's affine constants (model.fixed_decoder.QAffine)."""
    n = p.numeric
    fields = requant_input_layout(n).members
    return data.StructLayout(
        {
            "negate": unsigned(1),
            "bias": fields["bias"],
            "multiplier": fields["multiplier"],
            "shift": fields["shift"],
        }
    )


def param_write_layout(p: GraceParams) -> data.StructLayout:
    """Channel c's constants go to lane c mod lanes, at param_base + c div lanes."""
    return data.StructLayout(
        {
            "lane": unsigned(bits_for(p.act.lanes)),
            "addr": unsigned(param_addr_bits(p)),
            "data": param_layout(p),
        }
    )
