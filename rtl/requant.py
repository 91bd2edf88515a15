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
with `free_running` the products take three registers, see the class)::

    i ─► [1] s = acc + bias
         [2] partial products of s × multiplier, 16-bit slices of s (one DSP each)
         [3] u = Σ_{k≥1} partial_k << 16(k-1)   (the lowest partial waits)
         [4] p = partial_0 + (u << 16)
         [5] (2p) >> (shift & ~7)               arithmetic, in two short mux trees
         [6] t = … >> (shift & 7)
         [7] compare t with the clamp bounds [floor, 2·hi]   floor = 2·lo, or -1 under ReLU
         [8] t = clamp(t, floor, 2·hi),  y = (t + 1) >> 1  ─► o
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.fixed import int_range
from rtl.dsp import MAX_OPERAND_BITS, Multiplier, platform_target

if TYPE_CHECKING:
    from defs.params import NumericParams

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


#: A slice this narrow (the sign bit of a 33-bit sum, say), or a multiplier this
#: narrow (a fixed ×1, as the flow's rounding uses), is multiplied in logic, not
#: on a DSP of its own.
_FABRIC_SLICE_BITS = 2


class Requantizer(wiring.Component):
    """Stream in `requant_input_layout`, stream out signed act_bits activations (+ user).

    With `free_running`, the unit never stalls: `i.ready` is always high and the
    consumer must keep `o.ready` high (the conv engine reserves room for every
    element before it enters). That lets the partial products run on `Multiplier`
    with its registers inside the DSP, which has no enable (on ECP5, a
    MULT18X18D between fabric registers took 3.9 ns and set a build's clock), at
    two more cycles of latency (the product then lands in a fabric register).
    iCE40 keeps the inferred products (the MAC16's output register, which
    ``synth_ice40 -dsp`` packs, and one fabric register), and its result waits
    one more edge at the end, so every target has the same latency.
    """

    #: Clock edges from an input transfer to the transfer of its output, without stalls.
    LATENCY = 8
    #: The same with `free_running` (the products take three registers).
    FREE_RUNNING_LATENCY = 10

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
        target = platform_target(platform, self.dsp_target)
        # Registers the partial products take: one, or free-running two in the DSP
        # and a fabric register to land in. On iCE40 (inferred products) the
        # MAC16's output register and one fabric register, and the result waits
        # one more edge at the end (`tail`), where it is narrow.
        product_registers = (2 if target == "ice40" else 3) if self.free_running else 1
        extra = product_registers - 1
        tail = self.latency - self.LATENCY - extra

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
        valid = carry("valid", self.i.valid, self.latency - 1 - tail)
        mult = carry("mult", p.multiplier, 1)[0]
        shift_5, shift_6 = carry("shift", p.shift, 5 + extra)[-2:]
        relu = carry("relu", p.relu, 6 + extra)[-1]
        user = carry("user", p.user, self.latency - 1 - tail)[-1] if self.user_bits else None

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
            on_dsp = min(len(piece), n.mult_bits) > _FABRIC_SLICE_BITS
            if self.free_running and target != "ice40" and fits and on_dsp:
                dsp = Multiplier(a_bits, b_bits, target=target)
                m.submodules[f"partial{k}_dsp"] = dsp
                m.d.comb += [dsp.a.eq(piece), dsp.b.eq(mult)]
                # the product lands in a fabric register before the adders, which
                # may sit far from the DSP (4.5 ns on ECP5 from the requantizer's
                # DSP to its adder in one route)
                partial = stage(f"partial{k}", shape, dsp.p)
            else:
                product = piece * mult
                for j in range(product_registers - 1):
                    product = stage(f"partial{k}_product{j}", shape, product)
                partial = stage(f"partial{k}", shape, product)
            partials.append((low, partial))

        # [3] the upper partials summed, the lowest one waiting beside them; then
        #     [4] the full product (one short carry chain per stage: a 49-bit sum of
        #     three partials in one stage took 8.4 ns on ECP5)
        (_, lowest), upper_parts = partials[0], partials[1:]
        upper_shape = signed(n.product_bits - SLICE_BITS)
        upper_sum = stage(
            "upper", upper_shape, sum(part << (low - SLICE_BITS) for low, part in upper_parts)
        )
        lowest = stage("lowest", lowest.shape(), lowest)
        product = stage("product", signed(n.product_bits), lowest + (upper_sum << SLICE_BITS))

        # [5] doubled, shifted by the multiple-of-8 part of the shift...
        doubled = Signal(signed(n.product_bits + 1))
        m.d.comb += doubled.eq(product << 1)
        coarse = stage(
            "coarse", signed(n.product_bits + 1), doubled >> Cat(Const(0, 3), shift_5[3:])
        )
        # [6] ...then by the rest: t = floor(2p / 2^shift), in two short mux trees
        shifted = stage("shifted", signed(n.product_bits + 1), coarse >> shift_6[:3])

        # [7] compare with the clamp bounds; the wide part is only "does t fit in
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

        # [8] clamp so that halving lands in [lo, hi] (or [0, hi] under ReLU), round half up
        clamped = Mux(over, 2 * hi, Mux(under, floor, narrow))
        result_valid = stage("result_valid", unsigned(1), valid[-1])
        result = stage("result", signed(n.act_bits), (clamped + 1) >> 1)
        result_user = stage("result_user", user.shape(), user) if user is not None else None
        for k in range(tail):
            result_valid = stage(f"result_valid_tail{k}", unsigned(1), result_valid)
            result = stage(f"result_tail{k}", signed(n.act_bits), result)
            if result_user is not None:
                result_user = stage(f"result_user_tail{k}", user.shape(), result_user)
        value = self.o.payload.value if self.user_bits else self.o.payload
        m.d.comb += [self.o.valid.eq(result_valid), value.eq(result)]
        if result_user is not None:
            m.d.comb += self.o.payload.user.eq(result_user)
        return m
