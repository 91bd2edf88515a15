"""Read and write clips: video files (PyAV), folders of frames and PNG strips (Pillow)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class VideoError(ValueError):
    """A clip could not be read or written; the message names the file."""


def read_frames(path: Path, max_frames: int | None = None) -> tuple[np.ndarray, Fraction | None]:
    """(T, H, W, 3) uint8 frames and the frame rate (None for a folder of images)."""
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        if not files:
            raise VideoError(f"{path}: folder holds no frames ({', '.join(FRAME_SUFFIXES)})")
        files = files[:max_frames] if max_frames else files
        try:
            frames = [np.asarray(Image.open(f).convert("RGB")) for f in files]
        except OSError as exc:
            raise VideoError(f"{path}: cannot read a frame: {exc}") from None
        if len({f.shape for f in frames}) != 1:
            raise VideoError(f"{path}: frames differ in size; all frames must match")
        return np.stack(frames), None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = stream.average_rate
            frames = []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames and len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise VideoError(f"{path}: not a readable video ({exc})") from None
    if not frames:
        raise VideoError(f"{path}: video has no frames")
    return np.stack(frames), Fraction(rate) if rate else None


def write_video(frames: np.ndarray, path: Path, fps: Fraction) -> None:
    """H.264 (yuv420p, near-lossless crf 12) so decoded frames can be watched anywhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for frame in frames:
            padded = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_strip(rows: dict[str, np.ndarray], path: Path, columns: int = 8, scale: int = 2) -> None:
    """A PNG grid: one labelled row per clip, `columns` evenly spaced frames each."""
    first = next(iter(rows.values()))
    count = first.shape[0]
    picks = np.linspace(0, count - 1, min(columns, count)).round().astype(int)
    h, w = first.shape[1] * scale, first.shape[2] * scale
    label_w = 130
    canvas = Image.new("RGB", (label_w + w * len(picks), h * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (name, frames) in enumerate(rows.items()):
        draw.text((4, r * h + h // 2 - 6), name, fill="black")
        for c, t in enumerate(picks):
            tile = Image.fromarray(frames[t]).resize((w, h), Image.NEAREST)
            canvas.paste(tile, (label_w + c * w, r * h))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
