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
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from grace.params import PRESETS, GraceParams, ParamsError, load

console = Console()
BUILD_ROOT = Path("build")


class GraceError(Exception):
    """A user-facing error: one line that says what is wrong and what to do."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that are the user's mistake or environment, not a GRACE bug."""
    from amaranth.build.plat import ToolNotFound

    from boards.build import BuildError
    from boards.targets import UnknownBoard
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
        table.add_row(
            s.name, s.purpose, s.version or "-", "[green]OK[/]" if s.ok else "[red]missing[/]"
        )
    console.print(table)
    missing = [s for s in statuses if not s.ok]
    if missing:
        for s in missing:
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
@click.option("--vectors", default=10_000, show_default=True, help="Random vectors (+ extremes).")
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
) -> None:
    """Simulate a block's Verilog in cocotb against the NumPy reference."""
    from grace.summary import simulate_block

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
@friendly
def build(board_name: str | None, block: str, params_spec: str | None, program: bool) -> None:
    """Synthesise, place and route a block for a board; report resources and Fmax."""
    from boards.build import build as run_build
    from grace.summary import render_build

    if params_spec is None:
        params_spec = board_name if board_name in PRESETS else "tiny"
    chosen = _params(params_spec)
    if board_name is None and chosen.board is None:
        raise GraceError("no board given: pass --board ulx3s-85f or --board icebreaker")
    with console.status(f"yosys + nextpnr for {board_name or chosen.board} (about a minute)…"):
        start = time.monotonic()
        report = run_build(block, chosen, BUILD_ROOT, board_name, program=program)
    console.print(render_build(report, time.monotonic() - start))


@main.command()
@friendly
def demo() -> None:
    """The main job on the embedded default: elaborate, simulate and build-plan a block."""
    from grace.demo import run_demo

    run_demo(console, BUILD_ROOT)


if __name__ == "__main__":
    main()
