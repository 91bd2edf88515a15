"""The co-processor's contract with its host: fault codes and control registers.

The RTL (rtl/coproc/), the simulation harnesses and the documentation
(docs/coprocessor.md) all read these tables, so a register's index or a
fault's code is written once. Standard library only: this is the bottom layer.
"""

from __future__ import annotations

from enum import IntEnum

from defs.isa import Buffer


class Fault(IntEnum):
    """Why a run ended early: STATUS.fault (0 = none). The first fault wins; the
    co-processor then stops issuing, lets its bus requests drain and raises done."""

    NONE = 0
    ILLEGAL_INSTRUCTION = 1  # opcode, padding bits, a token flag naming no queue, SYNC/END queue
    ADDRESS = 2  # a transfer outside the image, of no rows or words, or past its buffer
    BUS_ERROR = 3  # the memory answered a request with an error
    WATCHDOG = 4  # nothing moved for WATCHDOG cycles: a token or a stream never came
    TOKEN_OVERFLOW = 5  # a token counter would pass its maximum (tokens pushed, never popped)
    PROGRAM_END = 6  # the program's words ran out before every queue reached END


class Register(IntEnum):
    """Control/status registers, 32 bits each, by word index on the control port."""

    CONTROL = 0  # write: bit 0 start, bit 1 soft reset (both self-clearing)
    STATUS = 1  # read: bit 0 busy, bit 1 done, bits 8..15 the fault (`Fault`)
    FAULT_INDEX = 2  # read: the instruction the fault names (its index in the program)
    PROGRAM_BASE = 3  # byte address of the program's first word: a multiple of 32 (else ADDRESS)
    PROGRAM_WORDS = 4  # instructions in the program
    IMAGE_BYTES = 5  # bytes of the memory image: a transfer past it is an ADDRESS fault
    WATCHDOG = 6  # cycles without progress before a WATCHDOG fault (0: never)
    VERSION = 7  # read: ISA_VERSION in bits 0..7, bus bytes in 8..15
    CYCLES = 8  # read: cycles from start to done
    COUNTERS = 16  # read: COUNTER_NAMES' counters from here on, one register each


#: The busy and stall counters (COUNTERS + i), each counting cycles of one run:
#: a queue is busy while it executes an instruction and stalls while its head waits
#: for a token; an engine is busy from taking a command to its done and stalls while
#: its output waits for the store path; the port is busy while a request is offered
#: or outstanding and stalls while the memory holds a request back.
COUNTER_NAMES = (
    *(f"{q}_{k}" for q in ("load", "compute", "store") for k in ("busy", "stall")),
    *(f"{e}_{k}" for e in ("conv", "warp", "act", "softmax", "heatmap", "motion")
      for k in ("busy", "stall")),
    "port_busy",
    "port_stall",
)  # fmt: skip

#: Instructions in flight are fetched as whole 32-byte words.
INSTRUCTION_BYTES = 32


#: The LOAD targets an engine takes as an input stream during a command (the conv
#: residual, the warp flow, the element-wise inputs, the softmax logits, the motion
#: masks): such a LOAD waits for its engine's command, so it is queued apart and
#: gives its tokens when queued (docs/coprocessor.md).
INPUT_STREAMS = frozenset(
    {
        Buffer.CONV_RESIDUAL,
        Buffer.WARP_FLOW,
        Buffer.ACT_INPUT,
        Buffer.SOFTMAX_INPUT,
        Buffer.MOTION_MASK,
    }
)
