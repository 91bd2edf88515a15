"""Output (requantize) unit: int32 accumulator + bias → int8 activation.

The rule is `model.fixed.requantize` (docs/numerics.md §Requantize); this is its
pipelined hardware form. Per-channel multiplier and shift travel with each
element, so the unit is a pure stream function: the convolution engine feeds
them from its per-channel parameter memory, and tests drive random vectors.

Pipeline (one element per cycle, global stall on output back-pressure)::

    i ──► [1] s = acc + bias ──► [2] p = s × mult    ──► [3] r = (p + half) >> shift ──► [4] sat, ReLU ──► o
                                     half = 2^(shift-1)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.fixed import int_range

if TYPE_CHECKING:
    from grace.params import NumericParams


def requant_input_layout(numeric: NumericParams) -> data.StructLayout:
    """One element for the output unit: the accumulator and its channel's constants."""
    return data.StructLayout(
        {
            "acc": signed(numeric.acc_bits),
            "bias": signed(numeric.bias_bits),
            "multiplier": unsigned(numeric.mult_bits),
            "shift": unsigned(numeric.shift_bits),
            "relu": unsigned(1),
        }
    )


class Requantizer(wiring.Component):
    """Stream in `requant_input_layout`, stream out signed act_bits activations."""

    #: Cycles from an input transfer to its output being valid, without stalls.
    LATENCY = 4

    def __init__(self, numeric: NumericParams) -> None:
        self.numeric = numeric
        super().__init__(
            {
                "i": In(stream.Signature(requant_input_layout(numeric))),
                "o": Out(stream.Signature(signed(numeric.act_bits))),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        n = self.numeric

        # Every stage moves when the output register is empty or being read.
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]

        s1_valid = Signal()
        s1_sum = Signal(signed(n.sum_bits))
        s1_mult = Signal(unsigned(n.mult_bits))
        s1_shift = Signal(unsigned(n.shift_bits))
        s1_relu = Signal()

        s2_valid = Signal()
        s2_product = Signal(signed(n.product_bits))
        s2_half = Signal(unsigned(n.max_shift))  # 2^(shift-1), or 0 when shift = 0
        s2_shift = Signal(unsigned(n.shift_bits))
        s2_relu = Signal()

        s3_valid = Signal()
        s3_rounded = Signal(signed(n.product_bits + 1))
        s3_relu = Signal()

        lo, hi = int_range(n.act_bits)
        floor = Signal(signed(n.act_bits))  # saturation floor: 0 under ReLU
        m.d.comb += floor.eq(Mux(s3_relu, 0, lo))
        p = self.i.payload
        with m.If(advance):
            m.d.sync += [
                s1_valid.eq(self.i.valid),
                s1_sum.eq(p.acc + p.bias),
                s1_mult.eq(p.multiplier),
                s1_shift.eq(p.shift),
                s1_relu.eq(p.relu),
                s2_valid.eq(s1_valid),
                s2_product.eq(s1_sum * s1_mult),
                s2_half.eq((Const(1, 1) << s1_shift) >> 1),  # 0 when shift = 0
                s2_shift.eq(s1_shift),
                s2_relu.eq(s1_relu),
                s3_valid.eq(s2_valid),
                s3_rounded.eq((s2_product + s2_half) >> s2_shift),
                s3_relu.eq(s2_relu),
                self.o.valid.eq(s3_valid),
                self.o.payload.eq(Mux(s3_rounded > hi, hi, Mux(s3_rounded < floor, floor, s3_rounded))),
            ]
        return m
