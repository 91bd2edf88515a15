"""Small pipeline parts every engine builds from: delay lines, credits, adder trees, loops.

Each returns registers whose count is stated, so a component that uses them
can declare its latency as a sum of these counts (and the cycle models add the
components' latencies, never re-counting stages).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed

from rtl.thermometer import thermometer_next


def delay(m: Module, value: object, cycles: int, name: str) -> object:
    """`value` seen `cycles` clock edges later (a plain shift register)."""
    for k in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{k + 1}") if isinstance(value, Signal) else None
        if reg is None:
            reg = Signal(len(value), name=f"{name}_d{k + 1}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


def credit_counter(
    m: Module, slots: int, *, give_back: object, take: object, name: str
) -> tuple[Signal, Signal]:
    """A registered "a slot is free" flag (and its next value) for `slots` reserved entries.

    Slots come back a cycle after `give_back` (conservative, and it keeps the
    consumer's logic out of this path). The free slots are counted in
    thermometer code, so the next "a slot is free" is one LUT of registers and
    `take`, which only picks between "free + returned ≥ 2" and "≥ 1".
    """
    free = Signal(slots, init=(1 << slots) - 1, name=f"{name}_free")
    returned = Signal(name=f"{name}_returned")
    available_next = Signal(name=f"{name}_available_next")
    m.d.comb += available_next.eq(
        Mux(take, free[1] | (free[0] & returned), free[0] | returned)
        if slots > 1
        else ~take & (free[0] | returned)
    )
    m.d.sync += [returned.eq(give_back), free.eq(thermometer_next(free, returned, take))]
    return free[0], available_next


#: Edges from `give_back` until its slot shows in `credit_counter`'s flag again.
CREDIT_RETURN_LATENCY = 1


def tree_levels(count: int) -> int:
    """Registered adder levels that reduce `count` values to one sum."""
    return (count - 1).bit_length()


def adder_tree(m: Module, values: list[Signal], name: str) -> Signal:
    """Sum of `values` through registered pairwise levels (tree_levels(len) edges)."""
    level = 0
    while len(values) > 1:
        paired = []
        for k in range(0, len(values) - 1, 2):
            a, b = values[k], values[k + 1]
            s = Signal(signed(max(len(a), len(b)) + 1), name=f"{name}_l{level}_{k // 2}")
            m.d.sync += s.eq(a + b)
            paired.append(s)
        if len(values) % 2:
            s = Signal.like(values[-1], name=f"{name}_l{level}_carry")
            m.d.sync += s.eq(values[-1])
            paired.append(s)
        values = paired
        level += 1
    return values[0]


def equals(value: object, constant: int) -> object:
    """`value == constant`, written so that Verilator lints it clean.

    (`x == 0` becomes a multi-bit `!x` in Verilog, which lint rightly flags.)
    """
    return value == constant if constant else ~value.any()


class LoopCounter:
    """A loop counter that counts down what is left, with registered flags.

    `last` (at its limit) and `one_left` are registers, so the next `last` is
    one LUT after the late `moves` signal.
    """

    def __init__(self, m: Module, name: str, bits: int) -> None:
        self.m = m
        self.limit = Signal(bits, name=f"{name}_limit")
        self.left = Signal(bits, name=f"{name}_left")
        self.last = Signal(name=f"{name}_last")
        self.one_left = Signal(name=f"{name}_one_left")
        self.limit_zero = Signal(name=f"{name}_limit_zero")
        self.limit_one = Signal(name=f"{name}_limit_one")

    def test_limit(self) -> list:
        """Statements that register the limit's flags (a set-up step of their own)."""
        return [self.limit_zero.eq(equals(self.limit, 0)), self.limit_one.eq(self.limit == 1)]

    def restart(self) -> list:
        """Statements that start the count over."""
        return [
            self.left.eq(self.limit),
            self.last.eq(self.limit_zero),
            self.one_left.eq(self.limit_one),
        ]

    def step(self, moves: object) -> None:
        """Count one when `moves`, wrapping at the limit."""
        with self.m.If(moves):
            with self.m.If(self.last):
                self.m.d.sync += self.restart()
            with self.m.Else():
                self.m.d.sync += [
                    self.left.eq(self.left - 1),
                    self.last.eq(self.one_left),
                    self.one_left.eq(self.left == 2),
                ]
