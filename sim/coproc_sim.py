"""Run programs on the co-processor's Verilog under cocotb (Icarus or Verilator).

`simulate` writes the run's folder (the memory as hex words, the settings),
builds `SimTop`'s Verilog once per parameter set and memory size, and runs
`sim.coproc_tb`; it returns each program's fault, cycles and counters and
the image as the run left it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from defs.coproc import Fault
from defs.params import GraceParams
from sim.coproc_host import HostImage
from sim.runner import SimResult, run_cocotb
from sim.verilog_cache import cached_convert

TOPLEVEL = "grace_coproc"
#: The model's per-cycle C++ at -O1, not Verilator's -Os: for the tiny frame (2.3 M
#: cycles, one core) the compile takes 57 s of CPU instead of 108, the run 64 s
#: instead of 50; the whole-frame test 172 s of CPU instead of 225.
OPT_FAST = "-O1"


@dataclass
class ProgramRun:
    fault: Fault
    fault_index: int
    cycles: int
    counters: dict[str, int]


@dataclass
class CoprocRun:
    programs: list[ProgramRun]
    memory: bytearray  # the image after the run
    result: SimResult


def memory_words_for(image: HostImage, bus_bytes: int) -> int:
    """The simulated memory's depth: the image and programs, rounded up to 4,096 words
    so that images of similar size share one build."""
    words = -(-len(image.blob) // bus_bytes) + 1
    return -(-words // 4096) * 4096


def simulate(
    params: GraceParams,
    image: HostImage,
    *,
    simulator: str,
    build_dir: Path,
    latency: int = 1,
    stall_threshold: int = 0,
    seed: int = 1,
    watchdog: int = 1 << 16,
    error_from: int | None = None,
    reset_after: int = 0,
    reset_program: int = 0,
    max_cycles: int = 50_000_000,
) -> CoprocRun:

    from rtl.coproc.sim_top import SimTop

    bus = params.coproc.bus_bytes
    depth = memory_words_for(image, bus)
    build = Path(build_dir) / f"{params.key()}-{depth}"
    work = build / simulator / f"run-{seed}-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    words = image.words(bus)
    (work / "memory.hex").write_text("".join(f"{w:x}\n" for w in words))
    settings = {
        "bus_bytes": bus,
        "image_bytes": image.image_bytes,
        "memory_words": len(words),
        "programs": list(image.programs),
        "latency": latency,
        "stall_threshold": stall_threshold,
        "seed": seed,
        "watchdog": watchdog,
        "error_from": depth if error_from is None else error_from,
        "reset_after": reset_after,
        "reset_program": reset_program,
        "max_cycles": max_cycles,
    }
    (work / "run.json").write_text(json.dumps(settings))
    for stale in ("result.json", "image.bin"):
        (work / stale).unlink(missing_ok=True)
    text = cached_convert(SimTop, TOPLEVEL, params, depth)
    result = run_cocotb(
        verilog=text,
        toplevel=TOPLEVEL,
        test_module="sim.coproc_tb",
        simulator=simulator,
        build_dir=build,
        run_dir=work,
        env={"GRACE_COPROC_DIR": str(work)},
        seed=seed,
        opt_fast=OPT_FAST,
    )
    result.check()
    runs = [
        ProgramRun(Fault(r["fault"]), r["fault_index"], r["cycles"], r["counters"])
        for r in json.loads((work / "result.json").read_text())
    ]
    memory = (work / "image.bin").read_bytes()
    programs = memory[image.image_bytes : len(image.blob)]
    if programs != image.blob[image.image_bytes :]:
        at = next(
            i
            for i, (a, b) in enumerate(zip(programs, image.blob[image.image_bytes :], strict=True))
            if a != b
        )
        raise AssertionError(
            f"the run changed the memory past IMAGE_BYTES (byte {image.image_bytes + at}): "
            "a write outside every transfer"
        )
    return CoprocRun(runs, bytearray(memory[: image.image_bytes]), result)
