"""The compiled decoder run on the co-processor's RTL: `grace decode --backend rtl`.

The same host protocol as L3's `IsaDecoder` (sim/l3/decoder.py): the memory
image persists across runs — the source program leaves the source features
and the small key frame in it, each frame program of the GOP reads them —
and the host writes the key frame or a frame's keypoints, runs the program,
reads the pixels. Each run is one simulation of the co-processor's Verilator
model driven from C++ (sim/coproc_cpp.py), starting from the image the last one
left; a fault ends the decoding with one line naming it.
"""

from __future__ import annotations

from pathlib import Path

from compiler.decoder import CompiledDecoder
from sim.coproc_cpp import simulate_cpp
from sim.coproc_host import host_image
from sim.coproc_sim import CoprocRun
from sim.l3.decoder import IsaDecoder


class RtlFault(RuntimeError):
    """The co-processor ended a program with a fault."""


class RtlDecoder(IsaDecoder):
    """`IsaDecoder`'s host protocol, each program run on the RTL instead of L3."""

    def __init__(
        self,
        compiled: CompiledDecoder,
        *,
        build_dir: Path,
        latency: int = 20,
        stall_threshold: int = 60,
        seed: int = 1,
        long_run: bool = False,
    ) -> None:
        super().__init__(compiled)
        self.options = {
            "build_root": build_dir, "latency": latency, "stall_threshold": stall_threshold,
            "seed": seed, "long_run": long_run,
        }  # fmt: skip
        self.runs: list[CoprocRun] = []

    def _run(self, words: list[int], name: str) -> None:
        image = host_image(self.memory, words)
        run, _ = simulate_cpp(self.compiled.params, image, **self.options)
        result = run.programs[-1]
        if result.fault:
            raise RtlFault(
                f"the {name} program ended with fault {result.fault.name} at instruction "
                f"{result.fault_index} (docs/coprocessor.md)"
            )
        self.memory = run.memory
        self.runs.append(run)
