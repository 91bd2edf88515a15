"""The softmax unit (rtl/act/softmax.py) against L2's `softmax_channels_fixed`.

Tier 1 is Amaranth's simulator, tier 2 cocotb on the Verilog (Icarus and
Verilator); every comparison is `assert_array_equal` on the masks in the
unit's order, under back-pressure on `o` and `done` and gaps on `i` unless a
test measures cycles, with the stream-rule checker on both outputs
(`sim.unit_sim`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from defs.params import ActParams, preset
from model.fixed import round_shift
from model.fixed_ops import exp_lut, softmax_channels_fixed
from rtl.act.softmax import DIVIDE_STEPS, EXP_FRAC_BITS, TOKEN_SLOTS
from rtl.softmax_cycles import pixel_cycles, run_cycles, tile_cycles
from sim.softmax import (
    LOGIT_KINDS,
    SCALES,
    SoftmaxCase,
    expected,
    place,
    program,
    random_logits,
    reference,
    run_amaranth,
    run_cocotb,
    sweep_cases,
)

ULX3S = preset("ulx3s-85f")
#: A unit of at most 3 channels: C = 3 is its largest, and its buffers the smallest.
NARROW = ULX3S.replace(name="softmax-3", act=ActParams(param_depth=1024, softmax_channels=3))


def _check(outputs: list[int], cases: list[SoftmaxCase], where: str) -> None:
    np.testing.assert_array_equal(np.array(outputs), np.array(expected(cases)), err_msg=where)


def _shapes(cases: list[SoftmaxCase]) -> list[tuple[int, int]]:
    return [(c.logits[0].size, c.logits.shape[0]) for c in cases]


# -- the reference cases the issue names ----------------------------------------------


def _corner_cases() -> list[SoftmaxCase]:
    """All-equal logits for C = 1, 2, 3, 11 (255; 128/128; 85 × 3; 23 × 11);
    one-hot and two-hot; every logit at −128 or 127 at the smallest and the
    largest scale; 32 equal channels at both. The divider's corners: C = 1 and
    the one-hot pixels at the largest scale give S = 2^15 (r = 2^15), 32 equal
    channels give S = 2^20 (r its smallest, 2^10)."""
    rng = np.random.default_rng(5)
    cases = []
    for c in (1, 2, 3, 11):
        cases.append(SoftmaxCase(np.full((c, 2, 3), int(rng.integers(-128, 128))), 0.05, "equal"))
    for kind in ("one-hot", "two-hot"):
        cases.append(SoftmaxCase(random_logits(rng, kind, (11, 3, 3)), 0.125, kind))
    for scale in (SCALES[0], SCALES[-1]):
        cases.append(SoftmaxCase(random_logits(rng, "saturated", (11, 3, 4)), scale, "saturated"))
        cases.append(SoftmaxCase(np.full((32, 1, 2), 127), scale, "equal"))
    return cases


def test_corner_cases_are_the_values_l2_gives() -> None:
    """The corners as L2 computes them, so the cases below test what they claim."""
    cases = _corner_cases()
    firsts = [int(reference(case)[0]) for case in cases[:4]]
    assert firsts == [255, 128, 85, 23]
    one_hot = softmax_channels_fixed(cases[4].logits, 0.125)
    assert sorted(set(one_hot.ravel().tolist())) == [0, 255]
    flat = reference(cases[-3])  # 32 equal channels at the smallest scale: S = 32·2^15
    assert set(flat.tolist()) == {8}
    sums = [_sums(case) for case in cases]
    assert min(s.min() for s in sums) == 1 << 15 and max(s.max() for s in sums) == 1 << 20


def _sums(case: SoftmaxCase) -> np.ndarray:
    """The divider's S per pixel of a case."""
    e = exp_lut(case.in_scale, EXP_FRAC_BITS)
    x = case.logits.reshape(case.logits.shape[0], -1)
    return e[x.max(axis=0) - x].sum(axis=0)


def test_corner_cases_match_l2_under_back_pressure() -> None:
    cases = _corner_cases()
    run = run_amaranth(cases, ULX3S, ready_prob=0.5, in_prob=0.6, done_ready_prob=0.5, seed=3)
    _check(run.outputs, cases, "corners")
    assert run.stalls["o"] > 0 and run.stalls["done"] > 0


@pytest.mark.parametrize("params", [ULX3S, NARROW], ids=lambda p: p.name)
def test_sweep_matches_l2_under_back_pressure(params) -> None:
    """Every logit kind and every scale, C from 1 to the unit's largest, tables
    reloaded when the scale changes (after the tiles that read the old one)."""
    cases = sweep_cases(params, 2 * len(LOGIT_KINDS), seed=7)
    assert {c.kind for c in cases} == set(LOGIT_KINDS)
    assert {c.in_scale for c in cases} == set(SCALES)
    assert max(c.logits.shape[0] for c in cases) == params.act.softmax_channels
    run = run_amaranth(cases, params, ready_prob=0.6, in_prob=0.7, done_ready_prob=0.5, seed=8)
    _check(run.outputs, cases, params.name)


def _reciprocal_edge_pixels(scale: float, channels: int, count: int) -> np.ndarray:
    """Pixels whose masks change when the reciprocal drops S's low 16 bits from its
    numerator (r off by one, and e·r across a rounding step): a divider that loses
    those bits fails them, where random logits rarely show it (1 output in ~128)."""
    rng = np.random.default_rng(17)
    table = exp_lut(scale, EXP_FRAC_BITS)
    pixels = []
    while len(pixels) < count:
        x = rng.integers(-128, 128, size=channels)
        e = table[x.max() - x]
        s = int(e.sum())
        r, r_low_lost = (((1 << 31) + v) // (2 * s) for v in (s, s >> 16 << 16))
        out = [np.minimum(round_shift(e * v, 22), 255) for v in (r, r_low_lost)]
        if (out[0] != out[1]).any():
            pixels.append(x)
    return np.stack(pixels, axis=1)[:, None, :]  # (C, 1, count)


def test_the_reciprocal_keeps_every_numerator_bit() -> None:
    cases = [
        SoftmaxCase(_reciprocal_edge_pixels(s, c, 6), s) for s, c in ((0.0116, 3), (0.005, 10))
    ]
    run = run_amaranth(cases, ULX3S, ready_prob=0.7, seed=17)
    _check(run.outputs, cases, "reciprocal edge")


def test_more_tiles_than_token_slots_wait_for_their_credits() -> None:
    """One-pixel tiles, many more than the unit holds tokens for, with done slow."""
    rng = np.random.default_rng(9)
    cases = [
        SoftmaxCase(random_logits(rng, "random", (3, 1, 1)), 0.05) for _ in range(4 * TOKEN_SLOTS)
    ]
    run = run_amaranth(cases, ULX3S, done_ready_prob=0.1, seed=9)
    _check(run.outputs, cases, "token credits")
    assert run.stalls["cmd"] > 0


def test_cycle_model_is_exact_without_back_pressure() -> None:
    """Tiles back to back on one table: C = 1 and the largest, one pixel and many."""
    rng = np.random.default_rng(11)
    shapes = [(1, 1, 1), (32, 1, 1), (11, 4, 5), (1, 3, 7), (5, 2, 2)]
    cases = [SoftmaxCase(random_logits(rng, "random", s), 0.05) for s in shapes]
    run = run_amaranth(cases, ULX3S)
    _check(run.outputs, cases, "cycles")
    assert run.cycles == run_cycles(ULX3S, _shapes(cases))
    assert pixel_cycles(11) == 33 + DIVIDE_STEPS == 72
    assert tile_cycles(ULX3S, 1, 1) < tile_cycles(ULX3S, 1, 2) < tile_cycles(ULX3S, 2, 1)
    with pytest.raises(ValueError, match=r"1\.\.32 channels"):
        tile_cycles(ULX3S, 1, 33)


def test_ice40_form_matches_l2_and_the_cycle_model() -> None:
    rng = np.random.default_rng(12)
    cases = [SoftmaxCase(random_logits(rng, k, (11, 2, 3)), 0.125, k) for k in LOGIT_KINDS]
    run = run_amaranth(cases, ULX3S, dsp_target="ice40")
    _check(run.outputs, cases, "ice40")
    assert run.cycles == run_cycles(ULX3S, _shapes(cases))


@pytest.mark.parametrize(
    ("logits", "message"),
    [
        (np.zeros((33, 1, 1), int), "33 channels, the unit takes at most 32"),
        (np.zeros((0, 1, 1), int), "non-empty"),
        (np.zeros((3, 4), int), "non-empty"),
        (np.full((2, 1, 1), 128), r"logits \(int8\) out of range -128..127"),
        (np.full((2, 1, 1), 0.5), r"logits \(int8\) must be integers"),
        (np.zeros((1, 4096, 4096), np.int8), "pixels exceed"),
    ],
)
def test_program_refuses_what_does_not_fit(logits, message) -> None:
    with pytest.raises(ValueError, match=message):
        program(SoftmaxCase(logits, 0.05), ULX3S)


def test_a_tag_too_wide_is_refused() -> None:
    with pytest.raises(ValueError, match="tag 256 does not fit"):
        program(SoftmaxCase(np.zeros((2, 1, 1), int), 0.05), ULX3S, tag=256)


def test_tables_load_only_when_the_scale_changes() -> None:
    cases = [SoftmaxCase(np.zeros((2, 1, 1), int), s) for s in (0.05, 0.05, 0.5, 0.05)]
    tiles = place(cases, ULX3S)
    assert [len(t.writes["exp_write"]) for t in tiles] == [256, 0, 256, 256]
    assert [t.wait for t in tiles] == [0, 0, 2, 3]


# -- tier 2: cocotb on the Verilog ------------------------------------------------------


def _cocotb(cases, params, simulator: str, build_root: Path, **options):
    build_dir = build_root / "sim" / "softmax" / params.key()
    run, result = run_cocotb(cases, params, simulator=simulator, build_dir=build_dir, **options)
    result.check()
    _check(run.outputs, cases, simulator)
    return run


@pytest.mark.parametrize("simulator", ["icarus", "verilator"])
def test_verilog_matches_l2(simulator: str, build_root: Path) -> None:
    """A sweep and the corners under back-pressure, then tiles on one table
    without: the cycle model's cycles. Verilator also runs the fomm-256 mask
    head's softmax: 11 channels on the 64² motion grid."""
    cases = sweep_cases(ULX3S, 14, seed=21) + _corner_cases()
    run = _cocotb(
        cases, ULX3S, simulator, build_root, ready_prob=0.6, in_prob=0.7,
        done_ready_prob=0.5, seed=1,
    )  # fmt: skip
    assert run.stalls["o"] > 0 and run.stalls["done"] > 0
    rng = np.random.default_rng(22)
    shapes = [(11, 4, 4), (1, 1, 1), (32, 1, 3)]
    if simulator == "verilator":
        shapes.append((11, 64, 64))
    cases = [SoftmaxCase(random_logits(rng, "random", s), 0.05) for s in shapes]
    run = _cocotb(cases, ULX3S, simulator, build_root, seed=2)
    assert run.cycles == run_cycles(ULX3S, _shapes(cases))
