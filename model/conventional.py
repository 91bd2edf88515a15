"""The conventional codecs GRACE is measured against, through PyAV's FFmpeg.

Each clip is encoded to raw packets (no container): the bitrate is the sum of
the packets' sizes, which holds the codec's own headers (parameter sets, AV1's
sequence header) but no MP4/Matroska overhead. The packets are then decoded
with PyAV and converted back to RGB for scoring against the source.

- Colour: RGB → yuv420p with FFmpeg's swscale (BT.601, limited range) and back;
  that round trip alone costs a little (about 38.5 dB PSNR on the synthetic
  clips), as the key frames' JPEG 4:2:0 does for GRACE.
- Size: yuv420p needs even width and height; an odd frame is padded by
  repeating its last row/column and cropped after decoding. All three encoders
  take 64x64 (checked with PyAV 18.1.0: libx264, libx265 and libsvtav1 encode
  16x16 up to the model's sizes). libx265 keeps its CTU size in process-wide
  state, so mixing frame sizes of different CTU sizes in one process can crash
  it; every clip of a run has the same size.
- H.264: x264 writes its options as an SEI message (about 600 bytes) in the
  first packet; a user would drop it (`-bsf:v filter_units=remove_types=6`), so
  that filter runs here before the bytes are counted and decoded. x265's
  version SEI is off (`info=0`).
- AV1: SVT-AV1 starts every packet with a temporal delimiter OBU (2 bytes, no
  information; MP4 and Matroska store AV1 without them), removed with
  `filter_units=remove_types=2`. H.264/HEVC keep their Annex B start codes,
  the size of the 4-byte NAL lengths MP4 would store instead.
- Long GOP: one key frame per clip (`gop_size` = the clip's length, mapped by
  FFmpeg to x264/x265's keyint and SVT-AV1's intra period); scene-cut
  detection stays as the encoders ship it. B-frames/hierarchical GOPs as the
  preset chooses (random access, not low delay: that favours these codecs).
- `thread_count = 1`, so the encoders do not fight over two shared cores.
  SVT-AV1 repeats itself byte for byte; x265 (which keeps its own thread pool,
  `pools=none` included) and x264 vary by up to about 1 % in bytes between runs
  on the same input, so their figures move in the second decimal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from model.codec import CODEC_JPEG, compress_image, decompress_image


class ConventionalError(ValueError):
    """A codec that cannot run here, or settings it refuses; one line."""


@dataclass(frozen=True)
class ConventionalCodec:
    """An FFmpeg encoder/decoder pair and the one knob swept for rate (coarse → fine)."""

    name: str
    label: str
    encoder: str
    decoder: str
    knob: str
    preset: str
    sweep: tuple[int, ...]  # the full run's values, coarsest (lowest rate) first
    quick: tuple[int, ...]  # two values for the quick run
    extra: dict[str, str] = field(default_factory=dict)
    #: FFmpeg bitstream filter run on the packets before they are counted and decoded
    bsf: str | None = None

    def options(self, value: int) -> dict[str, str]:
        return {self.knob: str(value), "preset": self.preset, **self.extra}

    def describe(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.extra.items())
        return f"{self.encoder} {self.knob} sweep, preset {self.preset}, one key frame per clip" + (
            f", {extra}" if extra else ""
        )


CONVENTIONAL: dict[str, ConventionalCodec] = {
    "hevc": ConventionalCodec(
        "hevc",
        "HEVC (x265)",
        "libx265",
        "hevc",
        "crf",
        "slow",
        sweep=(51, 46, 42, 38, 34, 30, 26, 22, 18, 14, 10, 6),
        quick=(45, 30),
        extra={"x265-params": "info=0:log-level=error"},
    ),
    "av1": ConventionalCodec(
        "av1",
        "AV1 (SVT-AV1)",
        "libsvtav1",
        "libdav1d",
        "crf",
        "2",
        sweep=(63, 58, 52, 46, 40, 34, 28, 22, 16, 10, 4),
        quick=(58, 34),
        bsf="filter_units=remove_types=2",  # temporal delimiter OBUs
    ),
    "h264": ConventionalCodec(
        "h264",
        "H.264 (x264)",
        "libx264",
        "h264",
        "crf",
        "veryslow",
        sweep=(51, 46, 42, 38, 34, 30, 26, 22, 18, 14, 10, 6),
        quick=(45, 30),
        bsf="filter_units=remove_types=6",  # SEI NAL units (x264's options)
    ),
}


@dataclass(frozen=True)
class Coded:
    """A clip through a codec: the bytes that count, and the frames decoded from them."""

    packets: tuple[bytes, ...]  # what is counted: raw packets (or the one JPEG), in order
    frames: np.ndarray  # (T, H, W, 3) uint8

    @property
    def payload_bytes(self) -> int:
        return sum(len(p) for p in self.packets)


def require(codec: ConventionalCodec) -> None:
    """Fail in one line if this PyAV build lacks the codec's encoder or decoder."""
    import av

    available = av.codecs_available
    for role, name in (("encoder", codec.encoder), ("decoder", codec.decoder)):
        if name not in available:
            raise ConventionalError(
                f"PyAV's FFmpeg has no {name} {role} (needed for {codec.name}); install the "
                f"pinned wheel (pip install av==18.1.0 ships it) or leave {codec.name} out "
                "with --codecs"
            )


def encode_decode(frames: np.ndarray, fps: Fraction, codec: ConventionalCodec, value: int) -> Coded:
    """(T, H, W, 3) uint8 → raw packets at `codec.knob` = value → decoded frames."""
    import av
    import av.bitstream

    require(codec)
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner unless told: errors only
    t_total, height, width = frames.shape[:3]
    padded = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    encoder = av.CodecContext.create(codec.encoder, "w")
    encoder.width, encoder.height = padded.shape[2], padded.shape[1]
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1) / fps
    encoder.framerate = fps
    encoder.gop_size = t_total
    encoder.thread_count = 1
    encoder.options = codec.options(value)
    packets = []
    try:
        for t, frame in enumerate(padded):
            video = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            video.pts = t
            packets += encoder.encode(video)
        packets += encoder.encode(None)
    except av.error.FFmpegError as exc:
        raise ConventionalError(f"{codec.encoder} refused {codec.knob}={value}: {exc}") from None
    if codec.bsf is not None:
        bsf = av.bitstream.BitStreamFilterContext(codec.bsf, codec.name)  # FFmpeg codec id
        packets = [out for p in [*packets, None] for out in bsf.filter(p)]
    payload = tuple(bytes(p) for p in packets)
    decoder = av.CodecContext.create(codec.decoder, "r")
    decoded = []
    for packet in [*packets, None]:
        decoded += [f.to_ndarray(format="rgb24") for f in decoder.decode(packet)]
    if len(decoded) != t_total:
        raise ConventionalError(
            f"{codec.name} at {codec.knob}={value}: {len(decoded)} frames decoded from "
            f"{t_total} encoded"
        )
    return Coded(payload, np.stack(decoded)[:, :height, :width])


def key_frame_repeat(frames: np.ndarray, quality: int) -> Coded:
    """Send frame 0 once as JPEG (Pillow, as GRACE's key frames) and show it for every frame."""
    height, width = frames.shape[1:3]
    data = compress_image(frames[0], CODEC_JPEG, quality)
    key = decompress_image(data, CODEC_JPEG, width, height, 0)
    return Coded((data,), np.repeat(key[None], frames.shape[0], axis=0))
