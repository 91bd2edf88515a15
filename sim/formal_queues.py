"""Property harnesses for the queues in rtl/, proven by k-induction with `sim.formal`.

Each harness is a closed design: it instantiates one queue, drives its inputs
from `AnySeq` values the solver chooses every cycle, constrains them with
`Assume` to what a correct user does (the stream rules on a stream input;
RowQueue's user never pops when empty nor pushes when full, unless it pops in
the same cycle) and asserts what the queue promises at its ports:

- an abstract model counts the elements accepted and not yet delivered
  (`count`): the queue's flags must match it (no overflow: ready exactly while
  the model has room; no underflow: nothing offered while it is empty);
- one element, picked by the solver as it is accepted (`AnySeq`), is tracked
  with its value and the number of elements ahead of it: whenever nothing is
  ahead, the queue's head must be that value. The pick is free, so the n-th
  element delivered is the n-th accepted, for every n: no element is lost,
  duplicated or reordered, and with no underflow nothing comes out that was
  not pushed;
- on stream outputs, the stream rules (valid held until ready, payload stable
  meanwhile) and that a held entry is offered without stalling.

These promises alone are true but not inductive: a queue's pointers and
storage are invisible at its ports, so an unreachable state (a pointer that
disagrees with the count) could satisfy them for any number of idle cycles.
The harness therefore opens the queue (`sim.formal.elaborate_once`) and adds
lemmas tying its registers and memory to the model (read through extra
asynchronous read ports on the queue's own `Memory`); the lemmas are asserted
too, so they are proven, not assumed.

A harness built with `bug=` wires a fault between the user and the queue, or
freezes the queue for a cycle, so the tests can show that each proof fails
when the queue misbehaves. The queues themselves are not modified.
"""

from __future__ import annotations

from typing import ClassVar

from amaranth import Cat, Const, Module, Mux, Signal, Value
from amaranth.asserts import AnySeq  # `amaranth.hdl` does not export it in 0.5
from amaranth.hdl import Assert, Assume, Cover, EnableInserter, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from rtl.prefetch import PrefetchQueue
from rtl.row_queue import RowQueue
from rtl.stream_queue import StreamQueue
from sim.formal import driven_signal, elaborate_once

#: faults every harness can plant, and what each breaks
_COMMON_BUGS = {
    "drop_push": "one push the user sees accepted never reaches the queue (an element is lost)",
    "skip_edge": "the whole queue misses one clock edge while the user pushes and pops",
    "corrupt": "one pushed value has a bit flipped on its way in (the flags stay right)",
}
_STREAM_BUGS = {
    "ready_when_full": "ready is forced high, so a push into a full queue is lost (overflow)",
    "repeat": "one delivery the user sees is not popped from the queue (an element is duplicated)",
}


def _implies(a: Value, b: Value) -> Value:
    return ~a | b


def _add_mod(a: Value, b: Value, modulus: int) -> Value:
    """(a + b) mod `modulus` for a < modulus and b <= modulus, as the queue's pointers wrap."""
    total = a + b
    return Mux(total >= modulus, total - modulus, total)


class _Tracked:
    """The abstract queue: its level and one element the solver picked as it was pushed."""

    def __init__(
        self, m: Module, capacity: int, width: int, push: Value, pop: Value, data: Value
    ) -> None:
        # one more than the capacity, so an overflow shows as a level above it
        self.count = Signal(range(capacity + 2))
        self.inside = Signal()  # the picked element was pushed and is not yet popped
        self.done = Signal()  # it has been popped: nothing else is picked
        self.ahead = Signal(range(capacity + 2))  # elements to leave before it
        self.value = Signal(width)
        pick = Signal()
        m.d.comb += pick.eq(AnySeq(1))
        m.d.sync += self.count.eq(self.count + push - pop)
        with m.If(push & pick & ~self.inside & ~self.done):
            m.d.sync += [
                self.inside.eq(1),
                self.value.eq(data),
                self.ahead.eq(self.count - pop),
            ]
        with m.If(pop & self.inside):
            with m.If(self.ahead == 0):
                m.d.sync += [self.inside.eq(0), self.done.eq(1)]
            with m.Else():
                m.d.sync += self.ahead.eq(self.ahead - 1)
        self.at_head = self.inside & (self.ahead == 0)


class QueueProperties(wiring.Component):
    """What the three harnesses share: the property registry, the model, the faults.

    `properties` maps each property's "file:line" (as SymbiYosys reports a failed
    one) to its kind ("promise", "lemma" or "assume") and what it states.
    """

    BUGS: ClassVar[dict[str, str]] = {}
    #: the induction length k that proves the harness (with its lemmas)
    INDUCTION_DEPTH: ClassVar[int] = 2

    def __new__(cls, *args: object, bug: str | None = None, **kwargs: object) -> QueueProperties:
        # Checked before the object exists, so a refused one is not reported by
        # Amaranth as an elaboratable that was created but never used.
        if bug is not None and bug not in cls.BUGS:
            raise ValueError(f"{cls.__name__} plants one of {sorted(cls.BUGS)}, not {bug!r}")
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, *, bug: str | None) -> None:
        self.bug = bug
        self.properties: dict[str, tuple[str, str]] = {}
        super().__init__({})

    def describe(self, location: str) -> str:
        kind, what = self.properties.get(location, ("?", "not a property of this harness"))
        return f"{kind}: {what} ({location})"

    def _add(self, m: Module, kind: str, test: Value, what: str) -> None:
        # src_loc_at=2: the harness line that states the property, not this helper
        statement = {"assume": Assume, "cover": Cover}.get(kind, Assert)
        prop = statement(test, what, src_loc_at=2)
        self.properties[f"{prop.src_loc[0]}:{prop.src_loc[1]}"] = (kind, what)
        m.d.comb += prop

    def _promise(self, m: Module, test: Value, what: str) -> None:
        self._add(m, "promise", test, what)

    def _lemma(self, m: Module, test: Value, what: str) -> None:
        self._add(m, "lemma", test, what)

    def _assume(self, m: Module, test: Value, what: str) -> None:
        self._add(m, "assume", test, what)

    def _environment(self, m: Module) -> None:
        """No reset during the proof (the model has none); the initial state is the reset state."""
        self._assume(m, ~ResetSignal(), "reset stays low")

    def _free(self, m: Module, width: int, name: str) -> Signal:
        """An input the solver chooses anew every cycle."""
        signal = Signal(width, name=name)
        m.d.comb += signal.eq(AnySeq(width))
        return signal

    def _glitch(self, m: Module, *bugs: str) -> Value:
        """High in the cycles (the solver's choice) where one of `bugs`, if planted, strikes."""
        if self.bug not in bugs:
            return Const(0)
        return self._free(m, 1, "glitch")

    def _planted(self, m: Module, queue: wiring.Component) -> wiring.Component:
        """`queue`, frozen for the cycles the solver picks if `skip_edge` is planted."""
        if self.bug != "skip_edge":
            return queue
        return EnableInserter({"sync": ~self._glitch(m, "skip_edge")})(queue)

    def _stream_rule(
        self, m: Module, kind: str, valid: Value, ready: Value, payload: Value, where: str
    ) -> None:
        """lib.stream: once valid, valid stays high until ready; payload holds meanwhile."""
        waiting = Signal(name=f"{where}_waiting")
        held = Signal.like(payload, name=f"{where}_held")
        m.d.sync += [waiting.eq(valid & ~ready), held.eq(payload)]
        rule = _implies(waiting, valid & (payload == held))
        self._add(m, kind, rule, f"stream rule on {where}: valid held until ready, payload stable")

    def _track(self, m: Module, capacity: int, push: Value, pop: Value, data: Value) -> _Tracked:
        model = _Tracked(m, capacity, len(data), push, pop, data)
        self._lemma(m, _implies(model.inside, model.ahead < model.count), "picked one is inside")
        # not vacuous: the assumptions leave room to fill the queue and empty it again
        was_full = Signal()
        with m.If(model.count == capacity):
            m.d.sync += was_full.eq(1)
        self._add(m, "cover", model.done & was_full, "picked one delivered, queue full before")
        return model

    def _row_queue_lemmas(
        self, m: Module, queue: RowQueue, model: _Tracked
    ) -> tuple[Signal, Value]:
        """Tie a RowQueue's pointers, memory and head register to `model`.

        Returns `collided` (the head's slot was written at the last edge: a
        non-transparent read then shows the old contents, which RowQueue calls
        undefined) and `defined` (the head register shows its slot's contents).
        """
        body = elaborate_once(queue)
        write_at = driven_signal(body, "write_at")
        read_at = driven_signal(body, "read_at")
        read_next = driven_signal(body, "read_next")
        storage = body.submodules.storage
        assert isinstance(storage, Memory)
        at_head = storage.read_port(domain="comb")
        at_picked = storage.read_port(domain="comb")
        depth = queue.depth
        collided = Signal()
        m.d.sync += collided.eq(queue.push & (write_at == read_next))
        m.d.comb += [
            at_head.addr.eq(read_at),
            at_picked.addr.eq(_add_mod(read_at, model.ahead, depth)),
        ]
        self._lemma(m, (write_at < depth) & (read_at < depth), "pointers within 0..depth-1")
        self._lemma(
            m, write_at == _add_mod(read_at, model.count, depth), "write pointer = read + level"
        )
        self._lemma(
            m,
            _implies(model.inside, at_picked.data == model.value),
            "the picked element's slot holds its value",
        )
        # the read port's register holds no defined value before its first edge
        read_once = Signal()
        m.d.sync += read_once.eq(1)
        defined = read_once & (Const(1) if queue.transparent else ~collided)
        self._lemma(m, _implies(defined, queue.head == at_head.data), "head register = slot read")
        return collided, defined


class RowQueueProperties(QueueProperties):
    """RowQueue under a correct user (it has no flags to check with): the pointers
    never disagree with the level, and the head is the oldest entry not yet
    popped from the cycle after its push; with a non-transparent read, except
    in the cycle after the head's slot was written, which happens only when
    that entry is the only one."""

    BUGS: ClassVar[dict[str, str]] = {
        **_COMMON_BUGS,
        "repeat": "one pop the user makes does not reach the queue (an element is duplicated)",
    }

    def __init__(
        self,
        width: int = 4,
        depth: int = 4,
        *,
        transparent: bool = True,
        bug: str | None = None,
    ) -> None:
        self.width, self.depth, self.transparent = width, depth, transparent
        super().__init__(bug=bug)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        self._environment(m)
        queue = RowQueue(self.width, self.depth, transparent=self.transparent)
        m.submodules.dut = self._planted(m, queue)
        push = self._free(m, 1, "push")
        pop = self._free(m, 1, "pop")
        data = self._free(m, self.width, "data")
        m.d.comb += [
            queue.push.eq(push & ~self._glitch(m, "drop_push")),
            queue.pop.eq(pop & ~self._glitch(m, "repeat")),
            queue.data.eq(data ^ self._glitch(m, "corrupt")),
        ]
        model = self._track(m, self.depth, push, pop, data)
        # a push into a full queue is fine in the cycle it pops (the slot is free by the edge)
        self._assume(
            m, _implies(push, (model.count < self.depth) | pop), "no push into a full queue"
        )
        self._assume(m, _implies(pop, model.count > 0), "no pop from an empty queue")

        collided, defined = self._row_queue_lemmas(m, queue, model)
        self._promise(m, model.count <= self.depth, "level within 0..depth")
        self._promise(
            m, _implies(model.at_head & defined, queue.head == model.value), "head is the oldest"
        )
        self._promise(
            m, _implies(collided, model.count == 1), "undefined head only behind a lone entry"
        )
        return m


class StreamQueueProperties(QueueProperties):
    """StreamQueue: ready exactly while not full, valid only while not empty,
    in-order delivery of every element, the stream rules on `o`, an entry held
    over an edge offered at once, and `o.valid` never on a slot written at the
    last edge (so the non-transparent storage's undefined read is never seen)."""

    BUGS: ClassVar[dict[str, str]] = {**_COMMON_BUGS, **_STREAM_BUGS}

    def __init__(
        self,
        width: int = 4,
        depth: int = 3,
        *,
        transparent_storage: bool = True,
        bug: str | None = None,
    ) -> None:
        self.width, self.depth = width, depth
        self.transparent_storage = transparent_storage
        super().__init__(bug=bug)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        self._environment(m)
        queue = StreamQueue(self.width, self.depth, transparent_storage=self.transparent_storage)
        m.submodules.dut = self._planted(m, queue)
        i_valid = self._free(m, 1, "i_valid")
        i_payload = self._free(m, self.width, "i_payload")
        o_ready = self._free(m, 1, "o_ready")
        i_ready = queue.i.ready | Const(self.bug == "ready_when_full")
        m.d.comb += [
            queue.i.valid.eq(i_valid & ~self._glitch(m, "drop_push")),
            queue.i.payload.eq(i_payload ^ self._glitch(m, "corrupt")),
            queue.o.ready.eq(o_ready & ~self._glitch(m, "repeat")),
        ]
        self._stream_rule(m, "assume", i_valid, i_ready, i_payload, "i")
        push = i_valid & i_ready
        pop = queue.o.valid & o_ready
        model = self._track(m, self.depth, push, pop, i_payload)

        offered_next = Signal()  # held an entry and kept it: the next cycle must offer it
        m.d.sync += offered_next.eq((model.count > 0) & ~pop)
        self._promise(m, model.count <= self.depth, "level within 0..depth")
        self._promise(m, i_ready == (model.count < self.depth), "ready exactly while not full")
        self._promise(m, _implies(queue.o.valid, model.count > 0), "valid only while not empty")
        self._promise(
            m,
            _implies(queue.o.valid & model.at_head, queue.o.payload == model.value),
            "the head is the oldest",
        )
        self._stream_rule(m, "promise", queue.o.valid, o_ready, queue.o.payload, "o")
        self._promise(m, _implies(offered_next, queue.o.valid), "a held entry is offered")

        body = elaborate_once(queue)
        storage = body.submodules.entries
        assert isinstance(storage, RowQueue)
        collided, _ = self._row_queue_lemmas(m, storage, model)
        self._promise(m, _implies(queue.o.valid, ~collided), "valid never shows a fresh slot")
        level = driven_signal(body, "level")
        stale = driven_signal(body, "stale")
        thermometer = Cat(*(model.count > k for k in range(self.depth)))
        self._lemma(m, level == thermometer, "level register = model level, thermometer coded")
        self._lemma(m, stale == collided, "stale exactly when the head's slot is fresh")
        return m


class PrefetchQueueProperties(QueueProperties):
    """PrefetchQueue: ready exactly while not full, `head_valid` exactly while not
    empty, `head_valid_next` one edge ahead of it, in-order delivery, and the
    stream rules on its head (`pop` as ready; a pop without `head_valid` is
    allowed and ignored)."""

    BUGS: ClassVar[dict[str, str]] = {**_COMMON_BUGS, **_STREAM_BUGS}

    def __init__(self, width: int = 4, *, bug: str | None = None) -> None:
        self.width = width
        super().__init__(bug=bug)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        self._environment(m)
        queue = PrefetchQueue(self.width)
        capacity = PrefetchQueue.CAPACITY
        m.submodules.dut = self._planted(m, queue)
        i_valid = self._free(m, 1, "i_valid")
        i_payload = self._free(m, self.width, "i_payload")
        pop = self._free(m, 1, "pop")
        i_ready = queue.i.ready | Const(self.bug == "ready_when_full")
        m.d.comb += [
            queue.i.valid.eq(i_valid & ~self._glitch(m, "drop_push")),
            queue.i.payload.eq(i_payload ^ self._glitch(m, "corrupt")),
            queue.pop.eq(pop & ~self._glitch(m, "repeat")),
        ]
        self._stream_rule(m, "assume", i_valid, i_ready, i_payload, "i")
        push = i_valid & i_ready
        taken = pop & queue.head_valid
        model = self._track(m, capacity, push, taken, i_payload)

        valid_next = Signal()
        m.d.sync += valid_next.eq(queue.head_valid_next)
        self._promise(m, model.count <= capacity, "level within 0..2")
        self._promise(m, i_ready == (model.count < capacity), "ready exactly while not full")
        self._promise(
            m, queue.head_valid == (model.count > 0), "head_valid exactly while not empty"
        )
        self._promise(
            m, queue.head_valid == valid_next, "head_valid_next is head_valid an edge early"
        )
        self._promise(
            m,
            _implies(queue.head_valid & model.at_head, queue.head == model.value),
            "the head is the oldest",
        )
        self._stream_rule(m, "promise", queue.head_valid, pop, queue.head, "head")

        body = elaborate_once(queue)
        second = driven_signal(body, "second")
        full = driven_signal(body, "full")
        self._lemma(m, full == (model.count == capacity), "full register = model level 2")
        self._lemma(
            m,
            _implies(model.inside & (model.ahead == 1), second == model.value),
            "the second entry holds the picked element behind the head",
        )
        return m
