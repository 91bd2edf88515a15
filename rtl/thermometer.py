"""A level kept in thermometer code: bit k is "the level is above k".

Why: a binary count needs an adder, then a comparator, between the enables that
change it and every flag read from it; on ECP5 that chain set the clock in the
conv engine's credit counters, its count of held vectors and its result FIFO
(6.7–7.3 ns). In thermometer code each flag is a bit of the register, and each
bit's next value is one LUT of its neighbours and the two enables.
"""

from __future__ import annotations

from amaranth import Cat, Mux, Signal, Value


def thermometer_next(level: Signal, up: Value, down: Value) -> Value:
    """`level` after one step: +1 if only `up`, -1 if only `down` (the caller
    keeps it within 0..len(level))."""
    more = Cat(1, level[:-1])  # a one shifted in at the bottom
    fewer = Cat(level[1:], 0)  # a zero shifted in at the top
    return Mux(up == down, level, Mux(up, more, fewer))
