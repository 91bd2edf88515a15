"""Payloads of the convolution engine's streams: the tile command and the buffer loads.

The command is the contract between a controller (or a test) and the engine; its
fields are documented in docs/conv_engine.md. Widths follow the parameters
object and the hardware limits (defs/limits.py), so one `GraceParams` fixes
every port of a build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import signed, unsigned
from amaranth.lib import data

from defs.limits import DIM_BITS, GROUP_BITS, TAG_BITS, bits_for

if TYPE_CHECKING:
    from defs.params import GraceParams


def input_addr_bits(p: GraceParams) -> int:
    return bits_for(p.buffers.input_depth)


def weight_addr_bits(p: GraceParams) -> int:
    return bits_for(p.buffers.weight_depth)


def param_addr_bits(p: GraceParams) -> int:
    return bits_for(p.buffers.param_depth)


def lane_bits(p: GraceParams) -> int:
    """Holds 1 .. rows: how many output lanes of a group are real channels."""
    return p.array.rows.bit_length()


def command_layout(p: GraceParams) -> data.StructLayout:
    """One tile: every output channel group × every output pixel of a convolution."""
    return data.StructLayout(
        {
            # input feature map in the input buffer: word = `cols` channels of one pixel,
            # address = in_base + g·in_plane + row·in_row + col
            "in_base": unsigned(input_addr_bits(p)),
            "in_plane": unsigned(input_addr_bits(p)),
            "in_row": unsigned(DIM_BITS),
            "in_height": unsigned(DIM_BITS),
            "in_width": unsigned(DIM_BITS),
            "in_groups": unsigned(GROUP_BITS),
            "upsample": unsigned(1),  # nearest ×2 on read: the conv sees 2H × 2W
            "kernel_h": unsigned(3),
            "kernel_w": unsigned(3),
            "stride2": unsigned(1),  # 0: stride 1, 1: stride 2
            "pad_top": unsigned(3),
            "pad_left": unsigned(3),
            # conv output size (before pooling); bottom/right padding is implied by it
            "out_height": unsigned(DIM_BITS),
            "out_width": unsigned(DIM_BITS),
            "out_groups": unsigned(GROUP_BITS),
            "last_lanes": unsigned(lane_bits(p)),  # real channels in the last output group
            "weight_base": unsigned(weight_addr_bits(p)),
            "param_base": unsigned(param_addr_bits(p)),
            "relu": unsigned(1),
            "pool": unsigned(1),  # 2×2 average pool of the requantized output
            "residual": unsigned(1),  # add residual × gain in the accumulator
            # input-channel splitting (docs/conv_engine.md): add the partial sums the
            # last partial_out tile left (element by element, in output order), and
            # keep this tile's sums (before bias) for the next pass
            "partial_in": unsigned(1),
            "partial_out": unsigned(1),
            "tag": unsigned(TAG_BITS),
        }
    )


def partial_addr_bits(p: GraceParams) -> int:
    """Addresses the partial sums: a tile's element index, wrapping at the depth."""
    return bits_for(p.buffers.partial_depth)


def pixel_meta_layout(p: GraceParams) -> data.StructLayout:
    """Per output pixel vector, what the output unit needs besides its sums."""
    return data.StructLayout(
        {
            "lanes": unsigned(lane_bits(p)),
            "param_addr": unsigned(param_addr_bits(p)),
            "relu": unsigned(1),
            "pool": unsigned(1),
            "residual": unsigned(1),
            "partial_in": unsigned(1),
            "partial_out": unsigned(1),
            "quad": unsigned(2),  # position in the 2×2 pooling window, (dy, dx)
            # its elements yield results (not absorbed by pooling: quads 0..2 are)
            "yields": unsigned(1),
            "end": unsigned(1),  # the tile's last pixel
            "tag": unsigned(TAG_BITS),
        }
    )


def input_write_layout(p: GraceParams) -> data.StructLayout:
    return data.StructLayout(
        {"addr": unsigned(input_addr_bits(p)), "data": unsigned(p.array.cols * p.numeric.act_bits)}
    )


def weight_write_layout(p: GraceParams) -> data.StructLayout:
    """One row of a weight word: the `cols` weights of one output lane."""
    return data.StructLayout(
        {
            "addr": unsigned(weight_addr_bits(p)),
            "row": unsigned(bits_for(p.array.rows)),
            "data": unsigned(p.array.cols * p.numeric.weight_bits),
        }
    )


def requant_param_layout(p: GraceParams) -> data.StructLayout:
    """Per output channel: the requantizer's constants (the engine's parameter buffer)."""
    n = p.numeric
    return data.StructLayout(
        {
            "bias": signed(n.bias_bits),
            "multiplier": unsigned(n.mult_bits),
            "shift": unsigned(n.shift_bits),
        }
    )


def channel_param_layout(p: GraceParams) -> data.StructLayout:
    """Per output channel: the output unit's constants and the residual gain."""
    n = p.numeric
    return data.StructLayout({**requant_param_layout(p).members, "gain": unsigned(n.gain_bits)})


def param_write_layout(p: GraceParams) -> data.StructLayout:
    return data.StructLayout(
        {"addr": unsigned(param_addr_bits(p)), "data": channel_param_layout(p)}
    )
