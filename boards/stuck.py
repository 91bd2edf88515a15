"""Registers that never leave their initial value, in a `synth_ecp5` JSON netlist.

Why: Yosys removes a flip-flop whose next value is a constant, but not a group
of flip-flops that hold each other at zero. On the ULX3S top the memory port's
slots for its three reading clients kept 438 registers for data and byte
selects their clients never drive: a `SkidRegister`'s output and skid
registers load each other through their enables, so neither input is a
constant to `opt_dff`. Those registers cost LUTs, flip-flops and, worse, pins
on the slots' clock enables, which were among the nets with most late
endpoints at every seed (docs/coprocessor.md).

The scan is a greatest fixed point. It starts from every flip-flop and drops
each one whose next value (its DI, through LUT4, PFUMX and L6MUX21 cells) is not
its initial value once the flip-flops still in the set are taken at theirs and
every other signal as unknown; what is left when nothing drops can never
change: each edge, every register of the set loads its initial value again
(an enable that holds, or a reset to that value, changes nothing). Carry
chains, LUT RAM, block RAM and multipliers count as unknown, so the scan
misses registers held by them and reports none that can move.

Usage: `python -m boards.stuck build/boards/ulx3s-85f/top/<hash>/top.json`
prints the count and the parts holding them (about a minute for the top).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

#: An unknown value in the scan's three-valued logic (0, 1 or unknown).
UNKNOWN = None

#: The widening muxes' pins: (select, the input when it is 1, the input when it is 0).
_MUXES = {"PFUMX": ("C0", "ALUT", "BLUT"), "L6MUX21": ("SD", "D1", "D0")}


class _Scan:
    def __init__(self, netlist: dict, top: str) -> None:
        self.cells = netlist["modules"][top]["cells"]
        self.driver: dict[int, tuple[str, str]] = {}  # bit → (cell, output port)
        for name, cell in self.cells.items():
            for port, direction in cell.get("port_directions", {}).items():
                if direction == "output":
                    for bit in cell["connections"][port]:
                        self.driver[bit] = (name, port)
        self.held = {
            name: int(cell.get("parameters", {}).get("REGSET", "RESET") == "SET")
            for name, cell in self.cells.items()
            if cell["type"] == "TRELLIS_FF"
        }
        self.memo: dict[object, int | None] = {}

    def run(self) -> dict[str, int]:
        changed = True
        while changed:  # a round sees every drop of the round before it
            changed, self.memo = False, {}
            for name in list(self.held):
                if self.value(self.cells[name]["connections"]["DI"][0]) != self.held[name]:
                    del self.held[name]
                    changed = True
        return self.held

    def value(self, bit: object) -> int | None:
        if bit in ("0", "1"):
            return int(bit)
        if bit not in self.driver:  # "x", or a module input
            return UNKNOWN
        if bit not in self.memo:
            self.memo[bit] = UNKNOWN  # a combinational loop reads as unknown
            self.memo[bit] = self._output(*self.driver[bit])
        return self.memo[bit]

    def _output(self, name: str, port: str) -> int | None:
        cell = self.cells[name]
        pins = cell["connections"]
        if cell["type"] == "TRELLIS_FF":
            return self.held.get(name, UNKNOWN)
        if cell["type"] == "LUT4":
            init = cell["parameters"]["INIT"]
            table = int(init, 2) if isinstance(init, str) else init
            return _lut(table, [self.value(pins[p][0]) if pins.get(p) else 0 for p in "ABCD"])
        if cell["type"] in _MUXES:
            s, a, b = (self.value(pins[p][0]) for p in _MUXES[cell["type"]])
            if s is UNKNOWN:
                return a if a == b else UNKNOWN
            return a if s else b
        return UNKNOWN


def _lut(table: int, inputs: list[int | None]) -> int | None:
    """A LUT4's output when some inputs are unknown: known if every row they allow agrees."""
    rows = [0]
    for k, v in enumerate(inputs):
        rows = [r | (b << k) for r in rows for b in ((0, 1) if v is UNKNOWN else (v,))]
    outputs = {(table >> r) & 1 for r in rows}
    return outputs.pop() if len(outputs) == 1 else UNKNOWN


def stuck_registers(netlist: dict, top: str = "top") -> dict[str, int]:
    """Each flip-flop cell that never leaves its initial value, with that value."""
    return _Scan(netlist, top).run()


def by_part(cells: dict[str, int]) -> list[tuple[str, int]]:
    """The cells' parts (their hierarchy path up to the last dot), most first."""
    return Counter(name.rpartition(".")[0] or "(top)" for name in cells).most_common()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m boards.stuck TOP_JSON", file=sys.stderr)
        return 2
    path = Path(argv[0])
    if not path.is_file():
        print(f"no netlist at {path}: run a board build (grace build) first", file=sys.stderr)
        return 2
    netlist = json.loads(path.read_text())
    stuck = stuck_registers(netlist)
    total = sum(c["type"] == "TRELLIS_FF" for c in netlist["modules"]["top"]["cells"].values())
    print(f"{len(stuck):,} of {total:,} flip-flops never leave their initial value")
    for part, count in by_part(stuck):
        print(f"{count:6,}  {part}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
