"""Cycle model of the co-processor (rtl/coproc/): a whole program's cycles on a memory.

The RTL runs a program as three queues ordered by tokens, whose transfers share
one memory port (docs/coprocessor.md). The cycles above Σ compute are where the
queues cannot overlap: a layer's first loads wait for the last layer's stores,
a tile's compute for its loads, and the port — stalled part of the time, its
answers `latency` cycles late — is shared by the fetcher, two readers and the
writer. This model replays that, an event per instruction step, not per cycle:

- fetch: an instruction each `cycles_per_instruction`, its bus words `latency`
  after their requests, the fetcher's credit ahead of dispatch, a full queue
  (`queue_depth`) stopping it;
- the units' state machines as the RTL has them: each takes its head's
  instruction and decides on it `TAKE_LATENCY` later; a LOAD or STORE spends
  `CHECK_TO_DISPATCH` in the transfer check, then waits for its reader or
  the writer; SYNC and END one cycle; an engine command issues, runs its
  engine's model cycles (`price`) and retires at `done`; tokens are counted
  per direction and become available `PUSH_LATENCY + TokenCounter.LATENCY` after a push;
- transfers as flows of words on the port: each moves at most one word a
  cycle (the readers' gearbox, the writer), one bus word a cycle into a
  reader, and `WORD_FIFO_DEPTH` requests per round trip (`latency` + the
  port's `LATENCY` + `ANSWER_TO_WORD`); the port gives the active flows round-robin shares of
  what it can take — 1 − P(stall) requests a cycle, `outstanding` per
  `latency` — and a flow that needs less leaves the rest to the others;
- engines and streams: a command's outputs appear evenly over its model
  cycles and its STOREs may not take them sooner; its input-stream LOADs run
  at most a word FIFO ahead of its consumption; an engine is `done` no sooner
  than its last output is taken and its last input word has arrived.

Every latency is a constant the RTL declares (imported below), so a register
slice added there moves the model too. Ignored: the few cycles a queue entry
takes to reach its head, the fetcher's share of the port, the memory's
stall bursts (only their rate counts), an engine starved part-way (it is
priced by its model cycles or its transfers, whichever ends later), the
engines' own output buffering.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from amaranth.lib import data

from defs.coproc import INPUT_STREAMS
from defs.isa import ENGINE_COMMANDS, QUEUE_OF, Buffer, Opcode, Queue, Source
from rtl.coproc import fetch as fetcher
from rtl.coproc.compute_unit import ComputeUnit
from rtl.coproc.core import TARGETS
from rtl.coproc.decode import DECODE_LATENCY, TAKE_LATENCY
from rtl.coproc.load_unit import LoadUnit
from rtl.coproc.memory_port import MemoryPort
from rtl.coproc.reader import TransferReader
from rtl.coproc.routers import Router
from rtl.coproc.store_unit import IN_FLIGHT, StoreUnit
from rtl.coproc.tokens import PUSH_LATENCY, TokenCounter
from rtl.coproc.writer import TransferWriter
from rtl.isa import header_layout, instruction_layout

if TYPE_CHECKING:
    from defs.params import GraceParams

#: LOADs the buffer reader's router holds routes for (its default depth).
BUFFER_ROUTES = 4
#: The queues' engines by their STORE source, and the engine each LOAD buffer feeds.
SOURCE_ENGINE = {Source[name.upper()]: name for name in ENGINE_COMMANDS.values()}
_BUFFER_ENGINE = {b: engine for b, (engine, _, _) in TARGETS.items()}
_EPS = 1e-9


def stall_probability(stall_threshold: int) -> float:
    """The share of cycles the simulated memory stalls: its 16-bit LFSR passes every
    non-zero state once a period, and stalls when the low byte is below the threshold."""
    t = max(0, min(256, stall_threshold))
    return max(0, 256 * t - 1) / 0xFFFF


def bus_words(addr: int, stride: int, rows: int, row_bytes: int, bus: int) -> int:
    """Bus words a transfer touches, counted row by row: a reader asks for (and the
    writer writes) every bus word a row covers, even one a neighbouring row shares."""
    if rows <= 0 or row_bytes <= 0:
        return 0
    if stride % bus == 0 or rows == 1:
        return rows * ((addr % bus + row_bytes - 1) // bus + 1)
    start = addr + stride * np.arange(rows, dtype=np.int64)
    return int(((start + row_bytes - 1) // bus - start // bus + 1).sum())


def _flushes(addr: int, stride: int, rows: int, row_bytes: int, word: int, bus: int) -> int:
    """Rows whose last word ends in the upper half of the writer's window: one more cycle."""
    start = addr + stride * np.arange(rows, dtype=np.int64)
    last = (start + row_bytes - word) % bus
    return int(np.count_nonzero(last + word > bus))


@dataclass
class ProgramTiming:
    """A program's predicted cycles, and where they went."""

    cycles: int
    instructions: int
    busy: dict[str, int]  # cycles each queue's unit, each engine and the port were busy
    requests: int  # bus requests, fetch included

    def lines(self) -> list[str]:
        busy = ", ".join(f"{k} {v / max(self.cycles, 1):.1%}" for k, v in self.busy.items())
        return [f"{self.cycles:,} cycles, {self.instructions} instructions; busy: {busy}"]


@dataclass
class _Inst:
    index: int
    op: Opcode
    queue: Queue
    tokens: dict[str, int]
    fields: dict[str, int]
    cycles: int = 0  # an engine command's, by its model
    engine: str = ""
    # a transfer: its words (reader or writer words), bus requests, FLUSH cycles
    words: int = 0
    requests: int = 0
    flushes: int = 0
    stream: bool = False  # a LOAD into an engine's input stream
    command: _Inst | None = None  # the command a stream LOAD feeds or a STORE drains
    offset: int = 0  # its first word among that command's inputs or outputs
    # an engine command's: input-stream words, output words, and when it started
    in_words: int = 0
    out_words: int = 0
    started: float | None = None
    loads: list[_Inst] = field(default_factory=list)
    stores: list[_Inst] = field(default_factory=list)


def _unpack(word: int, layout: data.StructLayout, offset: int = 0) -> dict[str, int]:
    """The word's fields under `layout`, nested structs flattened, padding dropped."""
    out: dict[str, int] = {}
    for name, f in layout:
        shape = f.shape
        if isinstance(shape, data.StructLayout):
            out.update(_unpack(word, shape, offset + f.offset))
        elif name != "pad":
            out[name] = (word >> (offset + f.offset)) & ((1 << f.width) - 1)
    return out


def _widths(params: GraceParams) -> tuple[dict[Buffer, tuple[int, int]], dict[Source, int]]:
    """(each LOAD buffer's reader word bytes and reader words per buffer word, each STORE
    source's word bytes), from the RTL's own targets and engine ports."""
    from amaranth import Shape

    from rtl.coproc.core import ENGINES, Core

    core = Core(params)
    targets = {b: (t.word_bytes, t.split) for b, t in core.targets().items()}
    sources = {}
    for name, source in ENGINES.values():
        payload = core.engines[name].signature.members["o"].signature.members["payload"]
        sources[source] = -(-Shape.cast(payload.shape).width // 8)
    for unused in (core, *core.engines.values()):  # read for their ports, never elaborated
        unused._MustUse__silence = True  # type: ignore[attr-defined]
    return targets, sources


def _decode(words: Sequence[int], params: GraceParams, price: Callable[[int], int]) -> list[_Inst]:
    """Each word as the units see it, transfers sized and tied to their commands."""
    bus = params.coproc.bus_bytes
    targets, sources = _widths(params)
    hsize = header_layout().size
    program: list[_Inst] = []
    last: dict[str, _Inst] = {}  # each engine's latest command
    feeds: dict[str, list[_Inst]] = {}  # stream LOADs waiting for their engine's command
    for index, word in enumerate(words):
        op = Opcode(word & ((1 << 4) - 1))
        tokens = _unpack(word & ((1 << hsize) - 1), header_layout())
        tokens.pop("opcode")
        body = _unpack(word, instruction_layout(op, params))
        body = {k: v for k, v in body.items() if k not in tokens and k != "opcode"}
        queue = Queue(body["queue"]) if op in (Opcode.SYNC, Opcode.END) else QUEUE_OF[op]
        inst = _Inst(index, op, queue, tokens, body)
        if op == Opcode.LOAD:
            buffer = Buffer(body["buffer"])
            size, split = targets[buffer]
            row = body["row_words"] * split
            inst.words = body["rows"] * row
            inst.requests = bus_words(
                body["dram_addr"], body["stride"], body["rows"], row * size, bus
            )
            inst.engine = _BUFFER_ENGINE[buffer]
            inst.stream = buffer in INPUT_STREAMS
            if inst.stream:
                feeds.setdefault(inst.engine, []).append(inst)
        elif op == Opcode.STORE:
            source = Source(body["source"])
            size = sources[source]
            row = body["row_words"] * size
            inst.words = body["rows"] * body["row_words"]
            inst.requests = bus_words(body["dram_addr"], body["stride"], body["rows"], row, bus)
            inst.flushes = _flushes(body["dram_addr"], body["stride"], body["rows"], row, size, bus)
            inst.engine = SOURCE_ENGINE[source]
            command = last.get(inst.engine)
            if command is not None:
                inst.command, inst.offset = command, command.out_words
                command.out_words += inst.words
                command.stores.append(inst)
        elif op in ENGINE_COMMANDS:
            inst.engine = ENGINE_COMMANDS[op]
            inst.cycles = price(word)
            last[inst.engine] = inst
            for load in feeds.pop(inst.engine, []):
                load.command, load.offset = inst, inst.in_words
                inst.in_words += load.words
                inst.loads.append(load)
        program.append(inst)
    return program


@dataclass
class _Flow:
    """A transfer moving words: `k` bus requests per word, at most `cap` words a cycle,
    and no further than its `limit` (the words its engine has produced, or may take)."""

    inst: _Inst
    unit: str  # "buffer", "stream", "writer"
    k: float
    cap: float
    done: float = 0.0
    rate: float = 0.0

    def limit(self, t: float) -> tuple[float, float]:
        """(words it may have moved by t, the rate that grows), from its engine."""
        inst, c = self.inst, self.inst.command
        if c is None:
            return math.inf, 0.0
        if self.unit == "writer":
            total, base = c.out_words, 0.0
        else:  # a stream may run ahead of its engine by the reader's word FIFO
            total = c.in_words
            base = TransferReader.WORD_FIFO_DEPTH * inst.words / max(inst.requests, 1)
        made, slope = base, 0.0
        if c.started is not None:
            elapsed = t - c.started
            if elapsed >= c.cycles:
                made = base + total
            else:
                made = base + total * elapsed / max(c.cycles, 1)
                slope = total / max(c.cycles, 1)
        allowed = made - inst.offset
        if allowed >= inst.words:
            return math.inf, 0.0
        return max(0.0, allowed), slope if allowed > 0 or slope > 0 else 0.0


class _Machine:
    """The three units, the fetcher, the readers and the writer, stepped from event to
    event; between events every flow moves at a constant rate."""

    def __init__(
        self, program: list[_Inst], params: GraceParams, latency: int, stall_threshold: int
    ) -> None:
        c = params.coproc
        self.program, self.depth, self.stream_depth = program, c.queue_depth, c.stream_loads
        self.latency = max(1, latency)
        # a client's request to its answer: the memory and the port's two registers
        self.round_trip = self.latency + MemoryPort.LATENCY
        p = stall_probability(stall_threshold)
        # requests the port takes a cycle: not stalled, and no more than `outstanding`
        # waiting for their answers
        self.capacity = min(1.0 - p, c.outstanding / self.latency)
        self.credit = TransferReader.WORD_FIFO_DEPTH / (
            self.round_trip + TransferReader.ANSWER_TO_CREDIT
        )
        self.t = 0.0
        self.events: list[tuple[float, int, Callable[[], None]]] = []
        self.seq = 0
        self.tokens: dict[tuple[Queue, Queue], deque[float]] = {}
        self.queues: dict[Queue, deque[_Inst]] = {q: deque() for q in Queue}
        self.ended: set[Queue] = set()
        self.free = {q: 0.0 for q in Queue}  # when each unit's state machine is next IDLE
        self.pending: dict[Queue, tuple[_Inst, float] | None] = {q: None for q in Queue}
        self.running: _Inst | None = None  # the compute unit's command
        # fetch: the next instruction, when its predecessor left, its words' requests
        self.fetched = 0
        self.last_dispatch = -math.inf
        self.requested = float(fetcher.START_TO_REQUEST)
        bus = c.bus_bytes
        self.parts = fetcher.parts(bus)  # bus words taken per instruction
        self.fetch_requests = fetcher.requests_per_instruction(bus)
        self.fetch_cycles = fetcher.cycles_per_instruction(bus)
        self.dispatches: list[float] = []
        # the readers' and writer's commands, and their flows
        self.waiting: dict[str, deque[tuple[_Inst, float]]] = {
            "buffer": deque(), "stream": deque(), "writer": deque()
        }  # fmt: skip
        self.flows: dict[str, _Flow | None] = {"buffer": None, "stream": None, "writer": None}
        self.unit_free = {"buffer": 0.0, "stream": 0.0, "writer": 0.0}
        self.in_flight: dict[str, list[_Inst]] = {"buffer": [], "stream": [], "writer": []}
        self.finished: set[int] = set()  # transfers whose last word is in, or written
        self.unanswered: list[_Inst] = []  # STOREs with every word out, not yet done
        self.moved: dict[int, float] = {}  # words a STORE has taken
        self.inputs_in: dict[int, int] = {}  # stream LOADs finished per command
        self.busy = {name: 0.0 for name in ("load", "compute", "store", "port")}
        self.requests = 0
        self.end = 0.0

    # --- events and tokens -------------------------------------------------------------
    def at(self, when: float, action: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, action))

    def wake(self, when: float) -> None:
        if when > self.t + _EPS:
            self.at(when, lambda: None)

    def push(self, giver: Queue, taker: Queue, when: float) -> None:
        self.tokens.setdefault((giver, taker), deque()).append(
            when + PUSH_LATENCY + TokenCounter.LATENCY
        )

    def ready(self, inst: _Inst) -> bool:
        """Every token `inst` pops is available now (else a wake-up when one will be)."""
        ok = True
        for flag, other in (("pop_prev", -1), ("pop_next", 1)):
            if inst.tokens.get(flag):
                channel = self.tokens.get((Queue(inst.queue + other), inst.queue))
                if not channel:
                    ok = False
                elif channel[0] > self.t + _EPS:
                    self.wake(channel[0])
                    ok = False
        return ok

    def pop(self, inst: _Inst) -> None:
        for flag, other in (("pop_prev", -1), ("pop_next", 1)):
            if inst.tokens.get(flag):
                self.tokens[(Queue(inst.queue + other), inst.queue)].popleft()

    def give(self, inst: _Inst, flag: str, when: float) -> None:
        if inst.tokens.get(flag):
            other = Queue(inst.queue + (-1 if flag == "push_prev" else 1))
            self.push(inst.queue, other, when)

    def head(self, q: Queue) -> _Inst | None:
        """The instruction at the head of queue q, if its unit is IDLE now."""
        if self.pending[q] is not None or q in self.ended:
            return None
        if self.free[q] > self.t + _EPS:
            self.wake(self.free[q])
            return None
        return self.queues[q][0] if self.queues[q] else None

    def leave(self, q: Queue, when: float) -> None:
        """The unit lets its instruction go at `when`: it takes the next one (IDLE) the
        edge after, and decides on it (tokens, SYNC, END) TAKE_LATENCY later; the
        model's `t` of a unit's step is that decision's."""
        self.queues[q].popleft()
        self.free[q] = when + 1 + TAKE_LATENCY

    # --- fetch ------------------------------------------------------------------------
    def fetch(self) -> bool:
        moved = False
        while self.fetched < len(self.program):
            inst = self.program[self.fetched]
            i = self.fetched
            # the fetcher asks for an instruction's words once its credit is back: the
            # words of the instruction WORD_FIFO_DEPTH / parts before it were taken
            ahead = max(1, int(fetcher.WORD_FIFO_DEPTH / self.fetch_requests))
            credit = self.dispatches[i - ahead] if i >= ahead else 0.0
            requested = max(
                self.requested + self.fetch_requests / self.capacity,
                credit + self.fetch_requests,
            )
            arrived = requested + self.round_trip + fetcher.ANSWER_TO_WORD
            ready = max(
                self.last_dispatch + self.fetch_cycles, arrived + self.parts + DECODE_LATENCY
            )
            if ready > self.t + _EPS:
                self.wake(ready)
                return moved
            if len(self.queues[inst.queue]) >= self.depth:
                return moved
            self.requested = requested
            self.requests += self.fetch_requests
            self.last_dispatch = self.t
            self.dispatches.append(self.t)
            self.queues[inst.queue].append(inst)
            self.fetched += 1
            moved = True
        return moved

    # --- the load unit ----------------------------------------------------------------
    def checked(self, q: Queue) -> _Inst | None:
        """The unit's LOAD or STORE once its transfer check is over (else wake then)."""
        inst, when = self.pending[q]
        if when > self.t + _EPS:
            self.wake(when)
            return None
        return inst

    def load_unit(self) -> bool:
        q = Queue.LOAD
        if self.pending[q] is not None:
            inst = self.checked(q)
            if inst is None or not self.load_dispatch(inst):
                return False
            self.pending[q] = None
            self.pop(inst)
            self.leave(q, self.t)
            return True
        inst = self.head(q)
        if inst is None or not self.ready(inst):
            return False
        if inst.op == Opcode.LOAD:
            self.pending[q] = (inst, self.t + LoadUnit.CHECK_TO_DISPATCH - TAKE_LATENCY)
            self.busy["load"] += LoadUnit.CHECK_TO_DISPATCH
            return True
        if inst.tokens.get("push_next") and self.in_flight["buffer"]:
            return False  # a token waits for every buffer LOAD before it
        self.pop(inst)
        self.give(inst, "push_next", self.t)
        if inst.op == Opcode.END:
            self.ended.add(q)
        self.leave(q, self.t)
        return True

    def load_dispatch(self, inst: _Inst) -> bool:
        unit = "stream" if inst.stream else "buffer"
        if inst.stream:
            if len(self.in_flight["stream"]) >= self.stream_depth:
                return False
            if inst.tokens.get("push_next") and self.in_flight["buffer"]:
                return False
            self.give(inst, "push_next", self.t)
        elif self.flows["buffer"] is not None or len(self.in_flight["buffer"]) >= BUFFER_ROUTES:
            return False
        self.in_flight[unit].append(inst)
        self.waiting[unit].append((inst, self.t + TransferReader.CMD_TO_REQUEST))
        return True

    # --- the compute unit -------------------------------------------------------------
    def compute_unit(self) -> bool:
        q = Queue.COMPUTE
        c = self.running
        if c is not None:
            assert c.started is not None
            end = c.started + c.cycles
            if end > self.t + _EPS:
                self.wake(end)
                return False
            if any(s.index not in self.finished for s in c.loads):
                return False
            if any(self.moved.get(s.index, 0.0) < s.words - _EPS for s in c.stores):
                return False
            self.busy["compute"] += self.t - c.started
            self.busy[c.engine] = self.busy.get(c.engine, 0.0) + self.t - c.started
            retired = self.t + ComputeUnit.DONE_TO_RETIRE
            self.give(c, "push_prev", retired)
            self.running = None
            self.leave(q, retired)
            return True
        inst = self.head(q)
        if inst is None or not self.ready(inst):
            return False
        if inst.op in (Opcode.SYNC, Opcode.END):
            self.pop(inst)
            self.give(inst, "push_prev", self.t)
            self.give(inst, "push_next", self.t)
            if inst.op == Opcode.END:
                self.ended.add(q)
            self.leave(q, self.t)
            return True
        # IDLE → ISSUE; the engine takes the command (its tokens then) and runs
        start = self.t + ComputeUnit.ISSUE_LATENCY - TAKE_LATENCY
        self.pop(inst)
        self.give(inst, "push_next", start + ComputeUnit.ISSUE_TO_TOKENS)
        inst.started = start
        self.running = inst
        self.free[q] = math.inf
        self.wake(start)
        return True

    # --- the store unit ---------------------------------------------------------------
    def store_unit(self) -> bool:
        q = Queue.STORE
        if self.pending[q] is not None:
            inst = self.checked(q)
            if inst is None:
                return False
            writer_idle = self.flows["writer"] is None and not self.waiting["writer"]
            if not writer_idle or self.unit_free["writer"] > self.t + _EPS:
                if writer_idle:
                    self.wake(self.unit_free["writer"])
                return False
            ends = TransferWriter.ENDS_TAKING_COMMANDS  # STOREs written, not yet done
            if len(self.unanswered) > ends or len(self.in_flight["writer"]) >= IN_FLIGHT:
                return False
            self.pending[q] = None
            self.pop(inst)
            self.in_flight["writer"].append(inst)
            # the writer's command register, then its IDLE → RUN
            self.waiting["writer"].append((inst, self.t + TransferWriter.HOLD_LATENCY + 1))
            self.leave(q, self.t)
            return True
        inst = self.head(q)
        if inst is None or not self.ready(inst):
            return False
        if inst.op == Opcode.STORE:
            self.pending[q] = (inst, self.t + StoreUnit.CHECK_TO_DISPATCH - TAKE_LATENCY)
            self.busy["store"] += StoreUnit.CHECK_TO_DISPATCH
            return True
        if inst.tokens.get("push_prev") and self.in_flight["writer"]:
            return False  # a SYNC or END giving a token waits for every STORE's writes
        self.pop(inst)
        self.give(inst, "push_prev", self.t)
        if inst.op == Opcode.END:
            self.ended.add(q)
        self.leave(q, self.t)
        return True

    # --- transfers --------------------------------------------------------------------
    def start_flows(self) -> bool:
        moved = False
        for unit, waiting in self.waiting.items():
            if self.flows[unit] is not None or not waiting:
                continue
            inst, when = waiting[0]
            when = max(when, self.unit_free[unit])
            if when > self.t + _EPS:
                self.wake(when)
                continue
            waiting.popleft()
            k = inst.requests / max(inst.words, 1)
            if unit == "writer":
                cap = inst.words / (inst.words + inst.flushes)
            else:  # one word out a cycle, one bus word in, the credit's round trip
                cap = min(1.0, 1.0 / k, self.credit / k)
            self.flows[unit] = _Flow(inst, unit, k, cap)
            moved = True
        return moved

    def finish_flow(self, unit: str, flow: _Flow) -> None:
        """Every request of `flow` is out now."""
        inst, t = flow.inst, self.t
        self.flows[unit] = None
        self.requests += inst.requests
        if unit == "writer":
            self.unit_free[unit] = t + 1  # RUN → IDLE
            self.unanswered.append(inst)
            done = (
                t + StoreUnit.SOURCE_LATENCY + TransferWriter.WORD_TO_WRITE + self.round_trip
                + TransferWriter.ACK_TO_DONE + StoreUnit.DONE_TO_TOKEN
            )  # fmt: skip

            def answered(inst: _Inst = inst, done: float = done) -> None:
                self.unanswered.remove(inst)
                self.in_flight["writer"].remove(inst)
                self.finished.add(inst.index)
                self.give(inst, "push_prev", done)
                self.end = max(self.end, done)

            self.at(done, answered)
            return
        self.unit_free[unit] = (
            t
            + TransferReader.FINAL_TO_CMD
            + (TransferReader.CMD_TO_REQUEST - TransferReader.HOLD_LATENCY)
        )
        last = t + self.round_trip + TransferReader.ANSWER_TO_WORD

        def arrived(inst: _Inst = inst, unit: str = unit, last: float = last) -> None:
            self.in_flight[unit].remove(inst)
            self.finished.add(inst.index)
            if unit == "buffer":  # its last word in the engine's buffer, its token after
                self.give(inst, "push_next", last + Router.WORD_TO_TOKEN)
            delivered = last + (Router.DELIVERY_LATENCY if unit == "buffer" else 0)
            self.end = max(self.end, delivered)

        self.at(last, arrived)

    def rates(self) -> float:
        """Share the port among the flows; the time to the next change of rate."""
        flows = [f for f in self.flows.values() if f is not None]
        demands = []
        for f in flows:
            allowed, slope = f.limit(self.t)
            bound = f.done >= allowed - _EPS
            demands.append((min(f.cap, slope) if bound else f.cap) * f.k)
        # round-robin: equal shares, what a flow leaves going to the others
        left, rest = self.capacity, sorted(range(len(flows)), key=lambda i: demands[i])
        for n, i in enumerate(rest):
            share = left / (len(rest) - n)
            got = min(demands[i], share)
            flows[i].rate = got / flows[i].k if flows[i].k else 0.0
            left -= got
        step = math.inf
        for f in flows:
            allowed, slope = f.limit(self.t)
            if f.rate > _EPS:
                step = min(step, (f.inst.words - f.done) / f.rate)
                if f.done < allowed - _EPS and f.rate > slope + _EPS and allowed < math.inf:
                    step = min(step, (allowed - f.done) / (f.rate - slope))
        return step

    def advance(self, step: float) -> None:
        used = 0.0
        for unit, f in self.flows.items():
            if f is None:
                continue
            allowed, _ = f.limit(self.t + step)
            f.done = min(f.inst.words, f.done + f.rate * step, max(f.done, allowed))
            used += f.rate * f.k * step
            if unit == "writer":
                self.moved[f.inst.index] = f.done
        self.busy["port"] += min(step, used / max(self.capacity, _EPS))
        self.t += step
        for unit, f in list(self.flows.items()):
            if f is not None and f.done >= f.inst.words - 1e-6:
                if unit == "writer":
                    self.moved[f.inst.index] = f.inst.words
                self.finish_flow(unit, f)

    # --- the run ----------------------------------------------------------------------
    def run(self) -> float:
        while True:
            while self.events and self.events[0][0] <= self.t + _EPS:
                heapq.heappop(self.events)[2]()
            moved = True
            while moved:
                moved = False
                for step in (
                    self.fetch, self.load_unit, self.compute_unit, self.store_unit,
                    self.start_flows,
                ):  # fmt: skip
                    moved = step() or moved
            idle = not self.events and not any(self.flows.values())
            if len(self.ended) == len(Queue) and idle and not any(self.in_flight.values()):
                return max(self.t, self.end)
            step = self.rates()
            if self.events:
                step = min(step, self.events[0][0] - self.t)
            if step == math.inf:
                raise RuntimeError(
                    f"the model is stuck at cycle {self.t:.0f}: queues "
                    + ", ".join(
                        f"{q.name} {[i.index for i in v][:3]}" for q, v in self.queues.items()
                    )
                )
            self.advance(max(step, 0.0))


def program_cycles(
    words: Sequence[int],
    params: GraceParams,
    *,
    latency: int,
    stall_threshold: int,
    price: Callable[[int], int],
) -> ProgramTiming:
    """The cycles the co-processor takes to run `words` on a memory answering `latency`
    cycles after each request and stalling when its LFSR's low byte is below
    `stall_threshold`. `price` gives an engine command word's cycles by its engine's
    model (compiler.report.command_cycles: the layers below the compiler cannot)."""
    program = _decode(words, params, price)
    machine = _Machine(program, params, latency, stall_threshold)
    cycles = machine.run()
    busy = {k: round(v) for k, v in machine.busy.items()}
    return ProgramTiming(math.ceil(cycles), len(words), busy, machine.requests)
