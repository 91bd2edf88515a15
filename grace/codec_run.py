"""What `grace encode/decode/train` do, apart from argument parsing."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from defs.params import GraceParams

#: Trained checkpoints committed with the project, by preset name.
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "model" / "weights"
DEFAULT_FPS = Fraction(25)


class CodecRunError(ValueError):
    """A user-facing codec problem (no checkpoint, unreadable input); one line."""


def default_checkpoint(params: GraceParams) -> Path:
    return WEIGHTS_DIR / f"{params.name}.pth"


def load_models(params: GraceParams, checkpoint: Path | None):
    from model.checkpoint import load_checkpoint

    path = checkpoint or default_checkpoint(params)
    if checkpoint is None and not path.exists():
        raise CodecRunError(
            f"no trained checkpoint for preset {params.name!r} at {path}; pass --checkpoint "
            f"FILE or train one with `grace train --preset {params.name}`"
        )
    return load_checkpoint(path, params.model)


def make_backend(
    name: str,
    params: GraceParams,
    checkpoint: Path | None,
    hardware: GraceParams | None = None,
    on_frame=None,
    build_root: Path = Path("build"),
):
    """The decoder network for `grace decode --backend NAME`; `isa` compiles the integer
    decoder for `hardware` (its array and buffers; the model is `params`') and runs L3;
    `rtl` runs it on the co-processor's Verilog (Verilator, builds under `build_root`)."""
    kp_detector, generator = load_models(params, checkpoint)
    if name == "float":
        return generator
    from model.int_backend import IntBackend, quantize_decoder

    integers = IntBackend(quantize_decoder(kp_detector, generator, params))
    if name == "int":
        return integers
    if name in ("isa", "rtl"):
        from compiler.decoder import compile_decoder
        from compiler.tensor import LoweringError
        from sim.l3.decoder import IsaBackend, IsaDecoder

        hw = (hardware or params).replace(model=params.model, numeric=params.numeric)
        try:
            compiled = compile_decoder(integers.decoder, hw)
        except LoweringError as exc:
            raise CodecRunError(f"--backend {name} on {hw.name}: {exc}") from None
        if name == "isa":
            return IsaBackend(IsaDecoder(compiled), integers, on_frame)
        from sim.coproc_decoder import RtlDecoder

        rtl = RtlDecoder(compiled, build_dir=build_root, long_run=params.name != "tiny")
        return IsaBackend(rtl, integers, on_frame)
    raise CodecRunError(f"backend {name!r} is not available; use float, int, isa or rtl")


def fit_to_model(frames: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to the model's resolution (Lanczos)."""
    h, w = frames.shape[1:3]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    cropped = frames[:, top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(cropped)
    return np.stack(
        [np.asarray(Image.fromarray(f).resize((size, size), Image.LANCZOS)) for f in cropped]
    )


def input_clip(
    params: GraceParams, source: str | None, synthetic: int | None, frames: int, face: int
) -> tuple[np.ndarray, Fraction]:
    """The clip to encode, at the model's resolution, and its frame rate."""
    size = params.model.image_size
    if synthetic is not None:
        from model.synthetic import ClipSpec, synthesize_clip

        try:
            spec = ClipSpec(seed=synthetic, num_frames=frames, size=size, face=face)
        except ValueError as exc:
            raise CodecRunError(f"synthetic clip: {exc}") from None
        return synthesize_clip(spec), DEFAULT_FPS
    if source is None:
        raise CodecRunError("give an INPUT (video file or folder of frames) or --synthetic SEED")
    from model.video_io import read_frames

    clip, fps = read_frames(Path(source), max_frames=frames)
    return fit_to_model(clip, size), fps or DEFAULT_FPS


@dataclass(frozen=True)
class CodecReport:
    rate: object  # model.codec.Rate
    quality: object | None  # model.metrics.Quality
    frames: int
    fps: Fraction
    size: int

    def lines(self) -> list[str]:
        r = self.rate
        out = [
            f"{self.frames} frames at {float(self.fps):g} fps, {self.size}x{self.size}",
            f"bitrate {r.total_kbps:.2f} kbps  (key frames {r.key_frame_kbps:.2f}, "
            f"keypoints + headers {r.keypoint_kbps:.2f}; {r.bytes:,} bytes)",
            f"keypoints ({r.keypoint_coder} coder): {r.keypoint_bits_per_frame:.1f} bits/frame, "
            f"{r.keypoint_bits_per_frame * float(self.fps) / 1000:.2f} kbps",
        ]
        if self.quality is not None:
            out.append(f"quality vs source: {self.quality.row()}")
        return out
