"""Property harness for the co-processor's dependency-token counter
(rtl/coproc/tokens.py `TokenCounter`), proven by k-induction with `sim.formal`.

The harness drives the counter like its queues do: the solver chooses `push`
(0..2) and `pop` anew every cycle (`AnySeq`), and the user's contract is
assumed: a pop only while `available`. An abstract model counts the tokens
pushed and not yet popped in a wider integer; it stops counting (it is
"lost") on the first cycle a push would carry it past the counter's maximum,
since from then on the fault is raised and what the counter holds is only
required not to wrap. Asserted at the ports, every cycle:

- while `overflow` is low, `count` equals the model: no token is lost or
  duplicated;
- `available` is exactly `count != 0`;
- `overflow` is high exactly when the model is lost, i.e. it rises at the
  edge of the first cycle in which `count + push - pop` would pass MAX, never
  earlier, and `overflow` once high stays high (sticky);
- `count` never wraps: across each edge it falls by at most the pop and rises
  by at most the push (also after an overflow: in the cycle that overflows
  the counter drops the whole update, a pop made with it included, so from
  then on `count` is bounded, not exact; the fault stops the co-processor).

The promises are inductive on their own (the counter's state is all at its
ports), so no lemma about its insides is needed.

A harness built with `bug=` plants a fault (between the user and the counter,
or appended to the counter's elaborated module in the cycles the solver picks)
so the tests can show that the proof fails when the counter misbehaves;
`TokenCounter` itself is not modified.
"""

from __future__ import annotations

from typing import ClassVar

from amaranth import Module, Mux, Signal, Value

from rtl.coproc.tokens import TOKEN_BITS, TokenCounter
from sim.formal import driven_signal, elaborate_once
from sim.formal_queues import QueueProperties


def _implies(a: Value, b: Value) -> Value:
    return ~a | b


class TokenCounterProperties(QueueProperties):
    """TokenCounter with `bits` bits under a user that pops only while `available`.

    The default width is the co-processor's own (MAX = 255): the proof needs no
    path to the maximum, so it is as quick at 8 bits as at 3. Planted bugs and
    the cover need a trace from reset that reaches MAX, so the tests build
    those with few bits.
    """

    BUGS: ClassVar[dict[str, str]] = {
        "drop_push_on_pop": "a push made in a cycle that also pops never reaches the counter "
        "(tokens lost)",
        "push_two_as_one": "a push of 2 reaches the counter as 1 (a token lost)",
        "ignore_pop": "a pop the user makes does not reach the counter (a token duplicated)",
        "skip_edge": "the counter misses one clock edge while the user pushes and pops",
        "silent_overflow": "a push past MAX is dropped without raising overflow",
        "not_sticky": "overflow is cleared again at an edge the solver picks",
        "wrap": "a push past MAX is counted modulo 2**bits (count wraps) while overflow rises",
    }
    #: every promise holds after any one step from a state where they all hold
    INDUCTION_DEPTH: ClassVar[int] = 1

    def __init__(self, bits: int = TOKEN_BITS, *, bug: str | None = None) -> None:
        self.bits = bits
        self.max = (1 << bits) - 1
        super().__init__(bug=bug)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        self._environment(m)
        counter = TokenCounter(self.bits)
        body = elaborate_once(counter)
        self._plant_inside(m, counter, body)
        m.submodules.dut = self._planted(m, counter)

        # the user: pushes 0..2 freely, pops only while a token is available
        push = self._free(m, 2, "push")
        pop = self._free(m, 1, "pop")
        self._assume(m, push <= 2, "push adds 0..2")
        self._assume(m, _implies(pop, counter.available), "pop only while available")
        m.d.comb += [
            counter.push.eq(
                Mux(
                    pop & self._glitch(m, "drop_push_on_pop"),
                    0,
                    Mux((push == 2) & self._glitch(m, "push_two_as_one"), 1, push),
                )
            ),
            counter.pop.eq(pop & ~self._glitch(m, "ignore_pop")),
        ]

        # the model: tokens pushed and not yet popped, counted until a push
        # would carry them past MAX (then `lost`, and no longer counted)
        tokens = Signal(range(self.max + 1), name="model_tokens")
        lost = Signal(name="model_lost")
        total = tokens + push - pop  # signed and wide enough: never wraps
        with m.If(~lost):
            with m.If(total > self.max):
                m.d.sync += lost.eq(1)
            with m.Else():
                m.d.sync += tokens.eq(total)

        # the ports one edge ago
        last_count = Signal.like(counter.count, name="last_count")
        last_push = Signal.like(push, name="last_push")
        last_pop = Signal.like(pop, name="last_pop")
        last_overflow = Signal(name="last_overflow")
        m.d.sync += [
            last_count.eq(counter.count),
            last_push.eq(push),
            last_pop.eq(pop),
            last_overflow.eq(counter.overflow),
        ]

        count = counter.count
        self._promise(
            m,
            _implies(~counter.overflow, count == tokens),
            "while overflow is low, count = tokens pushed minus popped (none lost or duplicated)",
        )
        self._promise(m, counter.available == (count != 0), "available exactly while count != 0")
        self._promise(
            m,
            counter.overflow == lost,
            "overflow exactly from the edge after the first push past MAX",
        )
        self._promise(m, _implies(last_overflow, counter.overflow), "overflow is sticky")
        self._promise(
            m,
            (count + last_pop >= last_count) & (count <= last_count + last_push),
            "count never wraps: falls by at most the pop, rises by at most the push",
        )

        # not vacuous: the user can fill the counter to MAX, drain it to zero,
        # and make it overflow
        was_full = Signal(name="was_full")
        drained = Signal(name="drained")
        with m.If((count == self.max) & ~counter.overflow):
            m.d.sync += was_full.eq(1)
        with m.If(was_full & (count == 0) & ~counter.overflow):
            m.d.sync += drained.eq(1)
        self._add(m, "cover", drained, "filled to MAX and drained to zero without overflow")
        self._add(m, "cover", was_full & counter.overflow, "filled to MAX, then overflowed")
        return m

    def _plant_inside(self, m: Module, counter: TokenCounter, body: Module) -> None:
        """Faults inside the counter: statements appended to its module, which
        take precedence over its own in the cycles the solver picks."""
        if self.bug == "silent_overflow":
            with body.If(self._glitch(m, "silent_overflow")):
                body.d.sync += counter.overflow.eq(counter.overflow)
        elif self.bug == "not_sticky":
            with body.If(self._glitch(m, "not_sticky")):
                body.d.sync += counter.overflow.eq(0)
        elif self.bug == "wrap":
            after = driven_signal(body, "after")
            with body.If(self._glitch(m, "wrap")):
                body.d.sync += counter.count.eq(after)
