"""Driving an element-wise unit's tiles: the Amaranth simulator, and the cocotb bench's folder.

A unit (the element-wise engine, the softmax, heatmap and motion units) has
write streams for its tables and constants, a `cmd` stream, an input stream `i`
(the heatmap unit has none), and `o` and `done`. A run is a list of
`UnitTile`s: each names the words its write streams carry before its command
(after the done tokens of the tiles whose data they overwrite), its command,
its input words and how many `o` words it yields; `writes_first` moves every
write before the first command. `simulate_amaranth` runs them with random gaps
on the write streams and the input and random back-pressure on `o` and `done`,
with the stream-rule checker on both; `simulate_cocotb` writes the same run's
folder for `sim.unit_bench.run_tiles` and runs it on the unit's Verilog.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from amaranth import Value
from amaranth.lib import wiring
from amaranth.sim import Simulator, SimulatorContext

from defs.params import GraceParams
from sim.engine_bench import collect_outputs, draws, read_numbers, run_engine_bench, send
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
    # the Amaranth simulator's only: the edge of each command's and each token's transfer
    accepted: list[int] = field(default_factory=list)
    returned: list[int] = field(default_factory=list)


def writes_first(tiles: list[UnitTile]) -> list[UnitTile]:
    """The same run with every write on the first tile (in order on each stream) and
    no tile awaiting tokens: for tiles whose data all fit in the unit at once."""
    if not tiles:
        return []
    ports = dict.fromkeys(port for tile in tiles for port in tile.writes)
    writes = {port: [w for tile in tiles for w in tile.writes.get(port, [])] for port in ports}
    rest = [replace(tile, writes={}, wait=0) for tile in tiles[1:]]
    return [replace(tiles[0], writes=writes, wait=0), *rest]


def simulate_amaranth(
    dut: wiring.Component,
    tiles: list[UnitTile],
    *,
    ready_prob: float = 1.0,
    in_prob: float = 1.0,
    write_prob: float = 1.0,
    done_ready_prob: float | None = None,
    seed: int = 0,
    stall_limit: int = 5000,
) -> UnitRun:
    """Each tile's writes (all write streams at once, each word offered with
    probability `write_prob` on a cycle and held until taken), then its command;
    inputs with random gaps (`in_prob`); `o` and `done` under random
    back-pressure. Checks the stream rules, the tags' order, and that each token
    comes after its tile's last `o` word. The write gaps come from one stream,
    "<seed>:writes", drawn only when `write_prob` < 1."""
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
    gap = draws(random.Random(f"{seed}:writes"), write_prob)

    async def write(ctx: SimulatorContext, batch: dict[str, list[int]]) -> int:
        """The batch's write streams at once, with gaps; the edges it took."""
        ports = [getattr(dut, port) for port in batch]
        queues, sent, edges = list(batch.values()), [0] * len(batch), 0
        offered = [False] * len(batch)
        while any(s < len(q) for s, q in zip(sent, queues, strict=True)):
            for k, (port, q) in enumerate(zip(ports, queues, strict=True)):
                if not offered[k] and sent[k] < len(q) and gap():
                    offered[k] = True
                    ctx.set(Value.cast(port.payload), q[sent[k]])
                ctx.set(port.valid, offered[k])
            _, _, *ready = await ctx.tick().sample(*(p.ready for p in ports))
            edges += 1
            for k, r in enumerate(ready):
                if offered[k] and r:
                    sent[k] += 1
                    offered[k] = False
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
    return UnitRun(words, tokens, returned[-1] - accepted[0], stalls, accepted, returned)


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
    masks: list[int] | None = None,
    simulator: str,
    build_dir: Path,
    ready_prob: float = 1.0,
    in_prob: float = 1.0,
    write_prob: float = 1.0,
    done_ready_prob: float | None = None,
    seed: int = 0,
    waves: bool = False,
) -> tuple[UnitRun, SimResult]:
    """The same run on the block's Verilog under `sim.<block>_tb` (`sim.unit_bench`),
    which fails the cocotb test on a broken stream rule, a tag, or an `o` word that
    differs from `expected` in the bits of `masks` (all of them without it)."""
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
            **({} if masks is None else {"mask": masks}),
        },
        texts={"loads.txt": loads, "tags.txt": "".join(f"{t.tag}\n" for t in tiles)},
        env={
            "GRACE_READY_PROB": repr(ready_prob),
            "GRACE_DONE_READY_PROB": repr(done_prob),
            "GRACE_IN_PROB": repr(in_prob),
            "GRACE_WRITE_PROB": repr(write_prob),
            "GRACE_SEED": str(seed),
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
