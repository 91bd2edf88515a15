"""cocotb testbench: the co-processor on its simulated memory (rtl/coproc/sim_top.py).

Python drives only the ends of a run: it fills the memory through the
backdoor, writes the control registers, starts each program and waits for the
interrupt (a cocotb `RisingEdge` on `irq`, so the simulator runs free in
between), then reads the status, the counters and the image back. Its folder
(`GRACE_COPROC_DIR`, written by `sim.coproc_sim`) holds `memory.hex` and
`run.json`; it writes `result.json` and `image.bin`. `run.json`'s
`reset_after` runs the programs before `reset_program`, starts that one and
pulses the reset `reset_after` cycles into it, then runs it and the rest
again (the results are those of the runs after the reset).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer

from defs.coproc import COUNTER_NAMES, Register

#: The clock's period: the bench waits in time, not in counted edges.
PERIOD_NS = 10


async def _access(dut: object, reg: int, value: int | None = None) -> int:
    ctrl = dut
    ctrl.ctrl__cyc.value = 1
    ctrl.ctrl__stb.value = 1
    ctrl.ctrl__we.value = int(value is not None)
    ctrl.ctrl__adr.value = reg
    ctrl.ctrl__dat_w.value = value or 0
    while True:
        await RisingEdge(dut.clk)
        await Timer(1, "ps")
        if int(dut.ctrl__ack.value):
            break
    raw = dut.ctrl__dat_r.value
    if not raw.is_resolvable:
        raise AssertionError(f"register {reg} reads {raw}")
    data = int(raw)
    ctrl.ctrl__cyc.value = 0
    ctrl.ctrl__stb.value = 0
    return data


async def _run_program(dut: object, base: int, words: int, limit: int) -> int:
    await _access(dut, Register.PROGRAM_BASE, base)
    await _access(dut, Register.PROGRAM_WORDS, words)
    await _access(dut, Register.CONTROL, 1)
    timeout = Timer(limit * PERIOD_NS, "ns")  # one callback, not one per cycle
    fired = await First(RisingEdge(dut.irq), timeout)
    if fired is timeout:
        raise AssertionError(f"no done within {limit} cycles: the co-processor hangs")
    return await _access(dut, Register.STATUS)


@cocotb.test()
async def coproc_run(dut: object) -> None:
    work = Path(os.environ["GRACE_COPROC_DIR"])
    run = json.loads((work / "run.json").read_text())
    bus = run["bus_bytes"]
    # the clock toggles in the simulator (GPI), not in Python: the run is free of
    # Python until done, as fast as Verilator runs the design
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, "ns", impl="gpi").start())
    dut.rst.value = 1
    dut.ctrl__cyc.value = 0
    dut.ctrl__stb.value = 0
    dut.backdoor_we.value = 0
    dut.latency.value = run["latency"]
    dut.stall_threshold.value = run["stall_threshold"]
    dut.lfsr_seed.value = run["seed"]
    dut.error_from.value = run["error_from"]
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    for i, line in enumerate((work / "memory.hex").read_text().split()):
        if line == "0":  # the memory starts zeroed: most of an image is room for results
            continue
        dut.backdoor_addr.value = i
        dut.backdoor_wdata.value = int(line, 16)
        dut.backdoor_we.value = 1
        await RisingEdge(dut.clk)
    dut.backdoor_we.value = 0
    await _access(dut, Register.IMAGE_BYTES, run["image_bytes"])
    await _access(dut, Register.WATCHDOG, run["watchdog"])

    programs = run["programs"]
    if run.get("reset_after"):  # run up to a program, reset the design inside it, go again
        first = run["reset_program"]
        for base, words in programs[:first]:
            await _run_program(dut, base, words, run["max_cycles"])
        base, words = programs[first]
        await _access(dut, Register.PROGRAM_BASE, base)
        await _access(dut, Register.PROGRAM_WORDS, words)
        await _access(dut, Register.CONTROL, 1)
        await Timer(run["reset_after"] * PERIOD_NS, "ns")
        assert not int(dut.irq.value), "the program ended before the reset"
        dut.rst.value = 1
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        await _access(dut, Register.IMAGE_BYTES, run["image_bytes"])
        await _access(dut, Register.WATCHDOG, run["watchdog"])
        programs = programs[first:]

    results = []
    for base, words in programs:
        status = await _run_program(dut, base, words, run["max_cycles"])
        counters = {
            name: await _access(dut, Register.COUNTERS + i) for i, name in enumerate(COUNTER_NAMES)
        }
        low = await _access(dut, Register.CYCLES)
        high = await _access(dut, Register.CYCLES + 1)
        results.append(
            {
                "fault": (status >> 8) & 0xFF,
                "fault_index": await _access(dut, Register.FAULT_INDEX),
                "cycles": low | high << 32,
                "counters": counters,
            }
        )
        if status >> 8:
            break
    image = bytearray()  # the whole memory: the programs must come back unchanged too
    for i in range(run["memory_words"]):
        dut.backdoor_addr.value = i
        await RisingEdge(dut.clk)
        await Timer(1, "ps")
        image += int(dut.backdoor_rdata.value).to_bytes(bus, "little")
    (work / "image.bin").write_bytes(bytes(image))
    (work / "result.json").write_text(json.dumps(results))
