"""The instruction set: the compiler's packer against the RTL's layouts (defs/isa.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compiler.isa import TOKENS, InstructionError, body_fields, decode, encode
from defs.isa import ENGINE_COMMANDS, FIELDS, HEADER, INSTRUCTION_BITS, Opcode
from defs.params import preset
from rtl.isa import instruction_layout

PRESETS = [preset(n) for n in ("tiny", "fomm-256", "ulx3s-85f", "icebreaker")]
DOC = Path(__file__).resolve().parent.parent / "docs" / "isa.md"


@pytest.mark.parametrize("params", PRESETS, ids=lambda p: p.name)
def test_every_instruction_fits_the_word(params) -> None:
    for op in Opcode:
        assert instruction_layout(op, params).size == INSTRUCTION_BITS


@st.composite
def instructions(draw: st.DrawFn) -> tuple:
    params = draw(st.sampled_from(PRESETS))
    op = draw(st.sampled_from(list(Opcode)))
    fields = {name: draw(st.integers(0, (1 << bits) - 1)) for name, bits in body_fields(op, params)}
    tokens = {t: draw(st.integers(0, 1)) for t in TOKENS}
    return params, op, fields, tokens


@given(instructions())
def test_the_packer_and_the_rtl_layout_agree(case: tuple) -> None:
    """A word the compiler packs reads back field by field through the RTL's
    layout, and decodes to what was packed."""
    params, op, fields, tokens = case
    word = encode(op, params, fields, tokens)
    view = instruction_layout(op, params).from_bits(word)
    assert int(view.header.opcode) == op and int(view.pad) == 0
    assert {t: int(getattr(view.header, t)) for t in TOKENS} == tokens
    assert {name: int(getattr(view.body, name)) for name in fields} == fields
    decoded = decode(word, params)
    assert (decoded.op, decoded.fields, decoded.tokens) == (op, fields, tokens)


def _load(**change: int) -> dict[str, int]:
    fields = {"buffer": 0, "buffer_addr": 0, "dram_addr": 64, "stride": 8, "rows": 1}
    return fields | {"row_words": 8} | change


@pytest.mark.parametrize(
    ("word", "message"),
    [
        (0, "instruction 7: opcode 0 is not an instruction"),
        (12, "instruction 7: opcode 12 is not an instruction"),
        (
            int(Opcode.END) | 1 << 200,
            r"instruction 7: END: bits set beyond its fields \(bit 10 on\)",
        ),
        (1 << 256, "instruction 7: a word must fit 256 bits"),
    ],
)
def test_decoding_refuses_what_is_not_an_instruction(word: int, message: str) -> None:
    with pytest.raises(InstructionError, match=message):
        decode(word, PRESETS[0], index=7)


@pytest.mark.parametrize(
    ("fields", "tokens", "message"),
    [
        (_load(rows=1 << 16), {}, r"LOAD.rows = 65536: must fit 16 unsigned bits"),
        (_load(stride=-1), {}, r"LOAD.stride = -1: must fit 24 unsigned bits"),
        ({"buffer": 0}, {}, "LOAD: fields missing buffer_addr, dram_addr, row_words, rows"),
        (_load(colour=1), {}, "LOAD: fields unknown colour"),
        (_load(), {"push_later": 1}, "LOAD: unknown token flag"),
        (_load(), {"pop_prev": 2}, r"LOAD.pop_prev = 2: must fit 1 unsigned bits"),
    ],
)
def test_encoding_refuses_what_does_not_fit(fields, tokens, message: str) -> None:
    with pytest.raises(InstructionError, match=message):
        encode(Opcode.LOAD, PRESETS[0], fields, tokens)


def test_the_document_lists_every_field() -> None:
    """docs/isa.md's tables name every opcode, header field and body field of the
    table (compute bodies by their engine), so the document cannot fall behind."""
    text = DOC.read_text()
    rows = set(re.findall(r"^\| `(\w+)` \|", text, flags=re.M))
    for name in [f.name for f in HEADER] + [f.name for row in FIELDS.values() for f in row]:
        assert name in rows, f"docs/isa.md has no row for field {name!r}"
    for op in Opcode:
        assert f"`{op.name}`" in text, f"docs/isa.md does not describe {op.name}"
    for engine in ENGINE_COMMANDS.values():
        assert f"`{engine}`" in text
