"""The ECP5-85F floorplan of the conv engine's multipliers (boards/floorplan.py)."""

from __future__ import annotations

import re

import pytest

from boards.build import plan
from boards.floorplan import block_options, ecp5_85f_dsp_row, ecp5_85f_mac_sites
from defs.params import ArrayParams, GraceParams, preset
from rtl.conv import ConvEngine

_SITE = re.compile(r"X(\d+)/Y(\d+)/MULT18_[0145]$")
ALL_SITES = {site for y in (10, 34, 58) for site in ecp5_85f_dsp_row(y)}


def test_the_device_has_156_multiplier_sites() -> None:
    assert len(ALL_SITES) == 156  # the LFE5U-85F's MULT18X18D count


@pytest.mark.parametrize("shape", [(16, 8), (12, 13), (18, 8), (1, 1), (3, 52), (7, 5)])
def test_each_array_row_is_one_run_on_one_dsp_row(shape: tuple[int, int]) -> None:
    rows, cols = shape
    sites = ecp5_85f_mac_sites(rows, cols)
    assert set(sites) == {(r, c) for r in range(rows) for c in range(cols)}
    assert len(set(sites.values())) == rows * cols  # no site used twice
    assert set(sites.values()) <= ALL_SITES
    previous_y = 0
    for r in range(rows):
        xy = [tuple(map(int, _SITE.match(sites[(r, c)]).groups())) for c in range(cols)]
        ys = {y for _, y in xy}
        assert len(ys) == 1, f"row {r} spans DSP rows {ys}"
        (y,) = ys
        assert y >= previous_y  # array rows run down the die
        previous_y = y
        order = [ecp5_85f_dsp_row(y).index(sites[(r, c)]) for c in range(cols)]
        assert order == list(range(order[0], order[0] + cols)), "columns are neighbours"


def test_the_ulx3s_array_spreads_over_all_three_dsp_rows() -> None:
    sites = ecp5_85f_mac_sites(16, 8)
    per_y = {}
    for site in sites.values():
        y = int(_SITE.match(site).group(2))
        per_y[y] = per_y.get(y, 0) + 1
    assert per_y == {10: 40, 34: 48, 58: 40}  # the middle row takes the extra array row
    # the middle row's spare sites are at the die's centre, for the other multipliers
    spare = set(ecp5_85f_dsp_row(34)) - set(sites.values())
    assert spare == {"X58/Y34/MULT18_0", "X59/Y34/MULT18_1", "X62/Y34/MULT18_4",
                     "X63/Y34/MULT18_5"}  # fmt: skip


@pytest.mark.parametrize("shape", [(19, 8), (1, 53), (0, 4)])
def test_an_array_that_does_not_fit_is_refused(shape: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="does not fit the LFE5U-85F"):
        ecp5_85f_mac_sites(*shape)


def test_incomplete_sites_are_refused() -> None:
    params = GraceParams(array=ArrayParams(rows=2, cols=2))
    with pytest.raises(ValueError, match="one site for each of the 2×2 MACs"):
        ConvEngine(params, mac_sites={(0, 0): "X4/Y10/MULT18_0"})


def test_only_the_conv_block_and_the_top_on_a_floorplanned_device_get_sites() -> None:
    params = preset("ulx3s-85f")
    assert set(block_options("conv", params, "LFE5U-85F")) == {"mac_sites"}
    assert block_options("top", params, "LFE5U-85F") == block_options("conv", params, "LFE5U-85F")
    assert block_options("requant", params, "LFE5U-85F") == {}
    assert block_options("warp", params, "LFE5U-85F") == {}
    assert block_options("conv", preset("icebreaker"), "iCE40UP5K") == {}
    assert block_options("top", preset("icebreaker"), "iCE40UP5K") == {}


def test_the_tops_conv_unit_multipliers_are_pinned_inside_its_core() -> None:
    """The same four sites as the engine alone, selected where the board top holds the
    engine (a build fails if a name selects no multiplier)."""
    from boards.floorplan import CONV_UNIT_MULTIPLIERS, pin_commands

    params = preset("ulx3s-85f")
    top = pin_commands("top", params, "LFE5U-85F", "top").split("; ")
    alone = pin_commands("conv", params, "LFE5U-85F", "top").split("; ")
    selects = [c for c in top if c.startswith("select")]
    assert len(selects) == len(CONV_UNIT_MULTIPLIERS) == 4
    assert all(c.startswith("select -assert-count 1 top.coproc.core.conv.") for c in selects)
    assert [c for c in top if c.startswith("setattr")] == [
        c.replace("top.block.", "top.coproc.core.conv.") for c in alone if c.startswith("setattr")
    ]
    assert pin_commands("top", preset("icebreaker"), "iCE40UP5K", "top") == ""


def test_board_plans_carry_the_sites() -> None:
    ulx3s = plan("conv", preset("ulx3s-85f")).files["top.il"]
    assert len(re.findall(r'attribute \\BEL "X\d+/Y\d+/MULT18_\d"', ulx3s)) == 128
    assert "BEL" not in plan("conv", preset("icebreaker")).files["top.il"]


def test_the_warp_engines_multipliers_are_pinned_side_by_side() -> None:
    """Eight multipliers, each name held to one cell, on eight distinct sites of the
    middle DSP row; nothing on a device without a floorplan."""
    from boards.floorplan import WARP_MULTIPLIERS, pin_commands

    commands = pin_commands("warp", preset("ulx3s-85f"), "LFE5U-85F", "top").split("; ")
    selects = [c for c in commands if c.startswith("select -assert-count 1 ")]
    sites = [c.split('"')[1] for c in commands if c.startswith("setattr")]
    assert len(selects) == len(sites) == len(WARP_MULTIPLIERS) == 8
    assert len(set(sites)) == 8 and all(_SITE.match(site) and "/Y34/" in site for site in sites)
    assert pin_commands("warp", preset("icebreaker"), "iCE40UP5K", "top") == ""
