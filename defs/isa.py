"""The co-processor's instruction set: every instruction's fields, written once.

A program is a sequence of fixed-width instruction words in external memory
(docs/isa.md). Each word starts with the same header — the opcode and four
dependency-token flags, VTA's scheme between the load, compute and store
queues — and continues with its opcode's fields, least significant bit first.
The RTL's `lib.data` layouts (`rtl/isa.py`) and the compiler's packer
(`compiler/isa.py`) are both generated from the tables here, so the two cannot
drift; a compute instruction's body is its engine's tile command, whose layout
the engine defines (`ENGINE_COMMANDS` names it).

Standard library only: this is the bottom layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

#: Bumped on any change to the tables below; a program carries it (docs/isa.md).
ISA_VERSION = 2
#: Bits of every instruction word.
INSTRUCTION_BITS = 256


class Opcode(IntEnum):
    """0 is illegal, so that zeroed memory never runs as a program."""

    LOAD = 1  # external memory → an engine's buffer (load queue)
    STORE = 2  # an engine's results → external memory (store queue)
    CONV = 3  # the compute queue's engines: one tile command each
    WARP = 4
    ACT = 5
    SOFTMAX = 6
    HEATMAP = 7
    MOTION = 8
    SYNC = 9  # tokens only: a queue waits on, or signals, its neighbours
    END = 15  # the program's last instruction


class Queue(IntEnum):
    """The three queues an instruction is dispatched to, in pipeline order."""

    LOAD = 0
    COMPUTE = 1
    STORE = 2


#: The queue each opcode runs on. SYNC and END carry a queue field of their own.
QUEUE_OF = {
    Opcode.LOAD: Queue.LOAD,
    Opcode.STORE: Queue.STORE,
    **{op: Queue.COMPUTE for op in (Opcode.CONV, Opcode.WARP, Opcode.ACT)},
    **{op: Queue.COMPUTE for op in (Opcode.SOFTMAX, Opcode.HEATMAP, Opcode.MOTION)},
}


class Buffer(IntEnum):
    """What a LOAD writes: an engine's buffer or write stream (its port, docs/isa.md)."""

    CONV_INPUT = 0
    CONV_WEIGHT = 1
    CONV_PARAM = 2
    CONV_RESIDUAL = 3
    WARP_FEATURE = 4
    WARP_FLOW = 5
    ACT_TABLE = 6
    ACT_PARAM = 7
    ACT_INPUT = 8
    SOFTMAX_EXP = 9
    SOFTMAX_INPUT = 10
    HEATMAP_GRID = 11
    HEATMAP_KEYPOINT = 12
    HEATMAP_GAUSSIAN = 13
    MOTION_GRID = 14
    MOTION_KEYPOINT = 15
    MOTION_JACOBIAN = 16
    MOTION_MASK = 17


class Source(IntEnum):
    """What a STORE reads: an engine's output stream."""

    CONV = 0
    WARP = 1
    ACT = 2
    SOFTMAX = 3
    HEATMAP = 4
    MOTION = 5


@dataclass(frozen=True)
class Field:
    name: str
    bits: int
    doc: str


#: Every instruction's first bits.
HEADER = (
    Field("opcode", 4, "`Opcode`; 0 is illegal"),
    Field("pop_prev", 1, "wait for a token from the previous queue before running"),
    Field("pop_next", 1, "wait for a token from the next queue before running"),
    Field("push_prev", 1, "give the previous queue a token when done"),
    Field("push_next", 1, "give the next queue a token when done"),
)

#: A transfer between external memory and an engine: `rows` rows of `row_words`
#: words, `stride` bytes apart in memory, contiguous in the buffer.
_TRANSFER = (
    Field("dram_addr", 32, "byte address in external memory of the first row"),
    Field("stride", 24, "bytes from one row's start to the next in external memory"),
    Field("rows", 16, "rows to move, 1 or more"),
    Field("row_words", 16, "words per row (the buffer's word), 1 or more"),
)

#: Each opcode's fields after the header. A compute opcode's body is its
#: engine's tile command (`ENGINE_COMMANDS`), placed right after the header.
FIELDS: dict[Opcode, tuple[Field, ...]] = {
    Opcode.LOAD: (
        Field("buffer", 5, "`Buffer`: the engine buffer or write stream loaded"),
        Field("buffer_addr", 16, "first word in the buffer (0 for a stream)"),
        *_TRANSFER,
    ),
    Opcode.STORE: (
        Field("source", 3, "`Source`: the engine output stream stored"),
        *_TRANSFER,
    ),
    Opcode.SYNC: (Field("queue", 2, "`Queue` the tokens are popped and pushed on"),),
    Opcode.END: (Field("queue", 2, "`Queue` that ends (every queue ends with one)"),),
}

#: The compute opcodes' engines, as `rtl.blocks` names them.
ENGINE_COMMANDS: dict[Opcode, str] = {
    Opcode.CONV: "conv",
    Opcode.WARP: "warp",
    Opcode.ACT: "act",
    Opcode.SOFTMAX: "softmax",
    Opcode.HEATMAP: "heatmap",
    Opcode.MOTION: "motion",
}


def header_bits() -> int:
    return sum(f.bits for f in HEADER)
