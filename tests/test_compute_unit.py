"""ComputeUnit (rtl/coproc/compute_unit.py): the latencies it declares, edge for edge.

The cycle model (rtl/coproc_cycles.py) reads `ISSUE_LATENCY` (head taken → the
engine's command offered) and `DONE_TO_RETIRE` (the engine's `done` taken → its
token to the load queue and the head let go). A whole frame checks them only
within its 2 % window, so here the unit alone runs one engine instruction per
engine, with the engine's `cmd.ready` and `done.valid` held back by random
amounts, and each edge is counted."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator, SimulatorContext

from compiler.isa import body_fields, encode
from defs.isa import Opcode
from defs.params import preset
from rtl.coproc.compute_unit import ComputeUnit
from rtl.coproc.core import ENGINES, engine_slots, make_engines

PARAMS = preset("tiny")


def _unit() -> ComputeUnit:
    return ComputeUnit(PARAMS, engine_slots(make_engines(PARAMS)))


def _instruction(op: Opcode) -> int:
    fields = {n: 0 for n, _ in body_fields(op, PARAMS)}
    return encode(op, PARAMS, fields, {"push_prev": 1})


def _edges_of_one_instruction(op: Opcode, cmd_wait: int, done_wait: int) -> dict[str, int]:
    """Run `op` alone: the engine takes its command `cmd_wait` cycles after it is
    offered and is done `done_wait` cycles after that. The edges of each step."""
    dut = _unit()
    name = ENGINES[op][0]
    cmd, done = getattr(dut, f"{name}_cmd"), getattr(dut, f"{name}_done")
    seen: dict[str, int] = {}

    async def bench(ctx: SimulatorContext) -> None:
        ctx.set(dut.head.payload.word, _instruction(op))
        ctx.set(dut.head.valid, 1)
        ctx.set(dut.prev_available, 1)
        ctx.set(dut.next_available, 1)
        offered_at = None
        for edge in range(200):
            # what the unit shows in the cycle before edge `edge`
            if "taken" not in seen and ctx.get(dut.head.valid):
                seen["taken"] = edge  # IDLE registers the head at this edge
            others = [e for o, (e, _) in ENGINES.items() if o != op]
            assert not any(ctx.get(getattr(dut, f"{e}_cmd").valid) for e in others)
            if ctx.get(cmd.valid) and offered_at is None:
                offered_at = edge
                seen["offered"] = edge
            take_cmd = offered_at is not None and edge >= offered_at + cmd_wait
            ctx.set(cmd.ready, take_cmd and "cmd" not in seen)
            if take_cmd and "cmd" not in seen and ctx.get(cmd.valid):
                seen["cmd"] = edge
            finish = "cmd" in seen and edge >= seen["cmd"] + 1 + done_wait
            ctx.set(done.valid, finish and "done" not in seen)
            if finish and "done" not in seen:
                assert ctx.get(done.ready), "the unit must take done in RUN"
                seen["done"] = edge
            if ctx.get(dut.push_prev):
                assert "retired" not in seen, "one token per instruction"
                assert ctx.get(dut.head.ready) and ctx.get(dut.retire)
                seen["retired"] = edge
                ctx.set(dut.head.valid, 0)
            elif "done" in seen:
                assert not ctx.get(dut.head.ready), "the head is let go with its token"
            await ctx.tick()
        assert {"taken", "offered", "cmd", "done", "retired"} <= seen.keys(), seen

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return seen


@pytest.mark.parametrize("op", list(ENGINES))
def test_an_engine_instruction_takes_the_declared_latencies(op: Opcode) -> None:
    rng = random.Random(int(op))
    for cmd_wait, done_wait in [(0, 0), (rng.randrange(1, 9), rng.randrange(1, 40))]:
        seen = _edges_of_one_instruction(op, cmd_wait, done_wait)
        assert seen["offered"] - seen["taken"] == ComputeUnit.ISSUE_LATENCY, seen
        assert seen["cmd"] - seen["offered"] == cmd_wait, seen
        assert seen["retired"] - seen["done"] == ComputeUnit.DONE_TO_RETIRE, seen
