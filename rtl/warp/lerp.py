"""Bilinear interpolation of one channel lane from its four bank reads.

L2 (`model.fixed_ops._warp_acc`) sums w·v over the four taps with weights
(256 − fx)(256 − fy) … fx·fy. Written in bank order instead of tap order,

    h_r = 256·b(r, even) + t_x·(b(r, odd) − b(r, even))     for row parity r = 0, 1
    acc = 256·h_even + t_y·(h_odd − h_even)

is the same integer (distributivity; `rtl.warp.coordinates` gives t = the odd
bank's share), with three products per lane and none for the weights, and no
crossbar between the banks and the lanes (docs/warp_engine.md §1.9). The last
product runs as t_y·(e >> 1), on a 16-bit DSP operand, and the dropped bit
comes back as an add.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from model.fixed_ops import PIXEL_FRAC_BITS
from rtl.dsp import Multiplier
from rtl.pipeline import delay

#: The interpolated sum: a convex combination of int8 values × 2^16 (s24).
ACC_BITS = 24


class Lerp(wiring.Component):
    """`b[row parity][column parity]` and the two weights in; `acc` LATENCY edges later."""

    #: Edges: column differences (1), t_x·d (Multiplier.LATENCY), the rows (1),
    #: their difference (1), t_y·(e >> 1) (Multiplier.LATENCY), the sum (1).
    LATENCY = 4 + 2 * Multiplier.LATENCY

    def __init__(self, act_bits: int = 8, *, dsp_target: str | None = None) -> None:
        self.act_bits, self.dsp_target = act_bits, dsp_target
        weight = unsigned(PIXEL_FRAC_BITS + 1)
        super().__init__(
            {
                **{f"b{r}{c}": In(signed(act_bits)) for r in (0, 1) for c in (0, 1)},
                "weight_x": In(weight),
                "weight_y": In(weight),
                "acc": Out(signed(ACC_BITS)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        frac, act = PIXEL_FRAC_BITS, self.act_bits
        mul = Multiplier.LATENCY
        # L1: d_r = b(r, odd) − b(r, even); b(r, even) and the weights wait beside
        rows = []
        for r in (0, 1):
            diff, even = Signal(signed(act + 1), name=f"d{r}"), Signal(signed(act), name=f"e{r}")
            m.d.sync += [
                diff.eq(getattr(self, f"b{r}1") - getattr(self, f"b{r}0")),
                even.eq(getattr(self, f"b{r}0")),
            ]
            # L2, L3: t_x·d_r
            product = Multiplier(frac + 2, act + 1, target=self.dsp_target)
            m.submodules[f"column{r}"] = product
            weight_x = Signal(signed(frac + 2), name=f"tx{r}")
            m.d.comb += [
                weight_x.eq(delay(m, self.weight_x, 1, f"tx{r}")),
                product.a.eq(weight_x),
                product.b.eq(diff),
            ]
            # L4: h_r = 256·b(r, even) + t_x·d_r
            h = Signal(signed(act + frac + 1), name=f"h{r}")
            m.d.sync += h.eq((delay(m, even, mul, f"even{r}") << frac) + product.p)
            rows.append(h)
        # L5: e = h_odd − h_even
        e = Signal(signed(act + frac + 2))
        h_even = Signal.like(rows[0], name="h_even")
        m.d.sync += [e.eq(rows[1] - rows[0]), h_even.eq(rows[0])]
        weight_y = Signal(signed(frac + 2))
        m.d.comb += weight_y.eq(delay(m, self.weight_y, 1 + mul + 2, "ty"))
        # L6, L7: t_y·(e >> 1) (|e| ≤ 255·256: e >> 1 fits 16 bits); beside it,
        # 256·h_even + (e & 1)·t_y
        m.submodules.row = product = Multiplier(frac + 2, act + frac, target=self.dsp_target)
        m.d.comb += [product.a.eq(weight_y), product.b.eq(e >> 1)]
        rest = Signal(signed(ACC_BITS))
        m.d.comb += rest.eq((h_even << frac) + Mux(e[0], weight_y, 0))
        # L8: acc
        m.d.sync += self.acc.eq((product.p << 1) + delay(m, rest, mul, "rest"))
        return m
