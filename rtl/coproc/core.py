"""The co-processor's core: fetch, dispatch, the three queues' units, tokens, engines, port.

    memory ◄─► MemoryPort ◄─┬─ Fetcher ─► Decoder ─► load / compute / store queues
                            ├─ LoadUnit (buffer reader, stream reader) ─► engines' buffers
                            └─ StoreUnit (writer) ◄─ engines' output streams
                               ComputeUnit ─► engines' commands ◄─ done

The host starts a run (`start`); the fetcher streams the program's words, each
checked (`Decoder`) and queued for its unit; the units run concurrently,
ordered by the token counters. The run ends — `done` — when every queue has
run its END, or at the first fault; either way only once the memory port has
no request in flight, so a host may start again (the co-processor resets its
core first). Faults: an illegal word or an instruction after its queue's END
(ILLEGAL_INSTRUCTION), the program's words ending before every queue's END
(PROGRAM_END), the units' ADDRESS checks, a bus error, a token counter's
overflow, and the watchdog: WATCHDOG cycles in which no instruction retires,
no word moves on the bus or out of an engine, and no engine finishes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Instance, Module, ResetInserter, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from defs.coproc import COUNTER_NAMES, Fault
from defs.isa import Buffer, Opcode, Queue, Source
from rtl.act import ActEngine
from rtl.act.heatmap import HeatmapUnit
from rtl.act.motion import MotionUnit
from rtl.act.softmax import SoftmaxUnit
from rtl.conv import ConvEngine
from rtl.coproc.bus import wishbone_signature
from rtl.coproc.compute_unit import ComputeUnit, EngineSlot
from rtl.coproc.decode import ENTRY, Decoder, segments_clear
from rtl.coproc.fetch import Fetcher
from rtl.coproc.load_unit import LoadUnit
from rtl.coproc.memory_port import MemoryPort
from rtl.coproc.routers import Target
from rtl.coproc.store_unit import StoreUnit
from rtl.coproc.tokens import CHANNELS, TokenCounter, channel_name
from rtl.credit_link import CreditLink
from rtl.dsp import platform_target
from rtl.replica import replica
from rtl.warp import WarpEngine

if TYPE_CHECKING:
    from collections.abc import Mapping

    from defs.params import GraceParams

#: Byte-address bits of the memory port.
ADDRESS_BITS = 32
#: Register stages each way between dispatch and each instruction queue (`CreditLink`).
QUEUE_LINK_STAGES = 1

#: The compute opcodes' engines, the STORE source each feeds, and its ports.
ENGINES = {
    Opcode.CONV: ("conv", Source.CONV),
    Opcode.WARP: ("warp", Source.WARP),
    Opcode.ACT: ("act", Source.ACT),
    Opcode.SOFTMAX: ("softmax", Source.SOFTMAX),
    Opcode.HEATMAP: ("heatmap", Source.HEATMAP),
    Opcode.MOTION: ("motion", Source.MOTION),
}

#: Each LOAD target: (engine, port, kind).
TARGETS = {
    Buffer.CONV_INPUT: ("conv", "input_write", "addressed"),
    Buffer.CONV_WEIGHT: ("conv", "weight_write", "weight"),
    Buffer.CONV_PARAM: ("conv", "param_write", "addressed"),
    Buffer.CONV_RESIDUAL: ("conv", "residual", "stream"),
    Buffer.WARP_FEATURE: ("warp", "feature_write", "stream"),
    Buffer.WARP_FLOW: ("warp", "flow", "stream"),
    Buffer.ACT_TABLE: ("act", "table_write", "stream"),
    Buffer.ACT_PARAM: ("act", "param_write", "stream"),
    Buffer.ACT_INPUT: ("act", "i", "stream"),
    Buffer.SOFTMAX_EXP: ("softmax", "exp_write", "stream"),
    Buffer.SOFTMAX_INPUT: ("softmax", "i", "stream"),
    Buffer.HEATMAP_GRID: ("heatmap", "grid_write", "stream"),
    Buffer.HEATMAP_KEYPOINT: ("heatmap", "keypoint_write", "stream"),
    Buffer.HEATMAP_GAUSSIAN: ("heatmap", "gaussian_write", "stream"),
    Buffer.MOTION_GRID: ("motion", "grid_write", "stream"),
    Buffer.MOTION_KEYPOINT: ("motion", "keypoint_write", "stream"),
    Buffer.MOTION_JACOBIAN: ("motion", "jacobian_write", "stream"),
    Buffer.MOTION_MASK: ("motion", "i", "stream"),
}


def make_engines(
    params: GraceParams, mac_sites: Mapping[tuple[int, int], str] | None = None
) -> dict[str, wiring.Component]:
    """The engines, the conv engine's multipliers on `mac_sites` if given (a board's
    floorplan, boards/floorplan.py)."""
    return {
        "conv": ConvEngine(params, mac_sites=mac_sites),
        "warp": WarpEngine(params),
        "act": ActEngine(params),
        "softmax": SoftmaxUnit(params),
        "heatmap": HeatmapUnit(params),
        "motion": MotionUnit(params),
    }


def engine_slots(engines: Mapping[str, wiring.Component]) -> dict[Opcode, EngineSlot]:
    """The compute unit's view of each engine: its command and done ports."""
    return {
        op: EngineSlot(
            name,
            engines[name].signature.members["cmd"].signature.flip(),
            engines[name].signature.members["done"].signature,
        )
        for op, (name, _) in ENGINES.items()
    }


class Core(wiring.Component):
    def __init__(
        self, params: GraceParams, mac_sites: Mapping[tuple[int, int], str] | None = None
    ) -> None:
        self.params = params
        if params.numeric.act_bits != 8 or params.numeric.weight_bits != 8:
            raise ValueError("the co-processor moves 8-bit activations and weights only")
        self.engines = make_engines(params, mac_sites)
        super().__init__(
            {
                "mem": Out(wishbone_signature(self.addr_bits, params.coproc.bus_bytes)),
                "clear": In(1),  # reset everything (a register: each part takes a copy)
                "start": In(1),
                "program_base": In(32),
                "program_words": In(32),
                "image_bytes": In(32),
                "watchdog": In(32),
                "busy": Out(1),
                "done": Out(1),
                "fault": Out(8),
                "fault_index": Out(32),
                "events": Out(len(COUNTER_NAMES)),
            }
        )

    @property
    def addr_bits(self) -> int:
        return ADDRESS_BITS - (self.params.coproc.bus_bytes.bit_length() - 1)

    def targets(self) -> dict[Buffer, Target]:
        """Each LOAD buffer's engine port, word size and depth (the cycle model reads them)."""
        p, targets = self.params, {}
        depths = {
            Buffer.CONV_INPUT: p.buffers.input_depth,
            Buffer.CONV_WEIGHT: p.buffers.weight_depth,
            Buffer.CONV_PARAM: p.buffers.param_depth,
        }
        for buffer, (engine, port, kind) in TARGETS.items():
            signature = self.engines[engine].signature.members[port].signature.flip()
            split = p.array.rows if kind == "weight" else 1
            name = f"{engine}_{port}"
            targets[buffer] = Target(name, signature, kind, depths.get(buffer, 0), split)
        return targets

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.params
        c = p.coproc

        if platform_target(platform) == "ecp5":
            # one copy of clear on a global network (a DCCA buffer): a part's own
            # copy still crossed the die to the part's farthest flip-flop (the 4 x 4
            # top's critical path once the port had its skid registers: 10.7 ns of
            # routing into the warp engine's resets)
            on_global = Signal()
            m.submodules.clear_buffer = Instance(
                "DCCA", i_CLKI=replica(m, self.clear, "clear_global"), i_CE=1, o_CLKO=on_global
            )

            def clear_of(name: str) -> Value:
                return on_global
        else:

            def clear_of(name: str) -> Value:
                # one reset register per part, placed near it: a single one drove every
                # flip-flop of the core (the 4 x 4 top's critical path, 18 ns of routing)
                return replica(m, self.clear, f"clear_{name}")

        def cleared(name: str, part: object) -> object:
            return ResetInserter(clear_of(name))(part)

        for name, engine in self.engines.items():
            m.submodules[name] = cleared(name, engine)

        # clients 0-2, the fetcher and the load unit's two readers (connected below, in
        # that order), send addresses only
        port = MemoryPort(4, self.addr_bits, c.bus_bytes, c.outstanding, read_only=(0, 1, 2))
        wiring.connect(m, wiring.flipped(self.mem), port.bus)
        fetch = Fetcher(self.addr_bits, c.bus_bytes)
        targets = self.targets()
        load = LoadUnit(p, targets, self.addr_bits)
        compute = ComputeUnit(p, engine_slots(self.engines))
        sources = {
            source: self.engines[name].signature.members["o"].signature
            for name, source in ENGINES.values()
        }
        store = StoreUnit(p, sources, self.addr_bits)
        for name, part in (
            ("port", port), ("fetch", fetch), ("load", load), ("compute", compute), ("store", store)
        ):  # fmt: skip
            m.submodules[name] = cleared(name, part)
        for i, client in enumerate((fetch.mem, load.mem_buffer, load.mem_stream, store.mem)):
            wiring.connect(m, client, port.client(i))

        # engines: loads into their buffers, commands and done, outputs to the stores
        for buffer, target in targets.items():
            engine, port_name, _ = TARGETS[buffer]
            wiring.connect(m, getattr(load, target.port), getattr(self.engines[engine], port_name))
        for name, source in ENGINES.values():
            engine = self.engines[name]
            wiring.connect(m, getattr(compute, f"{name}_cmd"), engine.cmd)
            wiring.connect(m, engine.done, getattr(compute, f"{name}_done"))
            wiring.connect(m, engine.o, getattr(store, f"{source.name.lower()}_o"))

        # tokens
        counters = {}
        for giver, taker in CHANNELS:
            counters[(giver, taker)] = counter = TokenCounter()
            m.submodules[channel_name(giver, taker)] = cleared(channel_name(giver, taker), counter)
        lc, cl = counters[(Queue.LOAD, Queue.COMPUTE)], counters[(Queue.COMPUTE, Queue.LOAD)]
        cs, sc = counters[(Queue.COMPUTE, Queue.STORE)], counters[(Queue.STORE, Queue.COMPUTE)]
        # each push through a register (PUSH_LATENCY), cleared with this module's own
        pushes = {(giver, taker): Signal(2, name=f"{channel_name(giver, taker)}_push")
                  for giver, taker in CHANNELS}  # fmt: skip
        m.d.sync += [
            pushes[Queue.LOAD, Queue.COMPUTE].eq(load.push),
            pushes[Queue.COMPUTE, Queue.LOAD].eq(compute.push_prev),
            pushes[Queue.COMPUTE, Queue.STORE].eq(compute.push_next),
            pushes[Queue.STORE, Queue.COMPUTE].eq(store.push),
        ]
        m.d.comb += [counters[channel].push.eq(push) for channel, push in pushes.items()]
        m.d.comb += [
            load.pop_available.eq(cl.available),
            cl.pop.eq(load.pop),
            compute.prev_available.eq(lc.available),
            compute.next_available.eq(sc.available),
            lc.pop.eq(compute.pop_prev),
            sc.pop.eq(compute.pop_next),
            store.pop_available.eq(cs.available),
            cs.pop.eq(store.pop),
        ]

        # fetch → decode → the queues
        running = Signal()
        start_fetch = Signal()
        m.d.sync += start_fetch.eq(self.start)
        fault = Signal(8)
        fault_index = Signal(32)
        halt = Signal()  # a fault is latched (a register beside it: no compare)
        m.submodules.decoder = decoder = Decoder(p)
        # each queue at its unit, over a link from dispatch: the dispatch decision reads
        # the links' credits (registers here) and meets no wire to a unit across the die
        # (into the three queues' LUT RAM write enables, 135 of 167 pins late at 125 MHz
        # at seed 16)
        queues = [CreditLink(ENTRY.size, QUEUE_LINK_STAGES, c.queue_depth) for _ in Queue]
        for q, queue in zip(Queue, queues, strict=True):
            m.submodules[f"{q.name.lower()}_queue"] = cleared(f"{q.name.lower()}_queue", queue)
        for unit, queue in zip((load, compute, store), queues, strict=True):
            m.d.comb += [
                unit.head.valid.eq(queue.o.valid),
                unit.head.payload.eq(queue.o.payload),
                queue.o.ready.eq(unit.head.ready),
                unit.halt.eq(halt),
            ]
        # the registers as they were at start: a host may write the next program's
        # while this one runs, or before starting it (the fetcher must not follow)
        program_base, program_words = Signal(32), Signal(32)
        image_bytes, watchdog = Signal(32), Signal(32)
        with m.If(self.start):
            m.d.sync += [
                program_base.eq(self.program_base),
                program_words.eq(self.program_words),
                image_bytes.eq(self.image_bytes),
                watchdog.eq(self.watchdog),
            ]
        m.d.comb += [
            load.image_bytes.eq(image_bytes),
            store.image_bytes.eq(image_bytes),
            fetch.base.eq(program_base),
            fetch.words.eq(program_words),
            fetch.start.eq(start_fetch),
        ]
        # two decode registers: the word with its padding segments' zero tests, then
        # the decoder's answers; dispatch reads registers only (DECODE_LATENCY)
        fetched = Signal(ENTRY)
        fetched_valid = Signal()
        fetched_clear = Signal(len(decoder.clear))
        staged = Signal(ENTRY)
        staged_valid = Signal()
        end = Signal()  # the staged word is an END
        to_queue = Signal(len(Queue))  # its queue, one-hot
        refused = Signal()  # illegal, or after its queue's END: a fault, never dispatched
        dispatched_end = Signal(len(Queue))  # each queue's END has been dispatched
        dispatch = Signal()
        # The decode register takes a word only when it is empty: its clock enable then
        # reads two registers, not the dispatch decision (queue_of → the queue's ready →
        # dispatch → advance → the enables of every bit, 11.4 ns of routing on the ULX3S
        # top). A word is dispatched at most every other edge, against the fetcher's
        # cycles_per_instruction; and as the previous word has left by then, its END is
        # counted and `refused` can be decided here, a register ahead.
        advance = Signal()  # the fetched word moves to the decode register
        m.d.comb += [
            advance.eq(fetched_valid & ~staged_valid),
            fetch.o.ready.eq(~fetched_valid | ~staged_valid),
            decoder.word.eq(fetched.word),
            decoder.clear.eq(fetched_clear),
        ]
        with m.If(fetch.o.valid & fetch.o.ready):
            m.d.sync += [
                fetched_valid.eq(1),
                fetched.eq(fetch.o.payload),
                fetched_clear.eq(segments_clear(fetch.o.payload.word, p)),
            ]
        with m.Elif(advance):
            m.d.sync += fetched_valid.eq(0)
        one_hot = Signal(len(Queue))
        m.d.comb += one_hot.eq(1 << decoder.queue)
        with m.If(advance):
            m.d.sync += [
                staged_valid.eq(1),
                staged.eq(fetched),
                end.eq(decoder.end),
                to_queue.eq(one_hot),
                refused.eq(~decoder.legal | (dispatched_end & one_hot).any()),
            ]
        with m.Elif(dispatch):
            m.d.sync += staged_valid.eq(0)
        dispatched = Signal(32)
        target_ready = Signal()
        m.d.comb += target_ready.eq((to_queue & Cat(q.i.ready for q in queues)).any())
        illegal = Signal()
        m.d.comb += illegal.eq(staged_valid & refused)
        # every queue sees the staged word whether it is dispatched or not: gated by the
        # dispatch decision, the queues' LUT RAM write data (3 x 128 bits) read it (the
        # ULX3S top's critical path, halt → dispatch → a write data LUT, both seeds)
        m.d.comb += [queue.i.payload.eq(staged) for queue in queues]
        with m.If(staged_valid & running & ~halt & ~refused & target_ready):
            m.d.comb += dispatch.eq(1)
            for k, queue in enumerate(queues):
                m.d.comb += queue.i.valid.eq(to_queue[k])
            m.d.sync += dispatched.eq(dispatched + 1)
            with m.If(end):
                m.d.sync += dispatched_end.eq(dispatched_end | to_queue)

        # faults: the first wins. Their wide conditions (compares of 32-bit counts, ORs
        # across the core) are registered first: a fault or the end is seen an edge
        # later, which nothing depends on but `done`.
        all_dispatched = Signal()  # no word of the program is left to dispatch
        m.d.sync += all_dispatched.eq((dispatched == program_words) & ~self.start)
        ended = Signal()
        # every queue ran its END, and no word of the program is left behind one
        m.d.comb += ended.eq(load.ended & compute.ended & store.ended & all_dispatched)
        watch = Signal(32)
        progress = Signal()
        engine_moves = [e.o.valid & e.o.ready for e in self.engines.values()]
        engine_moves += [e.done.valid & e.done.ready for e in self.engines.values()]
        m.d.sync += progress.eq(
            load.retire | compute.retire | store.retire | self.mem.ack | self.mem.err
            | dispatch | Cat(*engine_moves).any()
        )  # fmt: skip
        with m.If(progress | ~running):
            m.d.sync += watch.eq(0)
        with m.Else():
            m.d.sync += watch.eq(watch + 1)
        watch_over, bus_error, overflow = Signal(), Signal(), Signal()
        m.d.sync += [
            watch_over.eq((watchdog != 0) & (watch >= watchdog)),
            bus_error.eq(port.error | load.error | store.error | fetch.error),
            overflow.eq(Cat(*(t.overflow for t in counters.values())).any()),
        ]
        candidates = [
            (fetch.misaligned, Fault.ADDRESS, 0),  # PROGRAM_BASE not a multiple of 32
            (illegal & running, Fault.ILLEGAL_INSTRUCTION, staged.index),
            (load.fault != 0, load.fault, load.fault_index),
            (store.fault != 0, store.fault, store.fault_index),
            (bus_error, Fault.BUS_ERROR, ~0),
            (overflow, Fault.TOKEN_OVERFLOW, ~0),
            (
                running & all_dispatched & (dispatched_end != 0b111),
                Fault.PROGRAM_END,
                dispatched,
            ),
            (running & watch_over, Fault.WATCHDOG, ~0),
        ]
        with m.If(running & ~halt):
            for k, (when, code, index) in enumerate(candidates):
                with (m.If if k == 0 else m.Elif)(when):
                    m.d.sync += [fault.eq(code), fault_index.eq(index), halt.eq(1)]

        # a run: start … every queue ended and every transfer finished, or a fault and
        # nothing on the bus (the port offers no new request once halted)
        # A token on its way (from a unit, in a push register) or an overflow not yet a
        # fault holds the run: a LOAD's or STORE's token comes as its transfer ends,
        # after its queue's END, and an overflow by it must become the fault, not be
        # dropped as the run ends.
        settling = Signal()
        unit_pushes = Cat(load.push, compute.push_prev, compute.push_next, store.push)
        m.d.comb += settling.eq(
            unit_pushes.any()
            | Cat(*pushes.values()).any()
            | Cat(*(t.overflow for t in counters.values())).any()
            | overflow
        )
        finished = Signal()
        m.d.comb += [
            port.halt.eq(halt),
            finished.eq(
                ~self.mem.cyc
                & (halt | (ended & ~load.busy & ~store.busy & ~compute.busy & ~settling))
            ),
        ]
        with m.If(self.start):
            m.d.sync += [running.eq(1), self.done.eq(0)]
        with m.Elif(running & finished):
            m.d.sync += [running.eq(0), self.done.eq(1)]
        m.d.comb += [
            self.busy.eq(running),
            self.fault.eq(fault),
            self.fault_index.eq(fault_index),
        ]
        # this module's own registers, from their own copy (last: it takes precedence)
        own = [start_fetch, program_base, program_words, image_bytes, watchdog, fetched,
               fetched_valid, fetched_clear, staged_valid, staged, end, to_queue, refused,
               dispatched, dispatched_end, watch, fault, fault_index, halt, all_dispatched,
               progress, watch_over, bus_error, overflow, running, self.done,
               *pushes.values()]  # fmt: skip
        with m.If(replica(m, self.clear, "clear_core")):
            for reg in own:
                reg = Value.cast(reg)
                m.d.sync += reg.eq(reg.init)

        events = {
            "load_busy": load.busy,
            "load_stall": load.stall,
            "compute_busy": compute.busy,
            "compute_stall": compute.stall,
            "store_busy": store.busy,
            "store_stall": store.stall,
            "port_busy": self.mem.cyc,
            "port_stall": self.mem.stb & self.mem.stall,
        }
        for name, engine in self.engines.items():
            events[f"{name}_busy"] = getattr(compute, f"{name}_busy")
            events[f"{name}_stall"] = engine.o.valid & ~engine.o.ready
        m.d.comb += self.events.eq(Cat(*(events[n] for n in COUNTER_NAMES)))
        return m
