"""A queue without flags, for the conv engine's per-row accumulator FIFOs.

Why not `lib.fifo`: the engine keeps one queue per array row, by that row's
accumulators, and all of them move in lockstep under counts the engine keeps
centrally (credits for room, `held` for what has arrived). A SyncFIFOBuffered
per row also tracked its own levels, and its read-side logic (next to the
output unit, at the die's centre) and its storage (next to the row) formed one
combinational loop across the die: on ECP5 that loop set the clock (8.9 ns).
Here every register of the queue is local to the row: a write pointer and a
read pointer, each advanced by the row's own copy of the enable, and a memory
read through a transparent synchronous port (LUT RAM and an address register on
ECP5, block RAM on iCE40).

`head` is the oldest entry not yet popped, a cycle after it was written. With
`transparent=False` it shows two cycles after, and in the cycle after an entry
is written to the slot `head` shows, `head` is undefined: the users that choose
this form never look at a slot that soon. It suits iCE40 block RAM, which has
no defined read of the address being written: the memory is marked
`no_rw_check`, and board builds run `UNCHECKED_COLLISIONS`, so Yosys builds
neither a transparent read's bypass nor old-data collision logic around it
(41 flip-flops and 25 LUTs for a 17-bit, 20-entry queue, and the iCE40 conv
engine's critical path). The Amaranth simulator returns the old contents
there instead, so the users' timing is checked by construction: the
StreamQueue's tests assert on every edge that `valid` never shows such a slot,
and the conv engine's metadata queue is read a MAC pipeline after its push.
The user guarantees never to push into a full queue nor pop an empty one; the
queue does not check (it has no flags to check with).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

#: Yosys's attribute for "no read of an address in the cycle it is written".
NO_RW_CHECK = "no_rw_check"

#: Yosys commands, run after reading the RTLIL: the read port of every memory
#: marked `NO_RW_CHECK` (one read, one write port) may return anything on a
#: collision. Yosys honours the mark itself only where it folds a register into
#: an asynchronous read, as from Verilog; Amaranth's RTLIL has synchronous read
#: ports that promise the old contents.
UNCHECKED_COLLISIONS = (
    "proc; memory_collect; "
    f"setparam -set RD_COLLISION_X_MASK 1'1 t:$mem_v2 a:{NO_RW_CHECK} %i "
    "r:RD_PORTS=1 %i r:WR_PORTS=1 %i"
)


class RowQueue(wiring.Component):
    """`depth` entries of `width` bits; `push` writes `data`, `pop` drops `head`."""

    def __init__(self, width: int, depth: int, *, transparent: bool = True) -> None:
        self.width, self.depth, self.transparent = width, depth, transparent
        super().__init__({"data": In(width), "push": In(1), "pop": In(1), "head": Out(width)})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.storage = mem = Memory(
            shape=unsigned(self.width),
            depth=self.depth,
            init=[],
            attrs={} if self.transparent else {NO_RW_CHECK: 1},
        )
        wp = mem.write_port()
        rp = mem.read_port(transparent_for=(wp,) if self.transparent else ())
        write_at = Signal(range(self.depth))
        read_at = Signal(range(self.depth))
        read_next = Signal.like(read_at)
        m.d.comb += [
            wp.addr.eq(write_at),
            wp.data.eq(self.data),
            wp.en.eq(self.push),
            read_next.eq(Mux(self.pop, _following(read_at, self.depth), read_at)),
            rp.addr.eq(read_next),
            self.head.eq(rp.data),
        ]
        m.d.sync += read_at.eq(read_next)
        with m.If(self.push):
            m.d.sync += write_at.eq(_following(write_at, self.depth))
        return m


def _following(pointer: Signal, depth: int) -> object:
    """The next slot after `pointer`, wrapping at `depth`."""
    if depth & (depth - 1) == 0:
        return (pointer + 1)[: len(pointer)]
    return Mux(pointer == depth - 1, 0, pointer + 1)
