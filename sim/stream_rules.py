"""The two rules of an `amaranth.lib.stream`, checked on every clock edge of a bench.

1. Once `valid` is high it stays high until a transfer (`valid & ready` at an edge).
2. The payload stays unchanged while `valid` is high and `ready` is low.

`StreamRules` is the one definition: pure Python, fed one sample (valid, ready,
payload) per clock edge. Two thin adapters feed it: `watch_amaranth` (a process
in Amaranth's simulator, sampling at each `ctx.tick()`) and `watch_cocotb` (a
cocotb task, for the elaborated Verilog). A violation raises
`StreamRuleViolation` at once (an `AssertionError`, so the simulator run or the
cocotb test fails with the message) and is kept in `violations`; with
`strict=False` they are only kept and `check()` raises at the end.

Written here because neither Amaranth nor cocotb checks `lib.stream`'s rules:
Amaranth states them and cocotb's bus monitors (cocotb-bus) trust the design.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amaranth import Value

if TYPE_CHECKING:
    from amaranth.sim import Simulator, SimulatorContext

RULES = {
    1: "valid held until a transfer",
    2: "payload stable while valid and not ready",
}


class StreamRuleViolation(AssertionError):
    """A stream broke one of `RULES`."""


def _show(payload: object) -> str:
    return hex(payload) if isinstance(payload, int) and payload >= 0 else repr(payload)


@dataclass
class StreamRules:
    """Checks one stream, one sample per clock edge; counts the transfers it saw."""

    name: str
    strict: bool = True  # raise at the first violation (else only `check()` raises)
    cycle: int = 0  # edges sampled so far (the next sample's number)
    transfers: int = 0
    stalls: int = 0  # edges with valid high and ready low: back-pressure that bit
    violations: list[str] = field(default_factory=list)
    # the payload offered but not taken at the last edge, and since which edge
    _held: tuple[object, int] | None = field(default=None, repr=False)

    def sample(self, valid: bool, ready: bool, payload: object) -> None:
        """The stream's values at one clock edge (payload: any value with `==`)."""
        if self._held is not None:
            held, since = self._held
            offered = f"offered since cycle {since}"
            if not valid:
                self._violate(1, f"valid fell without a transfer ({offered}: {_show(held)})")
            elif payload != held:
                change = f"payload changed from {_show(held)} to {_show(payload)}"
                self._violate(2, f"{change} without a transfer ({offered})")
        if valid and ready:
            self.transfers += 1
            self._held = None
        elif valid:
            self.stalls += 1
            self._held = (payload, self._held[1] if self._held is not None else self.cycle)
        else:
            self._held = None
        self.cycle += 1

    def reset(self) -> None:
        """An edge in reset: nothing offered before it is owed after it."""
        self._held = None
        self.cycle += 1

    def check(self) -> None:
        """Raise if any violation was seen (the end-of-run form of `strict`)."""
        if self.violations:
            more = len(self.violations) - 1
            extra = f" (and {more} more)" if more else ""
            raise StreamRuleViolation(self.violations[0] + extra)

    def _violate(self, rule: int, what: str) -> None:
        message = (
            f"stream {self.name!r}: rule {rule} ({RULES[rule]}) broken at cycle {self.cycle}: "
            f"{what}"
        )
        self.violations.append(message)
        if self.strict:
            raise StreamRuleViolation(message)


def watch_amaranth(
    sim: Simulator, port: Any, name: str, *, domain: str = "sync", strict: bool = True
) -> StreamRules:
    """Check `port` (a `stream.Interface`) on every edge of `domain` of `sim`.

    The process samples what the edge itself sees (`ctx.tick().sample`), so it
    agrees with any testbench that sets `ready` before awaiting its tick.
    """
    rules = StreamRules(name, strict=strict)
    sim.add_process(amaranth_process(rules, port, domain=domain))
    return rules


def amaranth_process(
    rules: StreamRules, port: Any, *, domain: str = "sync"
) -> Callable[[SimulatorContext], Coroutine[Any, Any, None]]:
    """The process behind `watch_amaranth`, for a bench that adds its own."""
    payload = Value.cast(port.payload)

    async def process(ctx: SimulatorContext) -> None:
        async for _, in_reset, valid, ready, word in ctx.tick(domain).sample(
            port.valid, port.ready, payload
        ):
            if in_reset:
                rules.reset()
            else:
                rules.sample(bool(valid), bool(ready), word)

    return process


def watch_cocotb(
    dut: Any,
    port: str,
    name: str | None = None,
    *,
    clk: str = "clk",
    rst: str | None = "rst",
    strict: bool = True,
) -> StreamRules:
    """Check the Verilog stream `port` of `dut` (Amaranth's `port__valid` etc.) in a task.

    Each clock cycle is sampled once, in the read-only phase after the falling
    edge: what the next rising edge will see, on Icarus and Verilator alike (at
    the rising edge itself the two differ on whether registers have updated).
    So the bench must change the stream's inputs only at clock edges, as ours do.
    """
    import cocotb

    rules = StreamRules(name or f"{dut._name}.{port}", strict=strict)
    signals = (getattr(dut, f"{port}__{end}") for end in ("valid", "ready", "payload"))
    cocotb.start_soon(
        cocotb_monitor(
            rules,
            getattr(dut, clk),
            *signals,
            reset=getattr(dut, rst) if rst is not None else None,
        ),
        name=f"stream rules {rules.name}",
    )
    return rules


async def cocotb_monitor(
    rules: StreamRules, clk: Any, valid: Any, ready: Any, payload: Any, *, reset: Any = None
) -> None:
    """The task behind `watch_cocotb`, for any three signals of one stream."""
    from cocotb.triggers import FallingEdge, ReadOnly

    while True:
        await FallingEdge(clk)
        await ReadOnly()
        if reset is not None and reset.value == 1:
            rules.reset()
            continue
        word = payload.value  # an int, or its bits as text when some are X or Z
        word = int(word) if word.is_resolvable else str(word)
        rules.sample(valid.value == 1, ready.value == 1, word)
