"""`grace demo`: the main job on the embedded default, in one screen.

For now GRACE has one block, the requantize (output) unit, so the demo takes it
through the whole hardware flow that exists: parameters → Verilog → cocotb on
Verilator (bit-exact against the NumPy reference, with back-pressure, then at
full rate for the cycle count) → a board build plan. Later issues extend it into
the codec demo.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from boards.build import plan
from boards.targets import BOARDS
from grace.params import preset
from grace.summary import elaborate_block, simulate_block

DEMO_VECTORS = 10_000


def run_demo(console: Console, build_root: Path) -> None:
    params = preset("tiny")
    block = "requant"
    start = time.monotonic()
    console.rule(f"GRACE demo: {block} block, preset {params.name!r}")

    path, ports = elaborate_block(block, params, build_root / "verilog")
    console.print(
        f"1. elaborated → {path} ({len(ports)} ports, "
        f"{sum(1 for _ in path.open())} lines of Verilog)"
    )

    with console.status("2. cocotb + Verilator, random back-pressure…"):
        stalled = simulate_block(
            block,
            params,
            simulator="verilator",
            vectors=DEMO_VECTORS,
            seed=1,
            valid_prob=0.7,
            ready_prob=0.7,
            waves=False,
            build_root=build_root,
        )
    console.print(
        f"2. {stalled.vectors:,} vectors under random stalls: "
        f"{stalled.mismatches} mismatches, {stalled.cycles:,} cycles"
    )

    with console.status("3. cocotb + Verilator, full rate…"):
        full = simulate_block(
            block,
            params,
            simulator="verilator",
            vectors=DEMO_VECTORS,
            seed=2,
            valid_prob=1.0,
            ready_prob=1.0,
            waves=False,
            build_root=build_root,
        )
    console.print(
        f"3. {full.vectors:,} vectors at full rate: {full.mismatches} mismatches, "
        f"{full.cycles:,} cycles"
    )

    for name in BOARDS:
        board_params = preset(name) if name in {"ulx3s-85f", "icebreaker"} else params
        plan(block, board_params, name)
    console.print(
        f"4. build plans ready for {', '.join(BOARDS)} "
        f"(run `grace build --board NAME` for resources and Fmax)"
    )

    n = params.numeric
    table = Table(title="summary", box=None, show_header=False)
    exact = stalled.mismatches == 0 and full.mismatches == 0
    rows = [
        (
            "datapath",
            f"int{n.acc_bits} acc + int{n.bias_bits} bias → × uint{n.mult_bits} "
            f"→ >> 0..{n.max_shift} (round half up) → int{n.act_bits}, ReLU",
        ),
        ("Verilog", str(path)),
        ("vectors checked", f"{stalled.vectors + full.vectors:,} (incl. extremes)"),
        ("bit-exact vs model.fixed", "[green]yes[/]" if exact else "[red]NO[/]"),
        (
            "throughput",
            f"{full.vectors / full.cycles:.4f} results/cycle "
            f"({full.cycles - full.vectors} cycles of latency)",
        ),
        ("with random stalls", f"{stalled.vectors / stalled.cycles:.3f} results/cycle"),
        ("wall time", f"{time.monotonic() - start:.1f} s"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    if not exact:
        raise SystemExit(1)
