"""The convolution engine on a whole decoder: cycles and MAC utilisation per layer.

Every conv of the fusion plan is priced by the engine's cycle model
(`rtl.conv_cycles.tile_cycles`, exact against RTL simulation) as one tile that
covers the layer; a compiler that splits a layer into buffer-sized tiles adds
about three cycles per extra tile, since tiles issue back to back. Layers with
fewer input channels than the array has lanes are also priced with their
horizontal taps folded onto the lanes (`ConvShape.fold_taps`, a layout the host
writes while loading); layers with fewer output channels than the array has
rows, with output rows folded onto its rows (`ConvShape.fold_rows`). The
cheapest mapping whose weights fit is reported.

A tile computes whole sums, so one output group's weights (G·k_h·k_w words,
the beats per pixel) must fit the weight buffer. Layers that need more are
flagged and priced as if they fitted: input-channel splitting with int32
partial sums is not built (docs/conv_engine.md, Limits).

The report JSON also carries the frame's warps on the same engine
(`grace.warp_report`), next to the conv layers they sit between.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from defs.params import GraceParams
from grace.elementwise_report import ElementwiseReport, price_elementwise
from grace.warp_report import WarpReport, price_warps
from model.conv_shape import ConvShape
from model.fusion import PlannedOp, fusion_plan
from rtl.conv_cycles import TileCost, tile_cycles


@dataclass(frozen=True)
class LayerCost:
    phase: str
    name: str
    shape: str
    mapping: str  # "direct", "taps folded", or why the engine does not run it
    macs: int
    cycles: int  # 0 when the layer is not a conv-engine op
    weight_words: int = 0  # per output group; above the buffer's depth it needs a split
    fits: bool = True  # one output group's weights fit the weight buffer

    def utilisation(self, array_macs: int) -> float:
        return self.macs / (array_macs * self.cycles) if self.cycles else 0.0


def _candidates(params: GraceParams, shape: ConvShape) -> list[tuple[str, TileCost]]:
    """Every mapping the host can lay out for this layer, with its tile cost."""
    found = [("direct", tile_cycles(params, shape))]
    plain = shape.stride == 1 and not shape.upsample
    if plain and shape.channels < params.array.cols:
        found.append(("taps folded", tile_cycles(params, shape.fold_taps())))
    if plain and not shape.pool and not shape.residual:
        for fold in range(2, params.array.rows // shape.out_channels + 1):
            found.append((f"rows folded ×{fold}", tile_cycles(params, shape.fold_rows(fold))))
    return found


def _best_mapping(params: GraceParams, shape: ConvShape) -> tuple[str, TileCost]:
    """The fastest mapping whose weights fit the buffer, fewest weight words on a
    tie; the direct one when none fits (the layer then needs a split)."""
    candidates = _candidates(params, shape)
    fitting = [c for c in candidates if c[1].beats_per_pixel <= params.buffers.weight_depth]
    if not fitting:
        return candidates[0]
    return min(fitting, key=lambda c: (c[1].cycles, c[1].beats_per_pixel))


def layer_costs(params: GraceParams, ops: list[PlannedOp] | None = None) -> list[LayerCost]:
    """Every conv of `params.model` on `params`' engine; `ops` is its fusion plan when
    the caller has it (fomm-256's takes seconds)."""
    costs = []
    for op in fusion_plan(params.model) if ops is None else ops:
        if op.op != "conv":
            continue
        if op.conv is None:
            costs.append(LayerCost(op.phase, op.name, op.shape, "depthwise: not on this engine",
                                   op.macs, 0))  # fmt: skip
            continue
        mapping, tile = _best_mapping(params, op.conv)
        words = tile.beats_per_pixel  # one weight word per beat
        fits = words <= params.buffers.weight_depth
        if not fits:
            mapping += f", weights {words:,} > {params.buffers.weight_depth:,} words"
        costs.append(
            LayerCost(op.phase, op.name, op.conv.describe(), mapping, op.macs, tile.cycles,
                      words, fits)
        )  # fmt: skip
    return costs


@dataclass(frozen=True)
class EngineSummary:
    preset: str
    array: str
    clock_mhz: float
    frame_cycles: int
    gop_cycles: int
    frame_utilisation: float  # MAC-weighted over the per-frame conv layers
    gop_utilisation: float
    frame_ms: float  # conv layers only, at clock_mhz
    effective_gmac_per_s: float  # array MACs × clock × frame utilisation
    frame_layers_over_buffer: int  # per-frame layers priced as if their weights fitted
    frame_macs_over_buffer: float  # their share of the frame's conv MACs


def summarise(params: GraceParams, costs: list[LayerCost]) -> EngineSummary:
    array = params.array.macs

    def phase(name: str) -> tuple[int, float]:
        run = [c for c in costs if c.phase == name and c.cycles]
        cycles = sum(c.cycles for c in run)
        return cycles, sum(c.macs for c in run) / (array * cycles) if cycles else 0.0

    frame_cycles, frame_util = phase("per frame")
    gop_cycles, gop_util = phase("per GOP")
    frame = [c for c in costs if c.phase == "per frame" and c.cycles]
    over = [c for c in frame if not c.fits]
    clock = params.clock_hz
    return EngineSummary(
        preset=params.name,
        array=f"{params.array.rows}×{params.array.cols}",
        clock_mhz=clock / 1e6,
        frame_cycles=frame_cycles,
        gop_cycles=gop_cycles,
        frame_utilisation=frame_util,
        gop_utilisation=gop_util,
        frame_ms=frame_cycles / clock * 1e3,
        effective_gmac_per_s=array * clock * frame_util / 1e9,
        frame_layers_over_buffer=len(over),
        frame_macs_over_buffer=sum(c.macs for c in over) / max(sum(c.macs for c in frame), 1),
    )


def write_report(
    params: GraceParams, out_dir: Path
) -> tuple[list[LayerCost], EngineSummary, WarpReport, ElementwiseReport]:
    """Per-layer costs, the frame's warps and element-wise ops and the summary as
    JSON, and the utilisation chart as a PNG."""
    ops = fusion_plan(params.model)
    costs = layer_costs(params, ops)
    summary = summarise(params, costs)
    warps = price_warps(params, summary.frame_cycles, ops)
    elementwise = price_elementwise(params, summary.frame_cycles, ops)
    out_dir.mkdir(parents=True, exist_ok=True)
    array = params.array.macs
    rows = [asdict(c) | {"utilisation": c.utilisation(array)} for c in costs]
    warp = {
        "summary": asdict(warps.summary) if warps.summary else None,
        "ops": [asdict(c) for c in warps.costs],
        "refused": warps.refused,
    }
    (out_dir / f"engine-{params.name}.json").write_text(
        json.dumps(
            {
                "summary": asdict(summary),
                "layers": rows,
                "warp": warp,
                "elementwise": {
                    "summary": asdict(elementwise.summary),
                    "ops": [asdict(c) for c in elementwise.costs],
                },
            },
            indent=2,
        )
    )
    _chart(costs, array, summary, out_dir / f"engine-{params.name}.png")
    return costs, summary, warps, elementwise


def _chart(costs: list[LayerCost], array: int, summary: EngineSummary, path: Path) -> None:
    """One bar per layer: utilisation, bar height ∝ share of the cycles."""
    width, label_w, bar_w, row_h = 900, 330, 520, 18
    height = 40 + row_h * len(costs) + 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text(
        (10, 8),
        f"{summary.preset}: conv engine {summary.array.replace('×', ' x ')} MACs at "
        f"{summary.clock_mhz:.0f} MHz; "
        f"per-frame utilisation {summary.frame_utilisation:.1%}",
        fill="black",
    )
    for k, c in enumerate(costs):
        y = 40 + k * row_h
        util = c.utilisation(array)
        name = c.name.replace("dense_motion_network.", "dense_motion.")
        draw.text((10, y + 2), name.replace("hourglass.", "")[-48:], fill="black")
        draw.rectangle((label_w, y + 3, label_w + bar_w, y + row_h - 3), outline="#bbbbbb")
        colour = "#2b7bba" if c.phase == "per frame" else "#8c8c8c"
        colour = colour if c.fits else "#e08a2b"
        if c.cycles:
            draw.rectangle(
                (label_w, y + 3, label_w + int(bar_w * util), y + row_h - 3), fill=colour
            )
        draw.text((label_w + bar_w + 8, y + 2), f"{util:.0%}" if c.cycles else "n/a", fill="black")
    draw.text(
        (10, height - 22),
        "blue: per inter frame, grey: per GOP, orange: weights exceed the buffer "
        "(priced as if they fitted)",
        fill="black",
    )
    image.save(path)
