"""The decoder's element-wise ops on the element-wise units: cycles per inter frame.

Every op of `decode_int` and `encode_source_int` that is neither a convolution
nor a warp (docs/activation_engine.md §1), priced by the cycle model of the
unit that runs it (each exact against RTL simulation without back-pressure):
- the heatmaps (`rtl.heatmap_cycles`), the sparse motions and the dense flow
  (`rtl.motion_cycles`) and the mask softmax (`rtl.softmax_cycles`) on the
  motion grid;
- the occlusion and output sigmoids, the key frame's quantization (TABLE) and
  the residual blocks' pre-activation (AFFINE) on the element-wise engine
  (`rtl.act_cycles`);
- the key frame's anti-alias blur on the conv engine, as a dense conv on a
  polyphase layout (`sim.blur`);
- `compose_jacobians` on the host (10 matrices a frame, §1.3 there).
Each op is priced on its own, serial with the convs around it: the overlap the
co-processor can give (chaining the softmax on the mask head, say) is not
counted. Per-GOP ops are amortised over the codec's default GOP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from defs.params import GraceParams
from model.fusion import PlannedOp, fusion_plan
from rtl import act_cycles, heatmap_cycles, motion_cycles, softmax_cycles
from rtl.act.motion_layouts import MotionOp
from sim.blur import blur_cycles

#: The fusion plan's affine shapes: "C→C, F²".
_AFFINE = re.compile(r"^(\d+)→(\d+), (\d+)²$")


@dataclass(frozen=True)
class ElementwiseCost:
    op: str
    l2: str  # the L2 function it is bit-exact with
    unit: str  # what runs it
    elements: int  # results per frame (or per GOP)
    cycles: int  # per frame (or per GOP)
    per_gop: bool = False  # once per GOP, amortised over the GOP in the totals


@dataclass(frozen=True)
class ElementwiseSummary:
    engine: str
    gop: int  # frames per GOP the per-GOP ops are amortised over
    frame_cycles: int  # per inter frame, per-GOP ops amortised
    conv_frame_cycles: int
    conv_share: float


def _motion_grid(params: GraceParams) -> tuple[int, int]:
    """(side of the motion grid, keypoints): what model/fusion.py sizes the dense
    motion network by."""
    m = params.model
    return m.dense_size, m.num_kp


def elementwise_costs(
    params: GraceParams, ops: list[PlannedOp] | None = None
) -> list[ElementwiseCost]:
    """Every element-wise op of one inter frame (and the per-GOP ones) of `params.model`."""
    m = params.model
    side, kp = _motion_grid(params)
    grid = side * side
    image = m.image_size * m.image_size
    table = act_cycles.tile_cycles
    costs = [
        ElementwiseCost(
            "heatmaps", "heatmaps", "heatmap unit", (kp + 1) * grid,
            heatmap_cycles.tile_cycles(params, side, kp),
        ),
        ElementwiseCost(
            "sparse motions" + (" (first order)" if m.estimate_jacobian else " (translation)"),
            "affine_motions" if m.estimate_jacobian else "sparse_motions",
            "motion unit (MOTION × K + 1)", (kp + 1) * grid * 2,
            motion_cycles.run_cycles(params, [(MotionOp.MOTION, side, kp)] * (kp + 1)),
        ),
        ElementwiseCost(
            "mask softmax", "softmax_channels_fixed", "softmax unit", (kp + 1) * grid,
            softmax_cycles.tile_cycles(params, grid, kp + 1),
        ),
        ElementwiseCost(
            "occlusion sigmoid", "apply_lut", "element-wise engine, TABLE", grid,
            table(params, grid, act_cycles.groups_for(params, 1)),
        ),
        ElementwiseCost(
            "dense flow", "compose_flow", "motion unit (FLOW)", grid * 2,
            motion_cycles.command_cycles(params, MotionOp.FLOW, side, kp),
        ),
    ]  # fmt: skip
    for op in fusion_plan(m) if ops is None else ops:
        if op.op != "affine":
            continue
        match = _AFFINE.match(op.shape)
        if match is None:
            raise ValueError(f"affine {op.name!r}: cannot read its shape {op.shape!r}")
        channels, size = int(match.group(1)), int(match.group(3))
        groups = act_cycles.groups_for(params, channels)
        costs.append(
            ElementwiseCost(
                f"pre-activation {op.name}", "affine_int", "element-wise engine, AFFINE",
                channels * size * size, table(params, size * size, groups),
            )
        )  # fmt: skip
    channels = act_cycles.groups_for(params, m.num_channels)
    costs += [
        ElementwiseCost(
            "output sigmoid → pixels", "apply_lut", "element-wise engine, TABLE",
            m.num_channels * image, table(params, image, channels),
        ),
        ElementwiseCost(
            "key frame → int8", "quantize_image", "element-wise engine, TABLE",
            m.num_channels * image, table(params, image, channels), per_gop=True,
        ),
        ElementwiseCost(
            "anti-alias blur", "run_conv(antialias)", "conv engine, polyphase layout",
            m.num_channels * grid, blur_cycles(params), per_gop=True,
        ),
    ]  # fmt: skip
    if m.estimate_jacobian:  # translation models compose none
        costs.append(ElementwiseCost("compose_jacobians", "compose_jacobians", "host", 4 * kp, 0))
    return costs


def summarise_elementwise(
    params: GraceParams, costs: list[ElementwiseCost], conv_frame_cycles: int, gop: int
) -> ElementwiseSummary:
    frame = sum(c.cycles for c in costs if not c.per_gop)
    per_gop = sum(c.cycles for c in costs if c.per_gop)
    total = frame + round(per_gop / gop)
    return ElementwiseSummary(
        engine=params.name,
        gop=gop,
        frame_cycles=total,
        conv_frame_cycles=conv_frame_cycles,
        conv_share=total / conv_frame_cycles if conv_frame_cycles else 0.0,
    )


@dataclass(frozen=True)
class ElementwiseReport:
    costs: list[ElementwiseCost]
    summary: ElementwiseSummary


def price_elementwise(
    params: GraceParams,
    conv_frame_cycles: int,
    ops: list[PlannedOp] | None = None,
    *,
    gop: int | None = None,
) -> ElementwiseReport:
    """`elementwise_costs` and their totals, per-GOP ops amortised over `gop` frames
    (the codec's default GOP unless given)."""
    from model.codec import CodecSettings

    costs = elementwise_costs(params, ops)
    gop = CodecSettings().gop_size if gop is None else gop
    return ElementwiseReport(costs, summarise_elementwise(params, costs, conv_frame_cycles, gop))
