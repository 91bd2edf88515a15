"""Running an engine's benches: cocotb on its Verilog, and the Amaranth simulator's sink.

The conv and warp benches (`sim/conv_tb.py`, `sim/warp_tb.py`) read their
stimulus from one folder per run (`<name>.hex`, one hex word per line, and text
files) and write what they saw into it (`out.txt`, `tokens.txt`, `cycles.txt`,
`stalls.txt`). This is that convention, once; and the Amaranth simulator's
stream driver and output sink, shared by `sim.conv` and `sim.warp`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from pathlib import Path

from amaranth import Value
from amaranth.sim import SimulatorContext

from defs.params import GraceParams
from sim.runner import SimResult, run_cocotb

#: What a bench writes; removed before a run so a failed run leaves none stale.
BENCH_OUTPUTS = ("out.txt", "tokens.txt", "cycles.txt", "stalls.txt")


def run_engine_bench(
    block: str,
    params: GraceParams,
    *,
    simulator: str,
    build_dir: Path,
    seed: int,
    words: Mapping[str, list[int]],
    texts: Mapping[str, str],
    env: Mapping[str, str],
    waves: bool = False,
) -> tuple[Path, SimResult]:
    """Write the run's folder, run `sim.<block>_tb` on the block's Verilog; (folder, result).

    The bench finds its folder in `GRACE_<BLOCK>_DIR`.
    """
    from rtl.blocks import to_verilog, toplevel_name

    work = Path(build_dir).resolve() / simulator / f"run-{seed}-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    for name, hex_words in words.items():
        (work / f"{name}.hex").write_text("".join(f"{w:x}\n" for w in hex_words))
    for name, text in texts.items():
        (work / name).write_text(text)
    for stale in BENCH_OUTPUTS:
        (work / stale).unlink(missing_ok=True)
    result = run_cocotb(
        verilog=to_verilog(block, params),
        toplevel=toplevel_name(block),
        test_module=f"sim.{block}_tb",
        simulator=simulator,
        build_dir=build_dir,
        run_dir=work,
        env={f"GRACE_{block.upper()}_DIR": str(work), **env},
        waves=waves,
        seed=seed,
    )
    return work, result


def read_numbers(work: Path, name: str, base: int = 10) -> list[int]:
    """The whitespace-separated integers in a run folder's file (none if there is
    no file): what a bench wrote, or, inside a bench, its stimulus."""
    path = work / name
    return [int(v, base) for v in path.read_text().split()] if path.exists() else []


def draws(rng: random.Random, prob: float) -> Callable[[], bool]:
    """A bench's stall pattern: a callable, True with probability `prob` (no draw at
    all when it is 1: the cocotb benches call it every cycle)."""
    if prob >= 1:
        return lambda: True
    return lambda: rng.random() < prob


# -- the same for the Amaranth simulator ------------------------------------------------


async def send(ctx: SimulatorContext, port: object, word: int) -> int:
    """Hold one transfer on a stream until it is taken; return the edges it took."""
    ctx.set(port.valid, 1)
    ctx.set(Value.cast(port.payload), word)
    edges = 0
    while True:
        _, _, ready = await ctx.tick().sample(port.ready)
        edges += 1
        if ready:
            break
    ctx.set(port.valid, 0)
    return edges


async def collect_outputs(
    ctx: SimulatorContext,
    dut: object,
    *,
    tiles: int,
    outputs: list[int],
    tokens: list[int],
    token_edges: list[int],
    seed: int,
    ready_prob: float,
    done_ready_prob: float | None,
    idle_limit: int,
    engine: str,
) -> None:
    """Take an engine's `o` and `done` under random back-pressure until `tiles` tokens.

    Appends to the lists as it goes (a ping-pong loader watches `tokens`), and
    the edge of each token's transfer to `token_edges`. `o`'s stall pattern
    comes from `seed + 1`, `done`'s from a stream of its own, so changing one
    probability leaves the other pattern as it was.
    """
    edge = idle = 0
    sink_rng = random.Random(seed + 1)
    done_rng = random.Random(f"{seed}:done")
    done_prob = ready_prob if done_ready_prob is None else done_ready_prob
    while len(tokens) < tiles:
        ctx.set(dut.o.ready, sink_rng.random() < ready_prob)
        ctx.set(dut.done.ready, done_rng.random() < done_prob)
        o, done = dut.o, dut.done
        _, _, o_valid, o_ready, payload, d_valid, d_ready, tag = await ctx.tick().sample(
            o.valid, o.ready, Value.cast(o.payload), done.valid, done.ready, done.payload
        )
        edge += 1
        idle += 1
        if o_valid and o_ready:
            outputs.append(int(payload))
            idle = 0
        if d_valid and d_ready:
            tokens.append(int(tag))
            token_edges.append(edge)
            idle = 0
        assert idle < idle_limit, (
            f"{engine} stalled after {len(outputs)} outputs and {len(tokens)} of {tiles} "
            f"tokens ({idle} idle edges)"
        )
