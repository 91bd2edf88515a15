"""The compiled decoder run on the co-processor's RTL: `grace decode --backend rtl`.

The same host protocol as L3's `IsaDecoder` (sim/l3/decoder.py): the memory
image persists across runs — the source program leaves the source features
and the small key frame in it, each frame program of the GOP reads them —
and the host writes the key frame or a frame's keypoints, runs the program,
reads the pixels. Each run is one simulation of `SimTop`'s Verilator model
driven from C++ (sim/coproc_cpp.py), starting from the image the last one
left; a fault ends the decoding with one line naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from compiler.decoder import CompiledDecoder
from sim.coproc_cpp import simulate_cpp
from sim.coproc_host import host_image
from sim.coproc_sim import CoprocRun


class RtlFault(RuntimeError):
    """The co-processor ended a program with a fault."""


class RtlDecoder:
    def __init__(
        self,
        compiled: CompiledDecoder,
        *,
        build_dir: Path,
        latency: int = 20,
        stall_threshold: int = 60,
        seed: int = 1,
    ) -> None:
        self.compiled = compiled
        self.memory = bytearray(compiled.memory)
        self.options = {
            "build_root": build_dir, "latency": latency, "stall_threshold": stall_threshold,
            "seed": seed,
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

    def encode_source(self, frame: npt.ArrayLike) -> None:
        self.compiled.write_key_frame(self.memory, frame)
        self._run(self.compiled.source_words, "source")

    def decode(
        self,
        kp_driving_q: npt.ArrayLike,
        kp_source_q: npt.ArrayLike,
        jac_driving_q: npt.ArrayLike | None = None,
        jac_source_q: npt.ArrayLike | None = None,
    ) -> npt.NDArray[np.uint8]:
        c = self.compiled
        c.write_keypoints(self.memory, kp_driving_q, kp_source_q, jac_driving_q, jac_source_q)
        self._run(c.frame_words, "frame")
        return c.read_frame(self.memory)
