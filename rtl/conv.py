"""Convolution engine: a rows × cols array of int8 MACs with its buffers and output path.

Dataflow (docs/conv_engine.md has the full contract and the cycle model). Every
cycle ("beat") the issue stage picks one output pixel, one input-channel group
g and one kernel tap (u, v). The input buffer returns the `cols` channels of
group g at the tapped pixel (zero outside the image: padding), the weight
buffer returns the rows × cols weights of that (g, u, v) for `rows` output
channels; row r of the array forms the dot product of the two vectors and
adds it to its accumulator. After G·k_h·k_w beats the `rows` accumulators hold
one output pixel of `rows` channels (output-stationary), and the next pixel
starts on the following beat, so the MACs never wait::

      cmd ─► issue: og ▸ pixel ▸ g ▸ u ▸ v   (credits: a slot is free for the pixel)
               │ address = in_base + g·plane + (iy>>up)·in_row + (ix>>up)
               ▼
      input buffer ── x[0..cols) ─────┬──────────┬─── … broadcast down the rows
      weight buffer ─ w[r][0..cols) ─►│ × × × ×  │ row r: Σ_c x[c]·w[r][c]  (DSPs)
                                      │ adder tree, accumulator acc[r]
                                      ▼
      accumulator FIFO (rows × int32 per pixel) ─► lane by lane: + residual × gain
        ─► requantize (+bias, ×M, >>shift, round, saturate, ReLU) ─► 2×2 avg pool ─► o
                                                                 tile done ─► done

The MAC pipeline never stalls: the issue stage only starts a pixel when the
accumulator FIFO has a slot reserved for it (credits), so back-pressure on `o`
stops issue instead of gating every DSP's clock enable. Output channels beyond
`rows`, input channels beyond `cols`, stride 2, nearest ×2 upsampling and zero
padding are all address generation; channels that do not fill the last group
read zero weights (the loader writes them).
"""

from __future__ import annotations

import operator
from functools import reduce
from typing import TYPE_CHECKING

from amaranth import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from defs.limits import DIM_BITS, TAG_BITS, bits_for
from rtl.bram import RegisteredRAM
from rtl.conv_layouts import (
    command_layout,
    input_addr_bits,
    input_write_layout,
    lane_bits,
    param_addr_bits,
    param_write_layout,
    requant_param_layout,
    weight_write_layout,
)
from rtl.dsp import Multiplier, platform_target
from rtl.prefetch import PrefetchQueue
from rtl.replica import register_copies, replica
from rtl.requant import Requantizer
from rtl.row_queue import RowQueue
from rtl.stream_queue import StreamQueue
from rtl.thermometer import thermometer_next

if TYPE_CHECKING:
    from collections.abc import Mapping

    from defs.params import GraceParams

#: Low bits of the two-step accumulator add (a short carry chain at full clock).
ACC_SPLIT = 16

#: Edges from an element taking a result slot (emit) to giving it back (output
#: pop), besides the requantizer: lane select and residual × gain (4), pooling (2),
#: result queues (2), as the cycle-model tests measure it.
_RESULT_ROUND_TRIP = 8

#: Results in flight between the vector register and the output stream: at least
#: the round trip, or the output unit waits for credits at full rate (the cycle
#: model tests catch it); two to spare.
OUTPUT_SLOTS = _RESULT_ROUND_TRIP + Requantizer.FREE_RUNNING_LATENCY + 2

#: Register levels between the buffers and the DSPs, and rows per first-level copy.
OPERAND_STAGES = 2
OPERAND_GROUP = 4

#: Accumulator bits selected by each copy of the output unit's one-hot lane.
LANE_SELECT_BITS = 8

#: Register levels of the input buffer's read address: copies per group of its
#: block-RAM tiles, then per tile (rtl/bram.py).
INPUT_ADDRESS_STAGES = 2

#: Beats from the issue stage to the accumulator input, without the adder tree:
#: address (3), address multiply (2), address register (1), buffer read with its
#: output register (2), the input buffer's address copies, operand fan-out,
#: multiply (Multiplier.LATENCY).
ISSUE_TO_TREE = 8 + INPUT_ADDRESS_STAGES + OPERAND_STAGES + Multiplier.LATENCY


def tree_levels(cols: int) -> int:
    """Registered adder levels that reduce `cols` products to one sum."""
    return (cols - 1).bit_length()


def user_layout(p: GraceParams) -> data.StructLayout:
    """What travels with each element through the output unit."""
    return data.StructLayout(
        {
            "lane": unsigned(bits_for(p.array.rows)),
            "pool": unsigned(1),
            "quad": unsigned(2),  # position in the 2×2 pooling window, (dy, dx)
            "end": unsigned(1),  # last element of the tile
            "tag": unsigned(TAG_BITS),
        }
    )


def pixel_meta_layout(p: GraceParams) -> data.StructLayout:
    """Per output pixel, what the output unit needs besides the accumulators."""
    return data.StructLayout(
        {
            "lanes": unsigned(lane_bits(p)),
            "param_addr": unsigned(param_addr_bits(p)),
            "relu": unsigned(1),
            "pool": unsigned(1),
            "residual": unsigned(1),
            "quad": unsigned(2),
            "end": unsigned(1),
            "tag": unsigned(TAG_BITS),
        }
    )


class ConvEngine(wiring.Component):
    """One convolution tile per command; int8 out in (og, pixel, lane) order."""

    def __new__(
        cls,
        params: GraceParams,
        *,
        mac_sites: Mapping[tuple[int, int], str] | None = None,
        **options: object,
    ) -> ConvEngine:
        # Validated before the object exists, so a rejected one is not reported by
        # Amaranth as an elaboratable that was created but never used.
        rows, cols = params.array.rows, params.array.cols
        if mac_sites is not None and set(mac_sites) != {
            (r, c) for r in range(rows) for c in range(cols)
        }:
            raise ValueError(f"mac_sites must name one site for each of the {rows}×{cols} MACs")
        return super().__new__(cls, src_loc_at=1)

    def __init__(
        self,
        params: GraceParams,
        *,
        dsp_target: str | None = None,
        mac_sites: Mapping[tuple[int, int], str] | None = None,
    ) -> None:
        self.params = params
        self.dsp_target = dsp_target
        #: (row, col) → DSP site of that MAC (boards/floorplan.py), or None: the placer's choice
        self.mac_sites = mac_sites
        n = params.numeric
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(params))),
                "input_write": In(stream.Signature(input_write_layout(params))),
                "weight_write": In(stream.Signature(weight_write_layout(params))),
                "param_write": In(stream.Signature(param_write_layout(params))),
                "residual": In(stream.Signature(signed(n.act_bits))),
                "o": Out(stream.Signature(signed(n.act_bits))),
                "done": Out(stream.Signature(unsigned(TAG_BITS))),
            }
        )

    @property
    def latency(self) -> int:
        """Beats from issue to the accumulator register (the cycle model's fill time)."""
        return ISSUE_TO_TREE + tree_levels(self.params.array.cols) + 1

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.params
        rows, cols = p.array.rows, p.array.cols
        n = p.numeric
        target = platform_target(platform, self.dsp_target)
        # iCE40's die is small and nearly full: the copies and stages that carry
        # signals across an ECP5-85F only give its placer more to spread there,
        # and its block RAM pays for a transparent read with bypass logic
        big_die = target != "ice40"

        # -- buffers: block RAM with registered outputs (rtl/bram.py) ----------
        # the per-channel constants in two buffers: the gain, read first for
        # residual × gain, and the requantizer's, read as its product is ready
        # (one buffer's word delayed two cycles cost 2 × 54 flip-flops)
        constants = requant_param_layout(p)
        # (its read address and clear reach each of its tiles from a copy of
        # their own: one register drove all 32 tiles' resets on ECP5, 8.4 ns)
        m.submodules.input_buffer = in_ram = RegisteredRAM(
            cols * n.act_bits,
            p.buffers.input_depth,
            target=self.dsp_target,
            address_stages=INPUT_ADDRESS_STAGES,
            write_stages=int(big_die),
        )
        # one weight buffer per row, so each sits by its row's DSPs with its own
        # copy of the read address
        w_rams = []
        for r in range(rows):
            ram = RegisteredRAM(
                cols * n.weight_bits,
                p.buffers.weight_depth,
                target=self.dsp_target,
                write_stages=int(big_die),
            )
            m.submodules[f"weight_buffer{r}"] = ram
            w_rams.append(ram)
        m.submodules.gain_buffer = gain_ram = RegisteredRAM(
            n.gain_bits, p.buffers.param_depth, target=self.dsp_target
        )
        m.submodules.param_buffer = par_ram = RegisteredRAM(
            constants.size, p.buffers.param_depth, target=self.dsp_target
        )
        # Writes pass through registers (a copy per group of rows for the weights,
        # then the buffers' own copies per group of tiles) before they fan out to
        # the block RAM tiles spread over the die: a write lands at most two edges
        # later than its transfer, and a command reads its data at least six edges
        # after its own transfer, so write-then-command holds.
        m.d.comb += [
            self.input_write.ready.eq(1),
            self.weight_write.ready.eq(1),
            self.param_write.ready.eq(1),
        ]
        pw = self.param_write.payload.data
        written = (
            (in_ram, self.input_write, self.input_write.payload.data),
            (gain_ram, self.param_write, pw.gain),
            (par_ram, self.param_write, Cat(*(getattr(pw, f) for f in constants.members))),
        )
        for ram, stream_in, word in written:
            m.d.sync += [
                ram.w_addr.eq(stream_in.payload.addr),
                ram.w_data.eq(word),
                ram.w_en.eq(stream_in.valid),
            ]
        wp = self.weight_write.payload
        for g in range(-(-rows // OPERAND_GROUP)):
            addr = replica(m, wp.addr, f"w_write_addr{g}")
            wdata = replica(m, wp.data, f"w_write_data{g}")
            for r in range(g * OPERAND_GROUP, min(rows, (g + 1) * OPERAND_GROUP)):
                enable = Signal(name=f"w_write_en{r}")
                m.d.sync += enable.eq(self.weight_write.valid & equals(wp.row, r))
                m.d.comb += [
                    w_rams[r].w_addr.eq(addr),
                    w_rams[r].w_data.eq(wdata),
                    w_rams[r].w_en.eq(enable),
                ]

        # -- issue: the loop nest og ▸ (py, px, dy, dx) ▸ g ▸ u ▸ v ------------
        cmd = Signal(command_layout(p))
        busy = Signal()
        slots = p.buffers.accumulator_slots
        counter_names = ("v", "u", "g", "dx", "dy", "px", "py", "og")
        # each counter as wide as its command field (kernel taps 3 bits, the pool
        # quadrant 1): narrower registers and carry chains on a full UP5K
        counter_bits = {
            "v": len(cmd.kernel_w),
            "u": len(cmd.kernel_h),
            "g": len(cmd.in_groups),
            "dx": len(cmd.pool),
            "dy": len(cmd.pool),
            "px": DIM_BITS,
            "py": DIM_BITS,
            "og": len(cmd.out_groups),
        }
        count = {k: Signal(counter_bits[k], name=f"count_{k}") for k in counter_names}
        # Each counter also counts down what is left to its limit and carries
        # registered "at its limit", "limit is zero" and "at most one left" flags:
        # the next "at its limit" is then one LUT after the late `moves` signal.
        at_limit = {k: Signal(name=f"last_{k}") for k in counter_names}
        limit_zero = {k: Signal(name=f"limit_zero_{k}") for k in counter_names}
        left = {k: Signal(counter_bits[k], name=f"left_{k}") for k in counter_names}
        few_left = {k: Signal(name=f"few_left_{k}") for k in counter_names}  # left <= 1
        g_off = Signal(input_addr_bits(p))
        w_ptr = Signal.like(self.weight_write.payload.addr)
        og_wbase = Signal.like(w_ptr)
        og_pbase = Signal(param_addr_bits(p))
        h_up = Signal(DIM_BITS + 1)
        w_up = Signal(DIM_BITS + 1)

        pixel_start = Signal()  # the next beat is a pixel's first
        issuing = Signal()
        take = Signal()  # a pixel starts: it reserves an accumulator FIFO slot
        pop = Signal()  # the output unit takes a pixel vector: a slot frees up
        have_credit_next = credit_counter(m, slots, give_back=pop, take=take, name="slots")[1]
        m.d.comb += take.eq(issuing & pixel_start)

        # The AND of the inner counters' flags is a register too, so every
        # counter's enable is a 3-6 input AND of registers.
        beat_last = Signal()  # v, u and g all at their limits

        # `issuing` and `beat_last` enable every counter (one beat_last register
        # drove ~200 loads, 2.6 ns to its nearest on ECP5): each counter, and the
        # weight pointers, read copies of their own (on a big die).
        def copies_of(flag: Signal, keys: tuple[str, ...]) -> tuple[dict, list[Signal]]:
            """(key → the register its loads read, every register to assign)."""
            if not big_die:
                return dict.fromkeys(keys, flag), [flag]
            copies = register_copies(flag.name, keys)
            return copies, [flag, *copies.values()]

        issuing_for, issuing_regs = copies_of(issuing, (*counter_names, "ptr"))
        beat_last_for, beat_last_regs = copies_of(beat_last, (*counter_names[3:], "ptr"))
        # wraps_inside[k]: every pixel counter inside k is at its limit (a register)
        wraps_inside = {k: Signal(name=f"inside_wraps_{k}") for k in counter_names[3:]}
        og_last_pixel = wraps_inside["og"]  # dx, dy, px and py all at their limits
        tile_end = beat_last & og_last_pixel & at_limit["og"]
        inner_names, pixel_names = counter_names[:3], counter_names[3:7]

        # A command is set up in four steps, each a few gates deep: latch it,
        # derive the loop limits, test them, derive the loop's flags; then the
        # loop nest runs. The steps are one-hot flags (a 2-bit state's enable was
        # four LUTs deep).
        deriving_limits = Signal()  # the command was latched on the last edge
        testing_limits = Signal()  # the limits were derived on the last edge
        deriving_flags = Signal()  # the limits were tested on the last edge
        accepting = Signal(init=1)  # cmd.ready, registered
        limit = {k: Signal(counter_bits[k], name=f"limit_{k}") for k in counter_names}
        limit_small = {k: Signal(name=f"limit_small_{k}") for k in counter_names}  # limit <= 1
        accept = Signal()
        m.d.comb += [self.cmd.ready.eq(accepting), accept.eq(self.cmd.valid & accepting)]
        m.d.sync += [
            deriving_limits.eq(accept),
            testing_limits.eq(deriving_limits),
            deriving_flags.eq(testing_limits),
        ]
        # The command register loads whenever the engine is ready for one, so its
        # ~150 enables are the register `accepting`, not the AND with `valid`
        # (5.9 ns of routing on ECP5); what it loads without a transfer is never read.
        with m.If(accepting):
            m.d.sync += cmd.eq(self.cmd.payload)
        with m.If(deriving_limits):
            limits = {
                "v": cmd.kernel_w - 1,
                "u": cmd.kernel_h - 1,
                "g": cmd.in_groups - 1,
                "dx": cmd.pool,
                "dy": cmd.pool,
                "px": (cmd.out_width >> cmd.pool) - 1,
                "py": (cmd.out_height >> cmd.pool) - 1,
                "og": cmd.out_groups - 1,
            }
            m.d.sync += [limit[k].eq(lim) for k, lim in limits.items()]
            m.d.sync += [
                g_off.eq(0),
                w_ptr.eq(cmd.weight_base),
                og_wbase.eq(cmd.weight_base),
                og_pbase.eq(cmd.param_base),
            ]
        with m.If(testing_limits):
            # from here on the limits' tests are registers (a compare on a limit
            # fed the loop's first flags: 6.8 ns on ECP5)
            for k in counter_names:
                m.d.sync += [
                    limit_zero[k].eq(~limit[k].any()),
                    limit_small[k].eq(~limit[k][1:].any()),
                ]
        # The next command is latched while this tile's last beats are still in
        # A1..A3, so what those stages read of the tile is copied as its loop starts.
        in_base = Signal.like(cmd.in_base)
        in_row = Signal.like(cmd.in_row)
        upsample = Signal()
        with m.If(deriving_flags):
            m.d.sync += [
                in_base.eq(cmd.in_base),
                in_row.eq(cmd.in_row),
                upsample.eq(cmd.upsample),
                h_up.eq(cmd.in_height << cmd.upsample),
                w_up.eq(cmd.in_width << cmd.upsample),
            ]
            for k in counter_names:
                m.d.sync += [
                    count[k].eq(0),
                    at_limit[k].eq(limit_zero[k]),
                    left[k].eq(limit[k]),
                    few_left[k].eq(limit_small[k]),
                ]
            inner_zero = Cat(*[limit_zero[k] for k in inner_names]).all()
            m.d.sync += [flag.eq(inner_zero) for flag in beat_last_regs]

        # Counter k moves when every counter inside it wraps on this beat. For the
        # pixel-level counters the AND of the pixel counters inside is kept as a
        # register (`wraps_inside`), so each enable is at most a 3-input AND.
        limit_next = {}
        for depth, k in enumerate(counter_names):
            if depth < 3:
                inner = [at_limit[j] for j in counter_names[:depth]]
            else:
                inner = [beat_last_for[k], wraps_inside[k]]
            moves = Signal(name=f"moves_{k}")
            limit_next[k] = Signal(name=f"last_{k}_next")
            m.d.comb += [
                moves.eq(issuing_for[k] & Cat(*inner, 1).all()),
                limit_next[k].eq(
                    Mux(
                        moves,
                        Mux(at_limit[k], limit_zero[k], few_left[k]),
                        at_limit[k],
                    )
                ),
            ]
            with m.If(moves):
                m.d.sync += [
                    count[k].eq(Mux(at_limit[k], 0, count[k] + 1)),
                    left[k].eq(Mux(at_limit[k], limit[k], left[k] - 1)),
                    few_left[k].eq(Mux(at_limit[k], limit_small[k], left[k] <= 2)),
                ]
            with m.If(busy):
                m.d.sync += at_limit[k].eq(limit_next[k])
        with m.If(busy):
            beat_last_next = Cat(*[limit_next[k] for k in inner_names]).all()
            m.d.sync += [flag.eq(beat_last_next) for flag in beat_last_regs]
        # The pixel counters' flags change only when a pixel ends, and then every
        # pixel counter j moves exactly when wraps_inside[j]: their next "at limit"
        # values are formed from registers alone, and the late `issuing & beat_last`
        # only picks between them and the current flags (wraps_inside[k] always
        # equals the AND of the pixel counters' at_limit inside k).
        pixel_end = Signal()
        m.d.comb += pixel_end.eq(issuing & beat_last)
        at_pixel_end = {
            j: Mux(wraps_inside[j], Mux(at_limit[j], limit_zero[j], few_left[j]), at_limit[j])
            for j in pixel_names
        }
        with m.If(pixel_end):
            for depth, k in enumerate(counter_names[3:], start=3):
                inside = [at_pixel_end[j] for j in counter_names[3:depth]]
                m.d.sync += wraps_inside[k].eq(Cat(*inside, 1).all())
        with m.If(deriving_flags):
            for depth, k in enumerate(counter_names[3:], start=3):
                inside = [limit_zero[j] for j in counter_names[3:depth]]
                m.d.sync += wraps_inside[k].eq(Cat(*inside, 1).all())

        with m.If(issuing_for["ptr"]):
            m.d.sync += w_ptr.eq(w_ptr + 1)
            with m.If(at_limit["v"] & at_limit["u"]):
                m.d.sync += g_off.eq(Mux(at_limit["g"], 0, g_off + cmd.in_plane))
            with m.If(beat_last_for["ptr"]):
                with m.If(og_last_pixel):
                    m.d.sync += [og_wbase.eq(w_ptr + 1), og_pbase.eq(og_pbase + rows)]
                with m.Else():
                    m.d.sync += w_ptr.eq(og_wbase)

        # `issuing` = busy & (first beat of a pixel → a slot is free), computed a
        # cycle ahead from the next state, so the signal that enables every
        # counter comes straight from a register.
        busy_next, pixel_start_next = Signal(), Signal()
        m.d.comb += [
            busy_next.eq(deriving_flags | (busy & ~(issuing & tile_end))),
            pixel_start_next.eq(deriving_flags | Mux(issuing, beat_last, pixel_start)),
        ]
        m.d.sync += [
            busy.eq(busy_next),
            accepting.eq(~busy_next & ~accept & ~deriving_limits & ~testing_limits),
            pixel_start.eq(pixel_start_next),
            *[flag.eq(busy_next & (~pixel_start_next | have_credit_next)) for flag in issuing_regs],
        ]

        # -- what the output unit needs per pixel waits in a queue --------------
        # (pushed when the pixel starts, popped with the row queues when the
        # output unit takes its sums; the credits bound the pixels in between, so
        # it never overflows, and a flagless queue keeps the FIFO level logic out
        # of both ends) instead of riding a register through the MAC pipeline
        meta = Signal(pixel_meta_layout(p))
        # (an entry is read long after its push, so the read need not see the
        # write of the same edge: transparent only where that is the cheap form)
        m.submodules.pixel_meta = meta_queue = RowQueue(
            meta.shape().size, slots, transparent=big_die
        )
        # On a big die the push waits a cycle in registers (the queue sat 6.6 ns
        # of routing from the issue loop on ECP5); the entry is still read long
        # after it is written.
        push_delay = 1 if big_die else 0
        m.d.comb += [
            meta_queue.data.eq(delay(m, meta.as_value(), push_delay, "meta_in")),
            meta_queue.push.eq(delay(m, take, push_delay, "meta_push")),
        ]
        m.d.comb += [
            meta.lanes.eq(Mux(at_limit["og"], cmd.last_lanes, rows)),
            meta.param_addr.eq(og_pbase),
            meta.relu.eq(cmd.relu),
            meta.pool.eq(cmd.pool),
            meta.residual.eq(cmd.residual),
            meta.quad.eq(Cat(count["dx"][0], count["dy"][0])),
            # the tile's last pixel: every pixel counter and og at its limit
            meta.end.eq(og_last_pixel & at_limit["og"]),
            meta.tag.eq(cmd.tag),
        ]
        # -- beats A0, A1: virtual input coordinates (in the upsampled frame) -----
        # A0 registers the beat with the pixel's first input row/column; A1 adds
        # the tap (two short adds instead of one long chain).
        coord = signed(DIM_BITS + 3)
        oy = Mux(cmd.pool, Cat(count["dy"][0], count["py"]), count["py"])
        ox = Mux(cmd.pool, Cat(count["dx"][0], count["px"]), count["px"])
        a0_y, a0_x = Signal(coord), Signal(coord)
        a0_u, a0_v = Signal.like(count["u"]), Signal.like(count["v"])
        a0_valid, a0_first, a0_last = Signal(), Signal(), Signal()
        a0_goff = Signal.like(g_off)
        a0_waddr = Signal.like(w_ptr)
        m.d.sync += [
            a0_valid.eq(issuing),
            a0_first.eq(pixel_start),
            a0_last.eq(beat_last),
            a0_y.eq((oy << cmd.stride2) - cmd.pad_top),
            a0_x.eq((ox << cmd.stride2) - cmd.pad_left),
            a0_u.eq(count["u"]),
            a0_v.eq(count["v"]),
            a0_goff.eq(g_off),
            a0_waddr.eq(w_ptr),
        ]
        a1_iy, a1_ix = Signal(coord), Signal(coord)
        a1_valid, a1_first, a1_last = Signal(), Signal(), Signal()
        a1_base = Signal(input_addr_bits(p))  # the group's plane in the buffer
        a1_waddr = Signal.like(w_ptr)
        m.d.sync += [
            a1_valid.eq(a0_valid),
            a1_first.eq(a0_first),
            a1_last.eq(a0_last),
            a1_iy.eq(a0_y + a0_u),
            a1_ix.eq(a0_x + a0_v),
            a1_base.eq(in_base + a0_goff),
            a1_waddr.eq(a0_waddr),
        ]

        # -- A2: stored row/column, inside test; A2..A4: row × in_row ------------
        a2_inside = Signal()
        a2_row = Signal(signed(DIM_BITS + 2))
        a2_part = Signal(input_addr_bits(p))
        col = a1_ix >> upsample
        m.d.sync += [
            a2_inside.eq((a1_iy >= 0) & (a1_iy < h_up) & (a1_ix >= 0) & (a1_ix < w_up)),
            a2_row.eq(a1_iy >> upsample),
            a2_part.eq(a1_base + col),
        ]
        m.submodules.row_times_width = row_mul = Multiplier(
            DIM_BITS + 2, DIM_BITS + 1, target=self.dsp_target
        )
        m.d.comb += [row_mul.a.eq(a2_row), row_mul.b.eq(in_row)]
        a5_addr = Signal(input_addr_bits(p))
        m.d.sync += a5_addr.eq(delay(m, a2_part, row_mul.LATENCY, "part") + row_mul.p)
        m.d.comb += [
            in_ram.r_addr.eq(a5_addr),
            # zero padding: the input buffer's output register clears instead
            in_ram.r_clear.eq(~delay(m, a2_inside, 3, "inside")),
        ]
        # the weights are read when the inputs are: the weight buffers' address
        # (a copy per group of rows, one per row, then the RAM) arrives as the
        # input buffer's data does (one register feeding all rows' copies across
        # the die took 7.8 ns on ECP5)
        w_addr = delay(m, a1_waddr, 4 + INPUT_ADDRESS_STAGES - 2, "waddr")
        w_addr_groups = [
            replica(m, w_addr, f"waddr_group{g}") for g in range(-(-rows // OPERAND_GROUP))
        ]
        for r, ram in enumerate(w_rams):
            m.d.comb += ram.r_addr.eq(
                replica(m, w_addr_groups[r // OPERAND_GROUP], f"waddr_row{r}")
            )
        # -- A7..A9: operands fan out to the DSP rows through two register levels
        # (replicas per group of rows, then per row; rtl/replica.py): the DSPs
        # span the die, and one register cannot reach them all in a cycle.
        x = in_ram.r_data
        x_groups = [replica(m, x, f"x_group{g}") for g in range(-(-rows // OPERAND_GROUP))]
        row_sums = []
        for r in range(rows):
            x_row = replica(m, x_groups[r // OPERAND_GROUP], f"x_row{r}")
            w_row = delay(m, w_rams[r].r_data, OPERAND_STAGES, f"w_row{r}")
            products = []
            for c in range(cols):
                site = self.mac_sites[(r, c)] if self.mac_sites is not None else None
                mac = Multiplier(n.act_bits, n.weight_bits, target=self.dsp_target, site=site)
                m.submodules[f"mac_{r}_{c}"] = mac
                wi = c * n.weight_bits
                m.d.comb += [
                    mac.a.eq(x_row[c * n.act_bits : (c + 1) * n.act_bits].as_signed()),
                    mac.b.eq(w_row[wi : wi + n.weight_bits].as_signed()),
                ]
                products.append(mac.p)
            row_sums.append(adder_tree(m, products, f"row{r}"))

        # -- accumulators, then the queues of finished pixels -------------------
        ctrl_delay = ISSUE_TO_TREE - 2 + tree_levels(cols)  # from A1 (issue + 2)
        valid_pre = delay(m, a1_valid, ctrl_delay - 1, "valid")
        first_pre = delay(m, a1_first, ctrl_delay - 1, "first")
        valid_all = delay(m, valid_pre, 1, "valid_all")
        last_t = delay(m, a1_last, ctrl_delay, "last")
        acc = [
            accumulator(
                m,
                row_sums[r].as_signed(),
                # each row's accumulators get their own copy of the control flags
                # (512 enables on one net would not reach across the die in a cycle)
                valid=replica(m, valid_pre, f"acc{r}_valid"),
                first=replica(m, first_pre, f"acc{r}_first"),
                width=n.acc_bits,
                split=big_die,
                name=f"acc{r}",
            )
            for r in range(rows)
        ]
        finishing = delay(m, valid_all & last_t, 1, "finishing")

        # One queue per row, each by its row's accumulators, so no write address
        # or data bus spans the die (one 540-bit FIFO's write address took 8.8 ns
        # to reach its distributed-RAM slices on ECP5). They move in lockstep
        # under the credits (room) and `held` (what has arrived) kept here; each
        # gets its own copy of the push and pop enables (rtl/row_queue.py).
        acc_heads = []
        pop_next = Signal()  # the output unit takes a vector on the next cycle
        for r in range(rows):
            row_queue = RowQueue(n.acc_bits, slots)
            m.submodules[f"accumulators{r}"] = row_queue
            m.d.comb += [
                row_queue.data.eq(acc[r]),
                row_queue.push.eq(replica(m, finishing, f"finished{r}")),
                row_queue.pop.eq(replica(m, pop_next, f"pop{r}")),
            ]
            acc_heads.append(row_queue.head)

        # -- output unit: lane by lane, + residual × gain, requantize -----------
        # Like the MAC pipeline it never stalls: an element leaves the vector
        # register only when the output FIFO has a slot reserved for its result,
        # so no ready signal runs combinationally through the pipeline.
        user_bits = user_layout(p).size
        m.submodules.requant = rq = Requantizer(
            n, user_bits, free_running=True, dsp_target=self.dsp_target
        )
        # (StreamQueue's storage reads transparently where that is the cheap form)
        m.submodules.residual_in = res_fifo = StreamQueue(
            n.act_bits, OUTPUT_SLOTS, transparent_storage=big_die
        )
        wiring.connect(m, wiring.flipped(self.residual), res_fifo.i)
        # the output unit takes residuals from a queue with registered flags, so
        # its late `emit` decision never reaches the FIFO's pointers
        m.submodules.residual_next = res_queue = PrefetchQueue(n.act_bits)
        wiring.connect(m, res_fifo.o, res_queue.i)
        entry = data.StructLayout(
            {"acc": unsigned(rows * n.acc_bits), "meta": pixel_meta_layout(p)}
        )
        vec = Signal(entry)
        have = Signal()
        have_next = Signal()
        lane = Signal(range(rows))
        # one-hot `lane`, which selects the accumulator word: a copy per slice of
        # LANE_SELECT_BITS bits of the word (one copy's bit drove all 32 selects
        # of its lane, 4.7 ns on ECP5)
        lane_hot_for = register_copies(
            "lane_hot", tuple(range(0, n.acc_bits, LANE_SELECT_BITS)), rows
        )
        # the lane's parameter address, kept as a register beside `lane` so the
        # buffer's address (and the collision check Yosys adds around block RAM
        # that cannot read and write one address in a cycle) starts at a register
        param_ptr = Signal(param_addr_bits(p))
        vmeta = vec.meta
        wants_residual = vmeta.residual
        emit = Signal()
        lane_last = Signal()  # lane == lanes - 1, registered
        entry_in = data.View(entry, Cat(*acc_heads, meta_queue.head))
        # an element yields an output unless pooling absorbs it (quads 0..2);
        # registered with the vector, like every input of `emit`
        yields = Signal()
        out_pop = Signal()
        emit_yielding = Signal()
        out_credit_next = credit_counter(
            m, OUTPUT_SLOTS, give_back=out_pop, take=emit_yielding, name="results"
        )[1]
        # `emit` is a 3-input AND of registers: "the result has a slot (or needs
        # none)" and "the residual is here (or is not wanted)" are registered from
        # next-state values, as `issuing` is in the issue stage
        credit_ok = Signal(init=1)
        residual_ok = Signal(init=1)
        yields_next = Mux(pop, ~entry_in.meta.pool | (entry_in.meta.quad == 3), yields)
        wants_next = Mux(pop, entry_in.meta.residual, wants_residual)
        m.d.sync += [
            credit_ok.eq(~yields_next | out_credit_next),
            residual_ok.eq(~wants_next | res_queue.head_valid_next),
        ]
        m.d.comb += [
            emit.eq(have & credit_ok & residual_ok),
            meta_queue.pop.eq(replica(m, pop_next, "pop_meta")),
            res_queue.pop.eq(emit & wants_residual),
            emit_yielding.eq(emit & yields),
            gain_ram.r_addr.eq(param_ptr),
            par_ram.r_addr.eq(delay(m, param_ptr, Multiplier.LATENCY, "param_ptr")),
        ]
        # `pop` is a register, decided a cycle ahead: a vector loads only into an
        # empty register (one idle cycle per vector in the output unit), and the
        # count of vectors the row queues hold is kept here, counting a push two
        # cycles late (its data is at the queues' heads one cycle after the push)
        held = Signal(slots + 1)  # thermometer code (rtl/thermometer.py)
        arrived = delay(m, finishing, 2, "arrived")
        # `pop_next` feeds per-row copies across the die, so it is two LUTs of
        # registers: "a vector is held or arriving, none was just taken" and
        # "the register is empty or its last lane leaves now" (the same as
        # `some held next & ~have_next`, written out; "some vector is held" is a
        # bit of `held`)
        m.d.comb += [
            have_next.eq(pop | (have & ~(emit & lane_last))),
            pop_next.eq(
                (~pop & (arrived | held[0])) & (~have | (credit_ok & residual_ok & lane_last))
            ),
        ]
        m.d.sync += [held.eq(thermometer_next(held, arrived, pop)), pop.eq(pop_next)]
        # the wide vector register loads whenever it is empty (its enables are
        # per-row copies of the register `have`); only `pop` makes it count
        for r in range(rows):
            with m.If(~replica(m, have_next, f"have{r}")):
                m.d.sync += vec.acc.word_select(r, n.acc_bits).eq(acc_heads[r])
        with m.If(~replica(m, have_next, "have_meta")):
            m.d.sync += vec.meta.eq(meta_queue.head)
        m.d.sync += have.eq(have_next)
        # (the lane registers load from their own copy of `pop`: the one that
        # decides `pop_next` stays a register with few loads)
        with m.If(replica(m, pop_next, "pop_lanes")):
            m.d.sync += [
                lane.eq(0),
                *[hot.eq(1) for hot in lane_hot_for.values()],
                param_ptr.eq(entry_in.meta.param_addr),
                lane_last.eq(entry_in.meta.lanes == 1),
                yields.eq(yields_next),
            ]
        with m.Elif(emit & ~lane_last):
            m.d.sync += [
                lane.eq(lane + 1),
                *[hot.eq(hot << 1) for hot in lane_hot_for.values()],
                param_ptr.eq(param_ptr + 1),
                lane_last.eq(lane + 2 == vmeta.lanes),
            ]

        d1_valid = Signal()
        # the lane's accumulator in two registered steps: an AND-OR over each group
        # of OPERAND_GROUP lanes with the one-hot lane, then an OR of the groups
        # (a rows-way multiplexer on `lane` took a whole cycle and a long route)
        words = [vec.acc.word_select(r, n.acc_bits) for r in range(rows)]
        d1_groups = []
        for g in range(0, rows, OPERAND_GROUP):
            lanes = range(g, min(rows, g + OPERAND_GROUP))
            slices = []
            for low, hot in lane_hot_for.items():
                high = min(low + LANE_SELECT_BITS, n.acc_bits)
                picked = [Mux(hot[r], words[r][low:high], 0) for r in lanes]
                slices.append(reduce(operator.or_, picked))
            group = Signal(n.acc_bits, name=f"d1_acc_group{g // OPERAND_GROUP}")
            m.d.sync += group.eq(Cat(*slices))
            d1_groups.append(group)
        d2_acc = Signal(signed(n.acc_bits))
        m.d.sync += d2_acc.eq(reduce(operator.or_, d1_groups))
        d1_res = Signal(signed(n.act_bits))
        d1_user = Signal(user_layout(p))
        d1_relu = Signal()
        m.d.sync += [
            d1_valid.eq(emit),
            d1_res.eq(Mux(wants_residual, res_queue.head, 0)),
            d1_user.lane.eq(lane),
            d1_user.pool.eq(vmeta.pool),
            d1_user.quad.eq(vmeta.quad),
            d1_user.end.eq(vmeta.end & lane_last),
            d1_user.tag.eq(vmeta.tag),
            d1_relu.eq(vmeta.relu),
        ]
        # residual × gain on a registered DSP (the gain is read two cycles after
        # d0); the accumulator and the rest wait alongside, and the requantizer's
        # constants are read as late as the product is ready
        m.submodules.residual_gain = gain_mul = Multiplier(
            n.act_bits, n.gain_bits + 1, target=self.dsp_target
        )
        m.d.comb += [gain_mul.a.eq(delay(m, d1_res, 1, "d2_res")), gain_mul.b.eq(gain_ram.r_data)]
        wait = 1 + gain_mul.LATENCY
        acc_w = delay(m, d2_acc, wait - 1, "out_acc")
        par_w = data.View(constants, par_ram.r_data)
        m.d.sync += [
            rq.i.valid.eq(delay(m, d1_valid, wait, "out_valid")),
            rq.i.payload.acc.eq(acc_w + gain_mul.p),
            rq.i.payload.bias.eq(par_w.bias),
            rq.i.payload.multiplier.eq(par_w.multiplier),
            rq.i.payload.shift.eq(par_w.shift),
            rq.i.payload.relu.eq(delay(m, d1_relu, wait, "out_relu")),
            rq.i.payload.user.eq(delay(m, d1_user.as_value(), wait, "out_user")),
        ]
        m.d.comb += rq.o.ready.eq(1)

        # -- 2×2 average pool (round half up), output FIFO, done tokens ---------
        value = rq.o.payload.value
        user = data.View(user_layout(p), rq.o.payload.user)
        # Two stages: P1 registers the lane's partial sum, P2 adds. The rounding
        # half (+2 before >> 2) enters with a window's first element, registered
        # in P1, so P2 has one carry chain, not two in a row.
        # The partial sums live in a small memory read without a clock (LUT RAM
        # on ECP5, whose read multiplexer is inside the RAM slices: a rows-way
        # multiplexer over flip-flops took most of a cycle). No forwarding is
        # needed from P2's write to P1's read: consecutive elements are in
        # different lanes (lanes count up within a vector), and a vector is
        # followed by at least one idle cycle (see `pop`), so an element of lane
        # L arrives here at least two cycles after the previous element of lane
        # L, by when the memory holds its sum.
        m.submodules.pool_partials = partials = Memory(
            shape=signed(n.act_bits + 2), depth=rows, init=[]
        )
        partial_write = partials.write_port()
        partial_read = partials.read_port(domain="comb")
        p1_valid = Signal()
        p1_value = Signal.like(value)
        p1_user = Signal(user_layout(p))
        p1_sum = Signal(signed(n.act_bits + 2))  # the lane's partial sum so far
        p1_absorb = p1_user.pool & (p1_user.quad != 3)
        p1_biased = Signal(signed(n.act_bits + 2))  # value + 2: a window's first partial
        p1_total = Signal(signed(n.act_bits + 2))
        p1_kept = Signal(signed(n.act_bits + 2))  # what P2 leaves in the lane's partial
        m.d.comb += [
            p1_total.eq(p1_sum + p1_value),
            p1_kept.eq(Mux(p1_user.quad.any(), p1_total, p1_biased)),
            partial_read.addr.eq(user.lane),
            partial_write.addr.eq(p1_user.lane),
            partial_write.data.eq(p1_kept),
            partial_write.en.eq(p1_valid & p1_absorb),
        ]
        m.d.sync += [
            p1_valid.eq(rq.o.valid),
            p1_value.eq(value),
            p1_biased.eq(value + 2),
            p1_user.eq(user),
            p1_sum.eq(partial_read.data),
        ]
        out_entry = data.StructLayout(
            {"value": signed(n.act_bits), "end": unsigned(1), "tag": unsigned(TAG_BITS)}
        )
        result = Signal(out_entry)
        result_valid = Signal()
        m.d.sync += [
            result_valid.eq(p1_valid & ~p1_absorb),
            result.value.eq(Mux(p1_user.pool, p1_total >> 2, p1_value)),
            result.end.eq(p1_user.end),
            result.tag.eq(p1_user.tag),
        ]
        # as deep as the credits: a result always finds room
        m.submodules.results = out_fifo = StreamQueue(
            out_entry.size, OUTPUT_SLOTS, transparent_storage=big_die
        )
        # the output stream reads a queue with registered flags: `o.ready` and the
        # done FIFO's room reach two registers, not the FIFO's pointers
        m.submodules.results_next = out_queue = PrefetchQueue(out_entry.size)
        wiring.connect(m, out_fifo.o, out_queue.i)
        head = data.View(out_entry, out_queue.head)
        # done tokens wait in a queue whose room is a register, so the last
        # element's handshake does not loop through a FIFO's level
        m.submodules.done_tokens = done_queue = PrefetchQueue(TAG_BITS)
        m.d.comb += [
            out_fifo.i.payload.eq(result),
            out_fifo.i.valid.eq(result_valid),
            # the last element of a tile leaves only when its token has room to follow
            self.o.valid.eq(out_queue.head_valid & (~head.end | done_queue.i.ready)),
            self.o.payload.eq(head.value),
            out_pop.eq(self.o.valid & self.o.ready),
            out_queue.pop.eq(out_pop),
            done_queue.i.valid.eq(out_pop & head.end),
            done_queue.i.payload.eq(head.tag),
            self.done.valid.eq(done_queue.head_valid),
            self.done.payload.eq(done_queue.head),
            done_queue.pop.eq(self.done.ready),
        ]
        return m


def accumulator(
    m: Module,
    total: Value,
    *,
    valid: Signal,
    first: Signal,
    width: int,
    split: bool,
    name: str,
) -> Value:
    """Σ `total` over the beats of a pixel (`first` restarts it), two edges late.

    With `split`, the sum adds in two halves, the high half one edge later with
    the low half's carry, so no carry chain is longer than ACC_SPLIT bits (ECP5
    at 150 MHz). Without, one `width`-bit add and a plain register after it: on
    iCE40 a 32-bit chain fits a 50 MHz cycle, and the split's carry register was
    placed far from its chain (a 4–5.5 ns route that set the clock).
    """
    if not split:
        whole = Signal(width, name=f"{name}_whole")
        done = Signal(width, name=f"{name}_done")
        with m.If(valid):
            m.d.sync += whole.eq(Mux(first, 0, whole) + total)
        m.d.sync += done.eq(whole)
        return done
    high_bits = width - ACC_SPLIT
    valid_d = replica(m, valid, f"{name}_valid_d")
    first_d = replica(m, first, f"{name}_first_d")
    low = Signal(ACC_SPLIT, name=f"{name}_low")
    carry = Signal(name=f"{name}_carry")
    low_done = Signal(ACC_SPLIT, name=f"{name}_low_done")
    high = Signal(high_bits, name=f"{name}_high")
    high_in = Signal(high_bits, name=f"{name}_high_in")
    with m.If(valid):
        m.d.sync += Cat(low, carry).eq(Mux(first, 0, low) + total[:ACC_SPLIT])
    m.d.sync += [
        # (the slice is unsigned: re-sign it so the assignment sign-extends)
        high_in.eq(
            total[ACC_SPLIT:].as_signed()
            if len(total) > ACC_SPLIT
            else total[-1].replicate(high_bits)
        ),
        low_done.eq(low),
    ]
    with m.If(valid_d):
        m.d.sync += high.eq(Mux(first_d, 0, high) + high_in + carry)
    return Cat(low_done, high)


def credit_counter(
    m: Module, slots: int, *, give_back: object, take: object, name: str
) -> tuple[Signal, Signal]:
    """A registered "a slot is free" flag (and its next value) for `slots` reserved entries.

    Slots come back a cycle after `give_back` (conservative, and it keeps the
    consumer's logic out of this path). The free slots are counted in
    thermometer code, so the next "a slot is free" is one LUT of registers and
    `take`, which only picks between "free + returned ≥ 2" and "≥ 1".
    """
    free = Signal(slots, init=(1 << slots) - 1, name=f"{name}_free")
    returned = Signal(name=f"{name}_returned")
    available_next = Signal(name=f"{name}_available_next")
    m.d.comb += available_next.eq(
        Mux(take, free[1] | (free[0] & returned), free[0] | returned)
        if slots > 1
        else ~take & (free[0] | returned)
    )
    m.d.sync += [returned.eq(give_back), free.eq(thermometer_next(free, returned, take))]
    return free[0], available_next


def delay(m: Module, value: object, cycles: int, name: str) -> object:
    """`value` seen `cycles` clock edges later (a plain shift register)."""
    for k in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{k + 1}") if isinstance(value, Signal) else None
        if reg is None:
            reg = Signal(len(value), name=f"{name}_d{k + 1}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


def adder_tree(m: Module, values: list[Signal], name: str) -> Signal:
    """Sum of `values` through registered pairwise levels (tree_levels(len) edges)."""
    level = 0
    while len(values) > 1:
        paired = []
        for k in range(0, len(values) - 1, 2):
            a, b = values[k], values[k + 1]
            s = Signal(signed(max(len(a), len(b)) + 1), name=f"{name}_l{level}_{k // 2}")
            m.d.sync += s.eq(a + b)
            paired.append(s)
        if len(values) % 2:
            s = Signal.like(values[-1], name=f"{name}_l{level}_carry")
            m.d.sync += s.eq(values[-1])
            paired.append(s)
        values = paired
        level += 1
    return values[0]


def equals(value: object, constant: int) -> object:
    """`value == constant`, written so that Verilator lints it clean.

    (`x == 0` becomes a multi-bit `!x` in Verilog, which lint rightly flags.)
    """
    return value == constant if constant else ~value.any()
