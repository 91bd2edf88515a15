"""The conv engine's issue loop: a tile command becomes one beat per cycle.

A beat is (output pixel, input-channel group g, kernel tap u, v); the loop nest
is og ▸ (py, px, dy, dx) ▸ g ▸ u ▸ v. A pixel starts only when the accumulator
FIFO has a slot reserved for it (credits: `slot_return` gives one back), so the
MAC pipeline behind never stalls; a tile is accepted only when its done token
has a slot reserved (`token_return`). Each beat leaves as the virtual input
coordinates of its tap (in the upsampled frame), the address of its channel
group's plane and its weight word; each pixel's first beat also sends what
the output unit needs of it on `pixel`.

Why all the registered flags: every counter's enable must be a short AND of
registers at 150 MHz on an ECP5-85F, where one flag fans out to hundreds of
loads (docs/conv_engine.md, "Timing").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.limits import DIM_BITS
from rtl.conv.address import geometry_layout
from rtl.conv_layouts import (
    command_layout,
    input_addr_bits,
    param_addr_bits,
    pixel_meta_layout,
    weight_addr_bits,
)
from rtl.dsp import platform_target
from rtl.pipeline import credit_counter
from rtl.replica import register_copies

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Coordinates of a tap in the (upsampled) input frame: may be negative (padding).
COORD = signed(DIM_BITS + 3)


#: The command's fields by where the loop uses them: each group's register loads
#: from its own copy of `accepting` (on a big die).
_COMMAND_GROUPS = {
    "loop": (
        "kernel_w",
        "kernel_h",
        "in_groups",
        "pool",
        "out_width",
        "out_height",
        "out_groups",
        "weight_base",
        "param_base",
        "in_plane",
    ),
    "map": (
        "in_base",
        "in_row",
        "in_height",
        "in_width",
        "upsample",
        "stride2",
        "pad_top",
        "pad_left",
    ),
    "pixel": ("last_lanes", "relu", "residual", "partial_in", "partial_out", "tag"),
}


def beat_layout(p: GraceParams) -> data.StructLayout:
    """One beat: the tap's virtual input coordinates, the group's plane, the weight word."""
    return data.StructLayout(
        {
            "first": unsigned(1),  # the pixel's first beat: its accumulators restart
            "last": unsigned(1),  # the pixel's last beat: its sums are complete after it
            "y": COORD,
            "x": COORD,
            "base": unsigned(input_addr_bits(p)),  # the channel group's plane
            "weight_addr": unsigned(weight_addr_bits(p)),
        }
    )


class IssueLoop(wiring.Component):
    """Tile commands in, beats out (one per cycle while a slot is free)."""

    #: Edges from a command's transfer to its first beat issuing: latch it, derive
    #: the loop limits, test them, derive the loop's flags.
    SETUP_LATENCY = 4
    #: Edges from a beat issuing to `beat.valid` (A0: the pixel's first input
    #: row/column; A1: plus the tap).
    LATENCY = 2

    def __init__(
        self, params: GraceParams, *, token_slots: int, dsp_target: str | None = None
    ) -> None:
        self.params = params
        self.dsp_target = dsp_target
        #: Tiles accepted whose done token has not been taken yet, at most.
        self.token_slots = token_slots
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(params))),
                "beat": Out(stream.Signature(beat_layout(params), always_ready=True)),
                "pixel": Out(stream.Signature(pixel_meta_layout(params), always_ready=True)),
                "geometry": Out(geometry_layout()),
                # the output unit took a pixel vector: its accumulator slot is free
                "slot_return": In(1),
                # a done token was taken: the tile's token slot is free
                "token_return": In(1),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.params
        rows = p.array.rows
        # iCE40's die is small and nearly full: copies that carry a flag across
        # an ECP5-85F only give its placer more to spread there
        big_die = platform_target(platform, self.dsp_target) != "ice40"

        cmd = Signal(command_layout(p))
        grouped = {f for fields in _COMMAND_GROUPS.values() for f in fields}
        if grouped != set(cmd.shape().members):
            raise ValueError(f"_COMMAND_GROUPS must name every command field once: {grouped}")
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
        w_ptr = Signal(weight_addr_bits(p))
        og_wbase = Signal.like(w_ptr)
        og_pbase = Signal(param_addr_bits(p))
        geometry = self.geometry

        pixel_start = Signal()  # the next beat is a pixel's first
        issuing = Signal()
        take = Signal()  # a pixel starts: it reserves an accumulator FIFO slot
        have_credit_next = credit_counter(
            m, slots, give_back=self.slot_return, take=take, name="slots"
        )[1]
        m.d.comb += take.eq(issuing & pixel_start)

        # The AND of the inner counters' flags is a register too, so every
        # counter's enable is a 3-6 input AND of registers.
        beat_last = Signal()  # v, u and g all at their limits

        # `issuing` and `beat_last` enable every counter (one beat_last register
        # drove ~200 loads, 2.6 ns to its nearest on ECP5): each counter, and the
        # weight pointers, read copies of their own (on a big die).
        def copies_of(
            flag: Signal, keys: tuple[str, ...], *, init: int = 0
        ) -> tuple[dict, list[Signal]]:
            """(key → the register its loads read, every register to assign)."""
            if not big_die:
                return dict.fromkeys(keys, flag), [flag]
            copies = register_copies(flag.name, keys, init=init)
            return copies, [flag, *copies.values()]

        issuing_for, issuing_regs = copies_of(issuing, (*counter_names, "ptr"))
        beat_last_for, beat_last_regs = copies_of(beat_last, (*counter_names[3:], "ptr"))
        # wraps_inside[k]: every pixel counter inside k is at its limit (a register)
        wraps_inside = {k: Signal(name=f"inside_wraps_{k}") for k in counter_names[3:]}
        og_last_pixel = wraps_inside["og"]  # dx, dy, px and py all at their limits
        tile_end = beat_last & og_last_pixel & at_limit["og"]
        inner_names, pixel_names = counter_names[:3], counter_names[3:7]

        # A command is set up in SETUP_LATENCY steps, each a few gates deep: latch
        # it, derive the loop limits, test them, derive the loop's flags; then the
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
        # a tile is accepted only with a slot reserved for its done token
        have_token_next = credit_counter(
            m, self.token_slots, give_back=self.token_return, take=accept, name="tokens"
        )[1]
        m.d.sync += [
            deriving_limits.eq(accept),
            testing_limits.eq(deriving_limits),
            deriving_flags.eq(testing_limits),
        ]
        # The command register loads whenever the loop is ready for one, so its
        # ~150 enables are registers, not the AND with `valid` (5.9 ns of routing
        # on ECP5); what it loads without a transfer is never read. On a big die
        # each group of fields, which feed different parts of the loop, loads
        # from a copy of `accepting` of its own (one register drove all ~150
        # enables and the port: 7.7 ns of routing on ECP5).
        accepting_for, accepting_regs = copies_of(accepting, tuple(_COMMAND_GROUPS), init=1)
        for group, fields in _COMMAND_GROUPS.items():
            with m.If(accepting_for[group]):
                m.d.sync += [getattr(cmd, f).eq(getattr(self.cmd.payload, f)) for f in fields]
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
        # the stages behind, so what those stages read of the tile is copied as
        # its loop starts: `geometry` then holds until the next loop starts, at
        # least SETUP_LATENCY + 1 edges after this tile's last beat, by when the
        # address generator (which samples it at its first stage) has taken it.
        in_base = Signal.like(cmd.in_base)
        with m.If(deriving_flags):
            m.d.sync += [
                in_base.eq(cmd.in_base),
                geometry.row.eq(cmd.in_row),
                geometry.upsample.eq(cmd.upsample),
                geometry.height.eq(cmd.in_height << cmd.upsample),
                geometry.width.eq(cmd.in_width << cmd.upsample),
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
            *[
                flag.eq(~busy_next & ~accept & ~deriving_limits & ~testing_limits & have_token_next)
                for flag in accepting_regs
            ],
            pixel_start.eq(pixel_start_next),
            *[flag.eq(busy_next & (~pixel_start_next | have_credit_next)) for flag in issuing_regs],
        ]

        # -- what the output unit needs of each pixel, as the pixel starts ------
        meta = self.pixel.payload
        m.d.comb += [
            self.pixel.valid.eq(take),
            meta.lanes.eq(Mux(at_limit["og"], cmd.last_lanes, rows)),
            meta.param_addr.eq(og_pbase),
            meta.relu.eq(cmd.relu),
            meta.pool.eq(cmd.pool),
            meta.residual.eq(cmd.residual),
            meta.partial_in.eq(cmd.partial_in),
            meta.partial_out.eq(cmd.partial_out),
            meta.quad.eq(Cat(count["dx"][0], count["dy"][0])),
            # (decided here, where it is a few registers, not behind the queue's read)
            meta.yields.eq(~cmd.pool | (count["dx"][0] & count["dy"][0])),
            # the tile's last pixel: every pixel counter and og at its limit
            meta.end.eq(og_last_pixel & at_limit["og"]),
            meta.tag.eq(cmd.tag),
        ]

        # -- A0, A1: virtual input coordinates (in the upsampled frame) ---------
        # A0 registers the beat with the pixel's first input row/column; A1 adds
        # the tap (two short adds instead of one long chain).
        oy = Mux(cmd.pool, Cat(count["dy"][0], count["py"]), count["py"])
        ox = Mux(cmd.pool, Cat(count["dx"][0], count["px"]), count["px"])
        a0_y, a0_x = Signal(COORD), Signal(COORD)
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
        beat = self.beat.payload
        m.d.sync += [
            self.beat.valid.eq(a0_valid),
            beat.first.eq(a0_first),
            beat.last.eq(a0_last),
            beat.y.eq(a0_y + a0_u),
            beat.x.eq(a0_x + a0_v),
            beat.base.eq(in_base + a0_goff),
            beat.weight_addr.eq(a0_waddr),
        ]
        return m
