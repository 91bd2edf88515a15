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

    def _run(self, words: list[int], name: str) -> None:
        """Run a program (`name`: source or frame) on the image, changing it."""
        run(words, self.memory, self.compiled.params)

    def encode_source(self, frame: npt.ArrayLike) -> None:
        """Run the source program on the decoded key frame (H, W, 3) uint8."""
        self.compiled.write_key_frame(self.memory, frame)
        self._run(self.compiled.source_words, "source")

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
        self._run(c.frame_words, "frame")
        return c.read_frame(self.memory)


class IsaBackend:
    """`grace decode --backend isa`: the codec's `Backend` over L3 running the compiled
    decoder; `on_frame` is called after each inter frame (a progress bar)."""

    def __init__(self, isa: IsaDecoder, integers: object, on_frame=None) -> None:
        self.isa = isa
        self.integers = integers  # model.int_backend.IntBackend: the stream's integers
        self.on_frame = on_frame

    def encode_source(self, source: object) -> object:
        from model.evaluate import to_uint8

        self.isa.encode_source(to_uint8(source)[0])
        return self.isa

    def decode(self, cache: object, kp_driving: dict, kp_source: dict) -> dict[str, object]:
        from model.int_backend import frame_tensor

        args = self.integers.stream_integers(kp_driving, kp_source)
        frame = self.isa.decode(
            args["kp_driving_q"], args["kp_source_q"], args.get("jac_driving_q"),
            args.get("jac_source_q"),
        )  # fmt: skip
        if self.on_frame is not None:
            self.on_frame()
        return {"prediction": frame_tensor(frame)}
