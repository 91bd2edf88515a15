"""Formal proofs (k-induction, SymbiYosys via sim.formal) of the queues in rtl/.

For every reachable state of StreamQueue, RowQueue and PrefetchQueue: no
overflow or underflow, the n-th element out is the n-th in (nothing lost,
duplicated, reordered or invented) and the stream rules on stream outputs; the
properties are in sim/formal_queues.py. Each planted bug must turn a proof into
a real counterexample (a trace from reset, not just a failed induction step)
that breaks a port-level promise, not only a lemma about the queue's insides;
a cover shows the assumptions leave room to fill each queue and deliver a
tracked element.
"""

from __future__ import annotations

import pytest

from sim import formal
from sim.formal import FormalError, FormalToolMissing, prove, run
from sim.formal_queues import (
    PrefetchQueueProperties,
    QueueProperties,
    RowQueueProperties,
    StreamQueueProperties,
)

#: steps of bounded search in which every planted bug shows
BUG_DEPTH = 8


def _proved(harness: QueueProperties, name: str) -> None:
    result = prove(harness, name, depth=harness.INDUCTION_DEPTH)
    assert result.passed


@pytest.mark.parametrize("transparent", [True, False])
@pytest.mark.parametrize("depth", [1, 5])
def test_stream_queue_proof(depth: int, transparent: bool) -> None:
    """Depth 1 takes the one-entry path of `stale`; 5 wraps pointers at a non-power of two."""
    harness = StreamQueueProperties(4, depth, transparent_storage=transparent)
    _proved(harness, f"stream_queue_d{depth}_t{int(transparent)}")


@pytest.mark.parametrize("transparent", [True, False])
@pytest.mark.parametrize("depth", [4, 5])
def test_row_queue_proof(depth: int, transparent: bool) -> None:
    """Pointers wrapping by overflow (4) and by comparison (5); depth 1 is in the StreamQueue's."""
    harness = RowQueueProperties(4, depth, transparent=transparent)
    _proved(harness, f"row_queue_d{depth}_t{int(transparent)}")


def test_prefetch_queue_proof() -> None:
    _proved(PrefetchQueueProperties(4), "prefetch_queue")


def _make(queue: str, *, bug: str | None = None) -> QueueProperties:
    """The configuration the bug and cover tests use: three entries, non-transparent storage."""
    if queue == "stream_queue":
        return StreamQueueProperties(4, 3, transparent_storage=False, bug=bug)
    if queue == "row_queue":
        return RowQueueProperties(4, 3, transparent=False, bug=bug)
    return PrefetchQueueProperties(4, bug=bug)


_CLASSES = {
    "stream_queue": StreamQueueProperties,
    "row_queue": RowQueueProperties,
    "prefetch_queue": PrefetchQueueProperties,
}
PLANTED = [(queue, bug) for queue, cls in _CLASSES.items() for bug in cls.BUGS]


#: the promise a bug must break: a changed element only the tracked element can
#: catch; a push into a full queue, the ready flag
_BROKEN_PROMISE = {"corrupt": "is the oldest", "ready_when_full": "ready exactly while not full"}


@pytest.mark.parametrize(("queue", "bug"), PLANTED)
def test_planted_bug_fails_the_proof(queue: str, bug: str) -> None:
    """The same proof, deep enough for its base case to reach the bug, fails with
    a trace from reset; searching on past the first failure (`--keep-going`), a
    port-level promise breaks too, not only a lemma about the queue's insides."""
    harness = _make(queue, bug=bug)
    result = run(harness, f"{queue}_bug_{bug}", depth=BUG_DEPTH, engine="smtbmc --keep-going yices")
    assert result.status == "FAIL", result.tail()
    broken = [harness.describe(place) for place in result.failed_at]
    assert any(text.startswith("promise:") for text in broken), broken
    assert any(_BROKEN_PROMISE.get(bug, "promise:") in text for text in broken), broken
    with pytest.raises(FormalError, match=r"(?s)returned FAIL \(exit status 2\).*DONE \(FAIL"):
        result.check()


@pytest.mark.parametrize("queue", list(_CLASSES))
def test_assumptions_leave_room_to_fill_and_drain(queue: str) -> None:
    """Not vacuous: a trace fills the queue and delivers the tracked element."""
    result = run(_make(queue), f"{queue}_cover", mode="cover", depth=12)
    assert result.passed, result.tail()


def test_missing_tool_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(formal.TOOLS, "grace-no-such-solver", "no-such-package")
    with pytest.raises(FormalToolMissing, match="`grace-no-such-solver` not found") as error:
        run(StreamQueueProperties(), "missing_tool")
    assert "\n" not in str(error.value)


def test_unknown_bug_is_refused() -> None:
    with pytest.raises(ValueError, match="plants one of"):
        PrefetchQueueProperties(bug="no_such_bug")
