"""The AGC codec: video → bitstream (encoder) and bitstream → frames (decoder).

Encoder, per GOP: compress the key frame with a standard image codec (Pillow),
detect the source keypoints on the *decoded* key frame (what the receiver will
have), and the driving keypoints of every other frame; quantise them and write
the stream (`model.bitstream`). Decoder, per GOP: decompress the key frame, run
the generator's per-GOP encoder once, then re-animate it for every inter frame
from the dequantised keypoints. The decoder's network is a pluggable backend
(float PyTorch today; the integer reference, ISA simulator and RTL later).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from PIL import Image

from model.bitstream import (
    CODEC_JPEG,
    CODEC_PNG,
    CODEC_WEBP,
    KP_CODER_NAMES,
    KP_CODERS,
    BitstreamError,
    GopPacket,
    StreamHeader,
    dequantize,
    quantize,
    read_stream,
    stream_stats,
    write_stream,
)
from model.evaluate import to_uint8
from model.keypoints import KPDetector

if TYPE_CHECKING:
    from defs.params import ModelParams

KEY_CODECS = {"jpeg": CODEC_JPEG, "webp": CODEC_WEBP, "png": CODEC_PNG}
_PIL_FORMATS = {CODEC_JPEG: "JPEG", CODEC_WEBP: "WEBP", CODEC_PNG: "PNG"}


class CodecError(ValueError):
    """Bad codec settings, or a stream this decoder cannot decode; one line."""


@dataclass(frozen=True)
class CodecSettings:
    gop_size: int = 32
    key_codec: str = "jpeg"
    key_quality: int = 90  # Pillow quality (JPEG/WebP); ignored for PNG
    kp_step: float = 1 / 256  # keypoint coordinates live in [-1, 1]
    jacobian_step: float = 1 / 64
    kp_coder: str = "adaptive"  # or "exp-golomb" (version 1's coder); docs/bitstream.md

    def __post_init__(self) -> None:
        if not 1 <= self.gop_size <= 65535:
            raise CodecError(f"GOP size {self.gop_size}: must be in 1..65535")
        if self.key_codec not in KEY_CODECS:
            raise CodecError(
                f"key-frame codec {self.key_codec!r}: choose one of {', '.join(KEY_CODECS)}"
            )
        if self.kp_coder not in KP_CODERS:
            raise CodecError(
                f"keypoint coder {self.kp_coder!r}: choose one of {', '.join(KP_CODERS)}"
            )
        if not 1 <= self.key_quality <= 100:
            raise CodecError(f"key-frame quality {self.key_quality}: must be in 1..100")
        for name in ("kp_step", "jacobian_step"):
            step = getattr(self, name)
            if not 2**-20 <= step <= 1:
                raise CodecError(f"{name.replace('_', ' ')} {step}: must be in 2^-20..1")


def compress_image(frame: np.ndarray, codec: int, quality: int) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, Any] = {} if codec == CODEC_PNG else {"quality": quality}
    Image.fromarray(frame).save(buffer, format=_PIL_FORMATS[codec], **options)
    return buffer.getvalue()


def decompress_image(data: bytes, codec: int, width: int, height: int, gop: int) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[codec]])
        frame = np.asarray(image.convert("RGB"))
    except Exception as exc:  # Pillow raises many types for undecodable data
        raise CodecError(
            f"GOP {gop}: key frame does not decode as {_PIL_FORMATS[codec]} ({exc}); "
            "the stream is corrupt — re-encode it"
        ) from None
    if frame.shape != (height, width, 3):
        raise CodecError(
            f"GOP {gop}: key frame is {frame.shape[1]}x{frame.shape[0]}, the header says "
            f"{width}x{height}; the stream is corrupt — re-encode it"
        )
    return frame


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(frames, dtype=np.float32)).div(255).permute(0, 3, 1, 2)


class Backend(Protocol):
    """The decoder network: what `decode_stream` needs from float, int, ISA or RTL."""

    def encode_source(self, source: torch.Tensor) -> Any: ...

    def decode(self, cache: Any, kp_driving: dict, kp_source: dict) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class EncodedClip:
    data: bytes
    header: StreamHeader
    keypoints: np.ndarray  # (T, K, 2) dequantised keypoints, as the decoder will see them


@torch.no_grad()
def encode_clip(
    frames: np.ndarray, fps: Fraction, preset: str, kp_detector: KPDetector, settings: CodecSettings
) -> EncodedClip:
    """(T, S, S, 3) uint8 frames at the model's resolution → a GRACE bitstream."""
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise CodecError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    kp_detector.eval()
    t_total, height, width = frames.shape[:3]
    jacobian = kp_detector.jacobian is not None
    codec = KEY_CODECS[settings.key_codec]
    gops, keypoints = [], []
    for start in range(0, t_total, settings.gop_size):
        clip = frames[start : start + settings.gop_size]
        key_bytes = compress_image(clip[0], codec, settings.key_quality)
        key_decoded = decompress_image(key_bytes, codec, width, height, len(gops))
        # Source keypoints from the decoded key frame: exactly what the receiver holds.
        source = _quantized(kp_detector(frames_to_tensor(key_decoded[None])), settings)
        inter = _quantized(kp_detector(frames_to_tensor(clip)), settings)  # frame 0 unused
        src_q, inter_q = source["value"][0], inter["value"][1:]
        gops.append(
            GopPacket(
                key_codec=codec,
                key_frame=key_bytes,
                source_kp=src_q,
                source_jacobian=source["jacobian"][0] if jacobian else None,
                inter_kp=inter_q,
                inter_jacobian=inter["jacobian"][1:] if jacobian else None,
            )
        )
        keypoints.append(dequantize(np.concatenate([src_q[None], inter_q]), settings.kp_step))
    header = StreamHeader(
        preset=preset,
        width=width,
        height=height,
        fps_num=fps.numerator,
        fps_den=fps.denominator,
        gop_size=settings.gop_size,
        num_kp=kp_detector.kp.out_channels,
        jacobian=jacobian,
        kp_step=settings.kp_step,
        jacobian_step=settings.jacobian_step,
        num_frames=t_total,
        kp_coder=KP_CODERS[settings.kp_coder],
    )
    return EncodedClip(write_stream(header, gops), header, np.concatenate(keypoints))


def _quantized(kp: dict[str, torch.Tensor], settings: CodecSettings) -> dict[str, np.ndarray]:
    steps = {"value": settings.kp_step, "jacobian": settings.jacobian_step}
    return {key: quantize(t.numpy().astype(np.float64), steps[key]) for key, t in kp.items()}


@dataclass(frozen=True)
class DecodedClip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    header: StreamHeader
    keypoints: np.ndarray  # (T, K, 2) the dequantised keypoints used (key frames: source kp)

    @property
    def fps(self) -> Fraction:
        return Fraction(self.header.fps_num, self.header.fps_den)


def _kp_dict(values: np.ndarray, jacobians: np.ndarray | None, header: StreamHeader) -> dict:
    kp = {"value": torch.from_numpy(dequantize(values, header.kp_step)).unsqueeze(0)}
    if jacobians is not None:
        kp["jacobian"] = torch.from_numpy(dequantize(jacobians, header.jacobian_step)).unsqueeze(0)
    return kp


@torch.no_grad()
def decode_stream(data: bytes, backend: Backend, *, preset: str, model: ModelParams) -> DecodedClip:
    """Bitstream → frames with a decoder built for `preset`/`model`.

    The key frame of each GOP is output as decoded.
    """
    header, gops = read_stream(data)
    if header.preset != preset:
        raise CodecError(
            f"stream was encoded for preset {header.preset!r}; decode it with "
            f"--params {header.preset} (this decoder is {preset!r})"
        )
    expected = (
        ("keypoints", header.num_kp, model.num_kp),
        ("jacobians", header.jacobian, model.estimate_jacobian),
        ("width", header.width, model.image_size),
        ("height", header.height, model.image_size),
    )
    for name, got, want in expected:
        if got != want:
            raise CodecError(
                f"stream has {name} = {got}, the model expects {want}; "
                "decode with the checkpoint/params it was encoded for"
            )
    frames, keypoints = [], []
    for index, gop in enumerate(gops):
        key = decompress_image(gop.key_frame, gop.key_codec, header.width, header.height, index)
        cache = backend.encode_source(frames_to_tensor(key[None]))
        kp_source = _kp_dict(gop.source_kp, gop.source_jacobian, header)
        frames.append(key[None])
        keypoints.append(kp_source["value"].numpy())
        for t in range(gop.inter_kp.shape[0]):
            jac = gop.inter_jacobian[t] if gop.inter_jacobian is not None else None
            kp_driving = _kp_dict(gop.inter_kp[t], jac, header)
            frames.append(to_uint8(backend.decode(cache, kp_driving, kp_source)["prediction"]))
            keypoints.append(kp_driving["value"].numpy())
    return DecodedClip(np.concatenate(frames), header, np.concatenate(keypoints))


@dataclass(frozen=True)
class Rate:
    total_kbps: float
    key_frame_kbps: float
    keypoint_kbps: float  # keypoints plus all headers and packet overhead
    bytes: int
    keypoint_coder: str  # "exp-golomb" or "adaptive"
    keypoint_bits_per_frame: float  # the packets' keypoint sections only, per frame


def bitrate(data: bytes) -> Rate:
    header, _ = read_stream(data)
    stats = stream_stats(data)
    seconds = header.num_frames * header.fps_den / header.fps_num
    kbps = 8 / 1000 / seconds
    return Rate(
        total_kbps=len(data) * kbps,
        key_frame_kbps=stats.key_frame_bytes * kbps,
        keypoint_kbps=(stats.keypoint_bytes + stats.header_bytes) * kbps,
        bytes=len(data),
        keypoint_coder=KP_CODER_NAMES[header.kp_coder],
        keypoint_bits_per_frame=8 * stats.keypoint_section_bytes / header.num_frames,
    )


__all__ = [
    "BitstreamError",
    "CodecError",
    "CodecSettings",
    "bitrate",
    "decode_stream",
    "encode_clip",
]
