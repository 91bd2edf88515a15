"""Stimulus for the requantize unit, and its simulation against `model.fixed.requantize`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from model.fixed import int_range, requantize
from rtl.blocks import to_verilog, toplevel_name
from rtl.requant import requant_input_layout
from sim.stream_function import StreamRun, pack, run_stream_function

if TYPE_CHECKING:
    from defs.params import GraceParams, NumericParams

Vectors = dict[str, npt.NDArray[np.int64]]


def extreme_vectors(numeric: NumericParams) -> Vectors:
    """All combinations of each field's corners: ±2^31, shift 0 and max, largest multiplier."""
    acc_lo, acc_hi = int_range(numeric.acc_bits)
    bias_lo, bias_hi = int_range(numeric.bias_bits)
    corners = {
        "acc": [acc_lo, acc_lo + 1, -1, 0, 1, acc_hi],
        "bias": [bias_lo, 0, bias_hi],
        "multiplier": [0, 1, numeric.mult_max],
        "shift": [0, 1, numeric.max_shift - 1, numeric.max_shift],
        "relu": [0, 1],
    }
    grids = np.meshgrid(*corners.values(), indexing="ij")
    return {name: g.ravel().astype(np.int64) for name, g in zip(corners, grids, strict=True)}


def random_vectors(numeric: NumericParams, count: int, seed: int) -> Vectors:
    """Uniform fields, realistic magnitudes, shifts that land near the output range, exact ties."""
    rng = np.random.default_rng(seed)
    acc_lo, acc_hi = int_range(numeric.acc_bits)
    bias_lo, bias_hi = int_range(numeric.bias_bits)
    acc = rng.integers(acc_lo, acc_hi, count, endpoint=True)
    small = rng.random(count) < 0.5  # realistic layers: |acc| ≪ 2^31
    acc[small] = rng.integers(acc_lo >> 11, acc_hi >> 11, small.sum(), endpoint=True)
    bias = rng.integers(bias_lo, bias_hi, count, endpoint=True)
    bias[small] = rng.integers(bias_lo >> 15, bias_hi >> 15, small.sum(), endpoint=True)
    multiplier = rng.integers(0, numeric.mult_max, count, endpoint=True)
    shift = rng.integers(0, numeric.max_shift, count, endpoint=True)
    # For most elements pick the shift that lands the result near the int8 range,
    # as a calibrated layer does, so rounding (not just saturation) is exercised.
    useful = rng.random(count) < 0.7
    magnitude = np.abs((acc + bias) * multiplier)
    bits = np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int64) + 1
    headroom = rng.integers(-1, numeric.act_bits + 1, count, endpoint=True)
    shift[useful] = np.clip(bits - headroom, 0, numeric.max_shift)[useful]
    # Exact ties (product = k·2^s + 2^(s-1)) are where rounding rules differ, and
    # random products almost never hit them: plant some with multiplier 1.
    tie = rng.random(count) < 0.1
    top_shift = max(1, min(numeric.max_shift, numeric.acc_bits - numeric.act_bits - 2))
    tie_shift = rng.integers(1, top_shift, count, endpoint=True)
    k = rng.integers(-(1 << numeric.act_bits), 1 << numeric.act_bits, count)  # lands in range
    acc[tie] = ((k << tie_shift) + (np.int64(1) << (tie_shift - 1)))[tie]
    bias[tie] = 0
    multiplier[tie] = 1
    shift[tie] = tie_shift[tie]
    relu = rng.integers(0, 1, count, endpoint=True)
    return {"acc": acc, "bias": bias, "multiplier": multiplier, "shift": shift, "relu": relu}


def concat(*vector_sets: Vectors) -> Vectors:
    return {k: np.concatenate([v[k] for v in vector_sets]) for k in vector_sets[0]}


def expected(vectors: Vectors, numeric: NumericParams) -> npt.NDArray[np.int64]:
    return requantize(**vectors, numeric=numeric)


@dataclass(frozen=True)
class RequantSim:
    run: StreamRun
    expected: npt.NDArray[np.int64]

    @property
    def mismatches(self) -> int:
        if len(self.run.outputs) != len(self.expected):
            return len(self.expected)
        return int(np.count_nonzero(self.run.outputs != self.expected))


def simulate_requant(
    params: GraceParams,
    vectors: Vectors,
    *,
    simulator: str,
    build_root: Path,
    valid_prob: float = 1.0,
    ready_prob: float = 1.0,
    seed: int = 0,
    waves: bool = False,
) -> RequantSim:
    """Run the elaborated requant block in cocotb on `vectors`; outputs vs the reference."""
    want = expected(vectors, params.numeric)
    run = run_stream_function(
        verilog=to_verilog("requant", params),
        toplevel=toplevel_name("requant"),
        words=pack(requant_input_layout(params.numeric), vectors),
        expected=want,
        simulator=simulator,
        build_dir=Path(build_root) / "sim" / "requant" / params.key(),
        valid_prob=valid_prob,
        ready_prob=ready_prob,
        seed=seed,
        waves=waves,
    )
    return RequantSim(run, want)
