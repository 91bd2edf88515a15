"""Host side of the softmax unit: logits in, the exp table loaded, the masks predicted.

`SoftmaxCase` is one channel softmax of (C, H, W) int8 logits at an input scale
(`model.fixed_ops.softmax_channels_fixed`, the mask head's). `program` turns it
into the unit's view — the exp table's writes, one tile command, the logits
pixel by pixel, channel innermost — and the L2 reference in the unit's output
order. `place` lays cases out back to back, loading a table only when it
changes, once the tiles before it are done. Both simulators run the result
(`sim.unit_sim`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from defs.limits import DIM_BITS, TAG_BITS
from defs.params import GraceParams
from model.fixed import checked_ints, int_range
from model.fixed_ops import LUT_IN_BITS, LUT_SIZE, exp_lut, softmax_channels_fixed
from rtl.act.softmax import EXP_FRAC_BITS, SoftmaxUnit, command_layout, exp_write_layout
from sim.runner import SimResult
from sim.stream_function import pack
from sim.unit_sim import UnitRun, UnitTile, simulate_amaranth, simulate_cocotb

IntArray = npt.NDArray[np.int64]

#: The unit's write streams, in the order the cocotb bench counts them.
WRITE_PORTS = ("exp_write",)
#: Logit kinds `random_case` draws: random int8 with the ends planted; all
#: channels equal; one-hot (127 against −128); two-hot; every logit at −128 or
#: 127 (saturated); and a pixel's channels leaning to one value.
LOGIT_KINDS = ("random", "equal", "one-hot", "two-hot", "saturated", "leaning")


@dataclass
class SoftmaxCase:
    logits: IntArray  # (C, H, W) int8
    in_scale: float  # value of one logit step (the mask head's output scale)
    kind: str = "random"

    def describe(self) -> str:
        c, h, w = self.logits.shape
        return f"{self.kind} {c}x{h}x{w} scale {self.in_scale:g}"


def reference(case: SoftmaxCase) -> IntArray:
    """L2's masks in the unit's order: pixel by pixel, channel innermost."""
    out = softmax_channels_fixed(case.logits, case.in_scale).astype(np.int64)
    return out.reshape(out.shape[0], -1).T.ravel()


def exp_table(in_scale: float) -> IntArray:
    """The exp table for `in_scale`. EXP[0] = 2^E is what bounds the divider; `exp_lut`
    guarantees it for every finite positive scale, so the check is an assertion
    that fires only on a scale like inf (a NaN entry)."""
    table = exp_lut(in_scale, EXP_FRAC_BITS)
    if table[0] != 1 << EXP_FRAC_BITS or table.min() < 0:
        raise ValueError(f"softmax: exp table for in_scale {in_scale} is not exp_lut's form")
    return table


def program(case: SoftmaxCase, params: GraceParams, *, tag: int = 0) -> tuple[int, list[int]]:
    """The tile command and its input words (one int8 logit each, two's complement)."""
    logits = np.asarray(case.logits)
    lo, hi = int_range(LUT_IN_BITS)
    if logits.ndim != 3 or 0 in logits.shape:
        raise ValueError(f"softmax: logits must be a non-empty (C, H, W) array, not {logits.shape}")
    c, h, w = logits.shape
    if c > params.act.softmax_channels:
        raise ValueError(
            f"softmax: {c} channels, the unit takes at most {params.act.softmax_channels} "
            "(ActParams.softmax_channels)"
        )
    if h * w >= 1 << (2 * DIM_BITS):
        raise ValueError(f"softmax: {h}×{w} pixels exceed a tile's {(1 << 2 * DIM_BITS) - 1}")
    logits = checked_ints(logits, "softmax: logits (int8)", lo, hi)
    if not 0 <= tag < 1 << TAG_BITS:
        raise ValueError(f"softmax: tag {tag} does not fit {TAG_BITS} bits")
    (command,) = pack(command_layout(params), {"pixels": h * w, "channels": c, "tag": tag})
    inputs = (logits.reshape(c, -1).T.ravel() & 0xFF).tolist()
    return command, inputs


def exp_writes(in_scale: float) -> list[int]:
    return pack(exp_write_layout(), {"index": np.arange(LUT_SIZE), "data": exp_table(in_scale)})


def place(cases: list[SoftmaxCase], params: GraceParams, *, first_tag: int = 0) -> list[UnitTile]:
    """Tiles back to back; a tile whose scale differs from the last loads its table
    once every earlier tile is done (the unit holds one)."""
    tiles, scale = [], None
    for k, case in enumerate(cases):
        tag = (first_tag + k) % (1 << TAG_BITS)
        command, inputs = program(case, params, tag=tag)
        load = case.in_scale != scale
        writes = {"exp_write": exp_writes(case.in_scale) if load else []}
        words = int(np.asarray(case.logits).size)
        tiles.append(UnitTile(command, writes, k if load else 0, inputs, words, tag))
        scale = case.in_scale
    return tiles


def expected(cases: list[SoftmaxCase]) -> list[int]:
    return np.concatenate([reference(c) for c in cases]).tolist()


def run_amaranth(
    cases: list[SoftmaxCase], params: GraceParams, *, dsp_target: str | None = None, **options
) -> UnitRun:
    unit = SoftmaxUnit(params, dsp_target=dsp_target)
    return simulate_amaranth(unit, place(cases, params), **options)


def run_cocotb(
    cases: list[SoftmaxCase], params: GraceParams, *, simulator: str, build_dir: Path, **options
) -> tuple[UnitRun, SimResult]:
    return simulate_cocotb(
        "softmax", params, place(cases, params), WRITE_PORTS, expected=expected(cases),
        simulator=simulator, build_dir=build_dir, **options,
    )  # fmt: skip


# -- cases ------------------------------------------------------------------------------


def random_logits(rng: np.random.Generator, kind: str, shape: tuple[int, int, int]) -> IntArray:
    c, h, w = shape
    lo, hi = int_range(LUT_IN_BITS)
    if kind == "random":
        x = rng.integers(lo, hi + 1, size=shape)
        x.flat[rng.integers(0, x.size, size=max(1, x.size // 8))] = rng.choice([lo, hi])
        return x
    if kind == "equal":
        return np.broadcast_to(rng.integers(lo, hi + 1, size=(1, h, w)), shape).copy()
    if kind in ("one-hot", "two-hot"):
        x = np.full(shape, lo)
        for hot in range(1 if kind == "one-hot" else 2):
            idx = rng.integers(0, c, size=(h, w))
            np.put_along_axis(x, idx[None], hi if hot == 0 else hi - 1, axis=0)
        return x
    if kind == "saturated":
        return rng.choice([lo, hi], size=shape)
    if kind == "leaning":
        centre = rng.integers(lo + 4, hi - 3, size=(1, h, w))
        return np.clip(centre + rng.integers(-3, 4, size=shape), lo, hi)
    raise ValueError(f"unknown logit kind {kind!r}; choose one of {', '.join(LOGIT_KINDS)}")


#: Input scales the sweeps draw: small (a flat exp table: every e near 2^15, so
#: S reaches C·2^15 and r its smallest), the decoder's range, and large (EXP[k]
#: = 0 for all k ≥ 1).
SCALES = (0.001, 0.01, 0.05, 0.125, 0.5, 2.0, 40.0)


def random_case(
    rng: np.random.Generator,
    params: GraceParams,
    *,
    kind: str,
    scale: float | None = None,
    max_pixels: int = 24,
) -> SoftmaxCase:
    channels = int(rng.integers(1, params.act.softmax_channels + 1))
    h = int(rng.integers(1, 5))
    w = int(rng.integers(1, max(2, max_pixels // h) + 1))
    scale = float(rng.choice(SCALES)) if scale is None else scale
    return SoftmaxCase(random_logits(rng, kind, (channels, h, w)), scale, kind)


def sweep_cases(params: GraceParams, count: int, *, seed: int) -> list[SoftmaxCase]:
    """`count` cases cycling through every logit kind and, independently, every scale,
    with C = 1, 11 and the unit's largest among them."""
    rng = np.random.default_rng(seed)
    cases = [
        random_case(
            rng, params, kind=LOGIT_KINDS[k % len(LOGIT_KINDS)], scale=SCALES[k % len(SCALES)]
        )
        for k in range(count)
    ]
    for k, channels in enumerate((1, 11, params.act.softmax_channels)):
        if channels <= params.act.softmax_channels and k < len(cases):
            case = cases[k]
            case.logits = random_logits(rng, case.kind, (channels, *case.logits.shape[1:]))
    return cases
