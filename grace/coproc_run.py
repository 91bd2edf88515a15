"""`grace sim --block top`: a whole frame decoded by the co-processor's RTL.

The decoder is compiled for the hardware preset; the host writes a key frame
and one inter frame's keypoints; the RTL runs the source program, then the
frame program, on a simulated memory with the given latency and random
stalls (Verilator or Icarus under cocotb). The whole image is compared with
L3's (and so L2's) byte for byte. Reported: cycles per program, each engine's
and queue's busy and stall share, the overlap ratio (the frame's cycles
against Σ over steps of max(compute cycles, memory cycles at the port's
bytes per cycle)), the co-processor cycle model's prediction
(rtl/coproc_cycles.py) and its error against the RTL, and the Verilator wall time; written to
build/sim/top-<model>-<hw>/ as report.json and frame.png (L3 | RTL).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from rich.console import Console

from compiler.decoder import compile_decoder
from compiler.isa import decode
from compiler.report import command_cycles, cost_steps
from defs.coproc import COUNTER_NAMES
from defs.params import GraceParams
from grace.compile_run import quantized_decoder
from rtl.coproc_cycles import program_cycles
from sim.coproc_frame import FrameCase, frame_case, mismatches, simulate_frame
from sim.coproc_sim import CoprocRun

#: The ECPIX-5 85F's DDR3 (512 MB): the C++ harness's memory for fomm-256.
ECPIX5_DDR3_BYTES = 512 << 20


@dataclass
class TopReport:
    path: Path
    summary: dict

    def lines(self) -> list[str]:
        s = self.summary
        out = []
        for name in ("source", "frame"):
            run = s["programs"][name]
            out.append(
                f"{name} program: {run['instructions']:,} instructions, {run['cycles']:,} cycles; "
                f"overlap ratio {run['overlap_ratio']:.3f} (cycles / Σ max(compute, memory) "
                f"= {run['bound']:,})"
            )
            out.append(
                f"  cycle model: {run['model_cycles']:,} cycles, {run['model_error']:+.2%} "
                "against the RTL"
            )
            out.append("  busy / stall: " + ", ".join(
                f"{k} {v['busy']:.1%}/{v['stall']:.1%}" for k, v in run["units"].items()
            ))  # fmt: skip
        out.append(
            f"mismatches: {s['mismatches']} image bytes, {s['frame_mismatches']} frame values "
            f"(RTL vs L3); wall time {s['seconds']:.1f} s ({s['simulator']})"
        )
        return out


def _keypoints(model: GraceParams, decoder: object, key_frame: np.ndarray, frame: np.ndarray):
    """A frame's keypoints as the bitstream carries them, from the committed detector."""
    import torch

    from grace.codec_run import load_models
    from model.int_backend import IntBackend, frame_tensor, stream_keypoints

    kp_detector, _ = load_models(model, None)
    with torch.no_grad():
        source = stream_keypoints(kp_detector(frame_tensor(key_frame)))
        driving = stream_keypoints(kp_detector(frame_tensor(frame)))
    return IntBackend(decoder).stream_integers(driving, source)


def _random_keypoints(model: GraceParams, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    k = model.model.num_kp
    out = {
        "kp_driving_q": rng.integers(-64, 65, (k, 2)),
        "kp_source_q": rng.integers(-64, 65, (k, 2)),
    }
    if model.model.estimate_jacobian:
        eye = np.eye(2, dtype=np.int64) * 64
        out["jac_driving_q"] = eye + rng.integers(-8, 9, (k, 2, 2))
        out["jac_source_q"] = eye + rng.integers(-8, 9, (k, 2, 2))
    return out


def build_case(
    console: Console, model: GraceParams, hw: GraceParams, *, seed: int, random_weights: bool
) -> FrameCase:
    from model.synthetic import ClipSpec, synthesize_clip

    decoder = quantized_decoder(model, random_weights, console)
    target = hw.replace(model=model.model, numeric=model.numeric)
    with console.status("compiling the decoder and running it on L3…"):
        compiled = compile_decoder(decoder, target)
        size = model.model.image_size
        clip = synthesize_clip(ClipSpec(seed=seed, num_frames=2, size=size, face=seed % 90))
        if random_weights:
            keypoints = _random_keypoints(model, seed)
        else:
            keypoints = _keypoints(model, decoder, clip[0], clip[1])
        return frame_case(compiled, clip[0], **keypoints)


def run_top(
    console: Console,
    model: GraceParams,
    hw: GraceParams,
    *,
    simulator: str,
    latency: int,
    stalls: int,
    seed: int,
    build_root: Path,
    random_weights: bool = False,
    harness: str = "cocotb",
    memory_bytes: int | None = None,
) -> TopReport:
    """`harness` cocotb runs `simulator` under cocotb; cpp runs Verilator's model from C++
    (sim/coproc_cpp.py) with `memory_bytes` of simulated memory (default: the image's)."""
    case = build_case(console, model, hw, seed=seed, random_weights=random_weights)
    if harness == "cpp":
        from rich.progress import BarColumn, Progress, TextColumn

        from sim.coproc_cpp import simulate_cpp

        simulator = "verilator, C++ harness"
        words = None if memory_bytes is None else memory_bytes // hw.coproc.bus_bytes
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,} cycles"),
        )
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("building, then simulating the co-processor", total=None)
            run, seconds = simulate_cpp(
                case.compiled.params, case.image, build_root=build_root, memory_words=words,
                latency=latency, stall_threshold=stalls, seed=seed,
                on_cycles=lambda n: progress.update(task, completed=n),
                long_run=model.name != "tiny",
            )  # fmt: skip
    else:
        with console.status(
            f"simulating the co-processor ({simulator}; the first build takes minutes)…"
        ):
            start = time.monotonic()
            run = simulate_frame(
                case, simulator=simulator, build_dir=build_root / "sim" / "coproc",
                latency=latency, stall_threshold=stalls, seed=seed,
            )  # fmt: skip
            seconds = time.monotonic() - start
    out = build_root / "sim" / f"top-{model.name}-{hw.name}"
    out.mkdir(parents=True, exist_ok=True)
    summary = _summary(case, run, simulator, latency, stalls, seconds)
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    want, got = case.frame(case.expected), case.frame(run.memory)
    PILImage.fromarray(np.concatenate([want, got], axis=1)).resize(
        (4 * 2 * want.shape[1], 4 * want.shape[0]), PILImage.NEAREST
    ).save(out / "frame.png")
    return TopReport(out, summary)


def model_cycles(words: list[int], params: GraceParams, latency: int, stalls: int) -> int:
    """The co-processor cycle model's prediction (rtl/coproc_cycles.py) for a program,
    each engine command priced by its engine's model."""
    timing = program_cycles(
        words, params, latency=latency, stall_threshold=stalls,
        price=lambda word: command_cycles(decode(word, params), params),
    )  # fmt: skip
    return timing.cycles


def _summary(
    case: FrameCase, run: CoprocRun, simulator: str, latency: int, stalls: int, seconds: float
) -> dict:
    c = case.compiled
    bus = c.params.coproc.bus_bytes
    programs = {}
    for name, words, steps, result in (
        ("source", c.source_words, c.source_steps, run.programs[0]),
        ("frame", c.frame_words, c.frame_steps, run.programs[-1]),
    ):
        costs = cost_steps(words, steps, c.params)
        bound = sum(max(s.compute_cycles, s.memory_cycles(bus)) for s in costs)
        cycles = max(result.cycles, 1)
        model = model_cycles(words, c.params, latency, stalls)
        units = {}
        for unit in ("load", "compute", "store", "conv", "warp", "act", "softmax", "heatmap",
                     "motion", "port"):  # fmt: skip
            units[unit] = {
                "busy": result.counters[f"{unit}_busy"] / cycles,
                "stall": result.counters[f"{unit}_stall"] / cycles,
            }
        programs[name] = {
            "instructions": len(words),
            "cycles": result.cycles,
            "fault": result.fault.name,
            "bound": bound,
            "overlap_ratio": result.cycles / max(bound, 1),
            "model_cycles": model,
            "model_error": model / cycles - 1,
            "counters": {k: result.counters[k] for k in COUNTER_NAMES},
            "units": units,
        }
    return {
        "params": c.params.name,
        "image_size": c.params.model.image_size,
        "simulator": simulator,
        "latency": latency,
        "stall_threshold": stalls,
        "bus_bytes": bus,
        "programs": programs,
        "mismatches": mismatches(case, run.memory),
        "frame_mismatches": int(
            np.count_nonzero(case.frame(run.memory) != case.frame(case.expected))
        ),
        "seconds": seconds,
    }
