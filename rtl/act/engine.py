"""Element-wise engine: the decoder's per-element ops that are neither convolution nor warp.

Today two ops, chosen per tile (`rtl.act.layouts.ActOp`):
- TABLE: y = table[x + 128] from a 256-entry table loaded at run time
  (`model.fixed_ops.apply_lut`: the occlusion and output sigmoids);
- AFFINE: y = requantize(±x + bias_c, M_c, s_c, relu) per channel
  (`model.fixed_conv.affine_int`: the residual blocks' pre-activation).
Both end in the shared output path (`rtl/output_path.py`): a table entry passes
it unchanged (bias 0, ×1, >> 0 of an int8 is the int8), so one pipeline serves
both. docs/activation_engine.md says which of the decoder's other ops join it::

    cmd ─► ActIssue (issue.py) ◄─ input queue (PrefetchQueue) ◄─ i
              │ beat: word of `lanes` int8, the group's constants address, op
              ▼
    per lane: table RAM (x + 128) and constants RAM, read together
              ▼
    per lane: select (table entry, or ±x with its constants) ─► OutputPath ─► o, done
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.limits import TAG_BITS
from model.fixed_ops import LUT_IN_BITS
from rtl.act.issue import ActIssue
from rtl.act.layouts import (
    TABLES,
    ActOp,
    command_layout,
    param_layout,
    param_write_layout,
    table_write_layout,
)
from rtl.bram import RegisteredRAM
from rtl.output_path import OutputPath, element_user_layout, lanes_in_lockstep
from rtl.pipeline import delay, equals
from rtl.prefetch import PrefetchQueue
from rtl.replica import replica

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Tiles in flight (accepted, done token not yet taken) at most.
TOKEN_SLOTS = 16
#: Edges of the select stage: the lane's element and constants for the output path.
SELECT_LATENCY = 1
#: Edges from a beat issuing to its elements entering the output paths.
ISSUE_TO_OUTPUT = ActIssue.LATENCY + RegisteredRAM.READ_LATENCY + SELECT_LATENCY


class ActEngine(wiring.Component):
    """One element-wise tile per command; `lanes` int8 in and out per cycle."""

    def __new__(cls, params: GraceParams, *, dsp_target: str | None = None) -> ActEngine:
        # Validated before the object exists, so a rejected one is not reported by
        # Amaranth as an elaboratable that was created but never used.
        if params.numeric.act_bits != LUT_IN_BITS:
            raise ValueError(
                f"the element-wise engine's tables take int8 inputs "
                f"(act_bits = {LUT_IN_BITS}), not act_bits = {params.numeric.act_bits}"
            )
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, params: GraceParams, *, dsp_target: str | None = None) -> None:
        self.params = params
        self.dsp_target = dsp_target
        width = params.act.lanes * params.numeric.act_bits
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(params))),
                "table_write": In(stream.Signature(table_write_layout())),
                "param_write": In(stream.Signature(param_write_layout(params))),
                "i": In(stream.Signature(unsigned(width))),  # lane l in bits [8l, 8l + 8)
                "o": Out(stream.Signature(unsigned(width))),
                "done": Out(stream.Signature(unsigned(TAG_BITS))),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.params
        lanes, act, n = p.act.lanes, p.numeric.act_bits, p.numeric
        target = self.dsp_target

        m.submodules.issue = issue = ActIssue(p, token_slots=TOKEN_SLOTS)
        m.submodules.input_queue = in_queue = PrefetchQueue(lanes * act)
        wiring.connect(m, wiring.flipped(self.cmd), issue.cmd)
        wiring.connect(m, wiring.flipped(self.i), in_queue.i)
        m.d.comb += [
            issue.word.eq(in_queue.head),
            issue.word_valid_next.eq(in_queue.head_valid_next),
            in_queue.pop.eq(issue.word_pop),
            issue.token_return.eq(self.done.valid & self.done.ready),
        ]
        beat = issue.beat.payload

        # -- writes: registered, then every lane's copy (tables) or one lane's
        # buffer (constants); a write lands two edges after its transfer, a
        # command reads them at least five edges after its own
        m.d.comb += [self.table_write.ready.eq(1), self.param_write.ready.eq(1)]
        tw, pw = self.table_write.payload, self.param_write.payload
        # own registers (replicas): Yosys merges registers of the same signal, and in
        # the co-processor every engine registers the same router words
        t_addr = replica(m, Cat(tw.index, tw.table), "t_addr")
        t_data = replica(m, tw.data, "t_data")
        p_addr, p_data = replica(m, pw.addr, "p_addr"), replica(m, pw.data, "p_data")
        t_en = Signal()
        m.d.sync += t_en.eq(self.table_write.valid)

        side = delay(
            m,
            Cat(issue.beat.valid, beat.op, beat.relu, beat.end, beat.tag),
            RegisteredRAM.READ_LATENCY,
            "side",
        )
        side_valid, op, relu, end, tag = side[0], side[1], side[2], side[3], side[4:]
        words = delay(m, beat.word, RegisteredRAM.READ_LATENCY, "word")
        paths = []
        for lane in range(lanes):
            x = beat.word[lane * act : (lane + 1) * act]
            table = RegisteredRAM(8, TABLES << LUT_IN_BITS, target=target)
            consts = RegisteredRAM(param_layout(p).size, p.act.param_depth, target=target)
            m.submodules[f"table{lane}"] = table
            m.submodules[f"constants{lane}"] = consts
            p_en = Signal(name=f"param_en{lane}")
            m.d.sync += p_en.eq(self.param_write.valid & equals(pw.lane, lane))
            m.d.comb += [
                table.w_addr.eq(t_addr),
                table.w_data.eq(t_data),
                table.w_en.eq(t_en),
                # x + 128: the index of int8 x, its sign bit flipped
                table.r_addr.eq(Cat(x[:-1], ~x[-1], beat.table)),
                table.r_clear.eq(0),
                consts.w_addr.eq(p_addr),
                consts.w_data.eq(p_data),
                consts.w_en.eq(p_en),
                consts.r_addr.eq(beat.param_addr),
                consts.r_clear.eq(0),
            ]
            m.submodules[f"output{lane}"] = path = OutputPath(
                n, 1, producer_latency=ISSUE_TO_OUTPUT, token_slots=TOKEN_SLOTS, dsp_target=target
            )
            # S: the lane's element: a table entry passes the output path unchanged
            entry = table.r_data.as_signed()
            value = words[lane * act : (lane + 1) * act].as_signed()
            constants = data.View(param_layout(p), consts.r_data)
            affine = op == ActOp.AFFINE
            element = path.i.payload
            user = data.View(element_user_layout(1), element.user)
            m.d.sync += [
                path.i.valid.eq(side_valid),
                element.acc.eq(Mux(affine, Mux(constants.negate, -value, value), entry)),
                element.bias.eq(Mux(affine, constants.bias, 0)),
                element.multiplier.eq(Mux(affine, constants.multiplier, 1)),
                element.shift.eq(Mux(affine, constants.shift, 0)),
                element.relu.eq(affine & relu),
                user.lane.eq(0),
                user.pool.eq(0),
                user.quad.eq(0),
                user.end.eq(end),
                user.tag.eq(tag),
            ]
            paths.append(path)
        m.d.comb += issue.room_next.eq(
            lanes_in_lockstep(m, paths, reserve=issue.reserve, o=self.o, done=self.done)
        )
        return m
