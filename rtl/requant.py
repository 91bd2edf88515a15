"""Output (requantize) unit: int32 accumulator + bias → int8 activation.

The rule is `model.fixed.requantize` (docs/numerics.md, "Requantize"); this is
its pipelined hardware form. Per-channel multiplier and shift travel with each
element, so the unit is a pure stream function: the convolution engine feeds
them from its per-channel parameter memory, and tests drive random vectors.

The hardware evaluates the same function in an order that keeps every stage
short (both identities are proved in docs/numerics.md and property-tested
against the reference in tests/test_fixed.py):

* rounding: round_shift(p, s) = ((2p >> s) + 1) >> 1, so the wide "+ half"
  adder disappears and the +1 happens on a narrow value;
* saturation: clamping t = 2p >> s to [2·lo, 2·hi] (or [-1, 2·hi] under ReLU)
  before the final halving gives exactly saturate(round_shift(p, s)).

Pipeline (one element per cycle; every stage holds when the output is stalled;
with `free_running` the products take two registers, see the class)::

    i ─► [1] s = acc + bias
         [2] partial products of s × multiplier, 16-bit slices of s (one DSP each)
         [3] p = Σ partial << 16k
         [4] (2p) >> (shift & ~7)               arithmetic, in two short mux trees
         [5] t = … >> (shift & 7)
         [6] compare t with the clamp bounds [floor, 2·hi]   floor = 2·lo, or -1 under ReLU
         [7] t = clamp(t, floor, 2·hi),  y = (t + 1) >> 1  ─► o
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.fixed import int_range
from rtl.dsp import MAX_OPERAND_BITS, Multiplier, platform_target

if TYPE_CHECKING:
    from grace.params import NumericParams

#: Width of the slices of (acc + bias) multiplied separately: one 16×16 DSP
#: (iCE40 SB_MAC16) or one 18×18 (ECP5 MULT18X18D) each.
SLICE_BITS = 16


def requant_input_layout(numeric: NumericParams, user_bits: int = 0) -> data.StructLayout:
    """One element for the output unit: the accumulator and its channel's constants.

    `user_bits` > 0 adds a `user` field that travels unchanged to the output
    (the convolution engine tags elements with their lane and end-of-tile flag).
    """
    fields: dict[str, object] = {
        "acc": signed(numeric.acc_bits),
        "bias": signed(numeric.bias_bits),
        "multiplier": unsigned(numeric.mult_bits),
        "shift": unsigned(numeric.shift_bits),
        "relu": unsigned(1),
    }
    if user_bits:
        fields["user"] = unsigned(user_bits)
    return data.StructLayout(fields)


def requant_output_shape(numeric: NumericParams, user_bits: int = 0) -> object:
    """signed(act_bits), or a struct {value, user} when a sideband travels along."""
    if not user_bits:
        return signed(numeric.act_bits)
    return data.StructLayout({"value": signed(numeric.act_bits), "user": unsigned(user_bits)})


#: A slice this narrow (the sign bit of a 33-bit sum, say) is multiplied in logic,
#: not on a DSP of its own.
_FABRIC_SLICE_BITS = 2


class Requantizer(wiring.Component):
    """Stream in `requant_input_layout`, stream out signed act_bits activations (+ user).

    With `free_running`, the unit never stalls: `i.ready` is always high and the
    consumer must keep `o.ready` high (the conv engine reserves room for every
    element before it enters). That lets the partial products run on `Multiplier`
    with its registers inside the DSP, which has no enable (on ECP5, a
    MULT18X18D between fabric registers took 3.9 ns and set a build's clock), at
    one more cycle of latency. iCE40 keeps the inferred products (one more fabric
    register), which ``synth_ice40 -dsp`` already packs with their registers.
    """

    #: Clock edges from an input transfer to the transfer of its output, without stalls.
    LATENCY = 7
    #: The same with `free_running` (the products take two registers).
    FREE_RUNNING_LATENCY = 8

    def __init__(
        self,
        numeric: NumericParams,
        user_bits: int = 0,
        *,
        free_running: bool = False,
        dsp_target: str | None = None,
    ) -> None:
        self.numeric = numeric
        self.user_bits = user_bits
        self.free_running = free_running
        self.dsp_target = dsp_target
        #: This instance's latency: LATENCY, or FREE_RUNNING_LATENCY.
        self.latency = self.FREE_RUNNING_LATENCY if free_running else self.LATENCY
        super().__init__(
            {
                "i": In(stream.Signature(requant_input_layout(numeric, user_bits))),
                "o": Out(stream.Signature(requant_output_shape(numeric, user_bits))),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        n = self.numeric
        lo, hi = int_range(n.act_bits)

        # Every stage moves when the output register is empty or being read
        # (always, when free-running).
        advance = Signal()
        ready = 1 if self.free_running else ~self.o.valid | self.o.ready
        m.d.comb += [advance.eq(ready), self.i.ready.eq(advance)]
        extra = self.latency - self.LATENCY  # the products' second register

        def stage(name: str, shape: object, value: object) -> Signal:
            reg = Signal(shape, name=name)
            with m.If(advance):
                m.d.sync += reg.eq(value)
            return reg

        def carry(name: str, value: Signal, depth: int) -> list[Signal]:
            """`value` delayed by 1..depth stages (index k = after stage k+1)."""
            regs = []
            for k in range(depth):
                value = stage(f"{name}_{k + 1}", value.shape(), value)
                regs.append(value)
            return regs

        p = self.i.payload
        valid = carry("valid", self.i.valid, self.latency - 1)
        mult = carry("mult", p.multiplier, 1)[0]
        shift_4, shift_5 = carry("shift", p.shift, 4 + extra)[-2:]
        relu = carry("relu", p.relu, 5 + extra)[-1]
        user = carry("user", p.user, self.latency - 1)[-1] if self.user_bits else None
        target = self.dsp_target if self.dsp_target is not None else platform_target(platform)

        # [1] exact sum
        total = stage("sum", signed(n.sum_bits), p.acc + p.bias)

        # [2] partial products; the top slice carries the sign
        partials = []
        for k, low in enumerate(range(0, n.sum_bits, SLICE_BITS)):
            piece = total[low : low + SLICE_BITS]
            piece = piece.as_signed() if low + SLICE_BITS >= n.sum_bits else piece.as_unsigned()
            shape = signed(len(piece) + n.mult_bits + 1)
            # operands as the DSP takes them: signed, an unsigned one a bit wider
            a_bits = len(piece) + (not piece.shape().signed)
            b_bits = n.mult_bits + 1
            limit = MAX_OPERAND_BITS.get(target)  # None: the twin takes any width
            fits = limit is None or max(a_bits, b_bits) <= limit
            if not self.free_running:
                partial = stage(f"partial{k}", shape, piece * mult)
            elif target != "ice40" and fits and len(piece) > _FABRIC_SLICE_BITS:
                dsp = Multiplier(a_bits, b_bits, target=target)
                m.submodules[f"partial{k}_dsp"] = dsp
                partial = Signal(shape, name=f"partial{k}")
                m.d.comb += [dsp.a.eq(piece), dsp.b.eq(mult), partial.eq(dsp.p)]
            else:
                product = stage(f"partial{k}_product", shape, piece * mult)
                partial = stage(f"partial{k}", shape, product)
            partials.append((low, partial))

        # [3] full product
        product = stage(
            "product", signed(n.product_bits), sum(part << low for low, part in partials)
        )

        # [4] doubled, shifted by the multiple-of-8 part of the shift...
        doubled = Signal(signed(n.product_bits + 1))
        m.d.comb += doubled.eq(product << 1)
        coarse = stage(
            "coarse", signed(n.product_bits + 1), doubled >> Cat(Const(0, 3), shift_4[3:])
        )
        # [5] ...then by the rest: t = floor(2p / 2^shift), in two short mux trees
        shifted = stage("shifted", signed(n.product_bits + 1), coarse >> shift_5[:3])

        # [6] compare with the clamp bounds; the wide part is only "does t fit in
        #     act_bits + 2 bits" (all upper bits equal), so no wide comparator
        narrow_bits = n.act_bits + 2
        upper = shifted[narrow_bits - 1 :]
        fits = ~upper.any() | upper.all()
        low_part = shifted[:narrow_bits].as_signed()
        floor = Mux(relu, -1, 2 * lo)
        over = stage("over", unsigned(1), Mux(fits, low_part > 2 * hi, ~shifted[-1]))
        under = stage("under", unsigned(1), Mux(fits, low_part < floor, shifted[-1]))
        floor = stage("floor", signed(narrow_bits), floor)
        narrow = stage("narrow", signed(narrow_bits), low_part)

        # [7] clamp so that halving lands in [lo, hi] (or [0, hi] under ReLU), round half up
        clamped = Mux(over, 2 * hi, Mux(under, floor, narrow))
        value = self.o.payload.value if self.user_bits else self.o.payload
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(valid[-1]), value.eq((clamped + 1) >> 1)]
            if user is not None:
                m.d.sync += self.o.payload.user.eq(user)
        return m
