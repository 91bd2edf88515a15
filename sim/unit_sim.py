"""Driving an element-wise unit's tiles: the Amaranth simulator, and the cocotb bench's folder.

A unit (the softmax unit, the keypoint units) has write streams for its tables
and constants, a `cmd` stream, an input stream `i`, and `o` and `done`. A run is
a list of `UnitTile`s: each names the words its write streams carry before its
command (after the done tokens of the tiles whose data they overwrite), its
command, its input words and how many `o` words it yields. `simulate_amaranth`
runs them under random back-pressure with the stream-rule checker on `o` and
`done`; `bench_files` writes the same run for `sim.unit_bench.run_tiles`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from amaranth import Value
from amaranth.lib import wiring
from amaranth.sim import Simulator, SimulatorContext

from defs.params import GraceParams
from sim.engine_bench import collect_outputs, read_numbers, run_engine_bench, send
from sim.runner import SimResult
from sim.stream_rules import watch_amaranth


@dataclass
class UnitTile:
    command: int
    writes: dict[str, list[int]]  # write port → its words before the command
    wait: int  # done tokens to await before the writes (the tiles reading what they overwrite)
    inputs: list[int]
    words: int  # `o` words the tile yields
    tag: int


@dataclass
class UnitRun:
    outputs: list[int]  # every `o` word, in arrival order
    tokens: list[int]  # done tags, in arrival order
    cycles: int  # from the first command's transfer to the last done token's
    stalls: dict[str, int] = field(default_factory=dict)  # "o", "done", "cmd"


def simulate_amaranth(
    dut: wiring.Component,
    tiles: list[UnitTile],
    *,
    ready_prob: float = 1.0,
    in_prob: float = 1.0,
    done_ready_prob: float | None = None,
    seed: int = 0,
    stall_limit: int = 5000,
) -> UnitRun:
    """Each tile's writes (all write streams at once, each word held until taken),
    then its command; inputs with random gaps (`in_prob`); `o` and `done` under
    random back-pressure. Checks the stream rules, the tags' order, and that each
    token comes after its tile's last `o` word."""
    if not tiles:
        raise ValueError("simulate_amaranth: no tiles to run")
    name = type(dut).__name__
    words: list[int] = []
    tokens: list[int] = []
    accepted: list[int] = []
    returned: list[int] = []
    cmd_stalls = [0]
    inputs = [w for tile in tiles for w in tile.inputs]
    writes = sum(len(ws) for tile in tiles for ws in tile.writes.values())

    async def write(ctx: SimulatorContext, batch: dict[str, list[int]]) -> int:
        ports = [getattr(dut, port) for port in batch]
        queues, sent, edges = list(batch.values()), [0] * len(batch), 0
        while any(s < len(q) for s, q in zip(sent, queues, strict=True)):
            for port, q, s in zip(ports, queues, sent, strict=True):
                ctx.set(port.valid, s < len(q))
                if s < len(q):
                    ctx.set(Value.cast(port.payload), q[s])
            _, _, *ready = await ctx.tick().sample(*(p.ready for p in ports))
            edges += 1
            for k, r in enumerate(ready):
                sent[k] += int(bool(r) and sent[k] < len(queues[k]))
        for port in ports:
            ctx.set(port.valid, 0)
        return edges

    async def loader(ctx: SimulatorContext) -> None:
        edge = 0
        for tile in tiles:
            while len(tokens) < tile.wait:
                await ctx.tick()
                edge += 1
            edge += await write(ctx, tile.writes)
            took = await send(ctx, dut.cmd, tile.command)
            edge += took
            cmd_stalls[0] += took - 1
            accepted.append(edge)

    async def source(ctx: SimulatorContext) -> None:
        rng = random.Random(f"{seed}:in")
        for word in inputs:
            while in_prob < 1 and rng.random() >= in_prob:
                await ctx.tick()
            await send(ctx, dut.i, word)

    async def sink(ctx: SimulatorContext) -> None:
        await collect_outputs(
            ctx, dut, tiles=len(tiles), outputs=words, tokens=tokens, token_edges=returned,
            seed=seed, ready_prob=ready_prob, done_ready_prob=done_ready_prob,
            idle_limit=stall_limit + writes, engine=name,
        )  # fmt: skip

    before: list[int] = []

    async def order(ctx: SimulatorContext) -> None:
        """Each token's edge: how many `o` words transferred at earlier edges."""
        count = 0
        async for _, _, o_valid, o_ready, d_valid, d_ready in ctx.tick().sample(
            dut.o.valid, dut.o.ready, dut.done.valid, dut.done.ready
        ):
            if d_valid and d_ready:
                before.append(count)
            count += int(bool(o_valid and o_ready))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in (loader, source, sink):
        sim.add_testbench(bench)
    sim.add_process(order)
    streams = {n: watch_amaranth(sim, getattr(dut, n), f"{name}.{n}") for n in ("o", "done")}
    sim.run()
    for rules, seen in ((streams["o"], words), (streams["done"], tokens)):
        rules.check()
        assert rules.transfers == len(seen), f"{rules.name}: {rules.transfers} ≠ {len(seen)}"
    tags = [tile.tag for tile in tiles]
    assert tokens == tags, f"done tokens {tokens}, the commands' tags {tags}"
    check_token_order(before, tiles)
    stalls = {n: rules.stalls for n, rules in streams.items()} | {"cmd": cmd_stalls[0]}
    return UnitRun(words, tokens, returned[-1] - accepted[0], stalls)


def check_token_order(before: list[int], tiles: list[UnitTile]) -> None:
    """Each done token after its tile's last `o` word: `before[k]` words at earlier edges."""
    end = 0
    for k, (seen, tile) in enumerate(zip(before, tiles, strict=True)):
        end += tile.words
        assert seen >= end, (
            f"tile {k}'s done token (tag {tile.tag}) came with {seen} output words sent, "
            f"before its last (word {end})"
        )


def simulate_cocotb(
    block: str,
    params: GraceParams,
    tiles: list[UnitTile],
    write_ports: tuple[str, ...],
    *,
    expected: list[int],
    simulator: str,
    build_dir: Path,
    ready_prob: float = 1.0,
    in_prob: float = 1.0,
    done_ready_prob: float | None = None,
    seed: int = 0,
    waves: bool = False,
) -> tuple[UnitRun, SimResult]:
    """The same run on the block's Verilog under `sim.<block>_tb` (`sim.unit_bench`),
    which fails the cocotb test on a broken stream rule, a wrong `o` word or a tag."""
    done_prob = ready_prob if done_ready_prob is None else done_ready_prob
    loads = "".join(
        " ".join(str(len(t.writes.get(port, []))) for port in write_ports)
        + f" {t.wait} {t.words}\n"
        for t in tiles
    )
    work, result = run_engine_bench(
        block,
        params,
        simulator=simulator,
        build_dir=build_dir,
        seed=seed,
        words={
            **{port: [w for t in tiles for w in t.writes.get(port, [])] for port in write_ports},
            "command": [t.command for t in tiles],
            "input": [w for t in tiles for w in t.inputs],
            "expected": expected,
        },
        texts={"loads.txt": loads, "tags.txt": "".join(f"{t.tag}\n" for t in tiles)},
        env={
            "GRACE_READY_PROB": repr(ready_prob),
            "GRACE_DONE_READY_PROB": repr(done_prob),
            "GRACE_IN_PROB": repr(in_prob),
            "GRACE_SEED": str(seed),
            "GRACE_OVERLAP": "1",
        },
        waves=waves,
    )
    cycles = read_numbers(work, "cycles.txt")
    run = UnitRun(
        read_numbers(work, "out.txt", 16),
        read_numbers(work, "tokens.txt"),
        cycles[0] if cycles else 0,
        dict(zip(("o", "done", "cmd"), read_numbers(work, "stalls.txt"), strict=False)),
    )
    return run, result
