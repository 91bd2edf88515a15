"""`grace compile`: the quantized decoder lowered for a hardware preset, and what it costs.

Writes under build/compile/<model>-<hw>/: both programs (`source.bin`,
`frame.bin`: 32-byte little-endian instruction words), the memory image
(`image.bin`), `report.json` (one row per step: tiles, instructions, bytes
moved, compute and memory cycles, memory-bound or not, at 16 and 64 bytes per
cycle) and `report.png` (compute against memory cycles per step).
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw
from rich.console import Console
from rich.table import Table

from compiler.decoder import CompiledDecoder, compile_decoder
from compiler.report import BANDWIDTHS, StepCost, cost_steps, touched_bytes
from compiler.tensor import LoweringError
from defs.boards import BOARD_SPECS
from defs.isa import INSTRUCTION_BITS
from defs.params import GraceParams
from grace.codec_run import CodecRunError


class CompileError(ValueError):
    """The decoder cannot be compiled for this hardware (one line)."""


def quantized_decoder(model: GraceParams, random_weights: bool, console: Console) -> object:
    """The int8 decoder: the committed checkpoint calibrated, or random weights calibrated
    on one frame (fomm-256 has no checkpoint; the costs need its shapes only)."""
    import torch

    from model.int_backend import calibration_samples, quantize_decoder
    from model.ptq import build_quantized, calibrate

    if not random_weights:
        from grace.codec_run import load_models

        with console.status("calibrating the int8 decoder…"):
            return quantize_decoder(*load_models(model, None), model)
    from model.agc import build_generator, build_kp_detector

    torch.manual_seed(0)
    kp_detector = build_kp_detector(model.model).eval()
    generator = build_generator(model.model).eval()
    with console.status("calibrating random weights on one frame…"):
        samples = calibration_samples(kp_detector, model, clips=1, frames=2)[:1]
        scales = calibrate(generator, samples, "percentile")
    return build_quantized(generator, scales, model.numeric, model.model.num_kp)


def run_compile(
    console: Console, model: GraceParams, hw: GraceParams, out_root: Path, *, random_weights: bool
) -> dict:
    try:
        decoder = quantized_decoder(model, random_weights, console)
    except CodecRunError as exc:
        raise CompileError(f"{exc} (or pass --random-weights)") from None
    target = hw.replace(model=model.model, numeric=model.numeric)
    try:
        compiled = compile_decoder(decoder, target)
    except LoweringError as exc:
        raise CompileError(f"{model.name} on {hw.name}: {exc}") from None
    board = BOARD_SPECS.get(hw.board or "")
    image_bytes = len(compiled.memory)
    if board is not None and image_bytes > board.memory_bytes:
        raise CompileError(
            f"{model.name} on {hw.name}: the memory image is {image_bytes:,} bytes; the "
            f"{board.name} has {board.memory_bytes:,} bytes of external RAM (a board with "
            "more, e.g. the ECPIX-5 85F's 512 MB DDR3, is needed)"
        )
    out_dir = out_root / f"{model.name}-{hw.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    report = _report(compiled, model, hw)
    _write(compiled, out_dir, report)
    _print(console, report)
    console.print(f"wrote {out_dir}/ (source.bin, frame.bin, image.bin, report.json, report.png)")
    return report


def _program_report(words: list[int], steps: list[str], params: GraceParams) -> dict:
    costs = cost_steps(words, steps, params)
    moved = sum(c.bytes_moved for c in costs)
    touched = touched_bytes(costs)
    return {
        "instructions": len(words),
        "steps": [c.row() for c in costs],
        "bytes_moved": moved,
        "bytes_minimum": touched,
        "compute_cycles": sum(c.compute_cycles for c in costs),
        "memory_bound": {f"{b}B": [c.name for c in costs if c.memory_bound(b)] for b in BANDWIDTHS},
        "_costs": costs,
    }


def _report(compiled: CompiledDecoder, model: GraceParams, hw: GraceParams) -> dict:
    p = compiled.params
    return {
        "model": model.name,
        "hardware": hw.name,
        "image_bytes": len(compiled.memory),
        "instruction_bytes": INSTRUCTION_BITS // 8,
        "bandwidths_bytes_per_cycle": list(BANDWIDTHS),
        "source": _program_report(compiled.source_words, compiled.source_steps, p),
        "frame": _program_report(compiled.frame_words, compiled.frame_steps, p),
    }


def _write(compiled: CompiledDecoder, out_dir: Path, report: dict) -> None:
    size = INSTRUCTION_BITS // 8
    for name, words in (("source", compiled.source_words), ("frame", compiled.frame_words)):
        (out_dir / f"{name}.bin").write_bytes(b"".join(w.to_bytes(size, "little") for w in words))
    (out_dir / "image.bin").write_bytes(bytes(compiled.memory))
    public = {
        k: ({kk: vv for kk, vv in v.items() if kk != "_costs"} if isinstance(v, dict) else v)
        for k, v in report.items()
    }
    (out_dir / "report.json").write_text(json.dumps(public, indent=2) + "\n")
    _chart(
        report["frame"]["_costs"],
        out_dir / "report.png",
        f"{report['model']} on {report['hardware']}",
    )


def _print(console: Console, report: dict) -> None:
    for part in ("source", "frame"):
        r = report[part]
        table = Table(title=f"{report['model']} on {report['hardware']}: the {part} program")
        for col in (
            "step",
            "tiles",
            "instr.",
            "bytes moved",
            "compute cyc.",
            "mem. cyc. 16 B",
            "mem. cyc. 64 B",
        ):
            table.add_column(col, justify="left" if col == "step" else "right")
        for c in r["_costs"]:
            marks = ["*" if c.memory_bound(b) else "" for b in BANDWIDTHS]
            table.add_row(
                c.name, f"{c.tiles:,}", f"{c.instructions:,}", f"{c.bytes_moved:,}",
                f"{c.compute_cycles:,}", f"{c.memory_cycles(16):,}{marks[0]}",
                f"{c.memory_cycles(64):,}{marks[1]}",
            )  # fmt: skip
        console.print(table)
        console.print(
            f"{part}: {r['instructions']:,} instructions, {r['bytes_moved']:,} bytes moved "
            f"against a minimum of {r['bytes_minimum']:,} "
            f"({r['bytes_moved'] / max(1, r['bytes_minimum']):.2f}×), "
            f"{r['compute_cycles']:,} compute cycles; * memory-bound"
        )
    console.print(f"memory image: {report['image_bytes']:,} bytes")


def _chart(costs: list[StepCost], path: Path, title: str) -> None:
    """Per step: compute cycles (blue) against memory cycles at 16 B/cycle (orange)."""
    width, bar, gap, left, top = 900, 14, 6, 150, 30
    height = top + len(costs) * (2 * bar + gap) + 20
    image = PILImage.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text(
        (10, 8), f"{title}: compute (blue) vs memory at 16 B/cycle (orange), per step", fill="black"
    )
    peak = max([1] + [max(c.compute_cycles, c.memory_cycles(16)) for c in costs])
    scale = (width - left - 20) / peak
    y = top
    for c in costs:
        draw.text((10, y + 4), c.name[:22], fill="black")
        draw.rectangle([left, y, left + c.compute_cycles * scale, y + bar - 1], fill=(60, 110, 200))
        y += bar
        draw.rectangle(
            [left, y, left + c.memory_cycles(16) * scale, y + bar - 1], fill=(230, 140, 40)
        )
        y += bar + gap
    image.save(path)
