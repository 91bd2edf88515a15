"""Walks over an elaborated design's hierarchy, for resource checks that cannot go stale.

Why: a budget written by hand ("the array's MACs + 4") stays right only until
the design changes; counting what `Fragment.get` actually produces follows it.
Amaranth has no public API for a fragment's expressions, so `multiplications`
reads the AST classes of Amaranth 0.5 (`amaranth.hdl._ast`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from amaranth.hdl import Fragment, Instance, Shape, _ast
from amaranth.lib.memory import Memory

#: Per FPGA family: the block RAM primitive and its widest mode (bits, words).
BLOCK_RAM_TILES = {"ecp5": ("DP16KD", 18, 1024), "ice40": ("SB_RAM40_4K", 16, 256)}


def fragments(design: object, platform: object = None) -> Iterator[tuple[str, Fragment]]:
    """Every fragment of the elaborated `design` with its hierarchy path ("top.a.b")."""
    stack = [("top", Fragment.get(design, platform))]
    while stack:
        path, fragment = stack.pop()
        yield path, fragment
        for i, (sub, name, _) in enumerate(fragment.subfragments):
            stack.append((f"{path}.{name if name is not None else f'U${i}'}", sub))


def instance_count(design: object, cell: str, platform: object = None) -> int:
    """Instances of the vendor primitive `cell` (e.g. "DP16KD") anywhere in `design`."""
    return sum(
        isinstance(fragment, Instance) and fragment.type == cell
        for _, fragment in fragments(design, platform)
    )


def memories(fragment: Fragment) -> Iterator[tuple[int, int]]:
    """(width, depth) of the `lib.memory.Memory` this fragment elaborates, if any:
    a memory left for Yosys to map that may become block RAM. One read only
    without a clock cannot (the block RAMs of both families read on an edge: it
    is LUT RAM or flip-flops), nor can one marked `ram_style` distributed."""
    for origin in fragment.origins or ():
        if not isinstance(origin, Memory):
            continue
        clocked = any(port.domain != "comb" for port in origin.read_ports)
        if clocked and origin.attrs.get("ram_style") != "distributed":
            yield Shape.cast(origin.shape).width, origin.depth


def block_ram_bound(design: object, family: str, platform: object = None) -> int:
    """At most this many block RAM tiles on `family`: the primitive's instances,
    plus for every inferred memory the tiles of the widest mode that cover it
    (Yosys may put a small one in LUT RAM or flip-flops instead, hence a bound)."""
    cell, bits, words = BLOCK_RAM_TILES[family]
    tiles = 0
    for _, fragment in fragments(design, platform):
        if isinstance(fragment, Instance):
            tiles += fragment.type == cell
        for width, depth in memories(fragment):
            tiles += math.ceil(width / bits) * math.ceil(depth / words)
    return tiles


def multiplications(fragment: Fragment) -> list[_ast.Operator]:
    """Every distinct `*` in the fragment's own statements that Yosys keeps a product.

    Distinct by object: an expression used twice is one cell, as Amaranth emits
    it. A product with a constant 0 or ±2^k is left out: Yosys turns it into a
    shift (any other constant still takes a DSP)."""
    statements = [s for stmts in fragment.statements.values() for s in stmts]
    values: list[_ast.Value] = []
    while statements:
        stmt = statements.pop()
        if isinstance(stmt, _ast.Assign):
            values += [stmt.lhs, stmt.rhs]
        elif isinstance(stmt, _ast.Switch):
            values.append(stmt.test)
            statements += [s for _, stmts, _ in stmt.cases for s in stmts]
        elif isinstance(stmt, _ast.Property):
            values.append(stmt.test)
    found: dict[int, _ast.Operator] = {}
    seen: set[int] = set()
    while values:
        v = values.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if isinstance(v, _ast.Operator):
            values += v.operands
            if v.operator == "*" and not any(_is_shift(o) for o in v.operands):
                found[id(v)] = v
        elif isinstance(v, _ast.Slice):
            values.append(v.value)
        elif isinstance(v, _ast.Part):
            values += [v.value, v.offset]
        elif isinstance(v, _ast.Concat):
            values += v.parts
        elif isinstance(v, _ast.SwitchValue):
            values += [v.test, *(value for _, value in v.cases)]
    return list(found.values())


def _is_shift(v: _ast.Value) -> bool:
    """A constant factor 0 or ±2^k."""
    return isinstance(v, _ast.Const) and abs(v.value) & (abs(v.value) - 1) == 0
