"""Host side of `sim.stream_tb`: pack payloads, run a simulator, read the outputs back."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from compiler.payload import pack
from sim.runner import SimResult, run_cocotb

__all__ = ["pack"]


@dataclass(frozen=True)
class StreamRun:
    outputs: npt.NDArray[np.int64]
    cycles: int
    result: SimResult


def run_stream_function(
    *,
    verilog: str,
    toplevel: str,
    words: list[int],
    expected: npt.ArrayLike | None,
    simulator: str,
    build_dir: Path,
    valid_prob: float = 1.0,
    ready_prob: float = 1.0,
    seed: int = 0,
    waves: bool = False,
) -> StreamRun:
    """Drive `words` through the block's `i` stream and collect its `o` stream."""
    # One directory per run (seed and process): parallel test workers never share one.
    work = Path(build_dir).resolve() / simulator / f"run-{seed}-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    stim, expect, out, cycles = (work / n for n in ("stim.hex", "expect.txt", "out.txt", "cycles"))
    stim.write_text("".join(f"{w:x}\n" for w in words))
    env = {
        "GRACE_STIM": str(stim),
        "GRACE_OUT": str(out),
        "GRACE_CYCLES": str(cycles),
        "GRACE_VALID_PROB": repr(valid_prob),
        "GRACE_READY_PROB": repr(ready_prob),
        "GRACE_SEED": str(seed),
    }
    if expected is not None:
        expect.write_text("".join(f"{v}\n" for v in np.asarray(expected).ravel().tolist()))
        env["GRACE_EXPECT"] = str(expect)
    for stale in (out, cycles):
        stale.unlink(missing_ok=True)
    result = run_cocotb(
        verilog=verilog,
        toplevel=toplevel,
        test_module="sim.stream_tb",
        simulator=simulator,
        build_dir=build_dir,
        run_dir=work,
        env=env,
        waves=waves,
        seed=seed,
    )
    outputs = np.loadtxt(out, dtype=np.int64, ndmin=1) if out.exists() else np.zeros(0, np.int64)
    n_cycles = int(cycles.read_text()) if cycles.exists() else 0
    return StreamRun(outputs, n_cycles, result)
