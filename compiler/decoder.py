"""The whole decoder compiled: one memory image, a per-GOP program and a frame program.

`compile_decoder` lays out everything a `QuantizedDecoder` needs in one image
(weights, constants, tables, every map of a frame, and the regions the host
writes and reads) and emits two programs over it (docs/isa.md, "The decoder
as programs"):

- the source program, once per GOP: the key frame (written by the host as
  bytes b ⊕ 0x80, (H, W, 3)) quantized and encoded into the source features,
  stored as the warp engine's feature payload words (`compiler.frame.WarpSlots`),
  where every frame of the GOP reads them;
- the frame program, once per inter frame: the host writes the frame's
  keypoints (and composed Jacobians) as the units' payload words, runs it, and
  reads the (H, W, 3) pixels.

The small key frame (the motion network's resolution, blurred by the source
program's polyphase conv: `compiler.blur`) lives in warp payload slots too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from compiler.blur import emit_blur
from compiler.conv_layer import Image, Program, read_map
from compiler.frame import (
    FrameInputs,
    FrameLowering,
    WarpSlots,
    identity_jacobians,
    jacobian_words,
    keypoint_words,
    warp_slots,
)
from compiler.source import emit_source
from compiler.tensor import LoweringError, Tensor
from defs.params import GraceParams
from model.fixed_decoder import QuantizedDecoder
from model.fixed_motion import compose_jacobians

IntArray = npt.NDArray[np.int64]


@dataclass
class CompiledDecoder:
    params: GraceParams
    memory: bytearray  # the image as compiled: every program starts from a copy of it
    source_words: list[int]
    frame_words: list[int]
    key_frame_addr: int
    key_frame_shape: tuple[int, int, int]  # (H, W, 3)
    small: WarpSlots
    features: WarpSlots
    inputs: FrameInputs
    frame: Tensor  # the pixels' map: one plane, (H, W, 3) bytes
    source_steps: list[str]  # the step (layer) of each word: `compiler.report`'s rows
    frame_steps: list[str]

    def write_key_frame(self, memory: bytearray, frame: npt.ArrayLike) -> None:
        pixels = np.asarray(frame, dtype=np.uint8)
        if pixels.shape != self.key_frame_shape:
            raise LoweringError(f"key frame {pixels.shape}; compiled for {self.key_frame_shape}")
        blob = (pixels ^ 0x80).tobytes()
        memory[self.key_frame_addr : self.key_frame_addr + len(blob)] = blob

    def write_keypoints(
        self,
        memory: bytearray,
        kp_driving_q: npt.ArrayLike,
        kp_source_q: npt.ArrayLike,
        jac_driving_q: npt.ArrayLike | None = None,
        jac_source_q: npt.ArrayLike | None = None,
    ) -> None:
        """A frame's keypoints as the bitstream carries them (and, for FOMM, the Jacobians,
        composed here on the host: docs/activation_engine.md §1.3)."""
        p, inputs = self.params, self.inputs
        blob = keypoint_words(inputs, kp_driving_q, kp_source_q, p)
        memory[inputs.keypoints_addr : inputs.keypoints_addr + len(blob)] = blob
        if inputs.jacobian:
            if jac_driving_q is None or jac_source_q is None:
                raise LoweringError("frame: this decoder needs the keypoints' Jacobians")
            jac = compose_jacobians(jac_source_q, jac_driving_q)
        else:
            jac = identity_jacobians(inputs.keypoints)
        blob = jacobian_words(jac, p)
        memory[inputs.jacobians_addr : inputs.jacobians_addr + len(blob)] = blob

    def read_frame(self, memory: bytearray) -> npt.NDArray[np.uint8]:
        """The frame program's (H, W, 3) pixels."""
        return read_map(self.frame, memory, signed=False).transpose(1, 2, 0).astype(np.uint8)


def compile_decoder(
    q: QuantizedDecoder, params: GraceParams, image_size: int | None = None
) -> CompiledDecoder:
    """Lay the decoder out for `params` and emit its two programs."""
    size = params.model.image_size if image_size is None else image_size
    small = params.model.dense_size if image_size is None else None
    image = Image()
    rows = params.array.rows
    shape = (size, size, 3)
    key_frame_addr = image.reserve(size * size * 3)
    source = Program(params)
    features_shape = _features_shape(q, size)
    if small is None:
        small = features_shape[1]
    if features_shape[1] != small:
        raise LoweringError(
            f"the source features are {features_shape[1]}², the motion resolution {small}²: "
            "the flow is not resized"
        )
    features = warp_slots(image, features_shape[0], small, params, rows)
    small_slots = warp_slots(image, 3, small, params, rows)
    emit_source(source, image, q, key_frame_addr, shape, features=features.tensor)
    if q.antialias is None:
        raise LoweringError("a decoder without the anti-alias blur is not laid out (small = frame)")
    emit_blur(source, image, q.antialias, key_frame_addr, shape, small_slots.tensor)
    source.step = "end"
    source_words = source.end()
    lowering = FrameLowering(q, params, image)
    frame_words, inputs, frame = lowering.lower(small_slots, features)
    return CompiledDecoder(
        params, image.memory, source_words, frame_words, key_frame_addr, shape, small_slots,
        features, inputs, frame, source.steps, lowering.program.steps,
    )  # fmt: skip


def _features_shape(q: QuantizedDecoder, size: int) -> tuple[int, int]:
    """(channels, side) of the encoder's output for a size² key frame."""
    side = size
    for block in q.down_blocks:
        side //= 2 if block.pool else 1
    channels = (q.down_blocks[-1] if q.down_blocks else q.first).weight.shape[0]
    return channels, side
