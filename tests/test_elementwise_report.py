"""The decoder's element-wise ops priced on their units (grace/elementwise_report.py)."""

from __future__ import annotations

import pytest

from defs.params import PRESETS, preset
from grace.elementwise_report import elementwise_costs, price_elementwise
from rtl import act_cycles, heatmap_cycles, motion_cycles, softmax_cycles
from rtl.act.motion_layouts import MotionOp
from sim.blur import blur_cycles

#: The ULX3S engine on fomm-256's graph, as `grace bench` prices it.
ULX3S_ON_FOMM = preset("ulx3s-85f").replace(model=PRESETS["fomm-256"].model)
#: fomm-256's conv engine cycles per inter frame (`grace bench --engine-only`).
FOMM_CONV_CYCLES = 347_104_756


@pytest.fixture(scope="module")
def fomm():
    return price_elementwise(ULX3S_ON_FOMM, FOMM_CONV_CYCLES, gop=32)


def test_every_op_of_the_frame_is_priced(fomm) -> None:
    """One row per op of decode_int and encode_source_int that is neither conv nor
    warp (docs/activation_engine.md §1): fomm-256's element counts."""
    rows = {c.op: c for c in fomm.costs}
    grid, image = 64 * 64, 256 * 256
    assert rows["heatmaps"].elements == 11 * grid
    assert rows["sparse motions (first order)"].elements == 11 * grid * 2
    assert rows["mask softmax"].elements == 11 * grid
    assert rows["occlusion sigmoid"].elements == grid
    assert rows["dense flow"].elements == grid * 2
    affines = [c for c in fomm.costs if c.l2 == "affine_int"]
    assert len(affines) == 6 and {c.elements for c in affines} == {256 * grid}
    assert rows["output sigmoid → pixels"].elements == 3 * image
    assert rows["key frame → int8"].per_gop and rows["anti-alias blur"].per_gop
    assert rows["compose_jacobians"].unit == "host" and rows["compose_jacobians"].cycles == 0


def test_each_op_is_its_units_cycle_model(fomm) -> None:
    rows = {c.op: c.cycles for c in fomm.costs}
    p = ULX3S_ON_FOMM
    assert rows["heatmaps"] == heatmap_cycles.tile_cycles(p, 64, 10)
    motions = motion_cycles.run_cycles(p, [(MotionOp.MOTION, 64, 10)] * 11)
    assert rows["sparse motions (first order)"] == motions
    assert rows["dense flow"] == motion_cycles.command_cycles(p, MotionOp.FLOW, 64, 10)
    assert rows["mask softmax"] == softmax_cycles.tile_cycles(p, 64 * 64, 11)
    assert rows["output sigmoid → pixels"] == act_cycles.tile_cycles(p, 256 * 256, 3)
    assert rows["anti-alias blur"] == blur_cycles(p)


def test_fomm_256_meets_the_three_percent_goal(fomm) -> None:
    """Issue 15's goal: every element-wise op together ≤ 3 % of the frame's conv cycles."""
    s = fomm.summary
    per_gop = sum(c.cycles for c in fomm.costs if c.per_gop)
    serial = sum(c.cycles for c in fomm.costs if not c.per_gop)
    assert s.frame_cycles == serial + round(per_gop / 32)
    assert s.conv_share == s.frame_cycles / FOMM_CONV_CYCLES < 0.03


def test_a_dac_model_prices_translation_motions() -> None:
    costs = elementwise_costs(preset("ulx3s-85f").replace(model=PRESETS["tiny"].model))
    assert any(c.op == "sparse motions (translation)" for c in costs)
    assert not any(c.op == "compose_jacobians" for c in costs)  # no Jacobians to compose
