"""A signed product wider than one DSP: the low slices on a `Multiplier`, the high ones in logic.

The motion unit multiplies a Jacobian entry (s20) by g − kp_d (s17), and a mask
(u8) by a motion (s22): wider than ECP5's 18 × 18 and iCE40's 16 × 16. An
operand wider than the DSP's L bits is cut into its low L − 1 bits (unsigned)
and the rest (a few bits, signed), and

    a·b = a_lo·b_lo + 2^wb·(a_lo·b_hi) + 2^wa·(a_hi·b)

The first product runs on the DSP (`low`); the others have a narrow factor, so
they are shift-and-add in logic (`high`, weight included: a·b = low + high).
Their low min(wa, wb) bits are zero, and the user adds the two parts in an
adder of its own, split where it suits it (a wide adder here would cost a stage).
The twin takes ECP5's widths, so simulation runs the ECP5 form.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rtl.dsp import MAX_OPERAND_BITS, Multiplier, platform_target


def operand_bits(target: str) -> int:
    """Widest signed operand of `target`'s DSP (the twin: ECP5's)."""
    return MAX_OPERAND_BITS.get(target, MAX_OPERAND_BITS["ecp5"])


def _dsp_bits(shape: object) -> int:
    """Signed bits an operand of `shape` takes on the DSP (an unsigned one, one more)."""
    return shape.width + (not shape.signed)


def low_bits(shape: object, target: str) -> int | None:
    """Bits of the operand's low slice when it must be cut for `target`'s DSP, else None."""
    limit = operand_bits(target)
    return limit - 1 if _dsp_bits(shape) > limit else None


class SlicedProduct(wiring.Component):
    """`low` + `high` = a × b, LATENCY edges after a and b are presented; no enable."""

    #: The DSP's input and output registers, and the landing register after it;
    #: the logic's adder tree takes as many levels.
    LATENCY = Multiplier.LATENCY + 1

    def __init__(self, a_shape: object, b_shape: object, *, target: str | None = None) -> None:
        self.a_shape, self.b_shape, self.target = a_shape, b_shape, target
        #: Bits of the exact product; both parts are given at this width (they wrap
        #: alike, so their sum is exact).
        self.width = a_shape.width + b_shape.width + 1
        super().__init__(
            {
                "a": In(a_shape),
                "b": In(b_shape),
                "low": Out(signed(self.width)),
                "high": Out(signed(self.width)),
            }
        )

    def zero_bits(self, platform: object) -> int:
        """Low bits of `high` that are always zero on the platform's target."""
        target = platform_target(platform, self.target)
        weights = [w for w in (low_bits(self.a_shape, target), low_bits(self.b_shape, target)) if w]
        return min(weights, default=self.width)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        target = platform_target(platform, self.target)
        wa, wb = low_bits(self.a_shape, target), low_bits(self.b_shape, target)
        a_lo = self.a if wa is None else self.a[:wa]
        b_lo = self.b if wb is None else self.b[:wb]
        width = self.width

        dsp = Multiplier(_dsp_bits(a_lo.shape()), _dsp_bits(b_lo.shape()), target=target)
        m.submodules.dsp = dsp
        low = Signal(signed(width), name="low_landed")
        m.d.comb += [dsp.a.eq(a_lo), dsp.b.eq(b_lo), self.low.eq(low)]
        m.d.sync += low.eq(dsp.p)

        # terms of the logic's part: (value, selecting bit, negative)
        terms: list[tuple[Value, Value, bool]] = []
        if wb is not None:
            terms += _shifted_copies(a_lo, self.b[wb:], self.b_shape.signed, wb)
        if wa is not None:
            terms += _shifted_copies(self.b, self.a[wa:], self.a_shape.signed, wa)
        m.d.comb += self.high.eq(_adder_tree(m, terms, width, self.LATENCY))
        return m


def _shifted_copies(
    value: Value, selector: Value, signed_selector: bool, weight: int
) -> list[tuple[Value, Value, bool]]:
    """value × selector × 2^weight as terms value·2^(weight + t), one per bit t of the
    selector (the high slice of an operand; its top bit negative if that is signed)."""
    top = len(selector) - 1
    return [
        (value << (weight + t), selector[t], signed_selector and t == top)
        for t in range(len(selector))
    ]


def _adder_tree(
    m: Module, terms: list[tuple[Value, Value, bool]], width: int, stages: int
) -> Signal:
    """Σ ± (bit ? value : 0) through `stages` registers: the first level selects the
    terms and adds them in pairs (a negative one subtracted), later levels add pairs,
    and spare stages just register."""
    positive = [Mux(bit, value, 0) for value, bit, negative in terms if not negative]
    negative = [Mux(bit, value, 0) for value, bit, negative in terms if negative]
    first: list[Value] = []
    while positive or negative:
        a = positive.pop(0) if positive else 0
        if negative:
            first.append(a - negative.pop(0))
        else:
            first.append(a + positive.pop(0) if positive else a)
    level: list[Value] = first or [Value.cast(0)]
    for stage in range(stages):
        regs = []
        for k, value in enumerate(level):
            reg = Signal(signed(width), name=f"high_l{stage}_{k}")
            m.d.sync += reg.eq(value)
            regs.append(reg)
        level = [sum(regs[k : k + 2]) for k in range(0, len(regs), 2)]
    if len(regs) != 1:
        raise ValueError(f"{len(terms)} terms need more than {stages} adder levels")
    return regs[0]
