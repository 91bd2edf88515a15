"""`grace rd`: rate–quality curves of GRACE against HEVC, AV1, H.264 and key-frame repeat.

Every codec codes the same held-out synthetic clips (`grace.train_run.heldout_clips`:
identities and motions never trained on) at the preset's resolution and 25 fps.
GRACE goes end to end through its bitstream (encode → bytes → decode with the
float decoder of the committed checkpoint); the others through PyAV
(`model.conventional`). A setting's bitrate is all its clips' bytes · 8 over all
their seconds; its quality the mean over every frame of every clip, key frames
included. docs/rd.md says what counts and why.

Outputs in the output folder (build/rd by default): rd.json (every point, the
crossovers), rd.png (one panel per metric), strip.png (the same frame from each
codec at the lowest bitrate they all reach).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from defs.params import GraceParams

CODEC_NAMES = ("grace", "hevc", "av1", "h264", "repeat")
OPPONENTS = ("hevc", "av1", "h264")  # the crossovers reported, GRACE against each
LABELS = {"grace": "GRACE", "repeat": "key-frame repeat (JPEG)"}
FPS = Fraction(25)


class RdError(ValueError):
    """Bad `grace rd` arguments; one line."""


@dataclass(frozen=True)
class RdPlan:
    """What one run measures: clips, and each codec's settings (coarsest first)."""

    clips: int  # held-out clips used (unseen identities first, then the colour photo)
    frames: int
    grace: tuple[tuple[int, int], ...]  # (GOP length, key-frame JPEG quality)
    repeat: tuple[int, ...]  # JPEG qualities of the one key frame
    quick: bool = False
    limits: tuple[float, float] = (2.0, 100.0)  # kbps shown and compared


FULL = RdPlan(
    clips=6,
    frames=128,
    grace=tuple((g, q) for g in (4, 8, 16, 32, 64, 128) for q in (10, 25, 50, 75, 90)),
    repeat=(10, 25, 50, 75, 90, 95),
)
QUICK = RdPlan(clips=1, frames=16, grace=((16, 30), (16, 75)), repeat=(30, 75), quick=True)


@dataclass
class Point:
    codec: str
    sweep: str  # points of one sweep rise in rate as its knob fines
    label: str
    setting: dict
    bytes: int = 0
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    tile: np.ndarray | None = None  # the strip's frame, as this setting decoded it

    @property
    def kbps(self) -> float:
        return self.bytes * 8 / 1000 / self.seconds

    def as_json(self) -> dict:
        out = {"sweep": self.sweep, "label": self.label, "setting": self.setting}
        out |= {"kbps": self.kbps, "bytes": self.bytes, "seconds": self.seconds}
        return out | self.metrics | self.extra


def parse_codecs(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    if not names:
        raise RdError(f"--codecs {text!r}: name at least one of {', '.join(CODEC_NAMES)}")
    for name in names:
        if name not in CODEC_NAMES:
            raise RdError(f"unknown codec {name!r}; choose from {', '.join(CODEC_NAMES)}")
    return names


def make_plan(
    quick: bool, clips: int | None, frames: int | None, min_kbps: float, max_kbps: float
) -> RdPlan:
    base = QUICK if quick else FULL
    if not (0 < min_kbps < max_kbps) or not math.isfinite(max_kbps):
        raise RdError(
            f"bitrate range {min_kbps:g}-{max_kbps:g} kbps is empty; give 0 < --min-kbps "
            "< --max-kbps"
        )
    clips = base.clips if clips is None else clips
    frames = base.frames if frames is None else frames
    if clips < 1 or frames < 2:
        raise RdError(f"--clips {clips} / --frames {frames}: need at least 1 clip of 2 frames")
    # A GOP longer than the clip is the clip: keep each distinct setting once.
    grace = tuple(dict.fromkeys((min(g, frames), q) for g, q in base.grace))
    return RdPlan(clips, frames, grace, base.repeat, quick, (min_kbps, max_kbps))


def _clips(params: GraceParams, plan: RdPlan) -> list[tuple[str, np.ndarray]]:
    """Two thirds unseen identities, one third the colour photo (unseen motion)."""
    from grace.train_run import heldout_clips

    photos = plan.clips // 3
    groups = heldout_clips(params, plan.clips - photos, frames=plan.frames)
    unseen, photo = groups.values()  # heldout_clips gives at least `photos` photo clips
    named = [(f"unseen identity {i}", c) for i, c in enumerate(unseen)]
    return named + [(f"colour photo {i}", c) for i, c in enumerate(photo[:photos])]


def _points(plan: RdPlan, codecs: tuple[str, ...]) -> list[Point]:
    from model.conventional import CONVENTIONAL

    points = []
    for name in codecs:
        if name == "grace":
            points += [
                Point("grace", f"GOP {g}", f"GOP {g}, q{q}", {"gop": g, "key_quality": q})
                for g, q in plan.grace
            ]
        elif name == "repeat":
            points += [Point("repeat", "JPEG", f"JPEG q{q}", {"quality": q}) for q in plan.repeat]
        else:
            codec = CONVENTIONAL[name]
            values = codec.quick if plan.quick else codec.sweep
            knob = codec.knob
            points += [Point(name, knob, f"{knob} {v}", {knob: v}) for v in values]
    return points


class _Coder:
    """One clip through one codec setting → (bytes counted, decoded frames, GRACE's parts).

    GRACE goes through its real bitstream: encode_clip → bytes → decode_stream.
    """

    def __init__(self, params: GraceParams, checkpoint: Path | None, grace: bool) -> None:
        from grace.codec_run import load_models

        self.params = params
        self.models = load_models(params, checkpoint) if grace else None

    def __call__(self, point: Point, clip: np.ndarray) -> tuple[int, np.ndarray, dict]:
        from model.conventional import CONVENTIONAL, encode_decode, key_frame_repeat

        if point.codec == "grace":
            return self._grace(clip, point.setting)
        if point.codec == "repeat":
            coded = key_frame_repeat(clip, point.setting["quality"])
        else:
            codec = CONVENTIONAL[point.codec]
            coded = encode_decode(clip, FPS, codec, point.setting[codec.knob])
        return coded.payload_bytes, coded.frames, {}

    def _grace(self, clip: np.ndarray, setting: dict) -> tuple[int, np.ndarray, dict]:
        from model.codec import CodecSettings, bitrate, decode_stream, encode_clip

        assert self.models is not None
        kp_detector, generator = self.models
        settings = CodecSettings(gop_size=setting["gop"], key_quality=setting["key_quality"])
        encoded = encode_clip(clip, FPS, self.params.name, kp_detector, settings)
        decoded = decode_stream(
            encoded.data, generator, preset=self.params.name, model=self.params.model
        )
        rate = bitrate(encoded.data)
        to_bytes = len(clip) / float(FPS) * 1000 / 8
        parts = {
            "key_frame_bytes": rate.key_frame_kbps * to_bytes,
            "keypoint_bytes": rate.keypoint_kbps * to_bytes,  # with headers and packet overhead
        }
        return len(encoded.data), decoded.frames, parts


def run_rd(
    console: Console,
    params: GraceParams,
    checkpoint: Path | None,
    out_dir: Path,
    plan: RdPlan,
    codecs: tuple[str, ...] = CODEC_NAMES,
) -> dict:
    """Measure every codec's settings on the plan's clips; write rd.json, rd.png, strip.png."""
    import torch

    from grace.rd_plot import plot_curves, plot_strip
    from model.conventional import CONVENTIONAL, require
    from model.rd import measure

    for name in codecs:  # before any work: a missing encoder is a one-line error
        if name in CONVENTIONAL:
            require(CONVENTIONAL[name])
    start = time.monotonic()
    code = _Coder(params, checkpoint, "grace" in codecs)
    clips = _clips(params, plan)
    strip_frame = plan.frames - 1  # the last frame of the first clip: furthest from its key
    points = _points(plan, codecs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one thread decodes ~50x faster here
    columns = (
        TextColumn("rd {task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=plan.quick) as progress:
            task = progress.add_task("", total=len(points) * len(clips))
            for point in points:
                progress.update(task, description=f"{point.codec} {point.label}")
                references, decoded, parts = [], [], {}
                for c, (_, clip) in enumerate(clips):
                    size, frames, extra = code(point, clip)
                    for k, v in extra.items():
                        parts[k] = parts.get(k, 0.0) + v
                    point.bytes += size
                    point.seconds += len(clip) / float(FPS)
                    if c == 0:
                        point.tile = frames[strip_frame]
                    references.append(clip)
                    decoded.append(frames)
                    progress.advance(task)
                point.metrics = measure(np.concatenate(references), np.concatenate(decoded))
                if not console.is_terminal:  # logs: a line per setting instead of the bar
                    console.print(
                        f"{point.codec} {point.label}: {point.kbps:.2f} kbps, "
                        f"PSNR {point.metrics['psnr']:.2f} dB, GMSD {point.metrics['gmsd']:.4f}"
                    )
                if parts:  # GRACE: the key frames' share and the keypoints' (with headers)
                    point.extra = {
                        "key_frame_kbps": parts["key_frame_bytes"] * 8 / 1000 / point.seconds,
                        "keypoint_kbps": parts["keypoint_bytes"] * 8 / 1000 / point.seconds,
                    }
    finally:
        torch.set_num_threads(threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = _report(params, checkpoint, plan, clips, points, codecs, strip_frame)
    report["minutes"] = (time.monotonic() - start) / 60
    (out_dir / "rd.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_curves(report, out_dir / "rd.png")
    plot_strip(
        report["strip"], _strip_tiles(report, clips, points, strip_frame), out_dir / "strip.png"
    )
    _print_summary(console, report)
    console.print(
        f"wrote {out_dir / 'rd.json'}, {out_dir / 'rd.png'} and {out_dir / 'strip.png'} "
        f"({report['minutes']:.1f} min)"
    )
    return report


def _label(name: str) -> str:
    from model.conventional import CONVENTIONAL

    return CONVENTIONAL[name].label if name in CONVENTIONAL else LABELS[name]


def _report(
    params: GraceParams,
    checkpoint: Path | None,
    plan: RdPlan,
    clips: list[tuple[str, np.ndarray]],
    points: list[Point],
    codecs: tuple[str, ...],
    strip_frame: int,
) -> dict:
    from model.conventional import CONVENTIONAL
    from model.rd import METRICS, crossover, front

    settings = {
        "grace": "float decoder of the checkpoint; GOP length x key-frame JPEG "
        "quality (Pillow, 4:2:0); adaptive keypoint coder; whole bitstream counted",
        "repeat": "frame 0 once as JPEG (Pillow), shown for every frame",
        **{name: c.describe() for name, c in CONVENTIONAL.items()},
    }
    report: dict = {
        "preset": params.name,
        "checkpoint": str(checkpoint) if checkpoint else "committed",
        "size": params.model.image_size,
        "fps": float(FPS),
        "frames_per_clip": plan.frames,
        "clips": [name for name, _ in clips],
        "quick": plan.quick,
        "limits_kbps": list(plan.limits),
        "bitrate": "bytes x 8 / seconds over all clips: GRACE's whole bitstream; the "
        "conventional codecs' raw packets (codec headers in, container out); the JPEG",
        "metrics": {
            k: {"label": m.label, "unit": m.unit, "higher_is_better": m.higher_is_better}
            for k, m in METRICS.items()
        },
        "codecs": {
            name: {
                "label": _label(name),
                "settings": settings[name],
                "points": [p.as_json() for p in points if p.codec == name],
            }
            for name in codecs
        },
    }
    fronts = {
        (name, key): front([(p.kbps, p.metrics[key]) for p in points if p.codec == name],
                           m.higher_is_better)
        for name in codecs
        for key, m in METRICS.items()
    }  # fmt: skip
    report["fronts"] = {name: {key: fronts[name, key] for key in METRICS} for name in codecs}
    crossings: dict = {}
    if "grace" in codecs:
        for key, m in METRICS.items():
            crossings[key] = {}
            for other in (o for o in OPPONENTS if o in codecs):
                x = crossover(fronts["grace", key], fronts[other, key], m.higher_is_better,
                              plan.limits)  # fmt: skip
                crossings[key][other] = {
                    "common_kbps": x.common,
                    "grace_wins_kbps": x.wins,
                    "grace_wins_below_kbps": x.below_kbps,
                    "other_floor_kbps": x.b_floor,
                    "grace_floor_kbps": x.a_floor,
                    "sentence": x.sentence("GRACE", _label(other)),
                }
    report["crossovers"] = crossings
    report["strip"] = _strip_choice(points, codecs, strip_frame)
    return report


def _strip_choice(points: list[Point], codecs: tuple[str, ...], frame: int) -> dict:
    """Per codec, its best-PSNR setting at or below the lowest rate all codecs reach."""
    floors = {n: min(p.kbps for p in points if p.codec == n) for n in codecs}
    target = max(floors.values())
    chosen = []
    for name in codecs:
        pool = [p for p in points if p.codec == name and p.kbps <= target * (1 + 1e-9)]
        pick = max(pool, key=lambda p: (p.metrics["psnr"], -p.kbps))
        chosen.append({"codec": name, "label": pick.label, "kbps": pick.kbps,
                       "psnr": pick.metrics["psnr"], "gmsd": pick.metrics["gmsd"]})  # fmt: skip
    return {"target_kbps": target, "clip": 0, "frame": frame, "tiles": chosen}


def _strip_tiles(
    report: dict, clips: list[tuple[str, np.ndarray]], points: list[Point], frame: int
) -> list[tuple[str, np.ndarray]]:
    tiles = [(f"source\nframe {frame}", clips[0][1][frame])]
    for tile in report["strip"]["tiles"]:
        point = next(p for p in points if p.codec == tile["codec"] and p.label == tile["label"])
        assert point.tile is not None
        text = f"{_short(tile['codec'])}\n{tile['kbps']:.1f} kbps, {tile['psnr']:.1f} dB"
        tiles.append((text, point.tile))
    return tiles


def _short(name: str) -> str:
    return {"grace": "GRACE", "hevc": "HEVC", "av1": "AV1", "h264": "H.264"}.get(name, "repeat")


def _print_summary(console: Console, report: dict) -> None:
    table = Table("codec", "setting", "kbps", "PSNR dB", "SSIM", "MS-SSIM", "GMSD",
                  title=f"{len(report['clips'])} held-out clips x {report['frames_per_clip']} "
                  f"frames, {report['size']}², {report['fps']:g} fps")  # fmt: skip
    for name, codec in report["codecs"].items():
        for p in codec["points"]:
            table.add_row(
                _short(name), p["label"], f"{p['kbps']:.2f}", f"{p['psnr']:.2f}",
                f"{p['ssim']:.4f}", f"{p['ms_ssim']:.4f}", f"{p['gmsd']:.4f}",
            )  # fmt: skip
        table.add_section()
    console.print(table)
    lo, hi = report["limits_kbps"]
    sentences = [
        f"{report['metrics'][key]['label']}: {row['sentence']}"
        for key, rows in report["crossovers"].items()
        for row in rows.values()
    ]
    for sentence in sentences:
        console.print(sentence)
    if not sentences:
        console.print("no crossovers: --codecs needs grace and at least one of hevc, av1, h264")
    console.print(f"(curves compared within {lo:g}-{hi:g} kbps)")
