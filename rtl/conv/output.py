"""The conv engine's output unit: finished pixel vectors → lane by lane → the output path.

It takes a vector of `rows` sums from the MAC array's row queues and walks it
one lane (output channel) per cycle: selects the lane's sum, adds
residual × gain on a DSP (the gain from a per-channel buffer), reads the
channel's requantizer constants, and hands the element to the shared
`rtl.output_path.OutputPath` (requantize, ReLU, 2×2 pool, `o`, `done`). What
each pixel needs besides its sums (lanes, constants' address, fused options,
tag) arrives from the issue loop as the pixel starts and waits in a queue.

Input-channel splitting (docs/conv_engine.md): the partial sums are an int32
memory indexed by the element's place in its tile's output order. A
`partial_in` tile adds the element's word to its sum as the lane's sum is
selected; a `partial_out` tile writes its sum (before bias: the requantizer
adds that) back as the sum reaches the output path. Both tiles emit their
results as any tile does.

Like the MAC array it never stalls: an element leaves the vector register only
when the output path has a result slot reserved for it (and its residual is
there), so no ready signal runs combinationally through the pipeline.
"""

from __future__ import annotations

import operator
from functools import reduce
from typing import TYPE_CHECKING

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.limits import TAG_BITS
from rtl.bram import RegisteredRAM
from rtl.conv.mac_array import OPERAND_GROUP, MacArray
from rtl.conv_layouts import (
    param_addr_bits,
    param_write_layout,
    partial_addr_bits,
    pixel_meta_layout,
    requant_param_layout,
)
from rtl.dsp import Multiplier, platform_target
from rtl.output_path import OutputPath, element_user_layout
from rtl.pipeline import delay
from rtl.prefetch import PrefetchQueue
from rtl.replica import register_copies, replica
from rtl.row_queue import RowQueue
from rtl.stream_queue import StreamQueue
from rtl.thermometer import thermometer_next

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Accumulator bits selected by each copy of the one-hot lane.
LANE_SELECT_BITS = 8


class ConvOutputUnit(wiring.Component):
    """Pixel vectors (row-queue heads) and their metadata in; int8 `o` and `done` out."""

    #: Edges from a vector's arrival in the row queues to `pop` (a register).
    POP_LATENCY = 1
    #: Edges from an element leaving the vector register (`emit`) to the output
    #: path's input: lane select and residual (1), then residual × gain, its
    #: operand register and DSP (GAIN_WAIT), while the sum's second select
    #: step waits alongside; the path's input register (1).
    GAIN_WAIT = 1 + Multiplier.LATENCY
    EMIT_LATENCY = 1 + GAIN_WAIT + 1
    #: Edges from a vector's arrival in the row queues to its first element at
    #: the output path: `pop`, the vector register, then EMIT_LATENCY.
    LATENCY = POP_LATENCY + 1 + EMIT_LATENCY
    #: Edges from `emit` to the element's partial-sum read (from d1's registers,
    #: so `emit` itself drives no more than it did).
    PARTIAL_READ_AT = 1
    #: Edges from `emit` to the stage whose register holds the lane's sum plus its
    #: partial sum (the read's RegisteredRAM.READ_LATENCY after it): one of the
    #: stages the sum waits in for `residual × gain`, so no stage gains an adder.
    PARTIAL_ADD_AT = PARTIAL_READ_AT + RegisteredRAM.READ_LATENCY + 1
    #: Edges from `emit` to the element's partial sum being written (from the
    #: output path's input register, the sum the requantizer takes).
    PARTIAL_WRITE_AT = EMIT_LATENCY
    #: Cycles from the emit of a `partial_out` tile's element k to the earliest
    #: emit of element k of a later tile whose read sees that write (a read in
    #: the write's cycle returns the old word).
    PARTIAL_DISTANCE = PARTIAL_WRITE_AT + 1 - PARTIAL_READ_AT
    #: Cycles the output unit holds after the last element of a `partial_out`
    #: tile before the next element. Element k of the next tile then follows
    #: element k of this one by at least N + 1 + PARTIAL_HOLD cycles for a tile
    #: of N ≥ 1 elements (the rest of this tile, one cycle to load the next
    #: vector, the hold, the next tile's elements before k): PARTIAL_DISTANCE.
    PARTIAL_HOLD = PARTIAL_DISTANCE - 2

    def __init__(
        self, params: GraceParams, *, token_slots: int, dsp_target: str | None = None
    ) -> None:
        self.params = params
        self.dsp_target = dsp_target
        self.token_slots = token_slots
        n, rows = params.numeric, params.array.rows
        super().__init__(
            {
                "pixel": In(stream.Signature(pixel_meta_layout(params), always_ready=True)),
                "heads": In(rows * n.acc_bits),  # the MAC array's row-queue heads
                "finished": In(1),  # MacArray.finished
                "pop_next": Out(1),  # the row queues drop their heads after this edge
                "pop": Out(1),  # a vector was taken on the last edge: its slot is free
                "param_write": In(stream.Signature(param_write_layout(params), always_ready=True)),
                "residual": In(stream.Signature(signed(n.act_bits))),
                "o": Out(stream.Signature(signed(n.act_bits))),
                "done": Out(stream.Signature(unsigned(TAG_BITS))),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.params
        rows, n = p.array.rows, p.numeric
        big_die = platform_target(platform, self.dsp_target) != "ice40"
        slots = p.buffers.accumulator_slots

        m.submodules.path = path = OutputPath(
            n,
            rows,
            producer_latency=self.EMIT_LATENCY,
            token_slots=self.token_slots,
            dsp_target=self.dsp_target,
        )
        wiring.connect(m, wiring.flipped(self.o), path.o)
        wiring.connect(m, wiring.flipped(self.done), path.done)

        # -- per-channel constants: the gain, read first for residual × gain, and
        # the requantizer's, read as its product is ready (one buffer's word
        # delayed two cycles cost 2 × 54 flip-flops)
        constants = requant_param_layout(p)
        m.submodules.gain_buffer = gain_ram = RegisteredRAM(
            n.gain_bits, p.buffers.param_depth, target=self.dsp_target
        )
        m.submodules.param_buffer = par_ram = RegisteredRAM(
            constants.size, p.buffers.param_depth, target=self.dsp_target
        )
        # -- the partial sums of input-channel splitting: one int32 word per element
        # of a tile, by its place in the tile's output order (og ▸ pixel ▸ lane)
        # (never read in the cycle it is written: an element's read and write are
        # PARTIAL_WRITE_AT - PARTIAL_READ_AT cycles apart, and PARTIAL_HOLD keeps
        # the next tile's reads of a word after its write)
        m.submodules.partial_sums = partial_ram = RegisteredRAM(
            n.acc_bits, p.buffers.partial_depth, target=self.dsp_target, unchecked_collisions=True
        )
        pw = self.param_write.payload.data
        for ram, word in (
            (gain_ram, pw.gain),
            (par_ram, Cat(*(getattr(pw, f) for f in constants.members))),
        ):
            m.d.sync += [
                ram.w_addr.eq(self.param_write.payload.addr),
                ram.w_data.eq(word),
                ram.w_en.eq(self.param_write.valid),
            ]

        # -- what the output unit needs per pixel waits in a queue --------------
        # (pushed when the pixel starts, popped with the row queues; the credits
        # bound the pixels in between, so it never overflows, and a flagless
        # queue keeps the FIFO level logic out of both ends) instead of riding a
        # register through the MAC pipeline. An entry is read long after its push,
        # so the read need not see the write of the same edge: transparent only
        # where that is the cheap form.
        meta_bits = pixel_meta_layout(p).size
        m.submodules.pixel_meta = meta_queue = RowQueue(meta_bits, slots, transparent=big_die)
        # On a big die the push waits a cycle in registers (the queue sat 6.6 ns
        # of routing from the issue loop on ECP5).
        push_delay = 1 if big_die else 0
        m.d.comb += [
            meta_queue.data.eq(delay(m, self.pixel.payload.as_value(), push_delay, "meta_in")),
            meta_queue.push.eq(delay(m, self.pixel.valid, push_delay, "meta_push")),
        ]

        # -- residuals: a FIFO, then a queue with registered flags, so the late
        # `emit` decision never reaches the FIFO's pointers
        m.submodules.residual_in = res_fifo = StreamQueue(
            n.act_bits, path.slots, transparent_storage=big_die
        )
        wiring.connect(m, wiring.flipped(self.residual), res_fifo.i)
        m.submodules.residual_next = res_queue = PrefetchQueue(n.act_bits)
        wiring.connect(m, res_fifo.o, res_queue.i)

        entry = data.StructLayout(
            {"acc": unsigned(rows * n.acc_bits), "meta": pixel_meta_layout(p)}
        )
        vec = Signal(entry)
        have = Signal()
        have_next = Signal()
        pop, pop_next = self.pop, self.pop_next
        lane = Signal(range(rows))
        # one-hot `lane`, which selects the accumulator word: a copy per slice of
        # LANE_SELECT_BITS bits of the word (one copy's bit drove all 32 selects
        # of its lane, 4.7 ns on ECP5)
        lane_hot_for = register_copies(
            "lane_hot", tuple(range(0, n.acc_bits, LANE_SELECT_BITS)), rows
        )
        # the lane's parameter address, kept as a register beside `lane` so the
        # buffer's address (and the collision check Yosys adds around block RAM
        # that cannot read and write one address in a cycle) starts at a register
        param_ptr = Signal(param_addr_bits(p))
        vmeta = vec.meta
        wants_residual = vmeta.residual
        emit = Signal()
        lane_last = Signal()  # lane == lanes - 1, registered
        entry_in = data.View(entry, Cat(self.heads, meta_queue.head))
        # an element yields an output unless pooling absorbs it (quads 0..2);
        # registered with the vector, like every input of `emit`
        yields = Signal()
        # `emit` is a 3-input AND of registers: "the result has a slot (or needs
        # none)" and "the residual is here (or is not wanted)" are registered from
        # next-state values, as `issuing` is in the issue loop
        credit_ok = Signal(init=1)
        residual_ok = Signal(init=1)
        yields_next = Mux(pop, entry_in.meta.yields, yields)
        wants_next = Mux(pop, entry_in.meta.residual, wants_residual)
        # After a `partial_out` tile's last element the next element waits
        # PARTIAL_HOLD cycles, so it never reads a partial sum before its write
        # (a thermometer count, bit j = "more than j cycles left")
        hold = Signal(self.PARTIAL_HOLD)
        m.d.sync += [
            credit_ok.eq((~yields_next | path.room_next) & ~hold[0]),
            residual_ok.eq(~wants_next | res_queue.head_valid_next),
        ]
        m.d.comb += [
            emit.eq(have & credit_ok & residual_ok),
            meta_queue.pop.eq(replica(m, pop_next, "pop_meta")),
            res_queue.pop.eq(emit & wants_residual),
            path.reserve.eq(emit & yields),
            gain_ram.r_addr.eq(param_ptr),
            par_ram.r_addr.eq(delay(m, param_ptr, Multiplier.LATENCY, "param_ptr")),
        ]
        # `pop` is a register, decided a cycle ahead: a vector loads only into an
        # empty register (one idle cycle per vector), and the count of vectors the
        # row queues hold is kept here, counting a push when its data is at the
        # queues' heads (MacArray.FINISH_TO_HEAD)
        held = Signal(slots + 1)  # thermometer code (rtl/thermometer.py)
        arrived = delay(m, self.finished, MacArray.FINISH_TO_HEAD, "arrived")
        # `pop_next` feeds per-row copies across the die, so it is two LUTs of
        # registers: "a vector is held or arriving, none was just taken" and
        # "the register is empty or its last lane leaves now" (the same as
        # `some held next & ~have_next`, written out; "some vector is held" is a
        # bit of `held`)
        m.d.comb += [
            have_next.eq(pop | (have & ~(emit & lane_last))),
            pop_next.eq(
                (~pop & (arrived | held[0])) & (~have | (credit_ok & residual_ok & lane_last))
            ),
        ]
        m.d.sync += [held.eq(thermometer_next(held, arrived, pop)), pop.eq(pop_next)]
        # the wide vector register loads whenever it is empty (its enables are
        # per-row copies of the register `have`); only `pop` makes it count
        for r in range(rows):
            with m.If(~replica(m, have_next, f"have{r}")):
                m.d.sync += vec.acc.word_select(r, n.acc_bits).eq(
                    entry_in.acc.word_select(r, n.acc_bits)
                )
        with m.If(~replica(m, have_next, "have_meta")):
            m.d.sync += vec.meta.eq(meta_queue.head)
        m.d.sync += have.eq(have_next)
        # (the lane registers load from their own copy of `pop`: the one that
        # decides `pop_next` stays a register with few loads)
        with m.If(replica(m, pop_next, "pop_lanes")):
            m.d.sync += [
                lane.eq(0),
                *[hot.eq(1) for hot in lane_hot_for.values()],
                param_ptr.eq(entry_in.meta.param_addr),
                lane_last.eq(entry_in.meta.lanes == 1),
                yields.eq(yields_next),
            ]
        with m.Elif(emit & ~lane_last):
            m.d.sync += [
                lane.eq(lane + 1),
                *[hot.eq(hot << 1) for hot in lane_hot_for.values()],
                param_ptr.eq(param_ptr + 1),
                lane_last.eq(lane + 2 == vmeta.lanes),
            ]

        with m.If(emit & vmeta.end & lane_last & vmeta.partial_out):
            m.d.sync += hold.eq(-1)
        with m.Else():
            m.d.sync += hold.eq(hold >> 1)

        d1_valid = Signal()
        # the lane's accumulator in two registered steps: an AND-OR over each group
        # of OPERAND_GROUP lanes with the one-hot lane, then an OR of the groups
        # (a rows-way multiplexer on `lane` took a whole cycle and a long route)
        words = [vec.acc.word_select(r, n.acc_bits) for r in range(rows)]
        d1_groups = []
        for g in range(0, rows, OPERAND_GROUP):
            lanes = range(g, min(rows, g + OPERAND_GROUP))
            slices = []
            for low, hot in lane_hot_for.items():
                high = min(low + LANE_SELECT_BITS, n.acc_bits)
                picked = [Mux(hot[r], words[r][low:high], 0) for r in lanes]
                slices.append(reduce(operator.or_, picked))
            group = Signal(n.acc_bits, name=f"d1_acc_group{g // OPERAND_GROUP}")
            m.d.sync += group.eq(Cat(*slices))
            d1_groups.append(group)
        d2_acc = Signal(signed(n.acc_bits))
        m.d.sync += d2_acc.eq(reduce(operator.or_, d1_groups))
        d1_res = Signal(signed(n.act_bits))
        d1_user = Signal(element_user_layout(rows))
        d1_relu = Signal()
        d1_partial_in = Signal()
        d1_partial_out = Signal()
        m.d.sync += [
            d1_valid.eq(emit),
            d1_res.eq(Mux(wants_residual, res_queue.head, 0)),
            d1_user.lane.eq(lane),
            d1_user.pool.eq(vmeta.pool),
            d1_user.quad.eq(vmeta.quad),
            d1_user.end.eq(vmeta.end & lane_last),
            d1_user.tag.eq(vmeta.tag),
            d1_relu.eq(vmeta.relu),
            d1_partial_in.eq(vmeta.partial_in),
            d1_partial_out.eq(vmeta.partial_out),
        ]
        # -- the element's index in its tile: the partial sums' read address,
        # counted at d1 (PARTIAL_READ_AT); a tile without `partial_in` reads zeros
        assert self.PARTIAL_READ_AT == 1
        element_index = Signal(partial_addr_bits(p))
        with m.If(d1_valid):
            m.d.sync += element_index.eq(Mux(d1_user.end, 0, element_index + 1))
        m.d.comb += [
            partial_ram.r_addr.eq(element_index),
            partial_ram.r_clear.eq(~d1_partial_in),
        ]
        # residual × gain on a registered DSP (the gain is read two cycles after
        # d0); the accumulator and the rest wait alongside, and the requantizer's
        # constants are read as late as the product is ready
        m.submodules.residual_gain = gain_mul = Multiplier(
            n.act_bits, n.gain_bits + 1, target=self.dsp_target
        )
        m.d.comb += [gain_mul.a.eq(delay(m, d1_res, 1, "d2_res")), gain_mul.b.eq(gain_ram.r_data)]
        wait = self.GAIN_WAIT
        # the element's partial sum (zero unless `partial_in`) joins the lane's sum
        # in one of the stages it waits in for the product (d2 is 2 edges after
        # `emit`, the output path's input 1 + wait after d2)
        add_stage = self.PARTIAL_ADD_AT - 2
        assert partial_ram.latency == RegisteredRAM.READ_LATENCY
        assert 1 <= add_stage <= wait - 1, "the add takes one of the sum's waiting stages"
        with_partial = Signal(signed(n.acc_bits))
        m.d.sync += with_partial.eq(
            delay(m, d2_acc, add_stage - 1, "in_acc") + partial_ram.r_data.as_signed()
        )
        acc_w = delay(m, with_partial, wait - 1 - add_stage, "out_acc")
        par_w = data.View(constants, par_ram.r_data)
        element = path.i.payload
        partial_out = Signal()  # the element at the path's input is a partial_out tile's
        m.d.sync += [
            path.i.valid.eq(delay(m, d1_valid, wait, "out_valid")),
            element.acc.eq(acc_w + gain_mul.p),
            element.bias.eq(par_w.bias),
            element.multiplier.eq(par_w.multiplier),
            element.shift.eq(par_w.shift),
            element.relu.eq(delay(m, d1_relu, wait, "out_relu")),
            element.user.eq(delay(m, d1_user.as_value(), wait, "out_user")),
            partial_out.eq(delay(m, d1_partial_out, wait, "out_partial")),
        ]
        # A partial_out tile keeps the sum the requantizer takes (the partial sum
        # and residual × gain in, the bias not), at the element's index, counted
        # again here rather than delayed from `emit`: the elements arrive in order.
        write_index = Signal(partial_addr_bits(p))
        arriving = data.View(element_user_layout(rows), element.user)
        with m.If(path.i.valid):
            m.d.sync += write_index.eq(Mux(arriving.end, 0, write_index + 1))
        m.d.comb += [
            partial_ram.w_addr.eq(write_index),
            partial_ram.w_data.eq(element.acc),
            partial_ram.w_en.eq(path.i.valid & partial_out),
        ]
        return m
