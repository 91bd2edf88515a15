"""The compute queue's unit: each engine command in program order, SYNC and END.

An engine instruction's body is the engine's command (docs/isa.md), so it is
forwarded unchanged. Its token to the store queue is given as the engine takes
the command (an edge after, `ISSUE_TO_TOKENS`): the STOREs that pop it read the
engine's output stream, which the engine fills as it runs (a token given at the
end would wait for a store the full stream waits for). Its token to the load
queue — the buffers it read are free — is given at the engine's `done`, and only
then does the next instruction start, so tokens leave in program order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from amaranth import Module, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.isa import Opcode
from rtl.coproc.decode import ENTRY, TAKE_LATENCY
from rtl.isa import header_layout

if TYPE_CHECKING:
    from defs.params import GraceParams


@dataclass(frozen=True)
class EngineSlot:
    name: str  # "conv", ...: ports `<name>_cmd` and `<name>_done`
    cmd: stream.Signature  # the engine's, as its producer sees it
    done: stream.Signature


class ComputeUnit(wiring.Component):
    #: Edges from an engine instruction taken at the head (IDLE) to its command offered
    #: (ISSUE), through TAKEN; the next instruction is taken DONE_TO_RETIRE + 1 edges
    #: after the engine's `done`.
    ISSUE_LATENCY = TAKE_LATENCY + 1
    #: Edges from an engine's `done` taken (RUN) to its token to the load queue and the
    #: head let go (DONE): the engines' done queues' `valid` reaches no queue's or token
    #: counter's enables in its cycle (the 4 x 4 top's critical path, 12.1 ns).
    DONE_TO_RETIRE = 1
    #: Edges from the engine taking its command (ISSUE) to the instruction's pops and
    #: its token to the store queue: the engine's `ready`, across the die, reaches
    #: registers only (into the token counters in its cycle it set the ULX3S top's
    #: clock at seed 7, 12.4 ns).
    ISSUE_TO_TOKENS = 1

    def __init__(self, params: GraceParams, engines: dict[Opcode, EngineSlot]) -> None:
        self.params, self.engines = params, engines
        super().__init__(
            {
                "head": In(stream.Signature(ENTRY)),
                "halt": In(1),
                "prev_available": In(1),  # load → compute tokens
                "next_available": In(1),  # store → compute tokens
                "pop_prev": Out(1),
                "pop_next": Out(1),
                "push_prev": Out(1),
                "push_next": Out(1),
                **{f"{e.name}_cmd": Out(e.cmd) for e in engines.values()},
                **{f"{e.name}_done": In(e.done) for e in engines.values()},
                **{f"{e.name}_busy": Out(1) for e in engines.values()},
                "retire": Out(1),
                "ended": Out(1),
                "busy": Out(1),
                "stall": Out(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        hsize = header_layout().size
        header = data.View(header_layout(), self.head.payload.word[:hsize])
        # the body, the engine's command, from a copy of the head registered as it is
        # taken: no engine's command logic reads the queue's LUT RAM
        word = Signal.like(self.head.payload.word)
        # the head's header into registers as it is taken (IDLE), the decision on them
        # the edge after (TAKEN): no token, halt or queue logic reads the queue's LUT
        # RAM through an opcode compare
        running = {op: Signal(name=f"running_{e.name}") for op, e in self.engines.items()}
        pop_prev, pop_next = Signal(), Signal()
        push_prev, push_next = Signal(), Signal()
        control, end = Signal(), Signal()  # SYNC or END; END
        waits = Signal()
        m.d.comb += waits.eq((pop_prev & ~self.prev_available) | (pop_next & ~self.next_available))
        issued = Signal()  # the engine took the command on the last edge
        m.d.sync += issued.eq(0)
        with m.If(issued):  # RUN's first cycle: the fields hold until the next IDLE
            m.d.comb += [
                self.pop_prev.eq(pop_prev),
                self.pop_next.eq(pop_next),
                self.push_next.eq(push_next),
            ]
        with m.FSM():
            with m.State("IDLE"):
                # the head is copied on every idle edge, taken or not: the copies'
                # clock enable is the state, not the queue's `valid` (that net
                # reached the 133 flip-flops of a copy in 9.7 ns on the ULX3S top)
                m.d.sync += word.eq(self.head.payload.word)
                m.d.sync += [r.eq(header.opcode == op) for op, r in running.items()]
                m.d.sync += [
                    pop_prev.eq(header.pop_prev),
                    pop_next.eq(header.pop_next),
                    push_prev.eq(header.push_prev),
                    push_next.eq(header.push_next),
                    control.eq((header.opcode == Opcode.SYNC) | (header.opcode == Opcode.END)),
                    end.eq(header.opcode == Opcode.END),
                ]
                with m.If(self.head.valid & ~self.halt):
                    m.next = "TAKEN"
            with m.State("TAKEN"):
                m.d.comb += self.stall.eq(waits)
                with m.If(~self.halt & ~waits):
                    with m.If(control):
                        m.d.comb += [
                            self.pop_prev.eq(pop_prev),
                            self.pop_next.eq(pop_next),
                            self.push_prev.eq(push_prev),
                            self.push_next.eq(push_next),
                            self.head.ready.eq(1),
                            self.retire.eq(1),
                        ]
                        m.d.sync += self.ended.eq(end)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "ISSUE"
            with m.State("ISSUE"):
                for op, e in self.engines.items():
                    cmd = getattr(self, f"{e.name}_cmd")
                    m.d.comb += cmd.valid.eq(running[op])
                    with m.If(running[op] & cmd.ready):
                        m.d.sync += [issued.eq(1), getattr(self, f"{e.name}_busy").eq(1)]
                        m.next = "RUN"
            with m.State("RUN"):
                for op, e in self.engines.items():
                    done = getattr(self, f"{e.name}_done")
                    m.d.comb += done.ready.eq(running[op])
                    with m.If(running[op] & done.valid):
                        m.d.sync += getattr(self, f"{e.name}_busy").eq(0)
                        m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.push_prev.eq(push_prev), self.head.ready.eq(1), self.retire.eq(1)]
                m.next = "IDLE"
        for e in self.engines.values():  # the body is the command: forwarded unchanged
            cmd = getattr(self, f"{e.name}_cmd")
            width = Shape.cast(e.cmd.members["payload"].shape).width
            m.d.comb += cmd.payload.eq(word[hsize : hsize + width])
        m.d.comb += [
            self.busy.eq(self.head.valid & ~self.ended),
        ]
        return m
