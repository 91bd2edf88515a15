"""The compiler's packer: instructions to words and back, from the ISA table (defs/isa.py).

Field offsets are computed here from the table (the header and the LOAD,
STORE, SYNC and END rows) and from the engines' command layouts (their
members in order), not read from `rtl.isa`'s generated layouts; the tests
compare the two, so the packer and the RTL cannot drift apart silently.
Decoding refuses what the controller must refuse (an illegal opcode, bits set
in the padding), naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from amaranth import Shape

from defs.isa import ENGINE_COMMANDS, FIELDS, HEADER, INSTRUCTION_BITS, Opcode
from rtl.isa import body_layout

if TYPE_CHECKING:
    from defs.params import GraceParams

#: The header's token flags, in the table's order.
TOKENS = tuple(f.name for f in HEADER if f.name != "opcode")


class InstructionError(ValueError):
    """An instruction that cannot be encoded or decoded (one line, naming the field)."""


@dataclass(frozen=True)
class Instruction:
    op: Opcode
    fields: dict[str, int]  # the body's fields (an engine command's for compute opcodes)
    tokens: dict[str, int]  # pop_prev, pop_next, push_prev, push_next


def body_fields(op: Opcode, params: GraceParams) -> list[tuple[str, int]]:
    """(name, bits) of the body, in order: the table's row, or the engine's command."""
    if op in ENGINE_COMMANDS:
        layout = body_layout(op, params)
        return [(name, Shape.cast(shape).width) for name, shape in layout.members.items()]
    return [(f.name, f.bits) for f in FIELDS.get(op, ())]


def _layout(op: Opcode, params: GraceParams) -> list[tuple[str, int, int]]:
    """(name, offset, bits) of every field after the opcode: tokens, then the body."""
    offset = HEADER[0].bits
    placed = []
    for name, bits in [(f.name, f.bits) for f in HEADER[1:]] + body_fields(op, params):
        placed.append((name, offset, bits))
        offset += bits
    if offset > INSTRUCTION_BITS:
        raise InstructionError(
            f"{op.name}: {offset} bits exceed the {INSTRUCTION_BITS}-bit instruction word"
        )
    return placed


def encode(
    op: Opcode,
    params: GraceParams,
    fields: Mapping[str, int],
    tokens: Mapping[str, int] | None = None,
) -> int:
    """One instruction word. Every body field must be given; tokens default to 0."""
    op = Opcode(op)
    tokens = dict(tokens or {})
    unknown = set(tokens) - set(TOKENS)
    if unknown:
        raise InstructionError(f"{op.name}: unknown token flag(s) {', '.join(sorted(unknown))}")
    body = body_fields(op, params)
    names = {name for name, _ in body}
    missing, extra = names - set(fields), set(fields) - names
    if missing or extra:
        what = [f"missing {', '.join(sorted(missing))}"] if missing else []
        what += [f"unknown {', '.join(sorted(extra))}"] if extra else []
        raise InstructionError(f"{op.name}: fields {'; '.join(what)}")
    values = {**{t: tokens.get(t, 0) for t in TOKENS}, **fields}
    word = int(op)
    for name, offset, bits in _layout(op, params):
        value = int(values[name])
        if not 0 <= value < 1 << bits:
            raise InstructionError(f"{op.name}.{name} = {value}: must fit {bits} unsigned bits")
        word |= value << offset
    return word


def decode(word: int, params: GraceParams, *, index: int | None = None) -> Instruction:
    """The instruction a word holds; `index` (its place in the program) goes in errors."""
    where = "" if index is None else f"instruction {index}: "
    if not 0 <= word < 1 << INSTRUCTION_BITS:
        raise InstructionError(f"{where}a word must fit {INSTRUCTION_BITS} bits")
    code = word & ((1 << HEADER[0].bits) - 1)
    try:
        op = Opcode(code)
    except ValueError:
        raise InstructionError(f"{where}opcode {code} is not an instruction") from None
    placed = _layout(op, params)
    end = placed[-1][1] + placed[-1][2]
    if word >> end:
        raise InstructionError(f"{where}{op.name}: bits set beyond its fields (bit {end} on)")
    values = {name: (word >> offset) & ((1 << bits) - 1) for name, offset, bits in placed}
    tokens = {t: values.pop(t) for t in TOKENS}
    return Instruction(op, values, tokens)
