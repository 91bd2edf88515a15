"""The conv engine priced on fomm-256 by its cycle model: utilisation goals and outputs."""

from __future__ import annotations

import json
import math
from functools import cache

from defs.params import PRESETS, GraceParams
from grace.engine_report import LayerCost, summarise, write_report
from grace.engine_report import layer_costs as price_layers
from rtl.warp_cycles import run_cycles

ULX3S_ON_FOMM = PRESETS["ulx3s-85f"].replace(model=PRESETS["fomm-256"].model)


@cache
def layer_costs(params: GraceParams) -> list[LayerCost]:
    """Priced once per module (building the fomm-256 graph takes seconds)."""
    return price_layers(params)


def test_every_conv_of_the_decoder_is_priced() -> None:
    costs = layer_costs(ULX3S_ON_FOMM)
    assert len(costs) == 31
    unpriced = [c.name for c in costs if not c.cycles]
    assert unpriced == ["dense_motion_network.down"]  # the depthwise anti-alias blur


def conv_geometry(cost: LayerCost) -> tuple[int, int, int, int]:
    """(input channels, output channels, k_h, k_w) from the layer's description
    (`ConvShape.describe`: "C→O kh×kw/s…")."""
    channels, kernel = cost.shape.split()[:2]
    c_in, c_out = (int(v) for v in channels.split("→"))
    k_h, k_w = (int(v) for v in kernel.split("/")[0].split("×"))
    return c_in, c_out, k_h, k_w


def fitting_utilisation(params: GraceParams, phase: str) -> float:
    """MAC-weighted utilisation of one phase over the layers whose weights fit the
    buffer: the others are priced as if they fitted (no input-channel split is
    built), so their cycles are a lower bound and count towards no goal."""
    run = [c for c in layer_costs(params) if c.phase == phase and c.cycles and c.fits]
    return sum(c.macs for c in run) / (params.array.macs * sum(c.cycles for c in run))


def test_utilisation_goals() -> None:
    """≥ 90 % on 3×3 layers whose channels are multiples of the array, ≥ 80 % per
    frame and per GOP, all over layers whose weights fit the buffer."""
    params = ULX3S_ON_FOMM
    rows, cols = params.array.rows, params.array.cols
    checked = 0
    for c in layer_costs(params):
        if not (c.cycles and c.fits):
            continue
        c_in, c_out, k_h, k_w = conv_geometry(c)
        if k_h == k_w == 3 and c_in % cols == 0 and c_out % rows == 0:
            assert c.utilisation(params.array.macs) >= 0.90, c
            checked += 1
    assert checked >= 15  # the bottleneck, down and up blocks
    assert fitting_utilisation(params, "per frame") >= 0.80
    assert fitting_utilisation(params, "per GOP") >= 0.80


def test_exactly_the_layers_whose_weights_exceed_the_buffer_are_flagged() -> None:
    """A tile needs one output group's weights, G·k_h·k_w words (G input-channel
    groups of the array's width), computed here from each layer's shape: the
    layers above the buffer's depth are flagged, all others are not. (No fold
    brings one of these under it: each has at least as many input channels as
    the array has lanes and more outputs than half its rows.)"""
    params = ULX3S_ON_FOMM
    depth, rows, cols = params.buffers.weight_depth, params.array.rows, params.array.cols
    costs = [c for c in layer_costs(params) if c.cycles]
    geometry = {c.name: conv_geometry(c) for c in costs}
    words = {n: math.ceil(c_in / cols) * k_h * k_w for n, (c_in, _, k_h, k_w) in geometry.items()}
    over = {name for name, w in words.items() if w > depth}
    assert over and all(geometry[n][0] >= cols and 2 * geometry[n][1] > rows for n in over)
    assert {c.name for c in costs if not c.fits} == over
    for c in costs:
        assert ("words" in c.mapping) == (c.name in over), c
        assert (c.weight_words > depth) == (c.name in over), c
        if c.name in over:
            assert c.weight_words == words[c.name], c
    summary = summarise(params, layer_costs(params))
    assert summary.frame_layers_over_buffer == sum(
        c.phase == "per frame" for c in costs if c.name in over
    )


def test_report_files(tmp_path) -> None:
    """The JSON holds the conv layers and, next to them, the frame's warps priced
    on the same engine (8,192-word banks: 4 planes of 64² per half): the 64²
    source resident for its 11 motions, the 256 feature channels in 64 tiles."""
    costs, summary, warps, elementwise = write_report(ULX3S_ON_FOMM, tmp_path)
    data = json.loads((tmp_path / "engine-ulx3s-85f.json").read_text())
    assert data["summary"]["frame_cycles"] == summary.frame_cycles
    assert len(data["layers"]) == len(costs)
    ops = data["warp"]["ops"]
    assert [(w["shape"], w["tiles"]) for w in ops] == [("11×3×64²", 11), ("256×64²", 64)]
    pixels = 64 * 64
    dense = run_cycles(ULX3S_ON_FOMM, [(pixels, 3)] * 11) + 3 * pixels
    features = run_cycles(ULX3S_ON_FOMM, [(pixels, 4)] * 64) + 4 * pixels
    assert [w["cycles"] for w in ops] == [dense, features]
    assert data["warp"]["summary"]["frame_cycles"] == warps.summary.frame_cycles
    assert data["warp"]["summary"]["conv_frame_cycles"] == summary.frame_cycles
    assert data["warp"]["summary"]["samples"] == 1_183_744
    assert data["elementwise"]["summary"]["frame_cycles"] == elementwise.summary.frame_cycles
    assert len(data["elementwise"]["ops"]) == len(elementwise.costs)
    assert (tmp_path / "engine-ulx3s-85f.png").stat().st_size > 1000


def test_layers_whose_weights_overflow_the_buffer_are_flagged() -> None:
    """Whole sums need G·k² weight words per output group: the 1024/2048-channel
    hourglass layers exceed the ULX3S preset's 1,024 words (2,048 on fomm-256)."""
    flagged = [c for c in layer_costs(ULX3S_ON_FOMM) if not c.fits]
    assert [c.name.split("hourglass.")[-1] for c in flagged] == [
        "encoder.down_blocks.4",
        "decoder.up_blocks.0",
        "decoder.up_blocks.1",
        "decoder.up_blocks.2",
    ]
    assert [c.weight_words for c in flagged] == [1152, 1152, 2304, 1152]
    assert all(c.weight_words > 1024 and "weights" in c.mapping for c in flagged)
    wide = [c.weight_words for c in layer_costs(PRESETS["fomm-256"]) if not c.fits]
    assert wide == [2304]
    summary = summarise(ULX3S_ON_FOMM, layer_costs(ULX3S_ON_FOMM))
    assert summary.frame_layers_over_buffer == 4
    assert 0.03 < summary.frame_macs_over_buffer < 0.04


def test_narrow_layers_fold_onto_idle_lanes_and_rows() -> None:
    """The 3-channel input layer folds its taps onto lanes; the 1- and 3-channel
    outputs fold their rows onto the array's idle rows, within the weight buffer."""
    mapping = {c.name: c.mapping for c in layer_costs(ULX3S_ON_FOMM)}
    assert mapping["first"] == "taps folded"
    assert mapping["final"] == "rows folded ×4"
    assert mapping["dense_motion_network.occlusion"] == "rows folded ×3"
    assert mapping["dense_motion_network.mask"] == "direct"  # 11 outputs: no second fold
    assert fitting_utilisation(ULX3S_ON_FOMM, "per frame") > 0.97


def test_a_layer_that_fits_no_mapping_is_reported_direct() -> None:
    """tiny on the iCEBreaker's 512-word buffer: the 7×7 heads fit neither direct
    nor folded, so they are flagged with their direct mapping."""
    over = {c.name: c.mapping for c in layer_costs(PRESETS["icebreaker"]) if not c.fits}
    assert over == {
        "dense_motion_network.mask": "direct, weights 1,274 > 512 words",
        "dense_motion_network.occlusion": "direct, weights 1,274 > 512 words",
    }
