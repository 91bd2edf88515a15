"""L3 running the compiled decoder: the source program once per GOP, the frame program per frame.

The memory image persists across runs, as external memory does: the source
program leaves the source features and the small key frame in their warp
slots, and every frame program of the GOP reads them. The host's part is
what `compiler.decoder.CompiledDecoder` says: write the key frame's bytes, or
a frame's keypoints, run, read the pixels.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from compiler.decoder import CompiledDecoder
from sim.l3.machine import run


class IsaDecoder:
    """A decoder whose every integer operation runs as an instruction on L3."""

    def __init__(self, compiled: CompiledDecoder) -> None:
        self.compiled = compiled
        self.memory = bytearray(compiled.memory)

    def encode_source(self, frame: npt.ArrayLike) -> None:
        """Run the source program on the decoded key frame (H, W, 3) uint8."""
        self.compiled.write_key_frame(self.memory, frame)
        run(self.compiled.source_words, self.memory, self.compiled.params)

    def decode(
        self,
        kp_driving_q: npt.ArrayLike,
        kp_source_q: npt.ArrayLike,
        jac_driving_q: npt.ArrayLike | None = None,
        jac_source_q: npt.ArrayLike | None = None,
    ) -> npt.NDArray[np.uint8]:
        """One inter frame from its keypoints (bitstream integers): (H, W, 3) uint8."""
        c = self.compiled
        c.write_keypoints(self.memory, kp_driving_q, kp_source_q, jac_driving_q, jac_source_q)
        run(c.frame_words, self.memory, c.params)
        return c.read_frame(self.memory)
