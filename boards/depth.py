"""A rough static timing pass over a `synth_ecp5` JSON netlist: every deep
register-to-register path at once, grouped by the register it ends in.

Why: nextpnr reports one critical path per clock, and a place-and-route of the
co-processor's top takes 10-20 minutes, so fixing one path per run is slow. This
pass reads the netlist Yosys writes before placement (`top.json` in a build
directory) and estimates each path's delay from its cells: LUT4, the PFUMX /
L6MUX21 widening muxes, CCU2C carry chains, LUT RAM (TRELLIS_DPR16X4), block RAM
(DP16KD, registered outputs) and MULT18X18D (combinational unless its registers
are used), with one fixed routing delay per net. The figures are not nextpnr's:
routing is a guess, so the ranking and the paths' cells are what to read. The
co-processor's timing batches of issue 17 were chosen from its lists
(docs/coprocessor.md): after them the glue's deepest paths were no deeper than
the engines' own, which meet 160 MHz alone.

Usage: `python -m boards.depth build/boards/ulx3s-85f/top/<hash>/top.json [ns]`
prints the endpoints whose estimate exceeds `ns` (default 8.0), worst first,
each with the chain of modules its path crosses.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

#: A net's routing, guessed (nextpnr's ECP5 routes measured 0.2-6 ns; ~1 is common).
ROUTE_NS = 0.9
#: Cell delays (ECP5 speed grade 6, nextpnr's timing model, rounded).
CLK_TO_Q_NS = 0.52
LUT_NS = 0.24
MUX_NS = 0.2
CARRY_IN_NS = 0.35  # an operand into a CCU2C's carry out
CARRY_THROUGH_NS = 0.06  # carry in to carry out
BRAM_OUT_NS = 3.0
DSP_NS = 3.93

#: What Yosys and nextpnr append to a net's name for the cells along it.
_CELL_SUFFIX = re.compile(
    r"(_LUT4|_TRELLIS|_CCU2C|_PFUMX|_L6MUX|_MULT|_DPR|_DO|_DI|_RAD|\$DPRAM).*"
)

#: Cells whose outputs start paths of their own (anything not listed below does).
_SINKS = {"TRELLIS_FF": ("DI", "CE", "LSR"), "TRELLIS_DPR16X4": ("DI", "WAD", "WRE")}


@dataclass(frozen=True)
class Arc:
    """A cell's input bit to one of its output bits."""

    source: int
    delay: float
    routed: bool  # the input comes over general routing (not a carry or a slice's mux)


@dataclass(frozen=True)
class DeepPath:
    """The worst path into one endpoint group."""

    group: str
    ns: float
    nets: list[str]

    def modules(self) -> list[str]:
        """The path's nets as the modules they belong to, repeats dropped."""
        names = [_CELL_SUFFIX.sub("", n) for n in self.nets]
        return [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]


class Netlist:
    """The timing graph of one module of a Yosys JSON netlist."""

    def __init__(self, netlist: dict, top: str = "top") -> None:
        module = netlist["modules"][top]
        self.names: dict[int, str] = {}
        for name, net in module["netnames"].items():
            for bit in net["bits"]:
                if isinstance(bit, int) and self._better(bit, name):
                    self.names[bit] = name
        self.arcs: dict[int, list[Arc]] = defaultdict(list)
        self.starts: dict[int, float] = {}
        self.ends: list[tuple[int, str]] = []  # (bit, cell)
        for cell_name, cell in module["cells"].items():
            self._cell(cell_name, cell)
        self._arrival: dict[int, tuple[float, int | None]] = {}

    def _better(self, bit: int, name: str) -> bool:
        old = self.names.get(bit)
        return old is None or (old.startswith("$") and not name.startswith("$"))

    def _cell(self, name: str, cell: dict) -> None:
        kind, pins = cell["type"], cell["connections"]
        directions = cell.get("port_directions", {})

        def bits(*ports: str) -> list[int]:
            return [b for p in ports for b in pins.get(p, []) if isinstance(b, int)]

        if kind in _SINKS:
            self.ends += [(b, name) for b in bits(*_SINKS[kind])]
        if kind == "TRELLIS_FF":
            self.starts.update(dict.fromkeys(bits("Q"), CLK_TO_Q_NS))
        elif kind == "LUT4":
            for out in bits("Z"):
                self.arcs[out] += [Arc(b, LUT_NS, True) for b in bits("A", "B", "C", "D")]
        elif kind in ("PFUMX", "L6MUX21"):
            for out in bits("Z"):
                self.arcs[out] += [Arc(b, MUX_NS, False) for b in bits("ALUT", "BLUT", "D0", "D1")]
                self.arcs[out] += [Arc(b, MUX_NS, True) for b in bits("C0", "SD")]
        elif kind == "CCU2C":
            low, high = bits("A0", "B0", "C0", "D0"), bits("A1", "B1", "C1", "D1")
            for out, operands in ((bits("S0"), low), (bits("S1"), low + high)):
                for o in out:
                    self.arcs[o] += [Arc(b, CARRY_IN_NS, True) for b in operands]
                    self.arcs[o] += [Arc(b, LUT_NS, False) for b in bits("CIN")]
            for o in bits("COUT"):
                self.arcs[o] += [Arc(b, CARRY_IN_NS, True) for b in low + high]
                self.arcs[o] += [Arc(b, CARRY_THROUGH_NS, False) for b in bits("CIN")]
        elif kind == "TRELLIS_DPR16X4":
            for out in bits("DO"):
                self.arcs[out] += [Arc(b, LUT_NS, True) for b in bits("RAD")]
        elif kind == "DP16KD":
            outputs = [p for p, d in directions.items() if d == "output"]
            inputs = [p for p, d in directions.items() if d == "input"]
            self.starts.update(dict.fromkeys(bits(*outputs), BRAM_OUT_NS))
            self.ends += [(b, name) for b in bits(*inputs)]
        elif kind == "MULT18X18D":
            self._multiplier(name, cell, bits)
        else:  # IO, the global set/reset, ...: their outputs start paths
            outputs = [p for p, d in directions.items() if d == "output"]
            self.starts.update(dict.fromkeys(bits(*outputs), 0.0))

    def _multiplier(self, name: str, cell: dict, bits: object) -> None:
        ports = cell.get("port_directions", {})
        operands = bits(*(p for p, d in ports.items() if d == "input" and re.match(r"[AB]\d", p)))
        products = bits(*(p for p, d in ports.items() if d == "output" and p.startswith("P")))
        registered_in = cell["parameters"].get("REG_INPUTA_CLK", "NONE") != "NONE"
        registered_out = cell["parameters"].get("REG_OUTPUT_CLK", "NONE") != "NONE"
        if registered_in or registered_out:
            self.ends += [(b, name) for b in operands]
            start = 1.5 if registered_out else CLK_TO_Q_NS + DSP_NS
            self.starts.update(dict.fromkeys(products, start))
        else:
            for out in products:
                self.arcs[out] += [Arc(b, DSP_NS, True) for b in operands]

    def arrival(self, bit: int) -> float:
        """The latest time `bit` settles after the clock edge (iterative: deep graphs;
        a combinational loop, which synthesis would have refused, counts as settled)."""
        stack: list[tuple[int, bool]] = [(bit, False)]
        opened: set[int] = set()
        while stack:
            b, expanded = stack.pop()
            if b in self._arrival:
                continue
            if b in self.starts or b not in self.arcs:
                self._arrival[b] = (self.starts.get(b, 0.0), None)
            elif not expanded:
                opened.add(b)
                stack.append((b, True))
                stack += [(a.source, False) for a in self.arcs[b] if a.source not in opened]
            else:
                best: tuple[float, int | None] = (-1.0, None)
                for a in self.arcs[b]:
                    before = self._arrival.get(a.source, (0.0, None))[0]
                    t = before + a.delay + (ROUTE_NS if a.routed else 0.0)
                    if t > best[0]:
                        best = (t, a.source)
                self._arrival[b] = best
        return self._arrival[bit][0]

    def nets(self, bit: int) -> list[str]:
        """The nets of the worst path into `bit`, from its start."""
        chain, seen = [], set()
        b: int | None = bit
        while b is not None and b not in seen:  # (a loop's nets are listed once)
            seen.add(b)
            chain.append(self.names.get(b, str(b)))
            b = self._arrival.get(b, (0.0, None))[1]
        return chain[::-1]

    def worst(self, limit_ns: float) -> list[DeepPath]:
        """Each endpoint group's worst path above `limit_ns`, worst first."""
        found: dict[str, tuple[float, int]] = {}
        for bit, cell in self.ends:
            ns = self.arrival(bit) + ROUTE_NS
            group = _group(cell)
            if ns > limit_ns and (group not in found or ns > found[group][0]):
                found[group] = (ns, bit)
        ranked = sorted(found.items(), key=lambda item: -item[1][0])
        return [DeepPath(group, ns, self.nets(bit)) for group, (ns, bit) in ranked]


def _group(cell: str) -> str:
    """A register's name without the suffixes Yosys and nextpnr add to its cells."""
    name = re.sub(r"(_TRELLIS_FF.*|\$.*|_DPR.*)", "", cell)
    return re.sub(r"\.storage\.\d+\.\d+.*", ".storage", name)


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2:
        print("usage: python -m boards.depth TOP_JSON [NS]", file=sys.stderr)
        return 2
    path = Path(argv[0])
    if not path.is_file():
        print(f"no netlist at {path}: run a board build (grace build) first", file=sys.stderr)
        return 2
    limit = float(argv[1]) if len(argv) > 1 else 8.0
    for p in Netlist(json.loads(path.read_text())).worst(limit):
        print(f"{p.ns:5.1f} ns  {p.group}: " + " > ".join(p.modules()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
