"""boards/depth.py: the rough static timing pass, on netlists small enough to time by hand."""

from __future__ import annotations

import json

import pytest

from boards import depth
from boards.depth import CARRY_IN_NS, CARRY_THROUGH_NS, CLK_TO_Q_NS, LUT_NS, ROUTE_NS, Netlist


def _ff(d: int, q: int) -> dict:
    return {"type": "TRELLIS_FF", "connections": {"DI": [d], "Q": [q]}}


def _lut(z: int, *inputs: int) -> dict:
    pins = dict(zip("ABCD", ([i] for i in inputs), strict=False))
    return {"type": "LUT4", "connections": {**pins, "Z": [z]}}


def _netlist(cells: dict[str, dict], names: dict[str, int]) -> Netlist:
    nets = {name: {"bits": [bit]} for name, bit in names.items()}
    return Netlist({"modules": {"top": {"cells": cells, "netnames": nets}}})


def test_a_chain_of_luts_adds_each_lut_and_net() -> None:
    """a → two LUTs → b: clock to q, then a LUT and a net per LUT, and the net into b."""
    cells = {
        "a_TRELLIS_FF": _ff(9, 1),
        "l1": _lut(2, 1),
        "l2": _lut(3, 2, 1),
        "b_TRELLIS_FF": _ff(3, 4),
    }
    netlist = _netlist(cells, {"core.a": 1, "core.x": 2, "core.y": 3, "core.b": 4})
    (path,) = netlist.worst(0.0)[:1]
    assert path.group == "b"
    assert path.ns == pytest.approx(CLK_TO_Q_NS + 2 * (LUT_NS + ROUTE_NS) + ROUTE_NS)
    assert path.nets == ["core.a", "core.x", "core.y"]
    assert netlist.worst(path.ns + 0.01) == []


def test_a_carry_chain_pays_its_operand_once_and_its_carries_cheaply() -> None:
    """Three CCU2Cs in series: the operand enters the first, the carry runs through two."""
    ccu = lambda a, cin, cout: {  # noqa: E731
        "type": "CCU2C",
        "connections": {"A0": [a], "CIN": [cin] if cin else [], "COUT": [cout]},
    }
    cells = {
        "a_TRELLIS_FF": _ff(20, 1),
        "c1": ccu(1, None, 2), "c2": ccu(30, 2, 3), "c3": ccu(31, 3, 4),
        "b_TRELLIS_FF": _ff(4, 5),
    }  # fmt: skip
    netlist = _netlist(cells, {"a": 1, "k1": 2, "k2": 3, "k3": 4, "b": 5})
    want = CLK_TO_Q_NS + CARRY_IN_NS + ROUTE_NS + 2 * CARRY_THROUGH_NS + ROUTE_NS
    assert netlist.worst(0.0)[0].ns == pytest.approx(want)


def test_the_worst_path_into_a_group_wins_and_a_loop_does_not_hang() -> None:
    cells = {
        "a_TRELLIS_FF": _ff(9, 1),
        "short": _lut(2, 1),
        "long1": _lut(3, 1), "long2": _lut(4, 3), "long3": _lut(5, 4),
        "q_TRELLIS_FF_Q": _ff(2, 6), "q_TRELLIS_FF_Q_1": _ff(5, 7),  # one register, two bits
        "loop1": _lut(10, 11), "loop2": _lut(11, 10), "c_TRELLIS_FF": _ff(10, 12),
    }  # fmt: skip
    paths = _netlist(cells, {}).worst(0.0)
    assert paths[0].group == "q"
    assert paths[0].ns == pytest.approx(CLK_TO_Q_NS + 3 * (LUT_NS + ROUTE_NS) + ROUTE_NS)
    assert "c" in [p.group for p in paths]


def test_the_command_names_a_missing_netlist(tmp_path, capsys) -> None:
    assert depth.main([str(tmp_path / "top.json")]) == 2
    assert "run a board build" in capsys.readouterr().err
    netlist = {"modules": {"top": {"cells": {"a_TRELLIS_FF": _ff(2, 1), "b_TRELLIS_FF": _ff(1, 3)},
                                   "netnames": {"a": {"bits": [1]}}}}}  # fmt: skip
    (tmp_path / "top.json").write_text(json.dumps(netlist))
    assert depth.main([str(tmp_path / "top.json"), "0"]) == 0
    assert "b: a" in capsys.readouterr().out
