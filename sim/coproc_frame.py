"""A whole decoded frame on the co-processor's RTL, against L3 on the same image.

The host writes the key frame and a frame's keypoints into the compiled image,
then the RTL runs the source program and the frame program on it, as a
decoder does for the first inter frame of a GOP; L3 runs the same two
programs on a copy. The whole image must come back equal — every
intermediate map, not only the pixels — and L3 equals L2 (tests/
test_compiler_frame.py), so the RTL does too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from compiler.decoder import CompiledDecoder
from sim.coproc_host import HostImage, host_image
from sim.coproc_sim import CoprocRun, simulate
from sim.l3.machine import run


@dataclass
class FrameCase:
    compiled: CompiledDecoder
    image: HostImage  # what the host writes: the image with its inputs, both programs
    expected: bytearray  # the image after L3 ran both programs

    def frame(self, memory: bytearray) -> npt.NDArray[np.uint8]:
        return self.compiled.read_frame(memory)


def frame_case(
    compiled: CompiledDecoder,
    key_frame: npt.ArrayLike,
    kp_driving_q: npt.ArrayLike,
    kp_source_q: npt.ArrayLike,
    jac_driving_q: npt.ArrayLike | None = None,
    jac_source_q: npt.ArrayLike | None = None,
) -> FrameCase:
    memory = bytearray(compiled.memory)
    compiled.write_key_frame(memory, key_frame)
    compiled.write_keypoints(memory, kp_driving_q, kp_source_q, jac_driving_q, jac_source_q)
    image = host_image(memory, compiled.source_words, compiled.frame_words)
    expected = bytearray(memory)
    run(compiled.source_words, expected, compiled.params)
    run(compiled.frame_words, expected, compiled.params)
    return FrameCase(compiled, image, expected)


def mismatches(case: FrameCase, memory: bytearray) -> int:
    """Bytes of the image the RTL left different from L3's."""
    got = np.frombuffer(bytes(memory), np.uint8)
    want = np.frombuffer(bytes(case.expected), np.uint8)
    return int(np.count_nonzero(got != want))


def simulate_frame(case: FrameCase, *, simulator: str, build_dir: Path, **options) -> CoprocRun:
    return simulate(
        case.compiled.params, case.image, simulator=simulator, build_dir=build_dir, **options
    )
