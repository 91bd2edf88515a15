"""The conv engine's MAC array: rows × cols int8 multipliers, adder trees, accumulators.

Every beat, row r forms Σ_c x[c]·w[r][c] (one DSP per product, then a
registered adder tree) and adds it to its accumulator; a pixel's `first` beat
restarts the sums, and after its `last` the finished vector of `rows` sums goes
into the row queues, where the output unit takes it (`pop`). The array never
stalls: whoever issues beats has reserved a queue slot for every pixel.

One queue per row, each by its row's accumulators, so no write address or
data bus spans the die (one 540-bit FIFO's write address took 8.8 ns to reach
its distributed-RAM slices on ECP5). They move in lockstep; each gets its own
copy of the push and pop enables (rtl/row_queue.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from rtl.dsp import Multiplier, platform_target
from rtl.pipeline import adder_tree, delay, tree_levels
from rtl.replica import replica
from rtl.row_queue import RowQueue

if TYPE_CHECKING:
    from collections.abc import Mapping

    from defs.params import GraceParams

#: Low bits of the two-step accumulator add (a short carry chain at full clock).
ACC_SPLIT = 16

#: Register levels between the buffers and the DSPs, and rows per first-level copy.
OPERAND_STAGES = 2
OPERAND_GROUP = 4


def operand_layout(p: GraceParams) -> data.StructLayout:
    """One beat's operands as the buffers return them, and its place in the pixel."""
    n, rows, cols = p.numeric, p.array.rows, p.array.cols
    return data.StructLayout(
        {
            "x": unsigned(cols * n.act_bits),  # `cols` input channels of the tapped pixel
            "w": unsigned(rows * cols * n.weight_bits),  # row r's `cols` weights at r·cols
            "first": unsigned(1),
            "last": unsigned(1),
        }
    )


def operand_groups(rows: int) -> int:
    """First-level operand copies: one per OPERAND_GROUP rows."""
    return -(-rows // OPERAND_GROUP)


class MacArray(wiring.Component):
    """Operands in (one beat per cycle), finished pixel vectors out through row queues.

    `finished` marks the edge after which a vector's sums are written; they show
    at `heads` FINISH_TO_HEAD edges after it. `pop` drops the vector at `heads`.
    """

    #: Edges from `operands` to the products: operand fan-out, then the DSP.
    OPERAND_LATENCY = OPERAND_STAGES + Multiplier.LATENCY
    #: Edges from the adder tree's sum to the finished vector in the row queues:
    #: the two-step accumulate (2) and the queue write (1).
    ACCUMULATE_LATENCY = 3
    #: Edges from `finished` to the vector readable at `heads`.
    FINISH_TO_HEAD = 2

    def __init__(
        self,
        params: GraceParams,
        *,
        dsp_target: str | None = None,
        mac_sites: Mapping[tuple[int, int], str] | None = None,
    ) -> None:
        self.params = params
        self.dsp_target = dsp_target
        self.mac_sites = mac_sites
        n, rows = params.numeric, params.array.rows
        super().__init__(
            {
                "operands": In(stream.Signature(operand_layout(params), always_ready=True)),
                "heads": Out(rows * n.acc_bits),  # row r's sum at r·acc_bits
                "finished": Out(1),
                "pop": In(1),
            }
        )

    @classmethod
    def latency(cls, cols: int) -> int:
        """Edges from a beat's operands to its pixel's vector in the row queues."""
        return cls.OPERAND_LATENCY + tree_levels(cols) + cls.ACCUMULATE_LATENCY

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.params
        rows, cols, n = p.array.rows, p.array.cols, p.numeric
        # iCE40: a 32-bit add fits its 50 MHz cycle (see `accumulator`)
        split = platform_target(platform, self.dsp_target) != "ice40"
        beat = self.operands.payload

        # operands fan out to the DSP rows through two register levels (replicas
        # per group of rows, then per row; rtl/replica.py): the DSPs span the die,
        # and one register cannot reach them all in a cycle
        x_groups = [replica(m, beat.x, f"x_group{g}") for g in range(operand_groups(rows))]
        row_sums = []
        for r in range(rows):
            x_row = replica(m, x_groups[r // OPERAND_GROUP], f"x_row{r}")
            w_words = beat.w[r * cols * n.weight_bits : (r + 1) * cols * n.weight_bits]
            w_row = delay(m, w_words, OPERAND_STAGES, f"w_row{r}")
            products = []
            for c in range(cols):
                site = self.mac_sites[(r, c)] if self.mac_sites is not None else None
                mac = Multiplier(n.act_bits, n.weight_bits, target=self.dsp_target, site=site)
                m.submodules[f"mac_{r}_{c}"] = mac
                wi = c * n.weight_bits
                m.d.comb += [
                    mac.a.eq(x_row[c * n.act_bits : (c + 1) * n.act_bits].as_signed()),
                    mac.b.eq(w_row[wi : wi + n.weight_bits].as_signed()),
                ]
                products.append(mac.p)
            row_sums.append(adder_tree(m, products, f"row{r}"))

        # the beat's flags reach the accumulators with its row sums
        to_tree = self.OPERAND_LATENCY + tree_levels(cols)
        valid_pre = delay(m, self.operands.valid, to_tree - 1, "valid")
        first_pre = delay(m, beat.first, to_tree - 1, "first")
        valid_all = delay(m, valid_pre, 1, "valid_all")
        last_t = delay(m, beat.last, to_tree, "last")
        acc = [
            accumulator(
                m,
                row_sums[r].as_signed(),
                # each row's accumulators get their own copy of the control flags
                # (512 enables on one net would not reach across the die in a cycle)
                valid=replica(m, valid_pre, f"acc{r}_valid"),
                first=replica(m, first_pre, f"acc{r}_first"),
                width=n.acc_bits,
                split=split,
                name=f"acc{r}",
            )
            for r in range(rows)
        ]
        finishing = delay(m, valid_all & last_t, 1, "finishing")
        m.d.comb += self.finished.eq(finishing)

        heads = []
        for r in range(rows):
            row_queue = RowQueue(n.acc_bits, p.buffers.accumulator_slots)
            m.submodules[f"accumulators{r}"] = row_queue
            m.d.comb += [
                row_queue.data.eq(acc[r]),
                row_queue.push.eq(replica(m, finishing, f"finished{r}")),
                row_queue.pop.eq(replica(m, self.pop, f"pop{r}")),
            ]
            heads.append(row_queue.head)
        m.d.comb += self.heads.eq(Cat(*heads))
        return m


def accumulator(
    m: Module,
    total: object,
    *,
    valid: Signal,
    first: Signal,
    width: int,
    split: bool,
    name: str,
) -> object:
    """Σ `total` over the beats of a pixel (`first` restarts it), two edges late.

    With `split`, the sum adds in two halves, the high half one edge later with
    the low half's carry, so no carry chain is longer than ACC_SPLIT bits (ECP5
    at 150 MHz). Without, one `width`-bit add and a plain register after it: on
    iCE40 a 32-bit chain fits a 50 MHz cycle, and the split's carry register was
    placed far from its chain (a 4–5.5 ns route that set the clock).
    """
    if not split:
        whole = Signal(width, name=f"{name}_whole")
        done = Signal(width, name=f"{name}_done")
        with m.If(valid):
            m.d.sync += whole.eq(Mux(first, 0, whole) + total)
        m.d.sync += done.eq(whole)
        return done
    high_bits = width - ACC_SPLIT
    valid_d = replica(m, valid, f"{name}_valid_d")
    first_d = replica(m, first, f"{name}_first_d")
    low = Signal(ACC_SPLIT, name=f"{name}_low")
    carry = Signal(name=f"{name}_carry")
    low_done = Signal(ACC_SPLIT, name=f"{name}_low_done")
    high = Signal(high_bits, name=f"{name}_high")
    high_in = Signal(high_bits, name=f"{name}_high_in")
    with m.If(valid):
        m.d.sync += Cat(low, carry).eq(Mux(first, 0, low) + total[:ACC_SPLIT])
    m.d.sync += [
        # (the slice is unsigned: re-sign it so the assignment sign-extends)
        high_in.eq(
            total[ACC_SPLIT:].as_signed()
            if len(total) > ACC_SPLIT
            else total[-1].replicate(high_bits)
        ),
        low_done.eq(low),
    ]
    with m.If(valid_d):
        m.d.sync += high.eq(Mux(first_d, 0, high) + high_in + carry)
    return Cat(low_done, high)
