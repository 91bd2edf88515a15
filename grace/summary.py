"""What `grace elaborate/sim/build` compute and print, kept apart from argument parsing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from amaranth import Value
from amaranth.lib.wiring import Flow
from rich.table import Table

from boards.build import BuildReport
from defs.params import GraceParams
from rtl.blocks import check_block, component_verilog, make_block, toplevel_name


def elaborate_block(
    block: str, params: GraceParams, out_dir: Path
) -> tuple[Path, list[tuple[str, str, int]]]:
    """Write `<out_dir>/grace_<block>.v`; return its path and (port, dir, width) rows."""
    component = make_block(block, params)
    text = component_verilog(component, block)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{toplevel_name(block)}.v"
    path.write_text(text)
    ports = [("clk", "in", 1), ("rst", "in", 1)]
    for member_path, member, value in component.signature.flatten(component):
        direction = "in" if member.flow == Flow.In else "out"
        ports.append(("__".join(map(str, member_path)), direction, len(Value.cast(value))))
    return path, ports


@dataclass(frozen=True)
class SimReport:
    block: str
    simulator: str
    vectors: int
    mismatches: int
    cycles: int
    latency: int
    valid_prob: float
    ready_prob: float
    log: Path
    layers: int = 0  # conv: random layers run
    model_cycles: int = 0  # conv: the cycle model's prediction without back-pressure

    def render(self, seconds: float) -> Table:
        table = Table(title=f"{self.block} on {self.simulator}", box=None, show_header=False)
        verdict = "[green]bit-exact[/]" if not self.mismatches else f"[red]{self.mismatches}[/]"
        rows = [
            *([("random layers", f"{self.layers}")] if self.layers else []),
            ("outputs" if self.layers else "vectors", f"{self.vectors:,}"),
            ("mismatches vs model.fixed", verdict),
            ("cycles", f"{self.cycles:,}"),
            *(
                [("cycle model (no back-pressure)", f"{self.model_cycles:,}")]
                if self.layers
                else []
            ),
            ("results per cycle", f"{self.vectors / max(self.cycles, 1):.3f}"),
            ("stall pattern", f"valid {self.valid_prob:.0%}, ready {self.ready_prob:.0%}"),
            ("pipeline latency", f"{self.latency} cycles"),
            ("wall time", f"{seconds:.1f} s"),
            ("log", str(self.log)),
        ]
        for k, v in rows:
            table.add_row(k, v)
        return table


def simulate_block(
    block: str,
    params: GraceParams,
    *,
    simulator: str,
    vectors: int,
    seed: int,
    valid_prob: float,
    ready_prob: float,
    waves: bool,
    build_root: Path,
) -> SimReport:
    from rtl.requant import Requantizer
    from sim.requant import concat, extreme_vectors, random_vectors, simulate_requant

    check_block(block)
    if block == "conv":
        return _simulate_conv(
            params,
            simulator=simulator,
            layers=max(1, vectors // 2500),
            seed=seed,
            valid_prob=valid_prob,
            ready_prob=ready_prob,
            waves=waves,
            build_root=build_root,
        )
    stimulus = concat(
        extreme_vectors(params.numeric), random_vectors(params.numeric, vectors, seed)
    )
    result = simulate_requant(
        params,
        stimulus,
        simulator=simulator,
        build_root=build_root,
        valid_prob=valid_prob,
        ready_prob=ready_prob,
        seed=seed,
        waves=waves,
    )
    return SimReport(
        block=block,
        simulator=simulator,
        vectors=len(result.expected),
        mismatches=result.mismatches,
        cycles=result.run.cycles,
        latency=Requantizer.LATENCY,
        valid_prob=valid_prob,
        ready_prob=ready_prob,
        log=result.run.result.log,
    )


def _simulate_conv(
    params: GraceParams,
    *,
    simulator: str,
    layers: int,
    seed: int,
    valid_prob: float,
    ready_prob: float,
    waves: bool,
    build_root: Path,
) -> SimReport:
    """Random layers through the conv engine's Verilog, each against the L2 conv."""
    import numpy as np

    from rtl.conv_cycles import fill_cycles, tile_cycles
    from sim.conv import program, simulate_cocotb, sweep_cases

    outputs = mismatches = cycles = predicted = 0
    log = build_root
    for k, case in enumerate(sweep_cases(params, layers, seed)):
        prog = program(case, params, tag=k % 256)
        run, result = simulate_cocotb(
            [prog],
            params,
            simulator=simulator,
            build_dir=build_root / "sim" / "conv" / params.key(),
            ready_prob=ready_prob,
            residual_prob=valid_prob,
            seed=seed + k,
            waves=waves,
        )
        got = run.outputs
        outputs += len(prog.expected)
        if len(got) != len(prog.expected):
            mismatches += max(len(prog.expected) - len(got), 1)
        else:
            mismatches += int(np.count_nonzero(got != prog.expected))
        cycles += run.cycles
        predicted += tile_cycles(params, case.shape).cycles
        log = result.log
    return SimReport(
        block="conv",
        simulator=simulator,
        vectors=outputs,
        mismatches=mismatches,
        cycles=cycles,
        latency=fill_cycles(params),
        valid_prob=valid_prob,
        ready_prob=ready_prob,
        log=log,
        layers=layers,
        model_cycles=predicted,
    )


def render_build(report: BuildReport, seconds: float) -> Table:
    table = Table(title=f"{report.block} on {report.board}", box=None, show_header=False)
    met = "[green]met[/]" if report.timing_met else "[yellow]not met[/]"
    rows = [
        ("LUTs", f"{report.luts:,}"),
        ("flip-flops", f"{report.ffs:,} (harness: {report.harness_ffs})"),
        ("DSPs", f"{report.dsps}"),
        ("block RAM", f"{report.brams}"),
        ("Fmax (post-route)", f"{report.fmax_mhz:.1f} MHz"),
        ("target clock", f"{report.target_mhz:.1f} MHz, {met}"),
        ("bitstream", str(report.bitstream)),
        ("wall time", f"{seconds:.0f} s"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table


def render_sweep(reports: dict[int, BuildReport], best: int) -> Table:
    """Fmax per placer seed; the fastest marked."""
    table = Table(title="placer seeds", box=None)
    for column in ("seed", "Fmax (post-route)", "target", "build"):
        table.add_column(column)
    for seed, report in reports.items():
        met = "[green]met[/]" if report.timing_met else "[yellow]not met[/]"
        mark = " ← fastest" if seed == best else ""
        table.add_row(
            str(seed), f"{report.fmax_mhz:.1f} MHz{mark}", met, str(report.build_dir.name)
        )
    return table
