"""The co-processor alone on its two bus ports, against cocotbext-wishbone, under cocotb.

`Coprocessor` (not `SimTop`: no simulated memory inside) is built to Verilog
and driven by sim/coproc_bus_tb.py: the control port by cocotbext-wishbone's
classic `WishboneMaster`, the memory port by a pipelined responder in the
bench (random stall, random latency, in-order answers) over a Python copy of
the memory. Two protocol checkers watch every rising edge and end the test at
the first violation; they are plain classes here, so tests can also feed them
made-up traces.

Why a responder of our own: cocotbext-wishbone 2.0.1's only slave-side model
(`monitor.WishboneSlave`) answers from a data generator, not a memory, and
after taking a request it waits for that request's ack before it looks at the
bus again, without raising stall, so a pipelined master's back-to-back
requests would be lost (four back-to-back reads get two acks). It also drives
ack/dat_r itself, so it cannot sit on a port as a passive monitor either. Its
master is classic-correct: it holds stb until ack and reads ack as sampled at
the edge (under Icarus and Verilator alike).

`PASSES`: the memory at full rate, with some stall, mostly stalled, and with
latencies up to 40 edges (the port's whole window of requests in flight).

What the checkers verify (sampled at each rising edge, i.e. the values the
flops see):

memory port, Wishbone B4 pipelined (`PipelinedChecker`):
  - cyc, stb, ack, err, stall are never X/Z; adr, we, sel of a request and
    dat_w of a write are never X/Z;
  - stb only while cyc;
  - a request stalled at one edge is offered again, unchanged (adr, we, sel,
    and dat_w of a write), at the next edge while cyc stays high;
  - ack and err never both high, never while cyc is low;
  - acks + errs never exceed the requests taken (cyc & stb & ~stall);
  - cyc stays high while any request is taken and unanswered;
  - and the co-processor's own promise (rtl/coproc/core.py): while done
    (`irq`) is high, cyc is low — done comes only once the port is quiet,
    and nothing is issued after it until the next start.
control port, Wishbone classic (`ClassicChecker`):
  - cyc, stb, ack never X/Z; adr, we (and dat_w of a write) of an access
    never X/Z; dat_r never X/Z when a read is acknowledged;
  - stb only while cyc; the master holds an access unchanged until its ack;
  - the slave raises ack only while cyc & stb, for one edge per access (never
    on two edges in a row), and exactly one cycle after the access is offered
    (the port's documented latency, rtl/coproc/control.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from defs.coproc import Fault
from defs.params import GraceParams
from sim.coproc_host import HostImage
from sim.runner import SimResult, run_cocotb
from sim.verilog_cache import cached_convert

TOPLEVEL = "grace_coproc_bus"
#: The model unoptimised: its passes run a few thousand cycles (1.7 s at -Os), and the
#: compile took 68 s of CPU at Verilator's -Os, 29 s at -O0.
OPT_FAST = "-O0"

#: Faults the bench can plant in its own memory responder, to show the checker sees them.
PLANTS = ("double_ack",)

Sample = Mapping[str, int | None]  # a signal's value, None when it is not 0/1 throughout


class ProtocolViolation(AssertionError):
    """A bus port broke the Wishbone rules."""


class PipelinedChecker:
    """Wishbone B4 pipelined rules between a master and a slave; `step` once per rising edge."""

    def __init__(self, name: str = "mem") -> None:
        self.name = name
        self.edge = 0
        self.outstanding = 0  # requests taken, not yet answered
        self._held: tuple | None = None  # the request stalled at the last edge
        self.stats = {
            "requests": 0, "reads": 0, "writes": 0, "acks": 0, "errs": 0,
            "stalled_edges": 0, "max_outstanding": 0, "withdrawn": 0,
        }  # fmt: skip

    def _fail(self, why: str) -> None:
        raise ProtocolViolation(f"{self.name} port, edge {self.edge}: {why}")

    def step(self, s: Sample) -> None:
        self.edge += 1
        for name in ("cyc", "stb", "ack", "err", "stall"):
            if s[name] is None:
                self._fail(f"{name} is X/Z")
        cyc, stb, ack, err, stall = (s[n] for n in ("cyc", "stb", "ack", "err", "stall"))
        if stb and not cyc:
            self._fail("stb high while cyc is low")
        if s.get("done") and cyc:
            self._fail(
                "cyc high while done is high: the co-processor issues after it reported done"
            )
        request = None
        if stb:
            for name in ("adr", "we", "sel"):
                if s[name] is None:
                    self._fail(f"{name} is X/Z during a request")
            if s["we"] and s["dat_w"] is None:
                self._fail("dat_w is X/Z during a write request")
            request = (s["adr"], s["we"], s["sel"], s["dat_w"] if s["we"] else None)
        if ack and err:
            self._fail("ack and err both high")
        if not cyc and self.outstanding:
            self._fail(f"cyc dropped with {self.outstanding} request(s) taken and unanswered")
        if ack or err:
            if not cyc:
                self._fail("ack/err while cyc is low")
            if not self.outstanding:
                self._fail("ack/err with no request outstanding (more answers than requests)")
            self.outstanding -= 1
            self.stats["acks" if ack else "errs"] += 1
        if self._held is not None:
            if not cyc:
                self.stats["withdrawn"] += 1  # the master ended the cycle: an abort (B4 allows it)
            elif request is None:
                self._fail(f"stb dropped while request {_show(self._held)} was stalled")
            elif request != self._held:
                self._fail(
                    f"request changed while stalled: {_show(self._held)} -> {_show(request)}"
                )
        self._held = request if stall else None
        if request is not None:
            if stall:
                self.stats["stalled_edges"] += 1
            else:
                self.outstanding += 1
                self.stats["requests"] += 1
                self.stats["writes" if request[1] else "reads"] += 1
                self.stats["max_outstanding"] = max(self.stats["max_outstanding"], self.outstanding)


class ClassicChecker:
    """Wishbone classic rules on the control port; `step` once per rising edge."""

    def __init__(self, name: str = "ctrl") -> None:
        self.name = name
        self.edge = 0
        self._pending: tuple | None = None  # the access offered at the last edge, not acked
        self._last_ack = 0
        self.stats = {"accesses": 0, "reads": 0, "writes": 0}

    def _fail(self, why: str) -> None:
        raise ProtocolViolation(f"{self.name} port, edge {self.edge}: {why}")

    def step(self, s: Sample) -> None:
        self.edge += 1
        for name in ("cyc", "stb", "ack"):
            if s[name] is None:
                self._fail(f"{name} is X/Z")
        cyc, stb, ack = s["cyc"], s["stb"], s["ack"]
        if stb and not cyc:
            self._fail("stb high while cyc is low")
        access = None
        if cyc and stb:
            for name in ("adr", "we"):
                if s[name] is None:
                    self._fail(f"{name} is X/Z during an access")
            if s["we"] and s["dat_w"] is None:
                self._fail("dat_w is X/Z during a write")
            access = (s["adr"], s["we"], s["dat_w"] if s["we"] else None)
        if ack and access is None:
            self._fail("ack while not cyc & stb")
        if ack and self._last_ack:
            self._fail("ack high on two edges in a row: one access acknowledged twice")
        if self._pending is not None:
            if access is None:
                self._fail(f"access {_show(self._pending)} withdrawn before its ack")
            if access != self._pending:
                was, now = _show(self._pending), _show(access)
                self._fail(f"access changed before its ack: {was} -> {now}")
            if not ack:
                self._fail(
                    f"access {_show(access)} not acknowledged one cycle after it was offered"
                )
        if ack:
            if not access[1] and s["dat_r"] is None:
                self._fail(f"dat_r is X/Z on the ack of a read of register {access[0]}")
            self.stats["accesses"] += 1
            self.stats["writes" if access[1] else "reads"] += 1
        self._pending = access if access is not None and not ack else None
        self._last_ack = ack


def _show(request: tuple | None) -> str:
    if request is None:
        return "none"
    adr, we, *rest = request
    values = "".join(f" {v:#x}" for v in rest if v is not None)
    return f"({'write' if we else 'read'} adr={adr:#x}{values})"


@dataclass(frozen=True)
class Pass:
    """How the bench's memory answers during one pass over the programs."""

    stall: float = 0.3  # the chance of stall on each cycle
    max_latency: int = 6  # an answer comes 1..max_latency edges after its request, in order
    seed: int = 1
    errors: tuple[int, int] | None = None  # words [first, end) answered err (and past the memory)


#: Full rate, some stall, mostly stall, long latency (many requests in flight).
PASSES = (Pass(0.0, 1), Pass(0.3, 6), Pass(0.8, 3, seed=2), Pass(0.1, 40, seed=3))


@dataclass
class PassResult:
    settings: Pass
    fault: Fault
    fault_index: int
    cycles: int
    counters: dict[str, int]
    memory: bytearray  # the bench's memory after the pass, IMAGE_BYTES of it
    stats: dict[str, int]  # the memory port's checker's counts during the pass


@dataclass
class BusRun:
    passes: list[PassResult]  # those that ended (none after a violation)
    ctrl: dict[str, int]  # the control port's checker's counts
    edges: int  # rising edges the checkers saw
    violations: list[str]
    result: SimResult


def simulate_bus(
    params: GraceParams,
    image: HostImage,
    *,
    simulator: str,
    build_dir: Path,
    passes: Sequence[Pass] = PASSES,
    watchdog: int = 1 << 16,
    max_cycles: int = 2_000_000,
    plant: str | None = None,
    check: bool = True,
) -> BusRun:
    """Run `image`'s programs on `Coprocessor(params)` once per pass, each from the host's
    image. `plant` names a fault of `PLANTS` for the bench's memory to commit; with
    `check=False` a failing bench returns its violations instead of raising."""

    from rtl.coproc.top import Coprocessor

    if plant is not None and plant not in PLANTS:
        raise ValueError(f"unknown plant {plant!r}; choose one of {', '.join(PLANTS)}")
    build = Path(build_dir) / params.key()
    settings = {
        "bus_bytes": params.coproc.bus_bytes,
        "image_bytes": image.image_bytes,
        "programs": list(image.programs),
        "passes": [asdict(p) for p in passes],
        "watchdog": watchdog,
        "max_cycles": max_cycles,
        "plant": plant,
    }
    digest = hashlib.sha256(json.dumps(settings).encode() + image.blob).hexdigest()[:10]
    work = build / simulator / f"run-{digest}-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.glob("*.bin"):
        stale.unlink()
    for stale in ("result.json", "violations.json", "trace.txt"):
        (work / stale).unlink(missing_ok=True)
    (work / "memory.bin").write_bytes(image.blob)
    (work / "run.json").write_text(json.dumps(settings))
    text = cached_convert(Coprocessor, TOPLEVEL, params)
    result = run_cocotb(
        verilog=text,
        toplevel=TOPLEVEL,
        test_module="sim.coproc_bus_tb",
        simulator=simulator,
        build_dir=build,
        run_dir=work,
        env={"GRACE_COPROC_BUS_DIR": str(work)},
        seed=passes[0].seed if passes else 0,
        opt_fast=OPT_FAST,
    )
    found = work / "violations.json"
    violations = json.loads(found.read_text()) if found.exists() else []
    if check:
        result.check()
    found = work / "result.json"
    out = json.loads(found.read_text()) if found.exists() else {"passes": [], "ctrl": {}}
    ended = []
    for i, (chosen, r) in enumerate(zip(passes, out["passes"], strict=False)):
        memory = bytearray((work / f"image-{i}.bin").read_bytes())
        counts = (r["fault_index"], r["cycles"], r["counters"])
        ended.append(PassResult(chosen, Fault(r["fault"]), *counts, memory, r["stats"]))
    return BusRun(ended, out["ctrl"], out.get("edges", 0), violations, result)
