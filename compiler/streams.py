"""Bits of one memory word of each LOAD target and STORE source (docs/isa.md).

A LOAD into a buffer moves the buffer's words; into a write stream, the
stream's payload words; a STORE moves an engine's output words. Each takes
⌈bits/8⌉ bytes in memory. The widths come from the layouts the engines
define; the compiler, its report and L3 all read them here.
"""

from __future__ import annotations

from defs.isa import Buffer, Source
from defs.params import GraceParams
from rtl.act.heatmap_layouts import gaussian_write_layout
from rtl.act.keypoints import grid_write_layout, jacobian_write_layout, keypoint_write_layout
from rtl.act.layouts import param_write_layout, table_write_layout
from rtl.act.motion_layouts import output_layout
from rtl.act.softmax import exp_write_layout
from rtl.conv_layouts import channel_param_layout
from rtl.warp.layouts import feature_write_layout, flow_layout


def word_bits(buffer: Buffer, params: GraceParams) -> int:
    """Bits of one word of a LOAD into `buffer`: the engine's buffer word, or its write
    stream's payload (from the layouts the engines define)."""
    a, n, lanes = params.array, params.numeric, params.act.lanes
    widths = {
        Buffer.CONV_INPUT: a.cols * n.act_bits,
        Buffer.CONV_WEIGHT: a.rows * a.cols * n.weight_bits,
        Buffer.CONV_PARAM: channel_param_layout(params).size,
        Buffer.CONV_RESIDUAL: n.act_bits,
        Buffer.WARP_FEATURE: feature_write_layout(params).size,
        Buffer.WARP_FLOW: flow_layout().size,
        Buffer.ACT_TABLE: table_write_layout().size,
        Buffer.ACT_PARAM: param_write_layout(params).size,
        Buffer.ACT_INPUT: lanes * n.act_bits,
        Buffer.SOFTMAX_EXP: exp_write_layout().size,
        Buffer.SOFTMAX_INPUT: n.act_bits,
        Buffer.HEATMAP_GRID: grid_write_layout(params).size,
        Buffer.HEATMAP_KEYPOINT: keypoint_write_layout(params).size,
        Buffer.HEATMAP_GAUSSIAN: gaussian_write_layout(params).size,
        Buffer.MOTION_GRID: grid_write_layout(params).size,
        Buffer.MOTION_KEYPOINT: keypoint_write_layout(params).size,
        Buffer.MOTION_JACOBIAN: jacobian_write_layout(params).size,
        Buffer.MOTION_MASK: 8,
    }
    if buffer not in widths:
        raise KeyError(buffer)
    return widths[buffer]


def source_bits(source: Source, params: GraceParams) -> int:
    """Bits of one word of an engine's output stream."""
    n = params.numeric
    widths = {
        Source.CONV: n.act_bits,
        Source.WARP: params.warp.lanes * n.act_bits,
        Source.ACT: params.act.lanes * n.act_bits,
        Source.SOFTMAX: 8,
        Source.HEATMAP: 8,
        Source.MOTION: output_layout().size,
    }
    if source not in widths:
        raise KeyError(source)
    return widths[source]
