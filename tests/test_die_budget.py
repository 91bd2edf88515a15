"""Every board preset's conv engine fits its die, counted on the elaborated design.

Why counted: a sum written by hand ("the array's MACs + 4") goes stale the day
the engine gains a multiplier. `rtl.dsp.dsp_usage` walks the elaborated
hierarchy (DSP instances, and inferred products split as Yosys's `mul2dsp`
splits them), and `test_dsp_count_is_what_yosys_maps` holds that rule to Yosys
itself. The measured builds (docs/conv_engine.md) took 132 / 156 and 8 / 8 DSPs,
108 / 208 DP16KD and 27 / 30 EBR (with the partial sums of input-channel splitting).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from amaranth import Const, Module, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from defs.boards import BOARD_SPECS
from defs.params import PRESETS, preset
from rtl.act import ActEngine
from rtl.act.heatmap import HeatmapUnit
from rtl.act.motion import MotionUnit
from rtl.act.softmax import SoftmaxUnit
from rtl.conv import ConvEngine
from rtl.dsp import DSP_RULES, dsp_usage
from rtl.hierarchy import block_ram_bound
from rtl.warp import WarpEngine
from sim.netlist import synthesize

BOARD_PRESETS = [name for name, params in PRESETS.items() if params.board is not None]


def engine(name: str) -> tuple[ConvEngine, str]:
    """The preset's conv engine built for its board's family, and that family."""
    family = BOARD_SPECS[preset(name).board].family
    return ConvEngine(preset(name), dsp_target=family), family


@pytest.mark.parametrize("name", BOARD_PRESETS)
def test_engine_fits_the_dies_dsps(name: str) -> None:
    params = preset(name)
    design, family = engine(name)
    usage = dsp_usage(design, family)
    used, available = sum(usage.values()), BOARD_SPECS[params.board].dsp
    outside = {path: n for path, n in usage.items() if ".macs." not in path}
    assert used <= available, f"{name}: {used} DSPs of {available}; besides the array: {outside}"
    # the walk sees the array: one DSP per MAC, in the array's part
    assert sum(n for path, n in usage.items() if ".macs." in path) == params.array.macs


def test_ulx3s_array_takes_most_of_the_die() -> None:
    """16 × 8: every FOMM width is a multiple of both sides (defs/params.py)."""
    assert preset("ulx3s-85f").array.macs >= 128


@pytest.mark.parametrize("name", BOARD_PRESETS)
def test_engine_fits_the_dies_block_ram(name: str) -> None:
    design, family = engine(name)
    bound, available = block_ram_bound(design, family), BOARD_SPECS[preset(name).board].block_ram
    assert bound <= available, f"{name}: up to {bound} block RAM tiles of {available}"


#: DSPs of the warp engine at one lane (docs/warp_engine.md §2.2): 2 coordinate
#: products, the address multiply, 3 interpolation products, 2 in the output path.
WARP_DSPS = 8


@pytest.mark.parametrize("name", BOARD_PRESETS)
def test_warp_engine_takes_its_sized_dsps_and_fits_alone(name: str) -> None:
    params = preset(name)
    family = BOARD_SPECS[params.board].family
    design = WarpEngine(params, dsp_target=family)
    usage = dsp_usage(design, family)
    assert sum(usage.values()) == WARP_DSPS * params.warp.lanes, usage
    ram = block_ram_bound(WarpEngine(params, dsp_target=family), family)  # a design of its own
    assert ram <= BOARD_SPECS[params.board].block_ram


#: DSPs of the element-wise engine per lane: the output path's requantizer.
ACT_DSPS_PER_LANE = 2


@pytest.mark.parametrize("name", BOARD_PRESETS)
def test_act_engine_takes_two_dsps_a_lane_and_fits_alone(name: str) -> None:
    params = preset(name)
    family = BOARD_SPECS[params.board].family
    usage = dsp_usage(ActEngine(params, dsp_target=family), family)
    assert sum(usage.values()) == ACT_DSPS_PER_LANE * params.act.lanes, usage
    ram = block_ram_bound(ActEngine(params, dsp_target=family), family)  # a design of its own
    assert ram <= BOARD_SPECS[params.board].block_ram


#: DSPs of the keypoint and softmax units (docs/activation_engine.md §7): the
#: heatmap unit's two column squares; the motion unit's two column products and
#: two mask products; the softmax's normalise in its output path (2 by this
#: count; the ECP5 build maps 1, the sum's top slice being constant 0).
UNIT_DSPS = {"softmax": 2, "heatmap": 2, "motion": 4}
UNITS = {"softmax": SoftmaxUnit, "heatmap": HeatmapUnit, "motion": MotionUnit}


@pytest.mark.parametrize("name", BOARD_PRESETS)
@pytest.mark.parametrize("unit", UNITS)
def test_element_wise_units_take_their_dsps_and_fit_alone(name: str, unit: str) -> None:
    params = preset(name)
    family = BOARD_SPECS[params.board].family
    usage = dsp_usage(UNITS[unit](params, dsp_target=family), family)
    assert sum(usage.values()) == UNIT_DSPS[unit], usage
    ram = block_ram_bound(UNITS[unit](params, dsp_target=family), family)
    assert ram <= BOARD_SPECS[params.board].block_ram


def test_the_engines_share_the_ecp5_85f() -> None:
    """The die budget (docs/activation_engine.md §4): conv, warp, element-wise
    engine and the softmax and keypoint units on one ECP5-85F, room left for
    control."""
    params, spec = preset("ulx3s-85f"), BOARD_SPECS["ulx3s-85f"]

    def engines() -> tuple:  # each walk elaborates a design of its own
        return (
            ConvEngine(params, dsp_target="ecp5"),
            WarpEngine(params, dsp_target="ecp5"),
            ActEngine(params, dsp_target="ecp5"),
            *(unit(params, dsp_target="ecp5") for unit in UNITS.values()),
        )

    dsps = sum(sum(dsp_usage(e, "ecp5").values()) for e in engines())
    ram = sum(block_ram_bound(e, "ecp5") for e in engines())
    units = sum(UNIT_DSPS.values())
    assert dsps == 132 + WARP_DSPS + ACT_DSPS_PER_LANE * params.act.lanes + units < spec.dsp
    assert ram < spec.block_ram


#: (a, b, DSPs on ECP5, DSPs on iCE40), measured with Yosys 0.70: an unsigned
#: operand of a signed product takes a bit more; a 1-bit remainder of a split
#: stays in logic; a product under 11 bits stays in logic on iCE40; a constant
#: 2^k is a shift, any other constant a product.
PRODUCTS: list[tuple[Shape, Shape | Const, int, int]] = [
    (unsigned(8), unsigned(8), 1, 1),
    (unsigned(5), unsigned(5), 1, 0),
    (unsigned(1), signed(17), 1, 1),
    (unsigned(16), signed(17), 1, 1),
    (signed(14), unsigned(13), 1, 1),
    (signed(17), signed(17), 1, 1),
    (signed(20), signed(20), 4, 3),
    (signed(40), signed(8), 3, 3),
    (signed(12), Const(-77, 8), 1, 1),
    (signed(12), Const(-8, 4), 0, 0),
]


class Products(wiring.Component):
    """Every `PRODUCTS` pair, registered on both sides, each its own submodule."""

    def __init__(self) -> None:
        ports = {}
        for i, (a, b, _, _) in enumerate(PRODUCTS):
            ports[f"a{i}"] = In(a)
            if not isinstance(b, Const):
                ports[f"b{i}"] = In(b)
        super().__init__(ports)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        for i, (_, b, _, _) in enumerate(PRODUCTS):
            m.submodules[f"product{i}"] = product = Module()
            a = Signal.like(getattr(self, f"a{i}"))
            other = b if isinstance(b, Const) else Signal.like(getattr(self, f"b{i}"))
            p = Signal(len(a) + len(other) + 1, name=f"p{i}", attrs={"keep": 1})
            product.d.sync += [a.eq(getattr(self, f"a{i}")), p.eq(a * other)]
            if not isinstance(b, Const):
                product.d.sync += other.eq(getattr(self, f"b{i}"))
        return m


@pytest.mark.parametrize(("family", "column"), [("ecp5", 2), ("ice40", 3)])
def test_dsp_count_is_what_yosys_maps(family: str, column: int, build_root: Path) -> None:
    """Each product's count against the table, then the total against Yosys."""
    usage = dsp_usage(Products(), family)
    for i, row in enumerate(PRODUCTS):
        counted = usage.get(f"top.product{i}", 0)
        assert counted == row[column], f"{family}: {row[0]} × {row[1]}: counted {counted} DSPs"
    extra = "-dsp" if family == "ice40" else ""  # as boards/build.py runs synth_ice40
    _, cells = synthesize(Products(), family, build_root / "die_budget" / family, extra)
    assert cells.get(DSP_RULES[family].cell, 0) == sum(usage.values())
