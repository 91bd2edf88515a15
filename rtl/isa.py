"""The instruction word as `lib.data` layouts, generated from the ISA table (defs/isa.py).

A word is the header, then the opcode's body, then zero padding to
INSTRUCTION_BITS. A compute opcode's body is its engine's tile command layout,
the same one the engine's `cmd` stream carries, so the controller (issue 17)
forwards it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from amaranth import unsigned
from amaranth.lib import data

from defs.isa import ENGINE_COMMANDS, FIELDS, HEADER, INSTRUCTION_BITS, Opcode

if TYPE_CHECKING:
    from defs.params import GraceParams


def _engine_commands() -> dict[str, Callable[[GraceParams], data.StructLayout]]:
    """Each engine's tile command layout, by block name (imported here, not at the top,
    so the layouts of every engine load only when an instruction needs them)."""
    from rtl.act import heatmap_layouts, motion_layouts, softmax
    from rtl.act import layouts as act
    from rtl.conv_layouts import command_layout as conv
    from rtl.warp.layouts import command_layout as warp

    return {
        "conv": conv,
        "warp": warp,
        "act": act.command_layout,
        "softmax": softmax.command_layout,
        "heatmap": heatmap_layouts.command_layout,
        "motion": motion_layouts.command_layout,
    }


def header_layout() -> data.StructLayout:
    return data.StructLayout({f.name: unsigned(f.bits) for f in HEADER})


def body_layout(op: Opcode, params: GraceParams) -> data.StructLayout:
    """The opcode's fields after the header: its table row, or its engine's command."""
    if op in ENGINE_COMMANDS:
        return _engine_commands()[ENGINE_COMMANDS[op]](params)
    return data.StructLayout({f.name: unsigned(f.bits) for f in FIELDS.get(op, ())})


def instruction_layout(op: Opcode, params: GraceParams) -> data.StructLayout:
    """The whole word: header, body, zero padding to INSTRUCTION_BITS."""
    header, body = header_layout(), body_layout(op, params)
    pad = INSTRUCTION_BITS - header.size - body.size
    if pad < 0:
        raise ValueError(
            f"{op.name}: header {header.size} + body {body.size} bits exceed the "
            f"{INSTRUCTION_BITS}-bit instruction word with {params.name}'s widths"
        )
    return data.StructLayout({"header": header, "body": body, "pad": unsigned(pad)})
