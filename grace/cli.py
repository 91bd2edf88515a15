"""The `grace` command line: elaborate, simulate, build and demo GRACE blocks.

User mistakes (unknown preset, block or board, bad parameters, a missing tool)
end in one line on stderr, `grace: error: ...`, and exit status 2; a simulation
that runs but mismatches exits with status 1.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from defs.params import PRESETS, GraceParams, ParamsError, load

if TYPE_CHECKING:
    from grace.elementwise_report import ElementwiseReport
    from grace.warp_report import WarpReport

console = Console()
BUILD_ROOT = Path("build")


class GraceError(Exception):
    """A user-facing error: one line that says what is wrong and what to do."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's mistake or environment, not a GRACE bug."""
    from amaranth.build.plat import ToolNotFound

    from boards.build import BuildError
    from boards.targets import ProgrammingError, UnknownBoard
    from grace.codec_run import CodecRunError
    from grace.compile_run import CompileError
    from model.bitstream import BitstreamError
    from model.checkpoint import CheckpointError
    from model.codec import CodecError
    from model.int_backend import IntBackendError
    from model.ptq import QuantizationError
    from model.video_io import VideoError
    from rtl.blocks import UnknownBlock
    from sim.runner import SimulationError

    return (
        GraceError,
        ParamsError,
        UnknownBlock,
        UnknownBoard,
        SimulationError,
        BuildError,
        ToolNotFound,
        CodecRunError,
        BitstreamError,
        CheckpointError,
        CodecError,
        VideoError,
        ProgrammingError,
        IntBackendError,
        QuantizationError,
        CompileError,
    )


def friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors into a single line and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except _user_errors() as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            click.echo(f"grace: error: {message}", err=True)
            sys.exit(2)

    return wrapper


def _params(spec: str) -> GraceParams:
    return load(spec)


params_option = click.option(
    "--params",
    "params_spec",
    default="tiny",
    show_default=True,
    metavar="PRESET|FILE.json",
    help=f"Parameter preset ({', '.join(PRESETS)}) or a JSON file from `grace params`.",
)
block_option = click.option(
    "--block", default="requant", show_default=True, help="Which block (see `grace elaborate`)."
)


checkpoint_option = click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Trained checkpoint (default: the one committed for the preset).",
)
face_option = click.option(
    "--face", default=0, show_default=True, help="Identity of the synthetic clip."
)


def synthetic_option(help_text: str) -> Callable[..., Any]:
    return click.option("--synthetic", type=int, default=None, metavar="SEED", help=help_text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="grace-agc")
def main() -> None:
    """GRACE: open hardware generator for generative face-video decoders."""


@main.command()
@friendly
def doctor() -> None:
    """Check every tool GRACE needs; exit non-zero naming what is missing."""
    from grace.doctor import check_tools

    statuses = check_tools()
    table = Table("tool", "for", "version", "status", box=None)
    for s in statuses:
        status = "[green]OK[/]" if s.ok else "[red]fails[/]" if s.problem else "[red]missing[/]"
        table.add_row(s.name, s.purpose, s.version or "-", status)
    console.print(table)
    missing = [s for s in statuses if not s.ok]
    if missing:
        for s in missing:
            if s.problem:
                click.echo(f"grace: {s.name} ({s.purpose}) fails: {s.problem}", err=True)
            else:
                click.echo(f"grace: missing {s.name} ({s.purpose}): {s.fix}", err=True)
        sys.exit(1)


@main.command()
@click.argument("preset_name", default="tiny", metavar="[PRESET|FILE.json]")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON here instead of printing it.",
)
@friendly
def params(preset_name: str, output: Path | None) -> None:
    """Print a parameter preset as JSON (edit it and pass it back with --params)."""
    text = _params(preset_name).to_json()
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
        click.echo(f"wrote {output}")
    else:
        click.echo(text)


@main.command()
@block_option
@params_option
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=BUILD_ROOT / "verilog",
    show_default=True,
    help="Output directory.",
)
@friendly
def elaborate(block: str, params_spec: str, out_dir: Path) -> None:
    """Elaborate a block to Verilog and summarise its ports."""
    from grace.summary import elaborate_block

    path, ports = elaborate_block(block, _params(params_spec), out_dir)
    table = Table("port", "dir", "width", box=None)
    for name, direction, width in ports:
        table.add_row(name, direction, str(width))
    console.print(table)
    console.print(f"wrote {path}")


@main.command()
@block_option
@params_option
@click.option(
    "--sim",
    "simulator",
    type=click.Choice(["icarus", "verilator"]),
    default="verilator",
    show_default=True,
)
@click.option(
    "--vectors",
    default=10_000,
    show_default=True,
    help="Random vectors (+ extremes); for conv, one random layer per 2,500; for warp, "
    "about this many output samples.",
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--valid-prob", default=0.8, show_default=True, help="Chance the source offers data on a cycle."
)
@click.option(
    "--ready-prob",
    default=0.8,
    show_default=True,
    help="Chance the sink accepts on a cycle (back-pressure).",
)
@click.option("--waves", is_flag=True, help="Dump waveforms into the build directory.")
@click.option(
    "--preset",
    "model_preset",
    type=click.Choice(["tiny", "fomm-256"]),
    default="tiny",
    show_default=True,
    help="--block top: the decoder whose frame the co-processor decodes.",
)
@click.option(
    "--latency", default=20, show_default=True, help="--block top: memory latency in cycles."
)
@click.option(
    "--stalls",
    default=60,
    show_default=True,
    type=click.IntRange(0, 255),
    help="--block top: the memory stalls a cycle when its LFSR's low byte is below this.",
)
@click.option(
    "--harness",
    type=click.Choice(["cocotb", "cpp"]),
    default="cocotb",
    show_default=True,
    help="--block top: cocotb (--sim picks the simulator) or Verilator driven from C++.",
)
@friendly
def sim(
    block: str,
    params_spec: str,
    simulator: str,
    vectors: int,
    seed: int,
    valid_prob: float,
    ready_prob: float,
    waves: bool,
    model_preset: str,
    latency: int,
    stalls: int,
    harness: str,
) -> None:
    """Simulate a block's Verilog in cocotb against the NumPy reference.

    `--block top` decodes a whole frame on the co-processor (on the ULX3S hardware
    preset unless --params names another) and compares it with L3."""
    from grace.summary import simulate_block

    if block == "top":
        source = click.get_current_context().get_parameter_source("params_spec")
        hw = "ulx3s-85f" if source == click.core.ParameterSource.DEFAULT else params_spec
        _sim_top(model_preset, hw, simulator, latency, stalls, seed, harness)
        return
    if vectors < 1:
        raise GraceError(f"--vectors {vectors}: must be at least 1")
    for name, p in (("--valid-prob", valid_prob), ("--ready-prob", ready_prob)):
        if not 0 < p <= 1:
            raise GraceError(f"{name} {p}: must be in (0, 1]")
    with console.status(f"simulating {block} with {simulator}…"):
        start = time.monotonic()
        report = simulate_block(
            block,
            _params(params_spec),
            simulator=simulator,
            vectors=vectors,
            seed=seed,
            valid_prob=valid_prob,
            ready_prob=ready_prob,
            waves=waves,
            build_root=BUILD_ROOT,
        )
    console.print(report.render(time.monotonic() - start))
    if report.mismatches:
        sys.exit(1)


def _sim_top(
    model_preset: str, hw: str, simulator: str, latency: int, stalls: int, seed: int, harness: str
) -> None:
    from grace.coproc_run import ECPIX5_DDR3_BYTES, run_top
    from rtl.coproc.sim_memory import MAX_LATENCY
    from sim.runner import quiet

    if not 1 <= latency <= MAX_LATENCY:
        raise GraceError(f"--latency {latency}: the simulated memory answers in 1..{MAX_LATENCY}")
    if model_preset != "tiny" and harness != "cpp":
        raise GraceError(
            f"--preset {model_preset}: its image is too large to load through cocotb; "
            "add --harness cpp"
        )
    with quiet():
        report = run_top(
            console, _params(model_preset), _params(hw), simulator=simulator, latency=latency,
            stalls=stalls, seed=seed or 1, build_root=BUILD_ROOT,
            random_weights=model_preset != "tiny", harness=harness,
            memory_bytes=ECPIX5_DDR3_BYTES if harness == "cpp" and model_preset != "tiny" else None,
        )  # fmt: skip
    for line in report.lines():
        console.print(line)
    console.print(f"wrote {report.path / 'report.json'}, {report.path / 'frame.png'}")
    if report.summary["mismatches"]:
        sys.exit(1)


@main.command()
@click.option(
    "--board",
    "board_name",
    type=str,
    default=None,
    help="ulx3s-85f or icebreaker (default: the preset's board).",
)
@block_option
@click.option(
    "--params",
    "params_spec",
    default=None,
    metavar="PRESET|FILE.json",
    help="Parameters (default: the preset named after the board).",
)
@click.option("--program", is_flag=True, help="Flash the board after building.")
@click.option(
    "--seed",
    "seeds",
    multiple=True,
    type=click.IntRange(min=1),
    help="nextpnr's placer seed (placement, and with it Fmax, varies by seed; "
    "default: nextpnr's own). Repeat it to sweep: one build per seed, a core "
    "each, and the fastest is reported (and flashed with --program).",
)
@friendly
def build(
    board_name: str | None,
    block: str,
    params_spec: str | None,
    program: bool,
    seeds: tuple[int, ...],
) -> None:
    """Synthesise, place and route a block for a board; report resources and Fmax."""
    from boards.build import BuildReport, sweep
    from boards.build import build as run_build
    from boards.targets import board as board_target
    from boards.targets import run_programmer
    from grace.summary import render_build, render_sweep

    if params_spec is None:
        params_spec = board_name if board_name in PRESETS else "tiny"
    chosen = _params(params_spec)
    if board_name is None and chosen.board is None:
        raise GraceError("no board given: pass --board ulx3s-85f or --board icebreaker")
    name = board_name or chosen.board
    start = time.monotonic()
    if len(seeds) <= 1:
        seed = seeds[0] if seeds else None
        with console.status(f"yosys + nextpnr for {name} (a few minutes)…"):
            report = run_build(block, chosen, BUILD_ROOT, board_name, program=program, seed=seed)
        console.print(render_build(report, time.monotonic() - start))
        return

    def progress(seed: int, report: BuildReport) -> None:
        console.print(f"seed {seed}: {report.fmax_mhz:.1f} MHz")

    with console.status(f"yosys + nextpnr for {name}, seeds {', '.join(map(str, seeds))}…"):
        reports = sweep(block, chosen, BUILD_ROOT, board_name, seeds=seeds, on_report=progress)
    best = max(reports, key=lambda s: reports[s].fmax_mhz)
    console.print(render_sweep(reports, best))
    console.print(render_build(reports[best], time.monotonic() - start))
    if program:
        run_programmer(board_target(name), str(reports[best].bitstream))


@main.command()
@click.argument("source", required=False, metavar="[INPUT]")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the .grace bitstream.",
)
@synthetic_option("Encode a synthetic talking-face clip instead of INPUT.")
@face_option
@click.option("--frames", default=64, show_default=True, help="Frames to encode (at most).")
@params_option
@checkpoint_option
@click.option("--gop", default=32, show_default=True, help="Frames per group of pictures.")
@click.option("--quality", default=90, show_default=True, help="Key-frame JPEG quality.")
@click.option(
    "--key-codec", type=click.Choice(["jpeg", "webp", "png"]), default="jpeg", show_default=True
)
@click.option("--kp-step", default=1 / 256, show_default=True, help="Keypoint quantisation step.")
@click.option(
    "--kp-coder",
    type=click.Choice(["adaptive", "exp-golomb"]),
    default="adaptive",
    show_default=True,
    help="Keypoint residual coder: a model fitted per GOP with ANS coding, or "
    "predictive Exp-Golomb (docs/bitstream.md).",
)
@friendly
def encode(
    source: str | None,
    output: Path,
    synthetic: int | None,
    face: int,
    frames: int,
    params_spec: str,
    checkpoint: Path | None,
    gop: int,
    quality: int,
    key_codec: str,
    kp_step: float,
    kp_coder: str,
) -> None:
    """Encode a video (file or folder of frames) or a synthetic clip to a bitstream."""
    from grace.codec_run import CodecReport, input_clip, load_models
    from model.codec import CodecSettings, bitrate, encode_clip

    if frames < 1:
        raise GraceError(f"--frames {frames}: must be at least 1")
    params = _params(params_spec)
    settings = CodecSettings(
        gop_size=gop, key_codec=key_codec, key_quality=quality, kp_step=kp_step, kp_coder=kp_coder
    )
    kp_detector, _ = load_models(params, checkpoint)
    clip, fps = input_clip(params, source, synthetic, frames, face)
    encoded = encode_clip(clip, fps, params.name, kp_detector, settings)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(encoded.data)
    report = CodecReport(bitrate(encoded.data), None, len(clip), fps, params.model.image_size)
    for line in report.lines():
        console.print(line)
    console.print(f"wrote {output}")


@main.command()
@click.argument("stream", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Decoded video (.mp4); a PNG strip is written next to it.",
)
@click.option(
    "--backend",
    type=click.Choice(["float", "int", "isa", "rtl"]),
    default="float",
    show_default=True,
    help="float: PyTorch; int: the integer reference (L2), calibrated on the fly; "
    "isa: that decoder compiled for --hw and run instruction by instruction (L3); "
    "rtl: the same programs on the co-processor's Verilog (Verilator; minutes a frame).",
)
@click.option(
    "--hw",
    "hw_spec",
    default="ulx3s-85f",
    show_default=True,
    metavar="PRESET|FILE.json",
    help="Hardware (array, buffers) the isa and rtl backends compile for.",
)
@params_option
@checkpoint_option
@click.option(
    "--reference",
    default=None,
    metavar="INPUT",
    help="Source video/folder to measure PSNR/SSIM/MS-SSIM against.",
)
@synthetic_option("Measure against this synthetic clip (as encoded with --synthetic).")
@face_option
@friendly
def decode(
    stream: Path,
    output: Path,
    backend: str,
    hw_spec: str,
    params_spec: str,
    checkpoint: Path | None,
    reference: str | None,
    synthetic: int | None,
    face: int,
) -> None:
    """Decode a bitstream to video frames; report bitrate and, given the source, quality."""
    from grace.codec_run import CodecReport, input_clip, make_backend
    from model.codec import bitrate, decode_stream
    from model.metrics import quality
    from model.video_io import write_strip, write_video

    params = _params(params_spec)
    try:
        data = stream.read_bytes()
    except OSError as exc:
        raise GraceError(f"cannot read {stream}: {exc.strerror}") from None
    m = params.model
    if backend in ("isa", "rtl"):
        from rich.progress import Progress

        from sim.runner import quiet

        where = "on L3" if backend == "isa" else "on the RTL (Verilator)"
        with Progress(console=console, transient=True) as progress, quiet():
            task = progress.add_task(f"decoding {stream} {where} ({hw_spec})", total=None)
            decoder = make_backend(
                backend, params, checkpoint, _params(hw_spec), lambda: progress.advance(task),
                build_root=BUILD_ROOT,
            )  # fmt: skip
            decoded = decode_stream(data, decoder, preset=params.name, model=m)
    else:
        with console.status(f"decoding {stream} ({backend})…"):
            decoder = make_backend(backend, params, checkpoint)
            decoded = decode_stream(data, decoder, preset=params.name, model=m)
    write_video(decoded.frames, output, decoded.fps)
    strip = output.with_suffix(".png")
    rows = {"decoded": decoded.frames}
    measured = None
    if reference is not None or synthetic is not None:
        source, _ = input_clip(params, reference, synthetic, decoded.frames.shape[0], face)
        if source.shape != decoded.frames.shape:
            raise GraceError(
                f"reference has {source.shape[0]} frames of {source.shape[1:3]}, "
                f"the stream {decoded.frames.shape[0]} of "
                f"{decoded.frames.shape[1:3]}; pass the clip that was encoded"
            )
        measured = quality(source, decoded.frames)
        rows = {"source": source, **rows}
    write_strip(rows, strip)
    report = CodecReport(
        bitrate(data), measured, decoded.frames.shape[0], decoded.fps, m.image_size
    )
    for line in report.lines():
        console.print(line)
    console.print(f"wrote {output} and {strip}")


@main.command("compile")
@click.option(
    "--preset",
    "model_spec",
    default="tiny",
    show_default=True,
    metavar="PRESET|FILE.json",
    help="The decoder (model) to compile: tiny (the committed checkpoint) or fomm-256.",
)
@click.option(
    "--params",
    "hw_spec",
    default="ulx3s-85f",
    show_default=True,
    metavar="PRESET|FILE.json",
    help="The hardware (array, buffers, board) it is compiled for.",
)
@click.option(
    "--random-weights",
    is_flag=True,
    help="Random weights calibrated on one frame (fomm-256 has no checkpoint).",
)
@friendly
def compile_command(model_spec: str, hw_spec: str, random_weights: bool) -> None:
    """Lower the int8 decoder to programs and a memory image; report each layer's cost."""
    from grace.compile_run import run_compile

    model = _params(model_spec)
    run_compile(
        console, model, _params(hw_spec), BUILD_ROOT / "compile", random_weights=random_weights
    )


@main.command("train")
@click.option(
    "--preset", "params_spec", default="tiny", show_default=True, metavar="PRESET|FILE.json"
)
@click.option("--steps", default=4000, show_default=True)
@click.option("--minutes", type=float, default=None, help="Stop (with a checkpoint) after this.")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming the last run.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Export the trained weights here (e.g. model/weights/tiny.pth).",
)
@click.option("--eval-clips", default=8, show_default=True, help="Held-out clips to score.")
@click.option(
    "--gan",
    is_flag=True,
    help="Add FOMM's multi-scale discriminator, LSGAN and feature-matching losses "
    "(run kept apart, under build/train/PRESET-gan).",
)
@click.option("--gan-weight", default=1.0, show_default=True, help="With --gan: generator GAN.")
@click.option(
    "--fm-weight", default=10.0, show_default=True, help="With --gan: feature matching, per layer."
)
@friendly
def train_command(
    params_spec: str,
    steps: int,
    minutes: float | None,
    fresh: bool,
    output: Path | None,
    eval_clips: int,
    gan: bool,
    gan_weight: float,
    fm_weight: float,
) -> None:
    """Train a preset's decoder on synthetic clips (CPU, resumable) and score it."""
    from grace.train_run import run_training

    if steps < 1 or eval_clips < 1:
        raise GraceError("--steps and --eval-clips must be at least 1")
    if gan and (gan_weight < 0 or fm_weight < 0 or gan_weight == fm_weight == 0):
        raise GraceError("--gan-weight and --fm-weight must be >= 0, one of them > 0")
    params = _params(params_spec)
    run_training(
        console,
        params,
        BUILD_ROOT / "train" / (params.name + ("-gan" if gan else "")),
        steps=steps,
        minutes=minutes,
        fresh=fresh,
        output=output,
        eval_clips=eval_clips,
        gan_weights=(gan_weight, fm_weight) if gan else None,
    )


@main.command()
@click.option(
    "--preset", "params_spec", default="fomm-256", show_default=True, metavar="PRESET|FILE.json"
)
@click.option("--markdown", is_flag=True, help="Print the table as Markdown (for the docs).")
@friendly
def layers(params_spec: str, markdown: bool) -> None:
    """List every operation of the decoder as the accelerator runs it, after fusion."""
    from model.fusion import fusion_plan, plan_markdown

    ops = fusion_plan(_params(params_spec).model)
    if markdown:
        click.echo(plan_markdown(ops))
        return
    table = Table("phase", "layer", "op", "became", "shape", "MMAC", box=None)
    for o in ops:
        table.add_row(
            o.phase, o.name, o.op, o.became, o.shape, f"{o.macs / 1e6:,.1f}" if o.macs else "–"
        )
    console.print(table)
    for phase in ("per GOP", "per frame"):
        total = sum(o.macs for o in ops if o.phase == phase)
        console.print(f"{phase}: {total / 1e9:.2f} GMAC")


@main.command()
@click.option("--repeats", default=5, show_default=True, help="Timed runs per measurement.")
@click.option(
    "--engine-only", is_flag=True, help="Only the engines' cycle models (skip CPU timing)."
)
@click.option(
    "--engine-params",
    default="ulx3s-85f",
    show_default=True,
    metavar="PRESET|FILE.json",
    help="Engine (array, warp buffer, clock) priced on the fomm-256 and tiny graphs.",
)
@friendly
def bench(repeats: int, engine_only: bool, engine_params: str) -> None:
    """Performance report: the conv and warp engines (cycle models), then the CPU decoders."""
    from grace.bench import run_bench

    if repeats < 1:
        raise GraceError(f"--repeats {repeats}: must be at least 1")
    _engine_report(engine_params)
    if engine_only:
        return
    with console.status("timing the float decoder and the integer reference…"):
        results = run_bench(BUILD_ROOT / "bench", repeats=repeats)
    table = Table(
        "",
        *(r.preset for r in results),
        box=None,
        title="decoder on this CPU (median, random weights)",
    )
    rows = [
        ("resolution", lambda r: f"{r.resolution}²"),
        ("GMAC per GOP (key frame)", lambda r: f"{r.gop_gmac:.3f}"),
        ("GMAC per inter frame", lambda r: f"{r.frame_gmac:.3f}"),
        ("float ms per GOP", lambda r: f"{r.gop_ms:.1f}"),
        ("float ms per frame", lambda r: f"{r.frame_ms:.1f}"),
        ("float GMAC/s", lambda r: f"{r.frame_gmac_per_s:.1f}"),
        ("int8 L2 ms per frame", lambda r: f"{r.int_frame_ms:.0f}"),
        ("L2 / float", lambda r: f"{r.int_frame_ms / r.frame_ms:.1f}×"),
        ("threads", lambda r: str(r.threads)),
    ]
    for label, cell in rows:
        table.add_row(label, *(cell(r) for r in results))
    console.print(table)
    console.print(f"wrote {BUILD_ROOT / 'bench' / 'bench.json'}")


def _engine_report(spec: str) -> None:
    from grace.elementwise_report import price_elementwise
    from grace.engine_report import layer_costs, summarise, write_report
    from grace.warp_report import price_warps

    engine = load(spec)
    params = engine.replace(model=PRESETS["fomm-256"].model)
    costs, summary, warps, elementwise = write_report(params, BUILD_ROOT / "bench")
    table = Table(
        "phase", "layer", "shape", "mapping", "MMAC", "cycles", "util.",
        box=None,
        title=f"conv engine {summary.array} ({params.name}) on fomm-256, cycle model",
    )  # fmt: skip
    for c in costs:
        util = f"{c.utilisation(params.array.macs):.1%}" if c.cycles else "–"
        cycles = f"{c.cycles:,}" if c.cycles else "–"
        table.add_row(c.phase, c.name, c.shape, c.mapping, f"{c.macs / 1e6:,.1f}", cycles, util)
    console.print(table)
    console.print(
        f"per inter frame: {summary.frame_cycles:,} cycles, MAC utilisation "
        f"{summary.frame_utilisation:.1%} (MAC-weighted), {summary.frame_ms:,.0f} ms at "
        f"{summary.clock_mhz:.0f} MHz = {summary.effective_gmac_per_s:.1f} effective GMAC/s"
    )
    console.print(
        f"per GOP (key frame): {summary.gop_cycles:,} cycles, utilisation "
        f"{summary.gop_utilisation:.1%}"
    )
    if summary.frame_layers_over_buffer:
        console.print(
            f"{summary.frame_layers_over_buffer} per-frame layers "
            f"({summary.frame_macs_over_buffer:.1%} of the MACs) need more weight words than "
            f"the {params.buffers.weight_depth:,}-word buffer holds: priced as if they fitted "
            "(input-channel splitting is not built)"
        )
    tiny = engine.replace(model=PRESETS["tiny"].model)
    tiny_warps = price_warps(tiny, summarise(tiny, layer_costs(tiny)).frame_cycles)
    _warp_lines(engine, {"fomm-256": warps, "tiny": tiny_warps})
    tiny_conv = summarise(tiny, layer_costs(tiny)).frame_cycles
    _elementwise_lines(
        engine, {"fomm-256": elementwise, "tiny": price_elementwise(tiny, tiny_conv)}
    )
    console.print(f"wrote {BUILD_ROOT / 'bench' / f'engine-{params.name}.png'} (and .json)")


def _warp_lines(engine: GraceParams, reports: dict[str, WarpReport]) -> None:
    """Each model's warps on the engine's warp unit: per op, then per inter frame."""
    w = engine.warp
    lanes = f"{w.lanes} lane{'s' if w.lanes > 1 else ''}"
    table = Table(
        "model", "warp", "shape", "tiles", "channel-samples", "cycles",
        box=None,
        title=f"warp engine ({engine.name}: {lanes}, {w.depth:,} words per bank, "
        "double-buffered), cycle model",
    )  # fmt: skip
    for model, report in reports.items():
        for c in report.costs:
            table.add_row(model, c.name, c.shape, f"{c.tiles}", f"{c.samples:,}", f"{c.cycles:,}")
    console.print(table)
    for model, report in reports.items():
        s = report.summary
        if s is None:
            console.print(f"warps of {model}: do not fit this engine: {report.refused}")
            continue
        console.print(
            f"warps of {model} per inter frame: {s.frame_cycles:,} cycles, "
            f"{s.samples_per_cycle:.3f} channel-samples per cycle, {s.conv_share:.3%} of the "
            f"conv engine's {s.conv_frame_cycles:,} cycles"
        )


def _elementwise_lines(engine: GraceParams, reports: dict[str, ElementwiseReport]) -> None:
    """Each model's element-wise ops on their units: per op, then per inter frame."""
    table = Table(
        "model", "op", "runs on", "results", "cycles",
        box=None,
        title=f"element-wise ops ({engine.name}), cycle models, each op serial with the convs",
    )  # fmt: skip
    for model, report in reports.items():
        for c in report.costs:
            cycles = f"{c.cycles:,}" + (" per GOP" if c.per_gop else "")
            table.add_row(model, c.op, c.unit, f"{c.elements:,}", cycles)
    console.print(table)
    for model, report in reports.items():
        s = report.summary
        console.print(
            f"element-wise ops of {model} per inter frame (per-GOP ops over {s.gop} frames): "
            f"{s.frame_cycles:,} cycles, {s.conv_share:.2%} of the conv engine's "
            f"{s.conv_frame_cycles:,} cycles"
        )


@main.command("compare")
@click.argument("candidate", type=click.Path(dir_okay=False, path_type=Path))
@params_option
@click.option(
    "--baseline",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Checkpoint to beat (default: the one committed for the preset).",
)
@click.option("--clips", default=8, show_default=True, help="Held-out clips (unseen identities).")
@click.option("--frames", default=32, show_default=True, help="Frames per clip.")
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=BUILD_ROOT / "compare",
    show_default=True,
)
@friendly
def compare_command(
    candidate: Path,
    params_spec: str,
    baseline: Path | None,
    clips: int,
    frames: int,
    out_dir: Path,
) -> None:
    """A trained checkpoint against the committed one: PSNR, SSIM, MS-SSIM and GMSD on
    held-out clips, a side-by-side strip, and whether it should replace it."""
    from grace.codec_run import default_checkpoint
    from grace.compare_run import run_compare

    if clips < 1 or frames < 2:
        raise GraceError(f"--clips {clips} / --frames {frames}: need at least 1 clip of 2 frames")
    params = _params(params_spec)
    run_compare(
        console,
        params,
        baseline or default_checkpoint(params),
        candidate,
        out_dir,
        clips=clips,
        frames=frames,
    )


@main.command("quantize")
@params_option
@checkpoint_option
@click.option(
    "--method",
    type=click.Choice(["percentile", "minmax"]),
    default="percentile",
    show_default=True,
    help="Activation calibration.",
)
@click.option("--clips", default=4, show_default=True, help="Held-out clips per group.")
@click.option("--frames", default=16, show_default=True, help="Frames per clip.")
@click.option(
    "--random-weights",
    is_flag=True,
    help="Use a randomly initialised model (e.g. fomm-256, which has no checkpoint).",
)
@friendly
def quantize_command(
    params_spec: str,
    checkpoint: Path | None,
    method: str,
    clips: int,
    frames: int,
    random_weights: bool,
) -> None:
    """Calibrate the int8 decoder; report int vs float quality and per-layer SQNR."""
    from grace.quantize_run import run_quantize

    if clips < 1 or frames < 2:
        raise GraceError(f"--clips {clips} / --frames {frames}: need at least 1 clip of 2 frames")
    params = _params(params_spec)
    run_quantize(
        console,
        params,
        checkpoint,
        method,
        clips,
        BUILD_ROOT / "quantize",
        random_weights=random_weights,
        frames=frames,
    )


@main.command("rd")
@params_option
@checkpoint_option
@click.option("--quick", is_flag=True, help="One short clip, two settings per codec (tests).")
@click.option(
    "--codecs",
    default="grace,hevc,av1,h264,repeat",
    show_default=True,
    help="Comma-separated: grace, hevc (x265), av1 (SVT-AV1), h264 (x264), repeat (key frame).",
)
@click.option("--clips", type=int, default=None, help="Held-out clips [full: 6, quick: 1].")
@click.option("--frames", type=int, default=None, help="Frames per clip [full: 128, quick: 16].")
@click.option("--min-kbps", default=2.0, show_default=True, help="Low end of the compared range.")
@click.option("--max-kbps", default=100.0, show_default=True, help="High end.")
@click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=BUILD_ROOT / "rd",
    show_default=True,
)
@friendly
def rd_command(
    params_spec: str,
    checkpoint: Path | None,
    quick: bool,
    codecs: str,
    clips: int | None,
    frames: int | None,
    min_kbps: float,
    max_kbps: float,
    out_dir: Path,
) -> None:
    """Rate–quality curves: GRACE against HEVC, AV1, H.264 and key-frame repeat (docs/rd.md)."""
    from grace.rd_run import RdError, make_plan, parse_codecs, run_rd
    from model.conventional import ConventionalError

    try:
        plan = make_plan(quick, clips, frames, min_kbps, max_kbps)
        run_rd(console, _params(params_spec), checkpoint, out_dir, plan, parse_codecs(codecs))
    except (RdError, ConventionalError) as exc:
        raise GraceError(str(exc)) from None


@main.command()
@friendly
def demo() -> None:
    """The main job on the embedded default: elaborate, simulate and build-plan a block."""
    from grace.demo import run_demo

    run_demo(console, BUILD_ROOT)


if __name__ == "__main__":
    main()
