"""OnChipMemory (rtl/coproc/onchip_memory.py), the board top's stand-in for external
memory: a request every cycle, each answered exactly `LATENCY` edges later, byte
lanes written by `sel`, `err` past the RAM, against a dictionary of bytes."""

from __future__ import annotations

import random

from amaranth.sim import Simulator, SimulatorContext

from rtl.coproc.onchip_memory import OnChipMemory

DATA_BYTES, DEPTH, ADDR_BITS = 4, 64, 10


def test_requests_every_cycle_are_answered_latency_edges_later() -> None:
    rng = random.Random(5)
    dut = OnChipMemory(ADDR_BITS, DATA_BYTES, DEPTH)
    model = [0] * DEPTH
    requests = []  # (kind, addr, data, sel), one per cycle, some cycles idle
    for _ in range(600):
        kind = rng.choice(["read", "read", "write", "idle"])
        addr = rng.randrange(DEPTH, 1 << ADDR_BITS) if rng.random() < 0.05 else rng.randrange(DEPTH)
        requests.append((kind, addr, rng.getrandbits(8 * DATA_BYTES), rng.getrandbits(DATA_BYTES)))
    expected = []  # per cycle: the answer due (None: no answer)
    for kind, addr, data, sel in requests:
        if kind == "idle":
            expected.append(None)
            continue
        if addr >= DEPTH:
            expected.append(("err", None))
            continue
        if kind == "write":
            mask = sum(0xFF << (8 * b) for b in range(DATA_BYTES) if sel >> b & 1)
            model[addr] = (model[addr] & ~mask) | (data & mask)
            expected.append(("ack", None))
        else:
            expected.append(("ack", model[addr]))
    seen = []

    async def bench(ctx: SimulatorContext) -> None:
        bus = dut.bus
        for cycle in range(len(requests) + OnChipMemory.LATENCY + 1):
            kind, addr, data, sel = requests[cycle] if cycle < len(requests) else ("idle", 0, 0, 0)
            ctx.set(bus.cyc, 1)
            ctx.set(bus.stb, kind != "idle")
            ctx.set(bus.we, kind == "write")
            ctx.set(bus.adr, addr)
            ctx.set(bus.dat_w, data)
            ctx.set(bus.sel, sel)
            assert not ctx.get(bus.stall)
            ack, err = ctx.get(bus.ack), ctx.get(bus.err)
            assert not (ack and err)
            seen.append(("ack", ctx.get(bus.dat_r)) if ack else ("err", None) if err else None)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    answers = seen[OnChipMemory.LATENCY :][: len(expected)]
    assert all(a is None for a in seen[: OnChipMemory.LATENCY])
    for cycle, (want, got) in enumerate(zip(expected, answers, strict=True)):
        if want is not None and want[0] == "ack" and want[1] is None:  # a write's ack
            got = got and (got[0], None)
        assert got == want, f"request {cycle} {requests[cycle]}: answered {got}, expected {want}"
    assert sum(1 for a in expected if a == ("err", None)) > 10
