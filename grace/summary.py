"""What `grace elaborate/sim/build` compute and print, kept apart from argument parsing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from amaranth import Value
from amaranth.lib.wiring import Flow
from rich.table import Table

from boards.build import BuildReport
from defs.limits import TAG_BITS
from defs.params import GraceParams
from rtl.blocks import check_block, component_verilog, make_block, toplevel_name

if TYPE_CHECKING:
    from sim.warp import WarpCase


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
    units: int = 0  # engines: what ran (random layers, warp cases), counted
    unit_name: str = ""  # and named, for the report
    model_cycles: int = 0  # engines: the cycle model's prediction without back-pressure
    model_label: str = "cycle model (no back-pressure)"
    reference: str = "model.fixed"  # what the outputs were checked against

    def render(self, seconds: float) -> Table:
        table = Table(title=f"{self.block} on {self.simulator}", box=None, show_header=False)
        verdict = "[green]bit-exact[/]" if not self.mismatches else f"[red]{self.mismatches}[/]"
        rows = [
            *([(self.unit_name, f"{self.units}")] if self.units else []),
            ("outputs" if self.units else "vectors", f"{self.vectors:,}"),
            (f"mismatches vs {self.reference}", verdict),
            ("cycles", f"{self.cycles:,}"),
            *([(self.model_label, f"{self.model_cycles:,}")] if self.units else []),
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
    options = {
        "simulator": simulator, "seed": seed, "valid_prob": valid_prob,
        "ready_prob": ready_prob, "waves": waves, "build_root": build_root,
    }  # fmt: skip
    if block == "conv":
        return _simulate_conv(params, layers=max(1, vectors // 2500), **options)
    benches = {
        "warp": _simulate_warp,
        "act": _simulate_act,
        "softmax": _simulate_softmax,
        "heatmap": _simulate_heatmap,
        "motion": _simulate_motion,
    }
    if block in benches:
        return benches[block](params, samples=vectors, **options)
    if block != "requant":
        raise ValueError(f"grace sim has no bench for block {block!r}")
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
        units=layers,
        unit_name="random layers",
        model_cycles=predicted,
    )


@dataclass(frozen=True)
class WarpCheck:
    """Warps run through the warp engine's Verilog, against L2's warp."""

    cases: int
    tiles: int
    samples: int  # channel-samples of the cases (C·Ho·Wo each)
    mismatches: int  # samples that differ or never came, and done tokens out of order
    cycles: int  # first command → last done token
    model_cycles: int  # `rtl.warp_cycles.run_cycles` of the tiles, without back-pressure
    log: Path


def run_warps(
    cases: list[WarpCase],
    params: GraceParams,
    *,
    simulator: str,
    build_dir: Path,
    seed: int,
    valid_prob: float = 1.0,
    ready_prob: float = 1.0,
    waves: bool = False,
) -> WarpCheck:
    """Every case in one simulation, double buffered as a controller runs the engine:
    tiles of half the banks (`split_channels`), alternating halves, each loading
    while the one before computes. Each case's map, joined from its tiles, is
    compared with `model.fixed_decoder.warp_int` without asserting, so the count
    of wrong samples is reported rather than the first one.
    """
    import numpy as np

    from model.fixed_decoder import warp_int
    from rtl.warp_cycles import run_cycles
    from sim.warp import join_channels, program, simulate_cocotb, split_channels, tags

    half = params.warp.depth // 2
    split = [split_channels(case, params, words=half) for case in cases]
    tiles = [t for case_tiles in split for t in case_tiles]
    progs = [
        program(t, params, tag=k % (1 << TAG_BITS), in_base=half * (k % 2))
        for k, t in enumerate(tiles)
    ]
    run, result = simulate_cocotb(
        progs, params, simulator=simulator, build_dir=build_dir, ready_prob=ready_prob,
        flow_prob=valid_prob, seed=seed, waves=waves, overlap_loads=True,
    )  # fmt: skip
    mismatches = samples = start = 0
    sizes = iter(len(p.expected) for p in progs)  # each tile's share of the outputs
    for case, case_tiles in zip(cases, split, strict=True):
        want = warp_int(case.features, case.coords, case.occlusion)
        samples += want.size
        chunks = []
        for _ in case_tiles:
            n = next(sizes)
            chunks.append(run.outputs[start : start + n])
            start += n
        if start > len(run.outputs):  # the run ended early: this case is incomplete
            mismatches += want.size
            continue
        got = join_channels(chunks, case_tiles, params)
        mismatches += int(np.count_nonzero(got != want))
    mismatches += max(len(run.outputs) - start, 0)  # samples nobody asked for
    expected_tags = tags(progs)
    mismatches += sum(a != b for a, b in zip(run.tokens, expected_tags, strict=False))
    mismatches += abs(len(run.tokens) - len(expected_tags))
    if not mismatches:  # every sample right, yet the bench may have failed a stream rule
        result.check()
    return WarpCheck(
        cases=len(cases),
        tiles=len(progs),
        samples=samples,
        mismatches=mismatches,
        cycles=run.cycles,
        model_cycles=run_cycles(params, [(p.pixels, p.planes) for p in progs]),
        log=result.log,
    )


def _warp_sweep(params: GraceParams, samples: int, seed: int) -> list[WarpCase]:
    """`sim.warp.sweep_cases` in order until about `samples` channel-samples: none
    costs more than `samples` cycles, and cases whose plane does not fit half the
    banks (on a shallow buffer, the 33 × 47 maps) are left out."""
    from sim.warp import sweep_cases

    half = params.warp.depth // 2
    count = 12  # one of each map shape in the sweep
    while True:
        taken: list[WarpCase] = []
        total = 0
        for case in sweep_cases(params, count, seed, max_cycles=max(samples, 16)):
            h, w = case.size
            if -(-h // 2) * -(-w // 2) > half:
                continue
            taken.append(case)
            total += case.channels * case.out_size[0] * case.out_size[1]
            if total >= samples:
                return taken
        count *= 2


def _simulate_warp(
    params: GraceParams,
    *,
    simulator: str,
    samples: int,
    seed: int,
    valid_prob: float,
    ready_prob: float,
    waves: bool,
    build_root: Path,
) -> SimReport:
    """Sweep warps (every flow kind, occlusion on and off) through the warp engine's
    Verilog, flow entries offered with `valid_prob`, outputs taken with `ready_prob`."""
    from rtl.warp_cycles import fill_cycles

    check = run_warps(
        _warp_sweep(params, samples, seed),
        params,
        simulator=simulator,
        build_dir=build_root / "sim" / "warp" / params.key(),
        seed=seed,
        valid_prob=valid_prob,
        ready_prob=ready_prob,
        waves=waves,
    )
    return SimReport(
        block="warp",
        simulator=simulator,
        vectors=check.samples,
        mismatches=check.mismatches,
        cycles=check.cycles,
        latency=fill_cycles(),
        valid_prob=valid_prob,
        ready_prob=ready_prob,
        log=check.log,
        units=check.cases,
        unit_name=f"warp cases ({check.tiles} tiles, double-buffered)",
        model_cycles=check.model_cycles,
        model_label="cycle model (no back-pressure, loads hidden)",
        reference="L2's warp_int",
    )


def _simulate_act(
    params: GraceParams,
    *,
    simulator: str,
    samples: int,
    seed: int,
    valid_prob: float,
    ready_prob: float,
    waves: bool,
    build_root: Path,
) -> SimReport:
    """Sweep tiles (TABLE and AFFINE alternating, every kind) through the element-wise
    engine's Verilog, each tile's tables or constants loaded once the tiles that read
    what it overwrites are done; input words offered with `valid_prob`, outputs taken
    with `ready_prob`; every real channel's byte counted against L2."""
    import numpy as np

    from rtl.act_cycles import fill_cycles, run_cycles
    from sim.act import place, simulate_cocotb, split_outputs, sweep_cases

    count = 12
    while True:  # enough sweep cases for about `samples` output samples
        cases = sweep_cases(params, count, seed, max_beats=max(samples // 4, 16))
        progs = place(cases, params)
        total = sum(int(p.mask.sum()) for p in progs)
        if total >= samples or count >= 4096:
            break
        count *= 2
    run, result = simulate_cocotb(
        progs, params, simulator=simulator, build_dir=build_root / "sim" / "act" / params.key(),
        ready_prob=ready_prob, in_prob=valid_prob, seed=seed, waves=waves, overlap_loads=True,
    )  # fmt: skip
    try:
        tiles = split_outputs(run.outputs, progs)
        mismatches = sum(
            int(np.count_nonzero((got != p.expected) & p.mask))
            for got, p in zip(tiles, progs, strict=True)
        )
    except AssertionError:  # the run ended early or sent words nobody asked for
        mismatches = total
    mismatches += sum(a != b for a, b in zip(run.tokens, [p.tag for p in progs], strict=False))
    mismatches += abs(len(run.tokens) - len(progs))
    return _checked_report(
        "act", run, result, mismatches, simulator=simulator, valid_prob=valid_prob,
        ready_prob=ready_prob, vectors=total, latency=fill_cycles(), units=len(progs),
        unit_name="tiles (TABLE and AFFINE)",
        model_cycles=run_cycles(params, [(p.words // p.groups, p.groups) for p in progs]),
        reference="L2's apply_lut / affine_int",
    )  # fmt: skip


def _simulate_softmax(
    params: GraceParams,
    *,
    simulator: str,
    samples: int,
    seed: int,
    valid_prob: float,
    ready_prob: float,
    waves: bool,
    build_root: Path,
) -> SimReport:
    """Sweep softmax tiles (every logit kind and scale, 1 to the unit's largest channel
    count) through the softmax unit's Verilog, the exp table reloaded when the scale
    changes; every mask byte counted against L2."""
    from rtl.softmax_cycles import DRAIN, run_cycles
    from rtl.tile_control import TileControl
    from sim.softmax import expected, place, run_cocotb, sweep_cases

    count = 8
    while True:  # enough sweep cases for about `samples` output samples
        cases = sweep_cases(params, count, seed=seed)
        total = sum(int(c.logits.size) for c in cases)
        if total >= samples or count >= 4096:
            break
        count *= 2
    run, result = run_cocotb(
        cases, params, simulator=simulator, build_dir=build_root / "sim" / "softmax" / params.key(),
        ready_prob=ready_prob, in_prob=valid_prob, seed=seed, waves=waves,
    )  # fmt: skip
    want = expected(cases)
    mismatches = _mismatches(
        lambda: _split(run.outputs, [len(want)]),
        [want], run.tokens, [t.tag for t in place(cases, params)],
    )  # fmt: skip
    return _checked_report(
        "softmax", run, result, mismatches, simulator=simulator, valid_prob=valid_prob,
        ready_prob=ready_prob, vectors=total, latency=TileControl.SETUP_LATENCY + DRAIN,
        units=len(cases), unit_name="tiles (channel softmax)",
        model_cycles=run_cycles(params, [(c.logits[0].size, c.logits.shape[0]) for c in cases]),
        model_label="cycle model (no back-pressure, no table reloads)",
        reference="L2's softmax_channels_fixed",
    )  # fmt: skip


def _split(values: list[int], sizes: list[int]) -> list[list[int]]:
    """`values` in runs of `sizes`; a run that returned another count is refused."""
    if len(values) != sum(sizes):
        raise AssertionError(f"{len(values)} results, expected {sum(sizes)}")
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    return [values[a : a + n] for a, n in zip(starts, sizes, strict=True)]


def _checked_report(
    block: str,
    run: object,
    result: object,
    mismatches: int,
    *,
    simulator: str,
    valid_prob: float,
    ready_prob: float,
    **fields: object,
) -> SimReport:
    """An engine bench's report. With every result right the bench's own verdict
    (stream rules, tags) must hold too: a failed cocotb test raises here."""
    if not mismatches:
        result.check()
    return SimReport(
        block=block, simulator=simulator, mismatches=mismatches, cycles=run.cycles,
        valid_prob=valid_prob, ready_prob=ready_prob, log=result.log, **fields,
    )  # fmt: skip


def _mismatches(
    split: Callable[[], list], expected: list, tokens: list[int], tags: list[int]
) -> int:
    """Wrong results (each tile's `split()` against `expected`), wrong or missing tags;
    a run that ended early or sent results nobody asked for counts every result."""
    import numpy as np

    try:
        got = split()
        wrong = sum(
            int(np.count_nonzero(np.asarray(g) != np.asarray(e)))
            for g, e in zip(got, expected, strict=True)
        )
    except AssertionError:
        wrong = sum(int(np.size(e)) for e in expected)
    wrong += sum(a != b for a, b in zip(tokens, tags, strict=False))
    return wrong + abs(len(tokens) - len(tags))


def _simulate_heatmap(
    params: GraceParams,
    *,
    simulator: str,
    samples: int,
    seed: int,
    valid_prob: float,
    ready_prob: float,
    waves: bool,
    build_root: Path,
) -> SimReport:
    """Sweep frames (every keypoint and table kind, sizes 2 to the unit's largest)
    through the heatmap unit's Verilog, each frame's constants written once the
    frames before it are done, with gaps of `valid_prob` on the write streams;
    every heatmap value against L2."""
    from rtl.heatmap_cycles import fill_cycles, run_cycles
    from sim.heatmap import place, simulate_cocotb, split_outputs, sweep_cases

    count = 4
    while True:  # enough frames for about `samples` heatmap values
        progs = place(sweep_cases(params, count, seed), params)
        total = sum(p.outputs for p in progs)
        if total >= samples or count >= 1024:
            break
        count *= 2
    run, result = simulate_cocotb(
        progs, params, simulator=simulator, build_dir=build_root / "sim" / "heatmap" / params.key(),
        ready_prob=ready_prob, write_prob=valid_prob, seed=seed, waves=waves, overlap_loads=True,
    )  # fmt: skip
    mismatches = _mismatches(
        lambda: split_outputs(run.outputs, progs),
        [p.expected for p in progs],
        run.tokens,
        [p.tag for p in progs],
    )
    return _checked_report(
        "heatmap", run, result, mismatches, simulator=simulator, valid_prob=valid_prob,
        ready_prob=ready_prob, vectors=total, latency=fill_cycles(), units=len(progs),
        unit_name="frames (heatmaps)",
        model_cycles=run_cycles(params, [(p.size, p.keypoints) for p in progs]),
        model_label="cycle model (no back-pressure, no reloads)", reference="L2's heatmaps",
    )  # fmt: skip


def _simulate_motion(
    params: GraceParams,
    *,
    simulator: str,
    samples: int,
    seed: int,
    valid_prob: float,
    ready_prob: float,
    waves: bool,
    build_root: Path,
) -> SimReport:
    """Frames as the decoder issues them (every motion map, then the flow under a mask),
    keypoint, Jacobian and mask kinds in turn, through the motion unit's Verilog with
    masks and constants offered with `valid_prob`; every (x, y) against L2 (saturated
    to the warp's s18)."""
    import numpy as np

    from rtl.motion_cycles import DRAIN, run_cycles
    from rtl.tile_control import TileControl
    from sim.motion import (
        JAC_KINDS,
        KP_KINDS,
        MASK_KINDS,
        frame_cases,
        place,
        random_frame,
        simulate_cocotb,
        split_outputs,
    )

    rng = np.random.default_rng(seed)
    cases, total, n = [], 0, 0
    while total < samples and n < 256:
        size = int(rng.integers(2, min(params.act.max_grid, 24) + 1))
        keypoints = int(rng.integers(1, params.act.max_keypoints + 1))
        kp, jac = KP_KINDS[n % len(KP_KINDS)], JAC_KINDS[n % len(JAC_KINDS)]
        frame = random_frame(rng, keypoints, size, kp=kp, jac=jac)
        new = frame_cases(rng, frame, (MASK_KINDS[n % len(MASK_KINDS)],))
        cases += new
        total += 2 * size * size * len(new)
        n += 1
    progs = place(cases, params)
    run, result = simulate_cocotb(
        progs, params, simulator=simulator, build_dir=build_root / "sim" / "motion" / params.key(),
        ready_prob=ready_prob, in_prob=valid_prob, write_prob=valid_prob, seed=seed, waves=waves,
    )  # fmt: skip
    mismatches = _mismatches(
        lambda: split_outputs(run.outputs, progs),
        [p.expected for p in progs],
        run.tokens,
        [p.tag for p in progs],
    )
    commands = [(p.case.op, p.case.frame.size, p.case.frame.keypoints) for p in progs]
    return _checked_report(
        "motion", run, result, mismatches, simulator=simulator, valid_prob=valid_prob,
        ready_prob=ready_prob, vectors=total, latency=TileControl.SETUP_LATENCY + DRAIN,
        units=len(progs), unit_name="commands (motion maps, flows)",
        model_cycles=run_cycles(params, commands),
        model_label="cycle model (no back-pressure, no reloads)",
        reference="L2's affine_motions / compose_flow",
    )  # fmt: skip


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
        (
            "late endpoints",
            f"{report.late_endpoints:,} of {report.endpoints:,} miss the target clock",
        ),
        *(
            ("" if k else "late, by part", f"{count:,} in {part} (latest {worst:.2f} ns)")
            for k, (part, count, worst) in enumerate(report.late_parts)
        ),
        *(
            [("late, by pin", " · ".join(f"{pin} {count:,}" for pin, count in report.late_pins))]
            if report.late_pins
            else []
        ),
        *(
            (
                "" if k else "late, by net",
                f"{late:,} of {fanout:,} {pins} pins driven by {driver} (latest {worst:.2f} ns)",
            )
            for k, (driver, pins, late, fanout, worst) in enumerate(report.late_nets)
        ),
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
