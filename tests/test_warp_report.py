"""A frame's warps priced on the warp engine: the mapping rule and the cycle model's sum."""

from __future__ import annotations

import pytest

from defs.params import WarpParams, preset
from grace.warp_report import WarpMappingError, price_warps, summarise_warps, warp_costs
from rtl.warp_cycles import run_cycles

#: 1 lane, 1,024 words per bank: half the banks hold 512 // 8² = 8 planes of 16².
TINY = preset("tiny")


def test_tiny_frame_is_the_sum_of_its_tiles() -> None:
    """tiny's warps, tiled by hand: the 3-channel 16² source resident for each of
    its 11 motions (11 tiles of 3 planes), the 64 feature channels in 8 tiles of
    8 planes; each op's tiles back to back plus its first tile's load
    (planes × 16² words, one per cycle)."""
    pixels = 16 * 16
    dense = run_cycles(TINY, [(pixels, 3)] * 11) + 3 * pixels
    features = run_cycles(TINY, [(pixels, 8)] * 8) + 8 * pixels
    costs = warp_costs(TINY)
    assert [(c.tiles, c.tile_planes, c.cycles) for c in costs] == [
        (11, 3, dense),
        (8, 8, features),
    ]
    assert [c.samples for c in costs] == [11 * 3 * pixels, 64 * pixels]
    summary = summarise_warps(TINY, costs, conv_frame_cycles=1_000_000)
    assert summary.frame_cycles == dense + features
    assert summary.samples == 24_832
    assert summary.samples_per_cycle == pytest.approx(24_832 / (dense + features))
    assert summary.conv_share == pytest.approx((dense + features) / 1_000_000)


def test_a_source_too_large_for_one_tile_reloads_for_every_motion() -> None:
    """On 256-word banks a tile holds 2 planes of 16²: the 3-channel source takes
    2 tiles for each of the 11 motions (2 + 1 planes), the features 32."""
    shallow = TINY.replace(warp=WarpParams(depth=256))
    dense, features = warp_costs(shallow)
    assert dense.tiles == 22 and features.tiles == 32
    assert dense.cycles == run_cycles(shallow, [(256, 2), (256, 1)] * 11) + 2 * 256


def test_a_plane_that_does_not_fit_half_the_banks_is_refused() -> None:
    """A 16² plane takes 64 words per bank; 126-word banks leave 63 for a tile."""
    narrow = TINY.replace(warp=WarpParams(depth=126))
    message = r"a 16×16 plane takes 64 words per bank, but half of the 126-word banks"
    with pytest.raises(WarpMappingError, match=message):
        warp_costs(narrow)
    report = price_warps(narrow, conv_frame_cycles=1)
    assert report.summary is None and "126-word" in report.refused
    assert len(warp_costs(TINY.replace(warp=WarpParams(depth=128)))) == 2  # 64 words fit
