"""Build a block for a board with yosys + nextpnr (YoWASP) and report what it costs.

`plan()` only elaborates and writes the build script (fast, used by the test
suite for every board); `build()` runs synthesis and place-and-route under
`build/boards/<board>/<block>/<params key>/` and parses the logs into a
`BuildReport`: LUTs, flip-flops, DSPs, block RAM and the post-route Fmax.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

from amaranth.build.run import BuildPlan

from boards.coproc_top import CoprocBoardTop
from boards.floorplan import block_options, pin_commands
from boards.harness import StreamHarness
from boards.targets import Board, board, platform_at, run_programmer
from defs.tool_errors import ToolFailed, failure_message, run_tool
from rtl.blocks import make_block
from rtl.replica import KEEP_REPLICAS
from rtl.row_queue import UNCHECKED_COLLISIONS

if TYPE_CHECKING:
    from defs.params import GraceParams

TOP = "top"

# What each family's cells mean in the report. nextpnr's utilisation gives the
# placed cells; Yosys's `stat` splits iCE40 logic cells into LUTs and FFs.
_FAMILY_CELLS = {
    "ecp5": {
        "luts": ("TRELLIS_COMB",),
        "ffs": ("TRELLIS_FF",),
        "dsps": ("MULT18X18D",),
        "brams": ("DP16KD",),
    },
    "ice40": {
        "luts": ("SB_LUT4",),
        "ffs": ("SB_DFF",),
        "dsps": ("ICESTORM_DSP",),
        "brams": ("ICESTORM_RAM",),
    },
}


class BuildError(RuntimeError):
    """A board build could not run or did not finish."""


@dataclass(frozen=True)
class BuildReport:
    board: str
    block: str
    luts: int
    ffs: int
    dsps: int
    brams: int
    fmax_mhz: float
    target_mhz: float
    harness_ffs: int
    build_dir: Path
    bitstream: Path
    available: dict[str, int] = field(default_factory=dict)
    #: Timing endpoints (flip-flop, RAM and DSP inputs) whose data arrives after the
    #: target clock's period, of all (nextpnr's detailed timing report): how far a
    #: design that misses its clock is from meeting it, where Fmax names one path.
    late_endpoints: int = 0
    endpoints: int = 0
    #: The parts (hierarchy paths) holding most late endpoints: (part, count, latest
    #: arrival in ns), most first (`late_by_part`).
    late_parts: tuple[tuple[str, int, float], ...] = ()
    #: The late endpoints by pin kind (`late_by_pin`) and the nets with most of them
    #: (`late_by_net`: driver, pin kinds, late, fanout, latest arrival).
    late_pins: tuple[tuple[str, int], ...] = ()
    late_nets: tuple[tuple[str, str, int, int, float], ...] = ()

    @property
    def timing_met(self) -> bool:
        return self.fmax_mhz >= self.target_mhz


def _board_name(params: GraceParams, board_name: str | None) -> str:
    name = board_name or params.board
    if name is None:
        raise BuildError("no board given: pass --board, or use a preset that names one")
    return name


def plan(
    block: str, params: GraceParams, board_name: str | None = None, *, seed: int | None = None
) -> BuildPlan:
    """Elaborate and write the build plan without running any tool."""
    target = board(_board_name(params, board_name))
    return _plan(_harnessed(block, params, target), target, params, seed, block)


def _harnessed(block: str, params: GraceParams, target: Board) -> StreamHarness:
    """The block, placed for the board's device where a floorplan exists, in its harness
    (the co-processor: on its on-chip memory, boots itself)."""
    options = block_options(block, params, target.platform.device)
    if block == "top":
        return CoprocBoardTop(params, **options)
    return StreamHarness(make_block(block, params, **options))


def _plan(
    top: StreamHarness,
    target: Board,
    params: GraceParams,
    seed: int | None = None,
    block: str = "",
) -> BuildPlan:
    platform = platform_at(target, params.clock_hz)
    overrides = _overrides(target.family, seed, block)
    pins = pin_commands(block, params, target.platform.device, TOP)
    if pins:  # the floorplan's sites for multipliers outside the block's own arguments
        overrides["script_after_read"] += f"; {pins}"
    return platform.build(top, name=TOP, do_build=False, **overrides)


#: Yosys commands between reading the design and synthesis (rtl/replica.py,
#: rtl/row_queue.py).
AFTER_READ = f"{KEEP_REPLICAS}; {UNCHECKED_COLLISIONS}"


#: Blocks placed by nextpnr's electrostatic placer (`--placer static`) rather than
#: HeAP. The co-processor's top, on the same netlist (default seed): HeAP 76.2 MHz
#: with 459 endpoints whose data arrived 6 ns or more after the edge even at the
#: earliest, static 81.7 MHz with 259, in half the time; seed 2, static: 86.4 MHz
#: with 171 (docs/coprocessor.md, "Silicon").
STATIC_PLACER_BLOCKS = ("top",)

#: nextpnr's timing report (JSON, with every endpoint's arrival), in the build directory.
TIMING_REPORT = "timing.json"


def _overrides(family: str, seed: int | None = None, block: str = "") -> dict[str, str]:
    # Over-constrained clocks must still produce a bitstream and a report. The
    # placer's seed moves a dense design's Fmax by ±10 % (docs/conv_engine.md);
    # without one, nextpnr's own initial state.
    overrides = {
        "nextpnr_opts": f"--timing-allow-fail --report {TIMING_REPORT} --detailed-timing-report",
        "script_after_read": AFTER_READ,
    }
    if seed is not None:
        overrides["nextpnr_opts"] += f" --seed {seed}"
    if family == "ecp5":
        # router2 converges on the conv engine's dense DSP columns where the
        # default router was still resolving congestion after 30 minutes
        overrides["nextpnr_opts"] += " --router router2"
        if block in STATIC_PLACER_BLOCKS:
            overrides["nextpnr_opts"] += " --placer static"
    if family == "ice40":
        overrides["synth_opts"] = "-dsp"  # synth_ice40 leaves SB_MAC16 unused without it
    return overrides


def prepare_tools(target_tools: dict[str, str]) -> None:
    """YoWASP tools from the venv; openFPGALoader from the system (ULX3S builds check for it)."""
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    for var, tool in target_tools.items():
        os.environ.setdefault(var, tool)
        if shutil.which(os.environ[var]) is None:
            raise BuildError(f"{os.environ[var]} not found (needed as {var}); run `make setup`")
    if shutil.which(os.environ.get("OPENFPGALOADER", "openFPGALoader")) is None:
        raise BuildError(
            "openFPGALoader not found; run `make setup` (apt-get install openfpgaloader)"
        )


def build(
    block: str,
    params: GraceParams,
    build_root: Path,
    board_name: str | None = None,
    *,
    program: bool = False,
    seed: int | None = None,
) -> BuildReport:
    """Synthesise, place and route (placer seed `seed`); optionally flash. Returns the report."""
    if seed is not None:
        _check_seed(seed)
    name = _board_name(params, board_name)
    target = board(name)
    prepare_tools(target.tools)
    run = params.key() if seed is None else f"{params.key()}-seed{seed}"
    build_dir = (Path(build_root) / "boards" / name / block / run).resolve()
    top = _harnessed(block, params, target)
    _run_plan(_plan(top, target, params, seed, block), build_dir, target)
    bitstream = build_dir / (f"{TOP}.bit" if target.family == "ecp5" else f"{TOP}.bin")
    report = parse_report(
        target.family,
        yosys_log=(build_dir / f"{TOP}.rpt").read_text(errors="replace"),
        nextpnr_log=(build_dir / f"{TOP}.tim").read_text(errors="replace"),
    )
    timing = build_dir / TIMING_REPORT
    detailed = json.loads(timing.read_text()) if timing.exists() else {}
    period_ns = 1e9 / params.clock_hz
    late, endpoints = late_endpoints(detailed, period_ns)
    result = BuildReport(
        late_endpoints=late,
        endpoints=endpoints,
        late_parts=tuple(late_by_part(detailed, period_ns)),
        late_pins=tuple(late_by_pin(detailed, period_ns)),
        late_nets=tuple(late_by_net(detailed, period_ns)),
        board=name,
        block=block,
        target_mhz=params.clock_hz / 1e6,
        harness_ffs=top.flip_flops,
        build_dir=build_dir,
        bitstream=bitstream,
        **report,
    )
    if program:
        run_programmer(target, str(bitstream))
    return result


#: The steps of Amaranth's build script by family: the variable naming each step's
#: tool, the file the step writes and its log; the first file missing after a
#: failed script names the step that stopped it.
_STEPS: dict[str, tuple[tuple[str, str, str | None], ...]] = {
    "ecp5": (
        ("YOSYS", f"{TOP}.json", f"{TOP}.rpt"),
        ("NEXTPNR_ECP5", f"{TOP}.config", f"{TOP}.tim"),
        ("ECPPACK", f"{TOP}.bit", None),
    ),
    "ice40": (
        ("YOSYS", f"{TOP}.json", f"{TOP}.rpt"),
        ("NEXTPNR_ICE40", f"{TOP}.asc", f"{TOP}.tim"),
        ("ICEPACK", f"{TOP}.bin", None),
    ),
}


def _run_plan(build_plan: BuildPlan, build_dir: Path, target: Board) -> None:
    """Run the plan's script in `build_dir`, its output captured (the logs keep it).

    Why not `BuildPlan.execute_local`: its `CalledProcessError` names only `sh`; a
    failure here names the tool that stopped, its exit status or signal, and its log.
    """
    build_plan.extract(str(build_dir))
    steps = _STEPS[target.family]
    for _, product, log in steps:  # a stale file from an earlier run would hide the step
        for name in (product, log):
            if name is not None:
                (build_dir / name).unlink(missing_ok=True)
    script = f"{build_plan.script}.sh"
    try:
        run_tool(["sh", script], cwd=build_dir)
    except ToolFailed as exc:
        if exc.returncode is None:  # `sh` itself could not start
            raise BuildError(str(exc)) from None
        var, _, log = next((s for s in steps if not (build_dir / s[1]).exists()), steps[-1])
        log_path = build_dir / log if log is not None else None
        if log_path is not None and not log_path.exists():
            log_path = None  # the tool stopped before opening it
        output = exc.output
        if not output.strip() and log_path is not None:
            output = log_path.read_text(errors="replace")
        raise BuildError(
            failure_message(
                f"{os.environ.get(var, var.lower())} (run by {script})",
                exc.returncode,
                where=build_dir,
                output=output,
                log=log_path,
                advice=f"fix what it names, or run `sh {script}` there to see all of it",
            )
        ) from None


def _check_seed(seed: int) -> None:
    if seed < 1:
        raise BuildError(f"placer seed must be a positive integer, not {seed}")


def sweep(
    block: str,
    params: GraceParams,
    build_root: Path,
    board_name: str | None = None,
    *,
    seeds: Sequence[int],
    jobs: int | None = None,
    on_report: Callable[[int, BuildReport], None] | None = None,
) -> dict[int, BuildReport]:
    """One build per placer seed, `jobs` at a time (default: a core each); the
    reports by seed. nextpnr's placement moves a dense design's Fmax by ±10 %,
    so a sweep is how a build that meets the clock is found."""
    repeated = sorted(s for s, count in Counter(seeds).items() if count > 1)
    if repeated:
        raise BuildError(f"placer seed {repeated[0]} given twice; give each seed once")
    for seed in seeds:  # all checked before any build starts
        _check_seed(seed)
    workers = max(1, min(len(seeds), jobs or os.cpu_count() or 1))
    reports: dict[int, BuildReport] = {}
    # separate processes: each nextpnr is one thread, and each build its own
    # directory; spawned, not forked from a process whose console runs a thread
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {
            pool.submit(build, block, params, build_root, board_name, seed=seed): seed
            for seed in seeds
        }
        for done in as_completed(futures):
            seed = futures[done]
            reports[seed] = done.result()
            if on_report is not None:
                on_report(seed, reports[seed])
    return dict(sorted(reports.items()))


_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s", re.MULTILINE)
_FMAX = re.compile(r"Max frequency for clock\s+'[^']+':\s+([\d.]+) MHz")
_STAT = re.compile(r"^\s+(\d+)\s+(\$?[A-Za-z_]\w*)\s*$", re.MULTILINE)


def parse_report(family: str, *, yosys_log: str, nextpnr_log: str) -> dict:
    """LUTs, FFs, DSPs, BRAMs and post-route Fmax from the Yosys and nextpnr logs."""
    placed: dict[str, int] = {}
    available: dict[str, int] = {}
    for cell, used, total in _UTIL.findall(nextpnr_log):
        placed[cell], available[cell] = int(used), int(total)
    fmax = _FMAX.findall(nextpnr_log)
    if not placed or not fmax:
        raise BuildError("nextpnr log has no utilisation or Fmax; the build did not finish")
    synthesized = _yosys_cells(yosys_log)
    counts = {}
    for column, cells in _FAMILY_CELLS[family].items():
        counts[column] = sum(
            placed.get(c, 0) if c in placed else _prefixed(synthesized, c) for c in cells
        )
    # nextpnr prints Fmax before and after routing; the last one is post-route.
    return {**counts, "fmax_mhz": float(fmax[-1]), "available": available}


def late_endpoints(timing: dict, period_ns: float) -> tuple[int, int]:
    """(endpoints whose latest arrival exceeds `period_ns`, all endpoints) of a nextpnr
    `--report --detailed-timing-report` JSON: each net's endpoints carry the
    earliest and the latest arrival of data there, in ns from the clock edge."""
    arrivals = [arrival for _, arrival in _arrivals(timing)]
    return sum(a > period_ns for a in arrivals), len(arrivals)


def _arrival(endpoint: dict) -> float:
    """An endpoint's latest arrival (ns): its `delay` is [earliest, latest]."""
    return max(endpoint["delay"])


def _arrivals(timing: dict) -> Iterator[tuple[str, float]]:
    """Each endpoint's cell and latest arrival (ns) in a detailed timing report."""
    for net in timing.get("detailed_net_timings", []):
        for endpoint in net["endpoints"]:
            yield endpoint["cell"], _arrival(endpoint)


def late_by_pin(timing: dict, period_ns: float) -> list[tuple[str, int]]:
    """The late endpoints by the kind of pin they are (CE: clock enable, DI: data,
    M: a mux's select, WRE: a LUT RAM's write enable, ...), most first: on the ULX3S
    top over half were clock enables, which a flat count does not show."""
    found: dict[str, int] = {}
    for net in timing.get("detailed_net_timings", []):
        for endpoint in net["endpoints"]:
            if _arrival(endpoint) > period_ns:
                found[endpoint["port"]] = found.get(endpoint["port"], 0) + 1
    return sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))


def late_by_net(
    timing: dict, period_ns: float, *, nets: int = 5
) -> list[tuple[str, str, int, int, float]]:
    """The nets with most late endpoints: (driver cell, the late endpoints' pin kind, late
    endpoints, all endpoints, latest arrival in ns), most first. A wide register's
    enable computed by a few LUTs is one net with a hundred late endpoints: one change."""
    found = []
    for net in timing.get("detailed_net_timings", []):
        late = [e for e in net["endpoints"] if _arrival(e) > period_ns]
        if late:
            pins = sorted({e["port"] for e in late})
            worst = max(map(_arrival, late))
            found.append((net["driver"], "/".join(pins), len(late), len(net["endpoints"]), worst))
    found.sort(key=lambda row: (-row[2], row[0]))
    return found[:nets]


def late_by_part(
    timing: dict, period_ns: float, *, depth: int = 4, parts: int = 8
) -> list[tuple[str, int, float]]:
    """The late endpoints of a detailed timing report grouped by the part that holds
    them: the cell's hierarchy path (its name up to the last dot), cut to `depth`
    levels. (part, late endpoints, latest arrival in ns) for the `parts` with most,
    most first: where a design that misses its clock has to be worked on."""
    found: dict[str, list[float]] = {}
    for cell, arrival in _arrivals(timing):
        if arrival > period_ns:
            path = cell.rpartition(".")[0] or "(top)"
            found.setdefault(".".join(path.split(".")[:depth]), []).append(arrival)
    ranked = sorted(found.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    return [(part, len(arrivals), max(arrivals)) for part, arrivals in ranked[:parts]]


def _yosys_cells(log: str) -> dict[str, int]:
    """Cell counts of the last `stat` in a Yosys log, whole hierarchy."""
    section = log.rsplit("Printing statistics", 1)[-1]
    section = section.rsplit("=== design hierarchy ===", 1)[-1]
    return {name: int(count) for count, name in _STAT.findall(section)}


def _prefixed(cells: dict[str, int], prefix: str) -> int:
    return sum(n for name, n in cells.items() if name.startswith(prefix))
