"""cocotb testbench: `Coprocessor` alone, its ports driven by Wishbone bus models.

The control port is driven by cocotbext-wishbone's classic `WishboneMaster`;
the memory port is answered by `MemoryResponder`, a Wishbone B4 pipelined
slave over a Python copy of the memory (random stall, random latency, answers
in order, garbage on dat_r between acks). One coroutine samples both ports at
every rising edge — the values the flops see — and feeds the protocol
checkers of sim/coproc_bus.py; the first violation is written to
`violations.json` and fails the test. The run: set the registers (read back),
start each program, poll STATUS until done, read the fault, the cycles and
the counters. `run.json`'s passes each set the responder (stall chance, longest
latency, seed, words answered err) and start from the host's image; each
pass's memory comes back as `image-N.bin`, the counts in `result.json`.
Its folder is `GRACE_COPROC_BUS_DIR` (written by `sim.coproc_bus.simulate_bus`).
"""

from __future__ import annotations

import json
import os
import random
from collections import deque
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.wishbone.driver import WBOp, WishboneMaster

from defs.coproc import COUNTER_NAMES, Register
from defs.isa import ISA_VERSION
from sim.coproc_bus import ClassicChecker, PipelinedChecker, ProtocolViolation

_MEM = ("cyc", "stb", "we", "adr", "dat_w", "sel", "ack", "err", "stall")
_CTRL = ("cyc", "stb", "we", "adr", "dat_w", "dat_r", "ack")
_POLL = 50  # cycles between STATUS reads while a program runs
_ACK_TIMEOUT = 8  # cycles the master waits for a control ack before it fails
_TRACE = 16  # edges shown before a violation


def _row(sample: dict[str, int | None]) -> str:
    return " ".join(f"{n}={'X' if v is None else hex(v)}" for n, v in sample.items())


def _read(handle: object) -> int | None:
    value = handle.value
    return int(value) if value.is_resolvable else None


class MemoryResponder:
    """A Wishbone B4 pipelined slave over `memory` (bytes, little-endian words).

    A request is taken on an edge with cyc & stb & ~stall; a read sees the
    memory of that moment, a write lands then (bytes by sel). Each answer comes
    1..max_latency edges later, in order, one per edge: err on the words of
    `errors` (and past the memory's end), ack otherwise. Stall is random
    each cycle. A dropped cyc discards the answers still due. `plant` commits
    one fault on purpose (sim.coproc_bus.PLANTS).
    """

    def __init__(self, dut: object, memory: bytearray, run: dict) -> None:
        self.dut, self.memory = dut, memory
        self.bus = run["bus_bytes"]
        self.image_bytes = run["image_bytes"]
        self.plant = run["plant"]
        self.edge = 0
        self.due: deque[tuple[int, bool, int]] = deque()  # (edge, error, data)
        self.last_due = 0
        self.driven = {"ack": 0, "err": 0, "stall": 0}
        self.answers = 0
        self.repeat: tuple[int, bool, int] | None = None
        self.planted = False
        self.stray_writes: list[str] = []
        self.configure({"stall": 0.0, "max_latency": 1, "seed": 0, "errors": None})
        self.dut.mem__dat_r.value = 0
        for name in self.driven:
            getattr(self.dut, f"mem__{name}").value = 0

    def configure(self, settings: dict) -> None:
        """A pass's stall chance, longest latency, seed and words answered err."""
        self.stall, self.max_latency = settings["stall"], settings["max_latency"]
        self.rng = random.Random(settings["seed"])
        self.errors = range(*settings["errors"]) if settings["errors"] else range(0)

    def _drive(self, name: str, value: int) -> None:
        if self.driven[name] != value:
            getattr(self.dut, f"mem__{name}").value = value
            self.driven[name] = value

    def _take(self, we: int, adr: int, dat_w: int, sel: int) -> tuple[bool, int]:
        start = adr * self.bus
        if adr in self.errors or start + self.bus > len(self.memory):
            return True, 0
        if not we:
            return False, int.from_bytes(self.memory[start : start + self.bus], "little")
        for i, byte in enumerate(dat_w.to_bytes(self.bus, "little")):
            if sel >> i & 1:
                if start + i >= self.image_bytes:
                    self.stray_writes.append(f"byte {start + i} (image ends at {self.image_bytes})")
                self.memory[start + i] = byte
        return False, 0

    def step(self, s: dict[str, int | None]) -> None:
        """One rising edge: `s` holds the port's values at it (as the flops see them)."""
        self.edge += 1
        if not s["cyc"]:
            self.due.clear()  # the master ended the cycle: nothing left to answer
        elif s["stb"] and not s["stall"]:
            error, data = self._take(s["we"] or 0, s["adr"] or 0, s["dat_w"] or 0, s["sel"] or 0)
            self.last_due = max(self.edge + self.rng.randint(1, self.max_latency),
                                self.last_due + 1)  # fmt: skip
            self.due.append((self.last_due, error, data))
        # what the port shows until the next edge
        answer = None
        stall = int(self.rng.random() < self.stall)
        if self.repeat is not None:
            answer, self.repeat = self.repeat, None
        elif self.due and self.due[0][0] <= self.edge + 1:
            answer = self.due.popleft()
            self.answers += 1
            # planted: ack the only request outstanding twice (stalled, so none comes between)
            if (
                self.plant == "double_ack"
                and not self.planted
                and self.answers >= 5
                and not self.due
            ):
                self.repeat, self.planted, stall = answer, True, 1
        if answer is None:
            self._drive("ack", 0)
            self._drive("err", 0)
            self.dut.mem__dat_r.value = self.rng.getrandbits(8 * self.bus)
        else:
            _, error, data = answer
            self._drive("ack", int(not error))
            self._drive("err", int(error))
            self.dut.mem__dat_r.value = data if not error else self.rng.getrandbits(8 * self.bus)
        self._drive("stall", stall)


class Watch:
    """Samples both ports at every rising edge for the checkers and the responder."""

    def __init__(self, dut: object, responder: MemoryResponder, work: Path) -> None:
        self.dut, self.responder, self.work = dut, responder, work
        self.mem = {n: getattr(dut, f"mem__{n}") for n in _MEM}
        self.ctrl = {n: getattr(dut, f"ctrl__{n}") for n in _CTRL}
        self.mem_checker, self.ctrl_checker = PipelinedChecker("mem"), ClassicChecker("ctrl")
        self.violation: str | None = None
        self.edges = 0
        self.trace: deque[str] = deque(maxlen=_TRACE)

    async def run(self) -> None:
        edge = RisingEdge(self.dut.clk)
        while True:
            await edge
            self.edges += 1
            mem = {n: _read(h) for n, h in self.mem.items()}
            mem["done"] = _read(self.dut.irq)
            ctrl = {n: _read(h) for n, h in self.ctrl.items()}
            self.trace.append(f"edge {self.edges}: mem {_row(mem)} | ctrl {_row(ctrl)}")
            try:
                self.mem_checker.step(mem)
                self.ctrl_checker.step(ctrl)
            except ProtocolViolation as exc:
                self.violation = str(exc)
                (self.work / "violations.json").write_text(json.dumps([self.violation]))
                (self.work / "trace.txt").write_text("\n".join(self.trace) + "\n")
                self.dut._log.error("protocol violation: %s; the last edges:\n%s", exc,
                                    "\n".join(self.trace))  # fmt: skip
                raise
            self.responder.step(mem)


class Host:
    """The control port's master: cocotbext-wishbone's classic WishboneMaster."""

    def __init__(self, dut: object, watch: Watch) -> None:
        self.watch = watch
        self.master = WishboneMaster(
            dut, "ctrl", dut.clk, width=32, timeout=_ACK_TIMEOUT, bus_separator="__",
            signals_dict={"cyc": "cyc", "stb": "stb", "we": "we", "adr": "adr",
                          "datwr": "dat_w", "datrd": "dat_r", "ack": "ack"},
        )  # fmt: skip
        # The master sets its outputs with Immediate writes at time 0, which Icarus loses
        # (they stay X): write them again the ordinary way.
        for name in ("cyc", "stb", "we", "adr", "dat_w"):
            getattr(dut, f"ctrl__{name}").value = 0

    async def cycle(self, *ops: tuple[int, int | None]) -> list[int]:
        """One bus cycle of accesses (register, value to write or None to read), back to
        back; each read's value."""
        results = await self.master.send_cycle(
            [WBOp(adr=reg, dat=value, acktimeout=_ACK_TIMEOUT) for reg, value in ops]
        )
        self.check()
        assert len(results) == len(ops), f"{len(ops)} accesses, {len(results)} answers"
        values = []
        for (reg, value), res in zip(ops, results, strict=True):
            assert res.ack == 1, f"register {reg}: answer {res.ack}, not ack"
            if value is None:
                assert res.datrd.is_resolvable, f"register {reg} reads {res.datrd}"
                values.append(int(res.datrd))
        return values

    def check(self) -> None:
        if self.watch.violation is not None:
            raise AssertionError(self.watch.violation)


@cocotb.test()
async def coproc_bus(dut: object) -> None:
    work = Path(os.environ["GRACE_COPROC_BUS_DIR"])
    run = json.loads((work / "run.json").read_text())
    blob = (work / "memory.bin").read_bytes()
    blob += bytes(-len(blob) % run["bus_bytes"])
    memory = bytearray(blob)
    cocotb.start_soon(Clock(dut.clk, 10, "ns").start())
    dut.rst.value = 1
    responder = MemoryResponder(dut, memory, run)
    watch = Watch(dut, responder, work)
    host = Host(dut, watch)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    cocotb.start_soon(watch.run())

    version = ISA_VERSION | run["bus_bytes"] << 8
    registers = {Register.IMAGE_BYTES: run["image_bytes"], Register.WATCHDOG: run["watchdog"]}
    names = ["status", "fault_index", "cycles_lo", "cycles_hi", *COUNTER_NAMES]
    reads = [Register.STATUS, Register.FAULT_INDEX, Register.CYCLES, Register.CYCLES + 1]
    reads += [Register.COUNTERS + i for i in range(len(COUNTER_NAMES))]
    passes = []
    for number, settings in enumerate(run["passes"]):
        memory[:] = blob  # each pass starts from the host's image
        responder.configure(settings)
        before = dict(watch.mem_checker.stats)
        watch.mem_checker.stats["max_outstanding"] = 0
        for base, words in run["programs"]:
            registers |= {Register.PROGRAM_BASE: base, Register.PROGRAM_WORDS: words}
            readback = await host.cycle(
                *registers.items(), (Register.VERSION, None), *((r, None) for r in registers)
            )
            expected = [version, *registers.values()]
            assert readback == expected, f"registers read back {readback}, not {expected}"
            await host.cycle((Register.CONTROL, 1))
            for _ in range(0, run["max_cycles"], _POLL):
                (status,) = await host.cycle((Register.STATUS, None))
                if status & 2:
                    break
                await ClockCycles(dut.clk, _POLL)
            else:
                raise AssertionError(f"pass {number}: no done within {run['max_cycles']} cycles")
            assert not status & 1, f"pass {number}: STATUS {status:#x}, done while busy"
            assert int(dut.irq.value), f"pass {number}: done without irq"
            last = dict(zip(names, await host.cycle(*((r, None) for r in reads)), strict=True))
            if last["status"] >> 8:
                break
        await ClockCycles(dut.clk, 4)
        host.check()
        assert not watch.mem_checker.outstanding, f"pass {number}: requests left unanswered"
        assert not responder.stray_writes, (
            f"pass {number}: writes outside the image: {responder.stray_writes[:4]}"
        )
        (work / f"image-{number}.bin").write_bytes(bytes(memory[: run["image_bytes"]]))
        stats = watch.mem_checker.stats
        passes.append(
            {
                "fault": (last["status"] >> 8) & 0xFF,
                "fault_index": last["fault_index"],
                "cycles": last["cycles_lo"] | last["cycles_hi"] << 32,
                "counters": {n: last[n] for n in COUNTER_NAMES},
                "stats": {
                    k: v if k == "max_outstanding" else v - before[k] for k, v in stats.items()
                },
            }
        )
    (work / "result.json").write_text(
        json.dumps({"passes": passes, "ctrl": watch.ctrl_checker.stats, "edges": watch.edges})
    )
