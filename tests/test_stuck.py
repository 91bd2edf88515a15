"""boards/stuck.py: registers that never leave their initial value, on netlists small
enough to check by hand."""

from __future__ import annotations

import json

from boards import stuck
from boards.stuck import by_part, stuck_registers

#: LUT4 tables (bit k of INIT is the output for inputs D C B A = k).
AND_AB = 0x8888
MUX_A_B_BY_C = 0xCACA  # C ? B : A
BUF_A = 0xAAAA


def _ff(d: object, q: int, regset: str = "RESET") -> dict:
    return {
        "type": "TRELLIS_FF",
        "parameters": {"REGSET": regset},
        "port_directions": {"DI": "input", "Q": "output"},
        "connections": {"DI": [d], "Q": [q]},
    }


def _lut(table: int, z: int, *inputs: object) -> dict:
    pins = dict(zip("ABCD", ([i] for i in inputs), strict=False))
    return {
        "type": "LUT4",
        "parameters": {"INIT": format(table, "016b")},
        "port_directions": {**dict.fromkeys(pins, "input"), "Z": "output"},
        "connections": {**pins, "Z": [z]},
    }


def _pfumx(z: int, c0: object, alut: object, blut: object) -> dict:
    pins = {"C0": [c0], "ALUT": [alut], "BLUT": [blut]}
    return {
        "type": "PFUMX",
        "port_directions": {**dict.fromkeys(pins, "input"), "Z": "output"},
        "connections": {**pins, "Z": [z]},
    }


def _netlist(cells: dict[str, dict]) -> dict:
    return {"modules": {"top": {"cells": cells, "netnames": {}}}}


def test_two_registers_holding_each_other_at_zero_are_found() -> None:
    """A skid register's shape: the output loads the skid or the (constant) input, the
    skid loads the input or itself, the choices made by a register fed from outside.
    Neither DI is a constant; both always hold 0. The select register moves."""
    cells = {
        "port.sel": _ff(100, 1),  # net 100 is a module input: unknown
        "port.o_mux": _lut(MUX_A_B_BY_C, 10, "0", 3, 1),  # sel ? skid : 0
        "port.o": _ff(10, 2),
        "port.skid_mux": _lut(MUX_A_B_BY_C, 11, 3, "0", 1),  # sel ? 0 : skid
        "port.skid": _ff(11, 3),
    }
    assert stuck_registers(_netlist(cells)) == {"port.o": 0, "port.skid": 0}
    assert by_part(stuck_registers(_netlist(cells))) == [("port", 2)]


def test_a_register_fed_from_outside_or_through_a_moving_register_is_not() -> None:
    cells = {
        "a": _ff(100, 1),  # from outside
        "b_lut": _lut(BUF_A, 10, 1),
        "b": _ff(10, 2),  # follows a
        "c_lut": _lut(AND_AB, 11, 2, 3),
        "c": _ff(11, 3),  # c & b: held at 0 by itself whatever b does
        "d_mux": _pfumx(12, 1, 3, 1),  # a ? c : a
        "d": _ff(12, 4),  # a when a is 0: moves with a
        "e_mux": _pfumx(13, 1, 3, "0"),  # a ? c : 0
        "e": _ff(13, 5),  # 0 either way
    }
    assert stuck_registers(_netlist(cells)) == {"c": 0, "e": 0}


def test_a_register_set_at_one_holds_only_ones() -> None:
    cells = {
        "one": _ff("1", 1, "SET"),
        "zero_to_one": _ff("1", 2),
        "set_to_zero": _ff("0", 3, "SET"),
    }
    assert stuck_registers(_netlist(cells)) == {"one": 1}


def test_a_combinational_loop_reads_as_unknown() -> None:
    cells = {"l1": _lut(BUF_A, 10, 11), "l2": _lut(BUF_A, 11, 10), "r": _ff(10, 1)}
    assert stuck_registers(_netlist(cells)) == {}


def test_the_command_counts_and_refuses_a_missing_netlist(tmp_path, capsys) -> None:
    path = tmp_path / "top.json"
    path.write_text(json.dumps(_netlist({"x.y.r": _ff("0", 1), "x.s": _ff(100, 2)})))
    assert stuck.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 flip-flops never leave their initial value" in out and "x.y" in out
    assert stuck.main([str(tmp_path / "none.json")]) == 2
    assert "run a board build" in capsys.readouterr().err
