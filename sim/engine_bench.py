"""Running an engine's cocotb bench on its Verilog: the folder of inputs, the run, the results.

The conv and warp benches (`sim/conv_tb.py`, `sim/warp_tb.py`) read their
stimulus from one folder per run (`<name>.hex`, one hex word per line, and text
files) and write what they saw into it (`out.txt`, `tokens.txt`, `cycles.txt`,
`stalls.txt`). This is that convention, once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from defs.params import GraceParams
from sim.runner import SimResult, run_cocotb

#: What a bench writes; removed before a run so a failed run leaves none stale.
BENCH_OUTPUTS = ("out.txt", "tokens.txt", "cycles.txt", "stalls.txt")


def run_engine_bench(
    block: str,
    params: GraceParams,
    *,
    simulator: str,
    build_dir: Path,
    seed: int,
    words: Mapping[str, list[int]],
    texts: Mapping[str, str],
    env: Mapping[str, str],
    waves: bool = False,
) -> tuple[Path, SimResult]:
    """Write the run's folder, run `sim.<block>_tb` on the block's Verilog; (folder, result).

    The bench finds its folder in `GRACE_<BLOCK>_DIR`.
    """
    from rtl.blocks import to_verilog, toplevel_name

    work = Path(build_dir).resolve() / simulator / f"run-{seed}-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    for name, hex_words in words.items():
        (work / f"{name}.hex").write_text("".join(f"{w:x}\n" for w in hex_words))
    for name, text in texts.items():
        (work / name).write_text(text)
    for stale in BENCH_OUTPUTS:
        (work / stale).unlink(missing_ok=True)
    result = run_cocotb(
        verilog=to_verilog(block, params),
        toplevel=toplevel_name(block),
        test_module=f"sim.{block}_tb",
        simulator=simulator,
        build_dir=build_dir,
        run_dir=work,
        env={f"GRACE_{block.upper()}_DIR": str(work), **env},
        waves=waves,
        seed=seed,
    )
    return work, result


def read_numbers(work: Path, name: str, base: int = 10) -> list[int]:
    """The whitespace-separated integers a bench wrote (none if it wrote no file)."""
    path = work / name
    return [int(v, base) for v in path.read_text().split()] if path.exists() else []
