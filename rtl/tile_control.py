"""The tile-level control every streaming engine's issue loop shares.

A tile command is accepted only with a done-token credit (`credit_counter`),
latched into a register that loads whenever the loop is ready for one (so its
enables are a register, never the AND with `valid`), and set up in
`SETUP_LATENCY` one-hot steps (derive the loop limits, test them, start). Then
the loop runs while `busy`; a beat issues in a cycle when `issuing`, a register
computed a cycle ahead from the next state and the readiness the engine names
(its input's head, a reserved result slot). The warp and element-wise issue
loops build on it; their loop nests and beats are their own.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import data

from rtl.pipeline import credit_counter


class TileControl:
    """Command acceptance, set-up steps, `busy` and `issuing` for one issue loop."""

    #: Edges from a command's transfer to its first beat issuing: latch it, derive
    #: the loop limits, test them, start the loop.
    SETUP_LATENCY = 4

    def __init__(
        self,
        m: Module,
        cmd: object,
        layout: data.StructLayout,
        *,
        token_slots: int,
        token_return: object,
    ) -> None:
        self.m = m
        #: The latched command; it holds while a tile issues.
        self.cmd = Signal(layout, name="cmd")
        self.accepting = Signal(init=1, name="accepting")  # cmd.ready, registered
        self.accept = Signal(name="accept")
        #: The set-up steps, one-hot: each is high in the cycle it is done.
        self.deriving_limits = Signal(name="deriving_limits")
        self.testing_limits = Signal(name="testing_limits")
        self.starting = Signal(name="starting")
        self.busy = Signal(name="busy")
        #: A beat issues this cycle.
        self.issuing = Signal(name="issuing")
        m.d.comb += [
            cmd.ready.eq(self.accepting),
            self.accept.eq(cmd.valid & self.accepting),
        ]
        self._have_token_next = credit_counter(
            m, token_slots, give_back=token_return, take=self.accept, name="tokens"
        )[1]
        m.d.sync += [
            self.deriving_limits.eq(self.accept),
            self.testing_limits.eq(self.deriving_limits),
            self.starting.eq(self.testing_limits),
        ]
        with m.If(self.accepting):
            m.d.sync += self.cmd.eq(cmd.payload)

    def run(self, tile_end: object, *ready_next: object) -> None:
        """The loop runs until the beat that `tile_end` marks issues; the next beat
        issues when every `ready_next` (the state after this edge) holds."""
        m = self.m
        busy_next = Signal(name="busy_next")
        m.d.comb += busy_next.eq(self.starting | (self.busy & ~(self.issuing & tile_end)))
        setting_up = self.accept | self.deriving_limits | self.testing_limits | self.starting
        m.d.sync += [
            self.busy.eq(busy_next),
            self.issuing.eq(Cat(busy_next, *ready_next).all()),
            self.accepting.eq(~busy_next & ~setting_up & self._have_token_next),
        ]
