"""The co-processor's bus ports keep the Wishbone rules, against cocotbext-wishbone.

`Coprocessor` alone under cocotb (sim/coproc_bus.py, sim/coproc_bus_tb.py):
cocotbext-wishbone's classic master on the control port, a pipelined memory
responder with random stall and latency on the memory port, and a protocol
checker on each port at every edge. A conv layer runs bit-exact with L3 in
every pass — full rate, stalls, long latency, a bus error on a LOAD — with no
violation. The checkers themselves are shown each rule broken on a made-up
trace, and in simulation on a fault planted in the responder.
"""

from __future__ import annotations

import pytest

from defs.coproc import Fault
from defs.params import preset
from sim.coproc_bus import (
    PASSES,
    ClassicChecker,
    Pass,
    PipelinedChecker,
    ProtocolViolation,
    simulate_bus,
)
from sim.coproc_host import host_image
from sim.coproc_programs import one_layer

PARAMS = preset("tiny")


@pytest.fixture(scope="module")
def layer_program():
    """The conv layer of tests/test_coproc_faults.py and L3's image after it."""
    return one_layer(PARAMS)


# ---- the checkers on made-up traces: every rule, broken once --------------------------

_IDLE = {"cyc": 0, "stb": 0, "we": 0, "adr": 0, "dat_w": 0, "sel": 0, "ack": 0, "err": 0,
         "stall": 0, "done": 0}  # fmt: skip


def _m(**signals: int | None) -> dict[str, int | None]:
    return _IDLE | signals


_READ = {"cyc": 1, "stb": 1, "adr": 5, "sel": 0xFF}
_WRITE = {"cyc": 1, "stb": 1, "we": 1, "adr": 6, "dat_w": 0x1234, "sel": 0x0F}

PIPELINED = {
    "stb high while cyc is low": [_m(stb=1)],
    "request changed while stalled": [_m(**_READ, stall=1), _m(**_READ | {"adr": 4})],
    "request changed while stalled: \\(write": [
        _m(**_WRITE, stall=1),
        _m(**_WRITE | {"dat_w": 0x1235}),
    ],
    "stb dropped while request": [_m(**_READ, stall=1), _m(cyc=1)],
    "ack and err both high": [_m(**_READ), _m(cyc=1, ack=1, err=1)],
    "no request outstanding": [_m(cyc=1, ack=1)],
    "no request outstanding \\(more answers": [_m(**_READ), _m(cyc=1, ack=1), _m(cyc=1, err=1)],
    "cyc dropped with 1 request": [_m(**_READ), _m(ack=0)],
    "ack/err while cyc is low": [_m(ack=1)],
    "cyc is X/Z": [_m(cyc=None)],
    "adr is X/Z during a request": [_m(**_READ | {"adr": None})],
    "dat_w is X/Z during a write": [_m(**_WRITE | {"dat_w": None})],
    "cyc high while done is high": [_m(cyc=1, done=1)],
}

_C_IDLE = {"cyc": 0, "stb": 0, "we": 0, "adr": 0, "dat_w": 0, "dat_r": 0, "ack": 0}


def _c(**signals: int | None) -> dict[str, int | None]:
    return _C_IDLE | signals


_ACCESS = {"cyc": 1, "stb": 1, "adr": 1}

CLASSIC = {
    "ack while not cyc & stb": [_c(cyc=1, ack=1)],
    "two edges in a row": [_c(**_ACCESS), _c(**_ACCESS, ack=1), _c(**_ACCESS, ack=1)],
    "not acknowledged one cycle after": [_c(**_ACCESS), _c(**_ACCESS)],
    "withdrawn before its ack": [_c(**_ACCESS), _c(cyc=1)],
    "changed before its ack": [_c(**_ACCESS), _c(**_ACCESS | {"adr": 2}, ack=1)],
    "dat_r is X/Z on the ack of a read": [_c(**_ACCESS), _c(**_ACCESS, ack=1, dat_r=None)],
    "stb high while cyc is low": [_c(stb=1)],
}


def _feed(checker: PipelinedChecker | ClassicChecker, trace: list) -> None:
    for sample in trace:
        checker.step(sample)


@pytest.mark.parametrize("rule", PIPELINED)
def test_the_pipelined_checker_sees_each_rule_broken(rule: str) -> None:
    *before, last = PIPELINED[rule]
    checker = PipelinedChecker()
    _feed(checker, before)
    with pytest.raises(ProtocolViolation, match=rule):
        checker.step(last)


@pytest.mark.parametrize("rule", CLASSIC)
def test_the_classic_checker_sees_each_rule_broken(rule: str) -> None:
    *before, last = CLASSIC[rule]
    checker = ClassicChecker()
    _feed(checker, before)
    with pytest.raises(ProtocolViolation, match=rule):
        checker.step(last)


def test_the_checkers_pass_legal_traces() -> None:
    pipelined = PipelinedChecker()
    _feed(pipelined, [
        _m(**_READ, stall=1), _m(**_READ), _m(**_WRITE), _m(**_WRITE | {"adr": 7}, ack=1),
        _m(cyc=1), _m(cyc=1, ack=1), _m(cyc=1, err=1), _m(), _m(done=1),
        _m(**_READ, stall=1), _m(),  # a stalled request given up with its cycle: an abort
    ])  # fmt: skip
    assert pipelined.outstanding == 0
    counts = ("requests", "acks", "errs", "withdrawn", "stalled_edges")
    assert [pipelined.stats[k] for k in counts] == [3, 2, 1, 1, 2]
    classic = ClassicChecker()
    write = _ACCESS | {"we": 1, "dat_w": 9}
    _feed(classic, [
        _c(**_ACCESS), _c(**_ACCESS, ack=1, dat_r=3), _c(**write), _c(**write, ack=1), _c(cyc=1),
        _c(**_ACCESS), _c(**_ACCESS, ack=1), _c(),
    ])  # fmt: skip
    assert classic.stats == {"accesses": 3, "reads": 2, "writes": 1}


# ---- the ports in simulation ------------------------------------------------------------


def test_the_bus_ports_keep_the_wishbone_rules(layer_program, build_root) -> None:
    """Verilator: registers set and read back over the control port, the layer run once per
    pass, the image read back from the bench's memory equal to L3's byte for byte; a bus
    error on the weights ends its pass with BUS_ERROR and the next pass starts clean."""
    lowered, expected = layer_program
    weights = (len(lowered.memory) // 2 // 8, len(lowered.memory) // 8)
    passes = [*PASSES, Pass(0.3, 8, seed=4, errors=weights), Pass(0.3, 6, seed=5)]
    result = simulate_bus(
        PARAMS, host_image(lowered.memory, lowered.words), simulator="verilator",
        build_dir=build_root / "sim" / "coproc_bus", passes=passes,
    )  # fmt: skip
    assert result.violations == []
    assert [p.settings for p in result.passes] == passes
    for p in result.passes:
        if p.settings.errors:
            assert p.fault == Fault.BUS_ERROR, p.settings
            assert p.stats["errs"] > 0
        else:
            assert p.fault == Fault.NONE, p.settings
            assert bytes(p.memory) == bytes(expected), p.settings
            assert p.stats["acks"] == p.stats["requests"] > 0 and p.stats["writes"] > 0
        assert p.stats["withdrawn"] == 0
        assert p.stats["max_outstanding"] <= PARAMS.coproc.outstanding
        assert (p.stats["stalled_edges"] > 0) == (p.settings.stall > 0), p.settings
    full_rate, _, stalled, long_latency, *_ = result.passes
    assert full_rate.counters["port_stall"] == 0 and stalled.counters["port_stall"] > 0
    assert long_latency.stats["max_outstanding"] > 8  # many requests in flight at once
    assert result.ctrl["reads"] > 0 and result.ctrl["writes"] > 0


def test_the_checker_catches_a_planted_double_ack(layer_program, build_root) -> None:
    """The bench's memory acks one request twice: the run stops at that edge. The extra
    ack comes after the only request outstanding was answered: with the master still
    holding the cycle it is an answer to no request, with the cycle ended an answer
    outside one (which of the two depends on the traffic before it)."""
    lowered, _ = layer_program
    result = simulate_bus(
        PARAMS, host_image(lowered.memory, lowered.words), simulator="verilator",
        build_dir=build_root / "sim" / "coproc_bus", passes=[Pass(0.3, 6)],
        plant="double_ack", check=False,
    )  # fmt: skip
    assert result.result.failed == 1
    assert len(result.violations) == 1
    answers_to_nothing = ("no request outstanding (more answers than requests)",
                          "ack/err while cyc is low")  # fmt: skip
    assert any(rule in result.violations[0] for rule in answers_to_nothing), result.violations


def test_a_bus_error_on_a_store_leaves_the_port_quiet_after_done(layer_program, build_root) -> None:
    lowered, expected = layer_program
    first = lowered.output_addr // 8  # the output's first words answer err
    result = simulate_bus(
        PARAMS, host_image(lowered.memory, lowered.words), simulator="verilator",
        build_dir=build_root / "sim" / "coproc_bus",
        passes=[Pass(0.3, 8, seed=6, errors=(first, first + 4)), Pass(0.3, 6, seed=5)],
        check=False,
    )  # fmt: skip
    assert result.violations == []
    assert [p.fault for p in result.passes] == [Fault.BUS_ERROR, Fault.NONE]
    assert bytes(result.passes[1].memory) == bytes(expected)
