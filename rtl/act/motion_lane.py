"""One coordinate (x or y) of the motion unit: its products, its row terms, its flow sums.

For coordinate c of motion k at pixel (i, j), with rx = g[j] − kp_d,x and
ry = g[i] − kp_d,y (docs/activation_engine.md §2.4, the separable form):

    m = round_shift(J[c][0]·rx + J[c][1]·ry, 14) + kp_s,c
      = (J[c][0]·rx + R_k) >> 14,   R_k = J[c][1]·ry + kp_s,c·2^14 + 2^13

A row beat computes R_k once per row and keeps it in a small memory (one entry
per motion); a pixel beat adds it to its own product, and the one rounding is a
plain shift. The same adder serves both: a row beat's addend is kp_s,c·2^14 +
2^13 (a concatenation), a pixel beat's is R_k. FLOW then sums mask_k·m over the
pixel's motions, in two parts (`SlicedProduct`'s low and high), and takes the
first `flow_pre_shift` bits of the rounding shift; MOTION passes m. Free
running: a beat's stages follow it edge by edge, nothing stalls.

    i ─► rel × J (SlicedProduct) ────────────────┐
         row-term read ─► addend (R_k or kp_s·2^14 + 2^13)
                                                  ▼
         T = product + addend (two stages) ─► row beat: R_k = T
                                           └► pixel: m = T >> 14 ─► mask × m ─► Σ ─► value
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rtl.act.keypoints import JAC_BITS, KP_BITS
from rtl.act.motion_layouts import (
    MASK_BITS,
    MOTION_BITS,
    REL_BITS,
    ROUND_HALF,
    TERM_BITS,
    VALUE_BITS,
    count_bits,
    flow_pre_shift,
)
from rtl.act.motion_product import SlicedProduct
from rtl.dsp import platform_target
from rtl.pipeline import delay
from rtl.row_queue import NO_RW_CHECK

if TYPE_CHECKING:
    from defs.params import GraceParams

#: The rounding shift of a motion: JAC_FRAC_BITS.
MOTION_SHIFT = ROUND_HALF.bit_length()


def small_memory(
    m: Module, name: str, width: int, depth: int, *, big_die: bool, granularity: int | None = None
) -> tuple[object, object]:
    """A few per-keypoint words, read a cycle after the address (write and read port).

    LUT RAM behind an address register on big dies (a transparent read, as Yosys
    maps it there), block RAM on iCE40 (no read-write collision logic: the users
    never read an address in the cycle it is written, as `rtl.row_queue` states).
    """
    memory = Memory(
        shape=unsigned(width), depth=depth, init=[], attrs={} if big_die else {NO_RW_CHECK: 1}
    )
    m.submodules[name] = memory
    write = memory.write_port(granularity=granularity)
    read = memory.read_port(transparent_for=(write,) if big_die else ())
    return write, read


def lane_input_layout(p: GraceParams) -> data.StructLayout:
    """What a lane takes from the unit per beat: the shared factors and its own constants."""
    return data.StructLayout(
        {
            "work": unsigned(1),  # the beat computes (idle slots of a row phase do not)
            "row": unsigned(1),
            "k": unsigned(count_bits(p)),
            "first": unsigned(1),
            "flow": unsigned(1),
            "mask": unsigned(MASK_BITS),
            "rel": signed(REL_BITS),  # g − kp_d on the beat's axis: y for a row beat, else x
            "jac": signed(JAC_BITS),  # J[c][1] for a row beat, else J[c][0]
            "source": signed(KP_BITS),  # kp_s,c
        }
    )


class MotionLane(wiring.Component):
    """A beat's factors in, the coordinate's value for the output path out (LATENCY later)."""

    #: Edges from the input to the row-term read address (the beat's k, registered).
    ROW_READ_AT = 1
    #: Edges of the two adder stages: low parts and carry, then the high part.
    SUM_LATENCY = 2
    #: Edges from the input to T (the row term, or the motion before its shift).
    TERM_AT = SlicedProduct.LATENCY + SUM_LATENCY
    #: Issue slots between a row beat and the first beat that may read its term: the
    #: term is written at the edge after TERM_AT, and read from ROW_READ_AT.
    ROW_LEAD = TERM_AT + 1 - ROW_READ_AT
    #: Edges of the flow sums, and of the choice between them and the motion.
    ACCUMULATE_LATENCY = 1
    SELECT_LATENCY = 1
    #: Edges from the input to `value`.
    LATENCY = TERM_AT + SlicedProduct.LATENCY + ACCUMULATE_LATENCY + SELECT_LATENCY

    def __init__(self, params: GraceParams, *, dsp_target: str | None = None) -> None:
        self.params = params
        self.dsp_target = dsp_target
        super().__init__({"i": In(lane_input_layout(params)), "value": Out(signed(VALUE_BITS))})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p, i, target = self.params, self.i, self.dsp_target
        big_die = platform_target(platform, target) != "ice40"
        motions = p.act.max_keypoints + 1

        def later(value: Value, edges: int, name: str) -> Value:
            """`value` `edges` edges later, its shape (and sign) kept."""
            now = Signal(Value.cast(value).shape(), name=f"{name}_d0")
            m.d.comb += now.eq(value)
            return delay(m, now, edges, name)

        # [0..3] the beat's product, rel × J
        m.submodules.product = product = SlicedProduct(
            signed(REL_BITS), signed(JAC_BITS), target=target
        )
        m.d.comb += [product.a.eq(i.rel), product.b.eq(i.jac)]

        # [1..3] the addend: the row term of motion k, or kp_s·2^14 + 2^13 for a row beat
        write, read = small_memory(m, "row_terms", TERM_BITS, motions, big_die=big_die)
        m.d.comb += read.addr.eq(later(i.k, self.ROW_READ_AT, "read_k"))
        start = Cat(Const(ROUND_HALF, MOTION_SHIFT), i.source).as_signed()
        row_beat = later(i.row, self.ROW_READ_AT + 1, "addend_row")
        addend = Signal(signed(TERM_BITS))
        m.d.sync += addend.eq(
            Mux(row_beat, later(start, self.ROW_READ_AT + 1, "start"), read.data.as_signed())
        )
        assert self.ROW_READ_AT + 2 == SlicedProduct.LATENCY  # the addend meets the product

        # [3..5] T = low + high + addend, split where `high`'s zero bits end: the low
        # parts and their carry, and the high parts of `high` and the addend, first
        w = product.zero_bits(platform)
        low_sum = Signal(w + 1)
        mid_sum = Signal(signed(TERM_BITS - w + 1))
        low_top = Signal(signed(TERM_BITS - w))
        m.d.sync += [
            low_sum.eq(product.low[:w] + addend[:w]),
            mid_sum.eq(product.high[w:].as_signed() + addend[w:].as_signed()),
            low_top.eq(product.low[w:].as_signed()),
        ]
        term = Signal(signed(TERM_BITS))
        m.d.sync += term.eq(Cat(low_sum[:w], low_top + mid_sum + low_sum[w]))

        # [5] a row beat keeps its term for the row's pixels
        m.d.comb += [
            write.addr.eq(later(i.k, self.TERM_AT, "write_k")),
            write.data.eq(term),
            write.en.eq(later(i.work & i.row, self.TERM_AT, "write_en")),
        ]
        motion = term[MOTION_SHIFT:].as_signed()
        assert len(motion) == MOTION_BITS

        # [5..8] FLOW: mask × m in two parts, summed over the pixel's motions
        m.submodules.weighted = weighted = SlicedProduct(
            unsigned(MASK_BITS), signed(MOTION_BITS), target=target
        )
        m.d.comb += [
            weighted.a.eq(later(i.mask, self.TERM_AT, "mask")),
            weighted.b.eq(motion),
        ]
        s = weighted.zero_bits(platform)
        terms_bits = motions.bit_length()
        low_acc = Signal(MASK_BITS + s + terms_bits)
        high_acc = Signal(signed(MASK_BITS + MOTION_BITS - s + 1 + terms_bits))
        at_sum = self.TERM_AT + SlicedProduct.LATENCY
        adds = later(i.work & ~i.row, at_sum, "sum_en")
        first = later(i.first, at_sum, "sum_first")
        with m.If(adds):
            m.d.sync += [
                low_acc.eq(Mux(first, 0, low_acc) + weighted.low[: len(low_acc)]),
                high_acc.eq(Mux(first, 0, high_acc) + weighted.high[s:].as_signed()),
            ]

        # [9] the value: Σ >> a (the sums' parts joined), or the motion
        a = flow_pre_shift(p)
        assert a <= s, f"the flow's pre-shift {a} must fall within `low` ({s} bits)"
        flow_value = Cat(low_acc[a:s], high_acc + low_acc[s:]).as_signed()
        at_select = at_sum + self.ACCUMULATE_LATENCY
        flow = later(i.flow, at_select, "select_flow")
        m.d.sync += self.value.eq(
            Mux(flow, flow_value, later(motion, at_select - self.TERM_AT, "motion"))
        )
        return m
