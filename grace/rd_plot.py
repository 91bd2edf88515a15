"""The figures of `grace rd`, drawn with Pillow (the project has no plotting library).

rd.png: one panel per metric, bitrate on a log axis, each codec its front as a
line with dots; GRACE's other settings as small rings. strip.png: one tile per
codec at the lowest bitrate they all reach, next to the source.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {
    "grace": (214, 39, 40),
    "hevc": (31, 119, 180),
    "av1": (44, 160, 44),
    "h264": (255, 127, 14),
    "repeat": (127, 127, 127),
}
PANEL_W, PANEL_H = 520, 360
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 62, 16, 30, 44
TICKS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _y_range(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.06 or 0.01 * max(abs(hi), 1)
    return lo - pad, hi + pad


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    step = 10 ** math.floor(math.log10((hi - lo) / count))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= count:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _clip_segment(a, b, x_lo, x_hi):
    """The part of segment a-b (log-rate x, value y) inside [x_lo, x_hi], or None."""
    (x0, y0), (x1, y1) = a, b
    if x1 < x_lo or x0 > x_hi or x1 == x0:
        return None

    def at(x: float) -> tuple[float, float]:
        return x, y0 + (y1 - y0) * (x - x0) / (x1 - x0)

    return at(max(x0, x_lo)), at(min(x1, x_hi))


def plot_curves(report: dict, path: Path) -> None:
    metrics = report["metrics"]
    lo_kbps, hi_kbps = report["limits_kbps"]
    x_lo, x_hi = math.log(lo_kbps), math.log(hi_kbps)
    cols = 2
    rows = math.ceil(len(metrics) / cols)
    legend_h = 40
    image = Image.new("RGB", (PANEL_W * cols, PANEL_H * rows + legend_h), "white")
    draw = ImageDraw.Draw(image)
    codecs = report["codecs"]
    x_pos = 10
    for name, codec in codecs.items():
        colour = COLOURS.get(name, (0, 0, 0))
        draw.line((x_pos, 20, x_pos + 24, 20), fill=colour, width=3)
        draw.text((x_pos + 30, 14), codec["label"], fill="black")
        x_pos += 40 + int(draw.textlength(codec["label"])) + 20
    title = (
        f"{report['preset']} {report['size']}x{report['size']}, {len(report['clips'])} held-out "
        f"clips x {report['frames_per_clip']} frames at {report['fps']:g} fps"
    )
    draw.text((x_pos + 10, 14), title, fill="black")
    for index, (key, metric) in enumerate(metrics.items()):
        ox = (index % cols) * PANEL_W
        oy = legend_h + (index // cols) * PANEL_H
        left, right = ox + MARGIN_L, ox + PANEL_W - MARGIN_R
        top, bottom = oy + MARGIN_T, oy + PANEL_H - MARGIN_B
        shown = [
            p[key]
            for c in codecs.values()
            for p in c["points"]
            if lo_kbps <= p["kbps"] <= hi_kbps and math.isfinite(p[key])
        ]
        y_lo, y_hi = _y_range(shown) if shown else (0.0, 1.0)

        def xy(x: float, y: float, left=left, right=right, top=top, bottom=bottom, y_lo=y_lo,
               y_hi=y_hi) -> tuple[float, float]:  # fmt: skip
            return (
                left + (x - x_lo) / (x_hi - x_lo) * (right - left),
                bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top),
            )

        draw.rectangle((left, top, right, bottom), outline=(90, 90, 90))
        unit = f" ({metric['unit']})" if metric["unit"] else ""
        draw.text((left, oy + 10), f"{metric['label']}{unit}", fill="black")
        for tick in TICKS:
            if lo_kbps <= tick <= hi_kbps:
                x, _ = xy(math.log(tick), y_lo)
                draw.line((x, top, x, bottom), fill=(225, 225, 225))
                draw.text((x - 8, bottom + 4), f"{tick:g}", fill="black")
        draw.text(((left + right) / 2 - 20, bottom + 22), "kbps", fill="black")
        for tick in _nice_ticks(y_lo, y_hi):
            _, y = xy(x_lo, tick)
            draw.line((left, y, right, y), fill=(235, 235, 235))
            draw.text((ox + 6, y - 6), f"{tick:.4g}", fill="black")
        draw.rectangle((left, top, right, bottom), outline=(90, 90, 90))
        for name, codec in codecs.items():
            colour = COLOURS.get(name, (0, 0, 0))
            curve = [(math.log(r), v) for r, v in report["fronts"][name][key]]
            for a, b in itertools.pairwise(curve):
                segment = _clip_segment(a, b, x_lo, x_hi)
                if segment:
                    draw.line((*xy(*segment[0]), *xy(*segment[1])), fill=colour, width=2)
            on_front = {r for r, _ in report["fronts"][name][key]}
            for p in codec["points"]:
                if not (lo_kbps <= p["kbps"] <= hi_kbps) or not math.isfinite(p[key]):
                    continue
                x, y = xy(math.log(p["kbps"]), p[key])
                if p["kbps"] in on_front:
                    draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
                else:
                    draw.ellipse((x - 2, y - 2, x + 2, y + 2), outline=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def plot_strip(
    strip: dict, tiles: list[tuple[str, np.ndarray]], path: Path, scale: int = 3
) -> None:
    h, w = tiles[0][1].shape[:2]
    tile_w = max(w * scale, 150)
    label_h, footer_h = 32, 18
    image = Image.new("RGB", (tile_w * len(tiles), h * scale + label_h + footer_h), "white")
    draw = ImageDraw.Draw(image)
    for i, (label, frame) in enumerate(tiles):
        x = i * tile_w + (tile_w - w * scale) // 2
        image.paste(
            Image.fromarray(frame).resize((w * scale, h * scale), Image.NEAREST), (x, label_h)
        )
        draw.text((i * tile_w + 4, 4), label, fill="black")
    draw.text(
        (4, label_h + h * scale + 3),
        f"frame {strip['frame']} of clip {strip['clip']}; each codec's best-PSNR setting at or "
        f"below {strip['target_kbps']:.1f} kbps, the lowest rate all of them reach "
        "(kbps and PSNR over all clips)",
        fill=(90, 90, 90),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
