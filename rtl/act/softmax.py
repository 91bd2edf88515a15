"""Softmax unit: the channel softmax of the dense motion network's mask logits.

Bit-exact with `model.fixed_ops.softmax_channels_fixed` at the decoder's widths
(E = 15 fraction bits of exp, a 16-bit reciprocal, 8 output fraction bits). Per
pixel of C int8 logits x_c, in four phases the unit steps through one a cycle:

    GATHER     C steps: x_c into the logit buffer, m = max_c x_c
    EXP        C steps: e_c = EXP[m − x_c] (a table loaded at run time) into the
               exp buffer, S = Σ e_c
    DIVIDE     DIVIDE_STEPS: wait for S, then r = ⌊(2^31 + S) / 2S⌋ by restoring
               division, a quotient bit every two cycles (no DSP)
    NORMALISE  C steps: out_c = min(round_shift(e_c · r, 22), 255), which is
               `requantize(e_c, 0, r, 22, relu)` at 9 output bits: the shared
               output path (`rtl/output_path.py`), one DSP

The phases of one pixel run in turn (3C + DIVIDE_STEPS cycles per pixel, 72 for
the decoder's 11 channels): the whole frame's softmax costs 0.09 % of its
convolutions (docs/activation_engine.md), so overlapping pixels would buy
nothing worth its logic. A step issues only when what it needs is there (a
logit in GATHER, a reserved result slot in NORMALISE), so the pipelines behind
never stall; a tile is accepted only with a done-token credit (`TileControl`).
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.limits import DIM_BITS, TAG_BITS, bits_for
from defs.params import NumericParams
from model.fixed import int_range
from model.fixed_ops import LUT_IN_BITS, LUT_SIZE, softmax_widths
from rtl.bram import RegisteredRAM
from rtl.output_path import OutputPath, element_user_layout, lanes_in_lockstep
from rtl.pipeline import LoopCounter, delay, equals
from rtl.prefetch import PrefetchQueue
from rtl.replica import replica
from rtl.tile_control import TileControl

if TYPE_CHECKING:
    from defs.params import GraceParams

#: The decoder's softmax widths (`softmax_channels_fixed`'s defaults).
EXP_FRAC_BITS, RECIP_BITS, OUT_FRAC_BITS = 15, 16, 8
#: Tiles in flight (accepted, done token not yet taken) at most.
TOKEN_SLOTS = 4
#: Edges from an EXP step to its e_c in the sum: the logit buffer's read, the
#: index register (m − x_c), the exp table's read, the add.
EXP_TO_SUM = RegisteredRAM.READ_LATENCY + 1 + RegisteredRAM.READ_LATENCY + 1
#: Cycles of one quotient bit: the trial's difference, then the choice (a register
#: between them keeps the subtract's carry chain alone in its cycle).
CYCLES_PER_BIT = 2
#: DIVIDE steps: wait for the sum, load the divider, the quotient bits.
DIVIDE_STEPS = EXP_TO_SUM + 1 + CYCLES_PER_BIT * RECIP_BITS
#: Edges from a NORMALISE step to its element entering the output path: the exp
#: buffer's read, then the element register.
NORMALISE_TO_OUTPUT = RegisteredRAM.READ_LATENCY + 1


class Phase(IntEnum):
    GATHER = 0
    EXP = 1
    DIVIDE = 2
    NORMALISE = 3


def output_numeric() -> NumericParams:
    """The normalise as a requantize: e (u16) × r (u16) >> 22, clamped to [0, 255]."""
    w = softmax_widths(1, EXP_FRAC_BITS, RECIP_BITS, OUT_FRAC_BITS)
    return NumericParams(
        act_bits=OUT_FRAC_BITS + 1,  # 0 .. 255 under ReLU
        acc_bits=EXP_FRAC_BITS + 2,  # e ≤ 2^15, signed
        bias_bits=8,  # unused (0), the narrowest allowed
        mult_bits=RECIP_BITS,
        max_shift=w["shift"],
    )


def sum_bits(p: GraceParams) -> int:
    """Width of S = Σ e_c ≤ C · 2^E."""
    widths = softmax_widths(p.act.softmax_channels, EXP_FRAC_BITS, RECIP_BITS, OUT_FRAC_BITS)
    return widths["sum_bits"]


def command_layout(p: GraceParams) -> data.StructLayout:
    """One tile: `pixels` pixels of `channels` logits each, channel innermost."""
    return data.StructLayout(
        {
            "pixels": unsigned(2 * DIM_BITS),
            "channels": unsigned(bits_for(p.act.softmax_channels + 1)),  # 1 .. softmax_channels
            "tag": unsigned(TAG_BITS),
        }
    )


def exp_write_layout() -> data.StructLayout:
    """EXP[index] = round_half_up(exp(−index · in_scale) · 2^E) (`model.fixed_ops.exp_lut`)."""
    return data.StructLayout({"index": unsigned(LUT_IN_BITS), "data": unsigned(EXP_FRAC_BITS + 1)})


class SoftmaxUnit(wiring.Component):
    """Softmax tiles in (`cmd`, int8 logits on `i`), uint8 masks out on `o`, tags on `done`."""

    def __init__(self, params: GraceParams, *, dsp_target: str | None = None) -> None:
        self.params = params
        self.dsp_target = dsp_target
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(params))),
                "exp_write": In(stream.Signature(exp_write_layout())),
                "i": In(stream.Signature(signed(LUT_IN_BITS))),
                "o": Out(stream.Signature(unsigned(OUT_FRAC_BITS))),
                "done": Out(stream.Signature(unsigned(TAG_BITS))),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.params
        channels = p.act.softmax_channels
        target = self.dsp_target

        m.submodules.input_queue = in_queue = PrefetchQueue(LUT_IN_BITS)
        wiring.connect(m, wiring.flipped(self.i), in_queue.i)
        tile = TileControl(
            m, self.cmd, command_layout(p), token_slots=TOKEN_SLOTS,
            token_return=self.done.valid & self.done.ready,
        )  # fmt: skip
        cmd, issuing = tile.cmd, tile.issuing

        # -- the step sequence: phase, steps left in it, the step's index --------
        phase = Signal(Phase)
        left = Signal(range(max(channels, DIVIDE_STEPS)))
        last = Signal()  # the phase's last step (left == 0), a register
        index = Signal(range(max(channels, DIVIDE_STEPS)))
        one_channel = Signal()
        pixel = LoopCounter(m, "pixel", len(cmd.pixels))
        with m.If(tile.deriving_limits):
            m.d.sync += [pixel.limit.eq(cmd.pixels - 1), one_channel.eq(cmd.channels == 1)]
        with m.If(tile.testing_limits):
            m.d.sync += pixel.test_limit()

        def enter(step_count_is_one: object, steps_minus_one: object) -> list:
            return [index.eq(0), left.eq(steps_minus_one), last.eq(step_count_is_one)]

        # The phases follow in order, NORMALISE wrapping to the next pixel's GATHER.
        phase_next = Signal(Phase)
        m.d.comb += phase_next.eq(Mux(issuing & last, (phase + 1)[: len(phase)], phase))
        with m.If(tile.starting):
            m.d.sync += [phase.eq(Phase.GATHER), *pixel.restart()]
            m.d.sync += enter(one_channel, cmd.channels - 1)
        with m.Elif(issuing):
            m.d.sync += phase.eq(phase_next)
            with m.If(last & (phase == Phase.EXP)):
                m.d.sync += enter(0, DIVIDE_STEPS - 1)
            with m.Elif(last):
                m.d.sync += enter(one_channel, cmd.channels - 1)
            with m.Else():
                m.d.sync += [index.eq(index + 1), left.eq(left - 1), last.eq(left == 1)]
        pixel_end = (phase == Phase.NORMALISE) & last
        pixel.step(issuing & pixel_end)
        tile_end = Signal()
        m.d.comb += tile_end.eq(pixel_end & pixel.last)

        # What the next step needs: a logit to gather, or a result slot.
        room_next = Signal()
        tile.run(
            tile_end,
            Mux(equals(phase_next, Phase.GATHER), in_queue.head_valid_next, 1),
            Mux(phase_next == Phase.NORMALISE, room_next, 1),
        )
        gathering = issuing & equals(phase, Phase.GATHER)
        exponentiating = issuing & (phase == Phase.EXP)
        normalising = issuing & (phase == Phase.NORMALISE)
        m.d.comb += in_queue.pop.eq(gathering)

        # -- GATHER: the logits and their maximum -------------------------------
        logits = RegisteredRAM(LUT_IN_BITS, channels, target=target)
        m.submodules.logits = logits
        top = Signal(signed(LUT_IN_BITS))
        x = in_queue.head.as_signed()
        m.d.comb += [
            logits.w_addr.eq(index),
            logits.w_data.eq(in_queue.head),
            logits.w_en.eq(gathering),
            logits.r_addr.eq(index),
            logits.r_clear.eq(0),
        ]
        # the maximum one edge behind, from registers: the compare and the choice
        # are all of the recurrence (a cycle without a logit sees −128, which
        # leaves it as it is). It is final two edges after the last GATHER step,
        # and EXP first reads it three edges after its first step.
        # A pixel's first logit finds the maximum at −128 (a reset as it is taken),
        # and the compare is unsigned, on the sign-flipped bytes: one short carry
        # chain, then the choice.
        lowest = int_range(LUT_IN_BITS)[0]
        seen_x = Signal(signed(LUT_IN_BITS))
        m.d.sync += seen_x.eq(Mux(gathering, x, lowest))
        greater = Cat(seen_x[:-1], ~seen_x[-1]) > Cat(top[:-1], ~top[-1])
        with m.If(gathering & equals(index, 0)):
            m.d.sync += top.eq(lowest)
        with m.Elif(greater):
            m.d.sync += top.eq(seen_x)

        # -- EXP: e_c = EXP[m − x_c] and their sum ---------------------------------
        table = RegisteredRAM(EXP_FRAC_BITS + 1, LUT_SIZE, target=target)
        m.submodules.exp_table = table
        ew = self.exp_write.payload
        m.d.comb += [self.exp_write.ready.eq(1), table.r_clear.eq(0)]
        # own registers (replicas): Yosys merges registers of the same signal, and in
        # the co-processor every engine registers the same router words (the full
        # top's critical path: this address register driving the heatmap's table too)
        m.d.comb += [
            table.w_addr.eq(replica(m, ew.index, "exp_w_addr")),
            table.w_data.eq(replica(m, ew.data, "exp_w_data")),
        ]
        m.d.sync += table.w_en.eq(self.exp_write.valid)
        read = delay(m, Cat(exponentiating, index), RegisteredRAM.READ_LATENCY, "logit_read")
        k = Signal(LUT_IN_BITS)  # m − x_c, 0 .. 255
        m.d.sync += k.eq(top - logits.r_data.as_signed())
        m.d.comb += table.r_addr.eq(k)
        arriving = delay(m, read, 1 + RegisteredRAM.READ_LATENCY, "exp_read")
        e_valid, e_index = arriving[0], arriving[1:]
        exps = RegisteredRAM(EXP_FRAC_BITS + 1, channels, target=target)
        m.submodules.exps = exps
        total = Signal(sum_bits(p))
        m.d.comb += [
            exps.w_addr.eq(e_index),
            exps.w_data.eq(table.r_data),
            exps.w_en.eq(e_valid),
            exps.r_addr.eq(index),
            exps.r_clear.eq(0),
        ]
        # the sum starts over as a pixel's EXP phase begins (a reset, not a mux
        # behind the adder: the iCE40's path ran through one)
        # (one edge after the last GATHER step, from a register; the first e_c
        # arrives EXP_TO_SUM − 1 edges later)
        with m.If(delay(m, gathering & last, 1, "sum_clear")):
            m.d.sync += total.eq(0)
        with m.Elif(e_valid):
            m.d.sync += total.eq(total + table.r_data)

        # -- DIVIDE: r = ⌊(2^31 + S) / 2S⌋, one quotient bit per step ---------------
        # The numerator's top bits, 2^15 + (S >> 16), are below 2S since S ≥ 2^15
        # (EXP[0] = 2^15 for the maximum), so the quotient has 16 bits.
        divisor = Signal(sum_bits(p) + 1)
        remainder = Signal(sum_bits(p) + 1)  # < divisor
        low = Signal(RECIP_BITS)  # the numerator's bits not yet brought down
        recip = Signal(RECIP_BITS)
        # each bit in two cycles: the trial (remainder, next bit) less the divisor
        # into registers, then the choice
        trial = Signal(len(remainder) + 1)
        difference = Signal(signed(len(trial) + 1))
        m.d.sync += [
            trial.eq(Cat(low[-1], remainder)),
            difference.eq(Cat(low[-1], remainder) - divisor),
        ]
        iterating, choosing = Signal(), Signal()
        steps = Signal(range(RECIP_BITS))
        # the load: DIVIDE's step EXP_TO_SUM, the sum complete; a delay of the last
        # EXP step, so its many enables come from a register, not a compare
        loading = delay(m, exponentiating & last, 1 + EXP_TO_SUM, "loading")
        with m.If(loading):
            m.d.sync += [
                divisor.eq(total << 1),
                remainder.eq((1 << EXP_FRAC_BITS) | (total >> RECIP_BITS)),
                low.eq(total[:RECIP_BITS]),
                iterating.eq(1),
                choosing.eq(0),
                steps.eq(RECIP_BITS - 1),
            ]
        with m.Elif(iterating):
            m.d.sync += choosing.eq(~choosing)
            with m.If(choosing):
                fits = ~difference[-1]
                m.d.sync += [
                    remainder.eq(Mux(fits, difference, trial)),
                    low.eq(low << 1),
                    recip.eq(Cat(fits, recip)),
                    steps.eq(steps - 1),
                    iterating.eq(steps.any()),
                ]

        # -- NORMALISE: requantize(e_c, 0, r, 22, relu) on the output path ----------
        m.submodules.output = path = OutputPath(
            output_numeric(), 1, producer_latency=NORMALISE_TO_OUTPUT, token_slots=TOKEN_SLOTS,
            dsp_target=target,
        )  # fmt: skip
        # the tag travels with the element: the next tile's command may be latched
        # before this tile's last element reaches the output path
        side = delay(m, Cat(normalising, tile_end, cmd.tag), RegisteredRAM.READ_LATENCY, "side")
        element = path.i.payload
        user = data.View(element_user_layout(1), element.user)
        m.d.sync += [
            path.i.valid.eq(side[0]),
            element.acc.eq(exps.r_data),
            element.bias.eq(0),
            element.multiplier.eq(recip),
            element.shift.eq(output_numeric().max_shift),
            element.relu.eq(1),
            user.lane.eq(0),
            user.pool.eq(0),
            user.quad.eq(0),
            user.end.eq(side[1]),
            user.tag.eq(side[2:]),
        ]
        m.d.comb += room_next.eq(
            lanes_in_lockstep(m, [path], reserve=normalising, o=self.o, done=self.done)
        )
        return m
