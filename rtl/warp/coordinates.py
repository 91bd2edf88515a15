"""One axis of a warp's sampling position: flow coordinate → tap row/column, weight, inside.

L2 (`model.fixed_ops.normalized_to_pixels`, `bilinear_taps`) maps a coordinate c
with `COORD_FRAC_BITS` (14) fraction bits on a map of S pixels to
p = round_shift((c + 2^14)·(S − 1), 7), a pixel position with 8 fraction bits,
then takes x0 = p >> 8 and f = p & 255. This unit computes the same integers,
with c + 2^14 saturated to 17 bits first: exact for every S ≤ 4095, because
beyond that bound every tap is outside the map or has weight 0
(docs/warp_engine.md §1.9). The product runs as (c' >> 1)·(S − 1) on a 16-bit
DSP operand, and the dropped bit comes back as an add: one form for both dies.

For the banked buffer (bank = row parity, column parity) it gives what the
banks need instead of x0 itself: `half` = x0 >> 1 (the odd bank's row or
column), `parity` = x0 & 1, `weight` = the odd bank's share written as
t = parity ? 256 − f : f, and `inside[k]`, whether the tap read from parity
bank k lies in the map (0 ≤ tap < S).
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.limits import DIM_BITS
from model.fixed_motion import COORD_FRAC_BITS
from model.fixed_ops import PIXEL_FRAC_BITS
from rtl.dsp import Multiplier
from rtl.pipeline import delay
from rtl.warp.layouts import FLOW_BITS

#: Width of c + 2^Fc after saturation (exact for every map size: see above).
SATURATED_BITS = 17
#: Right shift from (c + 2^Fc)·(S − 1) to the pixel position's 8 fraction bits.
_ROUND_SHIFT = COORD_FRAC_BITS + 1 - PIXEL_FRAC_BITS
#: Width of the rounded position plus its rounding constant, before the shift.
_POSITION_BITS = SATURATED_BITS + DIM_BITS + 1
#: Tap indices as they leave: x0 >> 1 for every S ≤ 4095 and saturated c.
HALF_BITS = _POSITION_BITS - _ROUND_SHIFT - PIXEL_FRAC_BITS


def axis_input_layout() -> data.StructLayout:
    return data.StructLayout({"coord": signed(FLOW_BITS), "size": unsigned(DIM_BITS)})


def axis_output_layout() -> data.StructLayout:
    return data.StructLayout(
        {
            "half": signed(HALF_BITS),  # x0 >> 1: the odd-parity bank's row (column)
            "parity": unsigned(1),  # x0 & 1: the even-parity bank's tap is one further
            "weight": unsigned(PIXEL_FRAC_BITS + 1),  # the odd-parity tap's share, 0..256
            "inside": unsigned(2),  # [k]: the tap in parity bank k lies in 0 .. S − 1
        }
    )


class AxisUnit(wiring.Component):
    """Coordinates in, one per cycle, never stalling; taps out LATENCY edges later."""

    #: Edges: saturate (1), the product (Multiplier.LATENCY), the position (1),
    #: the tap and its compares with the map's ends (1), bank taps, weight and
    #: inside flags (1).
    LATENCY = 4 + Multiplier.LATENCY

    def __init__(self, *, dsp_target: str | None = None) -> None:
        self.dsp_target = dsp_target
        super().__init__(
            {
                "i": In(stream.Signature(axis_input_layout(), always_ready=True)),
                "o": Out(stream.Signature(axis_output_layout(), always_ready=True)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        one = 1 << PIXEL_FRAC_BITS
        top = (1 << (SATURATED_BITS - 1)) - 1
        # K1: c' = saturate(c + 2^Fc) to SATURATED_BITS (an overflow test on the
        # sum's top bits, not compares: one carry chain), and S − 1
        shifted = Signal(signed(FLOW_BITS + 1))
        m.d.comb += shifted.eq(self.i.payload.coord + (1 << COORD_FRAC_BITS))
        high = shifted[SATURATED_BITS - 1 :]
        overflow = ~(high.all() | ~high.any())
        saturated = Signal(signed(SATURATED_BITS))
        scale = Signal(unsigned(DIM_BITS))  # S − 1 (S = 0 never comes: the command refuses it)
        m.d.sync += [
            saturated.eq(Mux(overflow, Mux(shifted[-1], -top - 1, top), shifted)),
            scale.eq(self.i.payload.size - 1),
        ]
        # K2, K3: (c' >> 1)·(S − 1) on a DSP; the dropped bit's (S − 1) and the
        # rounding constant travel beside it
        m.submodules.scale = product = Multiplier(
            SATURATED_BITS - 1, DIM_BITS + 1, target=self.dsp_target
        )
        m.d.comb += [product.a.eq(saturated >> 1), product.b.eq(scale)]
        rounding = 1 << (_ROUND_SHIFT - 1)
        addend = Signal(unsigned(DIM_BITS + 1))
        m.d.comb += addend.eq(Mux(saturated[0], scale + rounding, rounding))
        addend_late = delay(m, addend, product.LATENCY, "addend")
        scale_late = delay(m, scale, product.LATENCY + 1, "scale")
        # K4: the position plus its rounding constant
        position = Signal(signed(_POSITION_BITS))
        m.d.sync += position.eq((product.p << 1) + addend_late)
        # K5: x0 = position >> (shift + 8), f = the 8 bits below, and x0's place
        # against the map's ends (the compares alone: on iCE40 the compares and
        # the bank selection after them took a 20 ns cycle)
        x0 = Signal(signed(HALF_BITS + 1))
        fraction = Signal(unsigned(PIXEL_FRAC_BITS))
        from_first = Signal()  # x0 ≥ 0
        from_before = Signal()  # x0 ≥ −1
        to_last = Signal()  # x0 ≤ S − 1
        before_last = Signal()  # x0 < S − 1
        m.d.sync += [
            x0.eq(position >> (_ROUND_SHIFT + PIXEL_FRAC_BITS)),
            fraction.eq(position[_ROUND_SHIFT : _ROUND_SHIFT + PIXEL_FRAC_BITS]),
            from_first.eq(position >= 0),
            from_before.eq(position >= -(1 << (_ROUND_SHIFT + PIXEL_FRAC_BITS))),
            to_last.eq((position >> (_ROUND_SHIFT + PIXEL_FRAC_BITS)) <= scale_late),
            before_last.eq((position >> (_ROUND_SHIFT + PIXEL_FRAC_BITS)) < scale_late),
        ]
        # K6: the odd bank's row (column), the weight, and each parity bank's tap
        # inside the map: bank 0 holds tap x0 when x0 is even, x0 + 1 when odd,
        # and bank 1 the other (0 ≤ tap ≤ S − 1)
        inside_x0 = from_first & to_last
        inside_next = from_before & before_last
        out = self.o.payload
        m.d.sync += [
            out.half.eq(x0 >> 1),
            out.parity.eq(x0[0]),
            out.weight.eq(Mux(x0[0], one - fraction, fraction)),
            out.inside.eq(Mux(x0[0], Cat(inside_next, inside_x0), Cat(inside_x0, inside_next))),
        ]
        m.d.comb += self.o.valid.eq(delay(m, self.i.valid, self.LATENCY, "valid"))
        return m
