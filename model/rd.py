"""Rate–quality points, their fronts, and where one codec's curve crosses another's.

A codec's curve is its Pareto front: the measured (kbps, quality) points sorted
by rate, keeping each point only if it is better than every cheaper one (for a
codec with two knobs, GRACE's GOP length and key-frame quality, that is the
best setting at each rate). Between points the curve is linear in quality
against log(kbps), and it is not extended past its first or last point.

Two curves are compared where both exist; the difference of two such
piecewise-linear curves is piecewise linear between the union of their
breakpoints, so its sign changes are found exactly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool


METRICS: dict[str, Metric] = {
    "psnr": Metric("psnr", "PSNR", "dB", True),
    "ssim": Metric("ssim", "SSIM", "", True),
    "ms_ssim": Metric("ms_ssim", "MS-SSIM", "", True),
    "gmsd": Metric("gmsd", "GMSD", "lower is better", False),
}


def measure(reference: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    """Every metric of METRICS, mean over the frames of (T, H, W, 3) uint8 clips."""
    from model.metrics import quality

    return asdict(quality(reference, decoded))


def front(
    points: Sequence[tuple[float, float]], higher_is_better: bool
) -> list[tuple[float, float]]:
    """The Pareto front of (kbps, quality) points, ascending in rate and strictly in quality."""
    sign = 1 if higher_is_better else -1
    out: list[tuple[float, float]] = []
    for kbps, value in sorted(points, key=lambda p: (p[0], -sign * p[1])):
        if not math.isfinite(value) or kbps <= 0:
            continue
        if not out or sign * value > sign * out[-1][1]:
            if out and out[-1][0] == kbps:
                out.pop()
            out.append((kbps, value))
    return out


def interpolate(curve: Sequence[tuple[float, float]], kbps: float) -> float | None:
    """The curve's quality at `kbps` (linear in log rate), None outside its span."""
    if not curve or not curve[0][0] <= kbps <= curve[-1][0]:
        return None
    rates = np.log([r for r, _ in curve])
    return float(np.interp(math.log(kbps), rates, [v for _, v in curve]))


@dataclass(frozen=True)
class Crossover:
    """How curve A (GRACE) compares with curve B on one metric, where both exist."""

    common: tuple[float, float] | None  # the kbps span both curves cover (within the limits)
    wins: tuple[tuple[float, float], ...]  # kbps intervals where A is better
    below_kbps: float | None  # A wins from the common span's low end up to here
    b_floor: float | None  # B's lowest measured rate, when A's curve starts below it
    a_floor: float | None  # A's lowest measured rate

    def sentence(self, a: str, b: str) -> str:
        if self.common is None:
            return f"{a} and {b} share no bitrate range"
        lo, hi = self.common
        span = f"{lo:.1f}-{hi:.1f} kbps"
        if self.below_kbps is not None and math.isclose(self.below_kbps, hi):
            text = f"{a} beats {b} over the whole common range {span}"
        elif self.below_kbps is not None:
            text = f"{a} beats {b} below {self.below_kbps:.1f} kbps (common range {span})"
        elif self.wins:
            spans = ", ".join(f"{x:.1f}-{y:.1f}" for x, y in self.wins)
            text = f"{a} beats {b} only at {spans} kbps, not at the low end of {span}"
        else:
            text = f"{a} never beats {b} in the common range {span}"
        if self.b_floor is not None and self.a_floor is not None:
            text += (
                f"; {b} goes no lower than {self.b_floor:.1f} kbps, {a} down to {self.a_floor:.1f}"
            )
        return text


def crossover(
    a: Sequence[tuple[float, float]],
    b: Sequence[tuple[float, float]],
    higher_is_better: bool,
    limits: tuple[float, float] = (0.0, math.inf),
) -> Crossover:
    """Compare fronts `a` and `b` (from `front`) inside `limits` (kbps)."""
    sign = 1.0 if higher_is_better else -1.0
    a_floor = a[0][0] if a else None
    b_floor = b[0][0] if b and a and a[0][0] < b[0][0] else None
    if not a or not b:
        return Crossover(None, (), None, b_floor, a_floor)
    lo = max(a[0][0], b[0][0], limits[0])
    hi = min(a[-1][0], b[-1][0], limits[1])
    if not lo < hi:
        return Crossover(None, (), None, b_floor, a_floor)
    knots = sorted({lo, hi, *(r for r, _ in [*a, *b] if lo < r < hi)})

    def diff(rate: float) -> float:
        return sign * (interpolate(a, rate) - interpolate(b, rate))  # type: ignore[operator]

    wins: list[list[float]] = []
    for left, right in itertools.pairwise(knots):
        d0, d1 = diff(left), diff(right)
        if d0 > 0 and d1 > 0:
            segment = (left, right)
        elif d0 > 0 or d1 > 0:  # one sign change inside: linear in log rate
            x0, x1 = math.log(left), math.log(right)
            cross = math.exp(x0 + (x1 - x0) * d0 / (d0 - d1))
            segment = (left, cross) if d0 > 0 else (cross, right)
        else:
            continue
        if wins and math.isclose(wins[-1][1], segment[0]):
            wins[-1][1] = segment[1]
        else:
            wins.append([*segment])
    below = wins[0][1] if wins and math.isclose(wins[0][0], lo) else None
    return Crossover((lo, hi), tuple((x, y) for x, y in wins), below, b_floor, a_floor)
