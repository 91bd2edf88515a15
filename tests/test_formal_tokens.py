"""Formal proofs (k-induction, SymbiYosys via sim.formal) of the co-processor's
dependency-token counter, rtl/coproc/tokens.py `TokenCounter`.

For every reachable state, with pushes of 0..2 chosen freely and pops only
while `available`: while `overflow` is low, `count` is exactly the tokens
pushed minus popped (none lost or duplicated); `available` is `count != 0`;
`overflow` rises at the edge after the first push that would carry the tokens
past MAX, not before, and stays high; `count` never wraps. The properties are
in sim/formal_tokens.py. Each planted bug must turn the proof into a real
counterexample (a trace from reset) breaking the promise it is about; a cover
shows the assumptions leave room to fill the counter to MAX, drain it and
overflow it.
"""

from __future__ import annotations

import pytest
from amaranth.back import rtlil

from rtl.coproc.tokens import MAX, TOKEN_BITS, TokenCounter
from sim.formal import FormalError, prove, run
from sim.formal_tokens import TokenCounterProperties

#: bits of the counter in the bug and cover runs: MAX = 7 is reached in 4 pushes
SMALL_BITS = 3
#: steps of bounded search in which every planted bug shows at SMALL_BITS
BUG_DEPTH = 8

#: the promise each planted bug must break
_BROKEN_PROMISE = {
    "drop_push_on_pop": "none lost or duplicated",
    "push_two_as_one": "none lost or duplicated",
    "ignore_pop": "none lost or duplicated",
    "skip_edge": "none lost or duplicated",
    "silent_overflow": "overflow exactly from the edge after the first push past MAX",
    "not_sticky": "overflow is sticky",
    "wrap": "count never wraps",
}


def test_every_bug_has_a_broken_promise() -> None:
    assert set(_BROKEN_PROMISE) == set(TokenCounterProperties.BUGS)


@pytest.mark.parametrize("bits", [TOKEN_BITS, SMALL_BITS, 1])
def test_token_counter_proof(bits: int) -> None:
    """The co-processor's width (MAX = 255), the small one the bugs use, and
    one bit (MAX = 1, where every push of 2 overflows)."""
    harness = TokenCounterProperties(bits)
    result = prove(harness, f"token_counter_b{bits}", depth=harness.INDUCTION_DEPTH)
    assert result.passed


@pytest.mark.parametrize("bug", list(TokenCounterProperties.BUGS))
def test_planted_bug_fails_the_proof(bug: str) -> None:
    """The same proof, deep enough for its base case to reach the bug, fails with
    a trace from reset, and (searching on past the first failure) the promise
    the bug is about breaks in it."""
    harness = TokenCounterProperties(SMALL_BITS, bug=bug)
    result = run(
        harness, f"token_counter_bug_{bug}", depth=BUG_DEPTH, engine="smtbmc --keep-going yices"
    )
    assert result.status == "FAIL", result.tail()
    broken = [harness.describe(place) for place in result.failed_at]
    assert any(text.startswith("promise:") and _BROKEN_PROMISE[bug] in text for text in broken), (
        broken
    )
    with pytest.raises(FormalError, match=r"(?s)returned FAIL \(exit status 2\).*DONE \(FAIL"):
        result.check()


def test_assumptions_leave_room_to_fill_drain_and_overflow() -> None:
    """Not vacuous: traces fill the counter to MAX and drain it to zero, and fill
    it to MAX and overflow it."""
    harness = TokenCounterProperties(SMALL_BITS)
    result = run(harness, "token_counter_cover", mode="cover", depth=14)
    assert result.passed, result.tail()


def test_bits_default_is_the_coprocessors_counter() -> None:
    """The optional width changes nothing by default."""
    default, explicit = TokenCounter(), TokenCounter(TOKEN_BITS)
    assert len(default.count) == TOKEN_BITS and default.max == MAX
    assert rtlil.convert(default, name="top") == rtlil.convert(explicit, name="top")


def test_unknown_bug_is_refused() -> None:
    with pytest.raises(ValueError, match="plants one of"):
        TokenCounterProperties(bug="no_such_bug")
