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
   Icarus, bit-exact against the L2 conv, cycles next to the cycle model), the
   warp engine (the real warps of one inter frame the int8 decoder decoded in
   the first half, through its Verilog in one run, against L2's warp), the
   element-wise units on the same frame's heatmaps, motions, flow and mask
   softmax (against decode_int), the whole decoder compiled for the ULX3S
   engine and the frame run on L3 (against decode_int), then on the
   co-processor's Verilog (Verilator from C++, against decode_int; a strip of
   the source and the float, int8 and RTL frames), fomm-256's convs, warps and
   element-wise ops priced on the ULX3S engine → the command that builds a block.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.table import Table

from boards.targets import BOARDS
from defs.params import GraceParams, preset
from grace.summary import elaborate_block, run_warps, simulate_block
from rtl.blocks import BLOCKS
from sim.runner import quiet

if TYPE_CHECKING:
    from grace.warp_report import WarpReport
    from model.fixed_decoder import IntSourceCache, QuantizedDecoder
    from model.int_backend import IntBackend
    from sim.warp import WarpCase

DEMO_VECTORS = 10_000
DEMO_SEED = 7  # synthetic clip
DEMO_FACE = 0  # the colour photo; seed 7's motion is not in the training set
DEMO_FRAMES = 50  # two seconds at 25 fps
DEMO_GOP = 25
#: Icarus, not Verilator, for the frame's warps: the demo runs on a clean clone
#: in CI, and Verilator's first build of the warp engine alone takes about 40 s
#: on two cores, where Icarus builds and runs the frame's 27 k cycles in about 15 s.
DEMO_WARP_SIMULATOR = "icarus"


@dataclass(frozen=True)
class InterFrame:
    """One inter frame as the int8 decoder decoded it: what `decode_int` was given."""

    decoder: QuantizedDecoder
    cache: IntSourceCache
    keypoints: dict[str, np.ndarray]  # decode_int's keypoint (and Jacobian) arguments
    key_frame: np.ndarray  # the decoded key frame (H, W, 3) uint8 the cache was encoded from
    #: this frame as the float and int8 decoders and the source gave it (for the RTL's strip)
    shown: dict[str, np.ndarray] | None = None


class _KeepFirstInterFrame:
    """A codec backend that forwards to the integer one and keeps the first inter
    frame's inputs, so the hardware half warps a frame the codec really decoded."""

    def __init__(self, backend: IntBackend) -> None:
        self.backend = backend
        self.first: InterFrame | None = None
        self.key_frame: np.ndarray | None = None

    def encode_source(self, source: Any) -> Any:
        from model.evaluate import to_uint8

        if self.first is None:
            self.key_frame = to_uint8(source)[0]
        return self.backend.encode_source(source)

    def decode(self, cache: Any, kp_driving: dict, kp_source: dict) -> dict[str, Any]:
        if self.first is None:
            keypoints = self.backend.stream_integers(kp_driving, kp_source)
            self.first = InterFrame(self.backend.decoder, cache, keypoints, self.key_frame)
        return self.backend.decode(cache, kp_driving, kp_source)


def run_demo(console: Console, build_root: Path) -> None:
    params = preset("tiny")
    start = time.monotonic()
    rows, frame = codec_demo(console, params, build_root / "demo")
    with quiet():  # the runner's messages go to runner.log files under build/, not the screen
        hardware_rows, exact = hardware_demo(console, params, build_root, frame)
    table = Table(title="summary", box=None, show_header=False)
    for k, v in [*rows, *hardware_rows, ("wall time", f"{time.monotonic() - start:.1f} s")]:
        table.add_row(k, v)
    console.print(table)
    if not exact:
        raise SystemExit(1)


def codec_demo(
    console: Console, params: GraceParams, out: Path
) -> tuple[list[tuple[str, str]], InterFrame]:
    """Encode, decode (float and int8) and score the clip; return the summary rows
    and the int8 decoder's first inter frame."""
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
    int_backend = _KeepFirstInterFrame(IntBackend(quantize_decoder(kp_detector, generator, params)))
    decoded_int = decode_stream(encoded.data, int_backend, preset=params.name, model=m)
    if int_backend.first is None:
        raise RuntimeError(f"the demo clip decoded no inter frame (GOP {DEMO_GOP})")
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
    rows = [
        ("bitrate", f"{rate.total_kbps:.1f} kbps at {float(fps):g} fps"),
        ("quality, float decoder", measured.row()),
        ("quality, int8 decoder", measured_int.row()),
        ("key frames only", baseline.row()),
        ("strip", str(out / "strip.png")),
    ]
    first = 1  # GOP > 1: the first inter frame follows the first key frame
    shown = {
        "source": clip[first],
        "float": decoded.frames[first],
        "int8": decoded_int.frames[first],
    }
    return rows, dataclasses.replace(int_backend.first, shown=shown)


def frame_warps(frame: InterFrame) -> list[WarpCase]:
    """The frame's warps as `decode_int` runs them: the key frame at the motion
    resolution by each of the K + 1 motions (recomputed from the keypoints as
    decode_int does, and checked against the flow it composed from them), then
    the source features by the dense flow, × occlusion."""
    from model.fixed_decoder import decode_int
    from model.fixed_motion import (
        affine_motions,
        compose_flow,
        compose_jacobians,
        keypoints_to_coords,
        sparse_motions,
    )
    from sim.warp import WarpCase

    kp, cache = frame.keypoints, frame.cache
    decoded = decode_int(frame.decoder, cache, **kp)
    kp_d, kp_s = keypoints_to_coords(kp["kp_driving_q"]), keypoints_to_coords(kp["kp_source_q"])
    size = cache.small.shape[1]
    if frame.decoder.jacobian:
        jac = compose_jacobians(kp["jac_source_q"], kp["jac_driving_q"])
        motions = affine_motions(kp_d, kp_s, jac, size)
    else:
        motions = sparse_motions(kp_d, kp_s, size)
    if not np.array_equal(compose_flow(decoded["mask"], motions), decoded["flow"]):
        raise RuntimeError("the recomputed motions are not the ones decode_int composed")
    cases = [WarpCase(cache.small, m, flow=f"motion {k}") for k, m in enumerate(motions)]
    occlusion = decoded["occlusion"]
    cases.append(WarpCase(cache.features, decoded["flow"], occlusion, flow="dense flow"))
    return cases


def hardware_demo(
    console: Console, params: GraceParams, build_root: Path, frame: InterFrame
) -> tuple[list[tuple[str, str]], bool]:
    """The hardware half; `frame` is the inter frame whose warps the warp engine runs.
    Returns the summary rows and whether every simulation was bit-exact."""
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
        f"4. conv engine ({params.array.rows}×{params.array.cols} MACs): {conv.units} random "
        f"layers, {conv.vectors:,} outputs, {conv.mismatches} mismatches, {conv.cycles:,} "
        f"cycles under stalls (cycle model without stalls: {conv.model_cycles:,})"
    )
    warps = frame_warps(frame)
    with console.status(f"5. warp engine: a frame's real warps, cocotb + {DEMO_WARP_SIMULATOR}…"):
        warp = run_warps(
            warps,
            params,
            simulator=DEMO_WARP_SIMULATOR,
            build_dir=build_root / "sim" / "warp" / params.key(),
            seed=5,
        )
    motion, features = warps[0], warps[-1]
    console.print(
        f"5. warp engine: frame 1's {len(warps) - 1} motions on the {_map(motion)} key frame "
        f"and its dense flow on the {_map(features)} features (× occlusion), {warp.tiles} tiles "
        f"in one run: {warp.samples:,} samples, {warp.mismatches} mismatches vs L2's warp, "
        f"{warp.cycles:,} cycles at full rate (cycle model, loads hidden: {warp.model_cycles:,})"
    )
    from grace.elementwise_demo import run_frame_elementwise

    with console.status(
        f"6. element-wise units: the frame's own ops, cocotb + {DEMO_WARP_SIMULATOR}…"
    ):
        units = run_frame_elementwise(
            frame, params, simulator=DEMO_WARP_SIMULATOR, build_root=build_root, seed=6
        )
    console.print(
        "6. element-wise units on frame 1's own heatmaps, motion maps and flow (under its "
        "mask) and mask softmax (its logits): "
        + "; ".join(
            f"{u.unit} {u.results:,} values, {u.mismatches} mismatches, {u.cycles:,} cycles"
            for u in units
        )
        + " (vs decode_int)"
    )
    isa = program_demo(frame)
    console.print(
        f"7. the whole decoder compiled for the ULX3S engine (ISA v{isa['version']}): "
        f"{isa['source']:,} instructions per GOP, {isa['frame']:,} per inter frame, a "
        f"{isa['image']:,}-byte image; frame 1 run on L3 instruction by instruction in "
        f"{isa['seconds']:.1f} s: {isa['mismatches']} mismatches vs decode_int"
    )
    with console.status("8. the co-processor's Verilog decodes frame 1 (Verilator, C++)…"):
        rtl = rtl_demo(frame, build_root)
    console.print(
        f"8. the co-processor (RTL, memory at 20 cycles with random stalls) ran the source "
        f"and frame programs: {rtl['source_cycles']:,} + {rtl['frame_cycles']:,} cycles "
        f"(overlap ratio {rtl['ratio']:.3f}), {rtl['seconds']:.1f} s of Verilator; "
        f"{rtl['mismatches']} mismatches vs decode_int → {rtl['strip']}"
    )
    from grace.engine_report import write_report

    engine = preset("ulx3s-85f").replace(model=preset("fomm-256").model)
    _, priced, priced_warps, priced_elementwise = write_report(engine, build_root / "bench")
    # (not planned here: elaborating the 16 plans took 24 s of CPU, and
    # tests/test_boards.py plans each block for each board)
    console.print(
        f"9. for resources and Fmax on a board: `grace build --board "
        f"{'|'.join(BOARDS)} --block {'|'.join(BLOCKS)}`"
    )
    n = params.numeric
    warp_verdict = (
        "[green]bit-exact[/]" if not warp.mismatches else f"[red]{warp.mismatches} mismatches[/]"
    )
    unit_mismatches = sum(u.mismatches for u in units)
    exact = not (
        stalled.mismatches or full.mismatches or conv.mismatches or warp.mismatches
        or unit_mismatches or isa["mismatches"] or rtl["mismatches"]
    )  # fmt: skip
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
            f"{conv.units} layers, {conv.vectors:,} outputs: "
            + ("[green]bit-exact[/]" if not conv.mismatches else f"[red]{conv.mismatches}[/]"),
        ),
        (
            "warp engine",
            f"{warp_verdict} on a frame's real warps ({warp.samples:,} samples, "
            f"{warp.cycles:,} cycles)",
        ),
        (
            "element-wise units",
            ("[green]bit-exact[/]" if not unit_mismatches else f"[red]{unit_mismatches}[/]")
            + f" on a frame's heatmaps, motions, flow and softmax "
            f"({sum(u.results for u in units):,} values)",
        ),
        (
            "whole frame as a program (L3)",
            ("[green]bit-exact[/]" if not isa["mismatches"] else f"[red]{isa['mismatches']}[/]")
            + f" with decode_int: {isa['frame']:,} instructions, {isa['seconds']:.1f} s",
        ),
        (
            "whole frame on the RTL",
            ("[green]bit-exact[/]" if not rtl["mismatches"] else f"[red]{rtl['mismatches']}[/]")
            + f" with decode_int: {rtl['frame_cycles']:,} cycles a frame (overlap ratio "
            f"{rtl['ratio']:.3f}) → {rtl['strip']}",
        ),
        (
            "fomm-256 on the ULX3S engine",
            f"{priced.array} MACs at {priced.clock_mhz:.0f} MHz (cycle model): "
            f"{priced.frame_ms:,.0f} ms per inter frame, MAC utilisation "
            f"{priced.frame_utilisation:.1%}",
        ),
        ("fomm-256 warps, same engine", _warp_row(priced_warps)),
        (
            "fomm-256 element-wise ops",
            f"{priced_elementwise.summary.frame_cycles:,} cycles per inter frame (cycle models), "
            f"{priced_elementwise.summary.conv_share:.2%} of the conv cycles",
        ),
    ]
    return rows, exact


def program_demo(frame: InterFrame) -> dict[str, int | float]:
    """Frame 1 compiled for the ULX3S engine and run on L3 (the source program on its key
    frame, then the frame program), against decode_int's pixels."""
    from compiler.decoder import compile_decoder
    from defs.isa import ISA_VERSION
    from model.fixed_decoder import decode_int
    from sim.l3.decoder import IsaDecoder

    hw = preset("ulx3s-85f")
    compiled = compile_decoder(frame.decoder, hw)
    isa = IsaDecoder(compiled)
    start = time.monotonic()
    isa.encode_source(frame.key_frame)
    k = frame.keypoints
    got = isa.decode(
        k["kp_driving_q"], k["kp_source_q"], k.get("jac_driving_q"), k.get("jac_source_q")
    )
    seconds = time.monotonic() - start
    want = decode_int(frame.decoder, frame.cache, **frame.keypoints)["frame"]
    return {
        "version": ISA_VERSION,
        "source": len(compiled.source_words),
        "frame": len(compiled.frame_words),
        "image": len(compiled.memory),
        "seconds": seconds,
        "mismatches": int(np.count_nonzero(got != want)),
    }


def rtl_demo(frame: InterFrame, build_root: Path) -> dict[str, object]:
    """Frame 1 on the co-processor's Verilog (the C++ harness): the source program on its
    key frame, then the frame program, against decode_int; a strip of the source and
    the float, int8 and RTL frames."""
    from compiler.decoder import compile_decoder
    from compiler.report import cost_steps
    from model.fixed_decoder import decode_int
    from model.video_io import write_strip
    from sim.coproc_cpp import simulate_cpp
    from sim.coproc_frame import frame_case

    compiled = compile_decoder(frame.decoder, preset("ulx3s-85f"))
    case = frame_case(compiled, frame.key_frame, **frame.keypoints)
    run, seconds = simulate_cpp(compiled.params, case.image, build_root=build_root)
    got = case.frame(run.memory)
    want = decode_int(frame.decoder, frame.cache, **frame.keypoints)["frame"]
    costs = cost_steps(compiled.frame_words, compiled.frame_steps, compiled.params)
    bound = sum(
        max(c.compute_cycles, c.memory_cycles(compiled.params.coproc.bus_bytes)) for c in costs
    )
    shown = dict(frame.shown or {})
    strip = build_root / "demo" / "rtl-frame.png"
    write_strip({k: v[None] for k, v in {**shown, "RTL": got}.items()}, strip)
    faults = [r.fault for r in run.programs if r.fault]
    return {
        "source_cycles": run.programs[0].cycles,
        "frame_cycles": run.programs[-1].cycles,
        "ratio": run.programs[-1].cycles / max(bound, 1),
        "seconds": seconds,
        "mismatches": int(np.count_nonzero(got != want)) + len(faults),
        "strip": strip,
    }


def _map(case: WarpCase) -> str:
    """'3×16²'-style size of a warp's source map."""
    (h, w), c = case.size, case.channels
    return f"{c}×{h}²" if h == w else f"{c}×{h}×{w}"


def _warp_row(report: WarpReport) -> str:
    s = report.summary
    if s is None:
        return f"do not fit: {report.refused}"
    return (
        f"{s.frame_cycles:,} cycles per inter frame (cycle model), {s.conv_share:.2%} of the "
        f"conv cycles, {s.samples_per_cycle:.2f} samples/cycle"
    )
