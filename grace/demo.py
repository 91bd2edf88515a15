"""`grace demo`: the main job on the embedded default, in one screen.

Two halves, as far as GRACE reaches today:
1. the codec: a synthetic talking-face clip (the colour-photo identity, driven
   by a motion seed never used in training) is encoded to a GRACE bitstream
   with the committed `tiny` checkpoint, decoded by the float decoder and by the
   int8 integer reference (calibrated on the spot), and scored; a side-by-side
   strip PNG goes to build/demo;
2. the hardware flow: the requantize unit (parameters → Verilog → cocotb on
   Verilator, bit-exact against the NumPy reference under back-pressure and at
   full rate), the convolution engine (random layers through its Verilog on
   Icarus, bit-exact against the L2 conv, cycles next to the cycle model; then
   fomm-256 priced on the ULX3S engine) → board build plans.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from boards.build import plan
from boards.targets import BOARDS
from defs.params import GraceParams, preset
from grace.summary import elaborate_block, simulate_block
from sim.runner import quiet

DEMO_VECTORS = 10_000
DEMO_SEED = 7  # synthetic clip
DEMO_FACE = 0  # the colour photo; seed 7's motion is not in the training set
DEMO_FRAMES = 50  # two seconds at 25 fps
DEMO_GOP = 25


def run_demo(console: Console, build_root: Path) -> None:
    params = preset("tiny")
    start = time.monotonic()
    rows = codec_demo(console, params, build_root / "demo")
    with quiet():  # the runner's messages go to runner.log files under build/, not the screen
        hardware_rows, exact = hardware_demo(console, params, build_root)
    table = Table(title="summary", box=None, show_header=False)
    for k, v in [*rows, *hardware_rows, ("wall time", f"{time.monotonic() - start:.1f} s")]:
        table.add_row(k, v)
    console.print(table)
    if not exact:
        raise SystemExit(1)


def codec_demo(console: Console, params: GraceParams, out: Path) -> list[tuple[str, str]]:
    from grace.codec_run import load_models
    from model.codec import CodecSettings, bitrate, decode_stream, encode_clip
    from model.int_backend import IntBackend, quantize_decoder
    from model.metrics import quality
    from model.synthetic import ClipSpec, synthesize_clip
    from model.video_io import write_strip, write_video

    console.rule(f"GRACE demo 1/2: the codec, float and int8 decoders (preset {params.name!r})")
    m = params.model
    kp_detector, generator = load_models(params, None)
    clip = synthesize_clip(
        ClipSpec(seed=DEMO_SEED, num_frames=DEMO_FRAMES, size=m.image_size, face=DEMO_FACE)
    )
    fps = Fraction(25)
    encoded = encode_clip(clip, fps, params.name, kp_detector, CodecSettings(gop_size=DEMO_GOP))
    out.mkdir(parents=True, exist_ok=True)
    (out / "clip.grace").write_bytes(encoded.data)
    rate = bitrate(encoded.data)
    console.print(
        f"1. encoded {DEMO_FRAMES} frames ({m.image_size}², {float(fps):g} fps, "
        f"GOP {DEMO_GOP}) → {rate.bytes:,} bytes: {rate.total_kbps:.1f} kbps "
        f"(key frames {rate.key_frame_kbps:.1f}, keypoints {rate.keypoint_kbps:.1f})"
    )
    decoded = decode_stream(encoded.data, generator, preset=params.name, model=m)
    measured = quality(clip, decoded.frames)
    int_backend = IntBackend(quantize_decoder(kp_detector, generator, params))
    decoded_int = decode_stream(encoded.data, int_backend, preset=params.name, model=m)
    measured_int = quality(clip, decoded_int.frames)
    keys = np.arange(0, DEMO_FRAMES, DEMO_GOP)
    repeated = np.repeat(decoded.frames[keys], DEMO_GOP, axis=0)[:DEMO_FRAMES]
    baseline = quality(clip, repeated)
    write_video(decoded.frames, out / "decoded.mp4", fps)
    write_video(decoded_int.frames, out / "decoded-int.mp4", fps)
    write_strip(
        {
            "source": clip,
            "float decoder": decoded.frames,
            "int8 decoder": decoded_int.frames,
            "key frame only": repeated,
        },
        out / "strip.png",
    )
    console.print(f"2. decoded, float: {measured.row()}")
    console.print(f"   decoded, int8 reference (L2): {measured_int.row()}")
    console.print(f"   repeating key frames instead: {baseline.row()}")
    console.print(f"3. wrote {out / 'decoded.mp4'}, {out / 'decoded-int.mp4'}, {out / 'strip.png'}")
    return [
        ("bitrate", f"{rate.total_kbps:.1f} kbps at {float(fps):g} fps"),
        ("quality, float decoder", measured.row()),
        ("quality, int8 decoder", measured_int.row()),
        ("key frames only", baseline.row()),
        ("strip", str(out / "strip.png")),
    ]


def hardware_demo(console: Console, params: GraceParams, build_root: Path) -> list[tuple[str, str]]:
    block = "requant"
    console.rule(f"GRACE demo 2/2: hardware, {block} block")
    path, ports = elaborate_block(block, params, build_root / "verilog")
    console.print(
        f"1. elaborated → {path} ({len(ports)} ports, "
        f"{sum(1 for _ in path.open())} lines of Verilog)"
    )

    def simulate(step: int, label: str, seed: int, prob: float):
        with console.status(f"{step}. cocotb + Verilator, {label}…"):
            run = simulate_block(
                block,
                params,
                simulator="verilator",
                vectors=DEMO_VECTORS,
                seed=seed,
                valid_prob=prob,
                ready_prob=prob,
                waves=False,
                build_root=build_root,
            )
        console.print(
            f"{step}. {run.vectors:,} vectors {label}: {run.mismatches} mismatches, "
            f"{run.cycles:,} cycles"
        )
        return run

    stalled = simulate(2, "under random stalls", seed=1, prob=0.7)
    full = simulate(3, "at full rate", seed=2, prob=1.0)
    with console.status("4. conv engine: random layers, cocotb + Icarus…"):
        conv = simulate_block(
            "conv",
            params,
            simulator="icarus",
            vectors=4 * 2500,
            seed=3,
            valid_prob=0.8,
            ready_prob=0.8,
            waves=False,
            build_root=build_root,
        )
    console.print(
        f"4. conv engine ({params.array.rows}×{params.array.cols} MACs): {conv.layers} random "
        f"layers, {conv.vectors:,} outputs, {conv.mismatches} mismatches, {conv.cycles:,} "
        f"cycles under stalls (cycle model without stalls: {conv.model_cycles:,})"
    )
    from grace.engine_report import write_report

    engine = preset("ulx3s-85f").replace(model=preset("fomm-256").model)
    _, priced = write_report(engine, build_root / "bench")
    for name in BOARDS:
        for each in (block, "conv"):
            plan(each, preset(name), name)
    console.print(
        f"5. build plans ready for {', '.join(BOARDS)} (requant, conv; run "
        f"`grace build --board NAME --block conv` for resources and Fmax)"
    )
    n = params.numeric
    exact = stalled.mismatches == 0 and full.mismatches == 0 and conv.mismatches == 0
    rows = [
        (
            "requant datapath",
            f"int{n.acc_bits} acc + int{n.bias_bits} bias → × uint{n.mult_bits} "
            f"→ >> 0..{n.max_shift} (round half up) → int{n.act_bits}, ReLU",
        ),
        ("vectors checked", f"{stalled.vectors + full.vectors:,} (incl. extremes)"),
        ("bit-exact vs model.fixed", "[green]yes[/]" if exact else "[red]NO[/]"),
        (
            "throughput",
            f"{full.vectors / full.cycles:.4f} results/cycle "
            f"({full.cycles - full.vectors} cycles of latency)",
        ),
        ("with random stalls", f"{stalled.vectors / stalled.cycles:.3f} results/cycle"),
        (
            "conv engine vs L2 conv",
            f"{conv.layers} layers, {conv.vectors:,} outputs: "
            + ("[green]bit-exact[/]" if not conv.mismatches else f"[red]{conv.mismatches}[/]"),
        ),
        (
            "fomm-256 on the ULX3S engine",
            f"{priced.array} MACs at {priced.clock_mhz:.0f} MHz (cycle model): "
            f"{priced.frame_ms:,.0f} ms per inter frame, MAC utilisation "
            f"{priced.frame_utilisation:.1%}",
        ),
    ]
    return rows, exact
