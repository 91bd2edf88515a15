"""Heatmap unit: the dense motion network's Gaussian heatmap differences, one int8 per cycle.

`model.fixed_motion.heatmaps`: channel 0 is 0; channel k + 1 is
saturate(G_d,k − G_s,k, 8), where G(i, j) = T[round_shift(dx² + dy², 14)] (0
beyond the table), dx = g[j] − kp_x, dy = g[i] − kp_y. The hardware form
(docs/activation_engine.md §2.4) is separable: a row's squares dy² are made
once per row and kept; an element squares its column's two offsets (driving and
source) on two DSPs, adds the row's, and reads the table twice. Offsets are
saturated to ±DELTA_LIMIT, which changes nothing for a table of at most
MAX_TABLE entries (`rtl/act/heatmap_layouts.py`)::

    cmd ─► HeatmapIssue (heatmap_issue.py): beats row ▸ (set-up k) | (column ▸ channel)
              ▼
    L   grid axis g[i or j] and keypoint k's pair (driving, source), x or y
    D   offsets g − kp, then saturated to s14
    M   two squares on DSPs (Multiplier), landed in fabric registers
    S   set-up: the row's squares (+ the rounding half) stored; element: + the row's
    T   the two Gaussian tables (RegisteredRAM): index = sum >> 14; beyond: 0
    X   G_d − G_s ─► OutputPath (saturate to int8) ─► o, done

The grid axis and keypoints are loaded per frame through the payloads of
`rtl/act/keypoints.py`, the table per model; the host loads a frame's data only
once the commands reading the old data are done (their tokens are back).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from defs.limits import TAG_BITS
from rtl.act.heatmap_issue import HeatmapIssue
from rtl.act.heatmap_layouts import (
    DELTA_BITS,
    DELTA_LIMIT,
    DIST_SHIFT,
    INDEX_BITS,
    OUTPUT_NUMERIC,
    ROUNDING,
    SQUARE_BITS,
    command_layout,
    gaussian_write_layout,
)
from rtl.act.keypoints import (
    GRID_BITS,
    KP_BITS,
    grid_write_layout,
    keypoint_write_layout,
)
from rtl.bram import RegisteredRAM
from rtl.dsp import Multiplier, platform_target
from rtl.output_path import OutputPath, element_user_layout, lanes_in_lockstep
from rtl.pipeline import delay
from rtl.replica import replica
from rtl.row_queue import NO_RW_CHECK

if TYPE_CHECKING:
    from defs.params import GraceParams

#: Frames in flight (accepted, done token not yet taken) at most.
TOKEN_SLOTS = 16
#: Edges of a small store's read (grid axis, keypoints, the row's squares).
LOOKUP_LATENCY = 1
#: Edges of the offsets: the difference, then its saturation.
DELTA_LATENCY = 2
#: Edges of a square: the DSP's, then a fabric register to land in (the DSP may
#: sit far from the adders).
SQUARE_LATENCY = Multiplier.LATENCY + 1
#: Edges of the sum of the column's and the row's squares.
SUM_LATENCY = 1
#: Edges of the difference of the two table entries into the output path.
DIFFERENCE_LATENCY = 1
#: Edges from a beat's `valid` to its squares (where set-up beats store theirs).
BEAT_TO_SQUARES = LOOKUP_LATENCY + DELTA_LATENCY + SQUARE_LATENCY
#: Edges from a beat issuing to its element entering the output path.
ISSUE_TO_OUTPUT = (
    HeatmapIssue.LATENCY
    + BEAT_TO_SQUARES
    + SUM_LATENCY
    + RegisteredRAM.READ_LATENCY
    + DIFFERENCE_LATENCY
)

#: A keypoint's store entry: both frames' coordinates, each frame written at once.
KEYPOINT_ENTRY = data.StructLayout(
    {
        "x_d": signed(KP_BITS),
        "y_d": signed(KP_BITS),
        "x_s": signed(KP_BITS),
        "y_s": signed(KP_BITS),
    }
)
#: A row's squares of one keypoint, each with the rounding half added.
ROW_ENTRY = data.StructLayout({"d": unsigned(SQUARE_BITS), "s": unsigned(SQUARE_BITS)})


class SmallStore(wiring.Component):
    """A few hundred bits of per-frame data, read LOOKUP_LATENCY edges after the address.

    ECP5 (and simulation): LUT RAM read without a clock, then a register. Marked
    as such (`ram_style`): Yosys otherwise folds the register into a read port
    and maps a 128 × 16 grid axis onto a DP16KD read through its unregistered
    output (5.8 ns of clock-to-out: 103.6 MHz, measured). iCE40 (no LUT RAM):
    block RAM with its synchronous read. Its users never read an entry in the
    edge it is written (`NO_RW_CHECK`: no collision logic).
    """

    def __init__(
        self, width: int, depth: int, *, granularity: int | None = None, big_die: bool
    ) -> None:
        self.granularity = granularity or width
        # at least two entries: a one-entry memory has a zero-width address
        self.depth = max(2, depth)
        self.big_die = big_die
        addr = (self.depth - 1).bit_length()
        super().__init__(
            {
                "w_addr": In(addr),
                "w_data": In(width),
                "w_en": In(width // self.granularity),
                "r_addr": In(addr),
                "r_data": Out(width),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        attrs = {"ram_style": "distributed"} if self.big_die else {NO_RW_CHECK: 1}
        m.submodules.storage = mem = Memory(
            shape=unsigned(len(self.w_data)), depth=self.depth, init=[], attrs=attrs
        )
        wp = mem.write_port(granularity=self.granularity)
        m.d.comb += [wp.addr.eq(self.w_addr), wp.data.eq(self.w_data), wp.en.eq(self.w_en)]
        if self.big_die:
            rp = mem.read_port(domain="comb")
            m.d.sync += self.r_data.eq(rp.data)
        else:
            rp = mem.read_port(transparent_for=())
            m.d.comb += self.r_data.eq(rp.data)
        m.d.comb += rp.addr.eq(self.r_addr)
        return m


class HeatmapUnit(wiring.Component):
    """One frame's K + 1 heatmap channels per command, row ▸ column ▸ channel, int8 out."""

    def __init__(self, params: GraceParams, *, dsp_target: str | None = None) -> None:
        self.params = params
        self.dsp_target = dsp_target
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(params))),
                "grid_write": In(stream.Signature(grid_write_layout(params))),
                "keypoint_write": In(stream.Signature(keypoint_write_layout(params))),
                "gaussian_write": In(stream.Signature(gaussian_write_layout(params))),
                "o": Out(stream.Signature(signed(8))),
                "done": Out(stream.Signature(unsigned(TAG_BITS))),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.params
        target = self.dsp_target
        big_die = platform_target(platform, target) != "ice40"

        m.submodules.issue = issue = HeatmapIssue(p, token_slots=TOKEN_SLOTS)
        wiring.connect(m, wiring.flipped(self.cmd), issue.cmd)
        m.d.comb += issue.token_return.eq(self.done.valid & self.done.ready)
        beat = issue.beat.payload

        # -- writes: registered, then into the stores; a write lands two edges
        # after its transfer, a command reads at least five edges after its own
        m.d.comb += [
            self.grid_write.ready.eq(1),
            self.keypoint_write.ready.eq(1),
            self.gaussian_write.ready.eq(1),
        ]
        gw, kw, tw = (
            self.grid_write.payload, self.keypoint_write.payload, self.gaussian_write.payload
        )  # fmt: skip
        # own registers (replicas): Yosys merges registers of the same signal, and in
        # the co-processor every engine registers the same router words
        grid_w = data.View(gw.shape(), replica(m, gw, "grid_w"))
        kp_w = data.View(kw.shape(), replica(m, kw, "kp_w"))
        table_w = data.View(tw.shape(), replica(m, tw, "table_w"))
        grid_w_en, kp_w_en, table_w_en = Signal(), Signal(), Signal()
        m.d.sync += [
            grid_w_en.eq(self.grid_write.valid),
            kp_w_en.eq(self.keypoint_write.valid),
            table_w_en.eq(self.gaussian_write.valid),
        ]

        # -- L: the grid entry and the keypoint's pair (x for elements, y for set-up)
        m.submodules.grid = grid = SmallStore(GRID_BITS, p.act.max_grid, big_die=big_die)
        m.submodules.keypoints = keypoints = SmallStore(
            KEYPOINT_ENTRY.size, p.act.max_keypoints, granularity=KP_BITS, big_die=big_die
        )
        m.d.comb += [
            grid.w_addr.eq(grid_w.index),
            grid.w_data.eq(grid_w.value),
            grid.w_en.eq(grid_w_en),
            grid.r_addr.eq(beat.grid_index),
            keypoints.w_addr.eq(kp_w.keypoint),
            keypoints.w_data.eq(Cat(kp_w.x, kp_w.y, kp_w.x, kp_w.y)),
            # lanes x_d, y_d (driving) or x_s, y_s (source)
            keypoints.w_en.eq(Mux(kp_w_en, Mux(kp_w.source, 0b1100, 0b0011), 0)),
            keypoints.r_addr.eq(beat.keypoint),
        ]
        valid = issue.beat.valid
        setup_l = delay(m, beat.row_setup, LOOKUP_LATENCY, "setup_l")
        g = grid.r_data.as_signed()
        pair = data.View(KEYPOINT_ENTRY, keypoints.r_data)

        # -- D: offsets, then saturated to ±DELTA_LIMIT (exact: §2.4)
        offsets = []
        for frame, (x, y) in {"d": (pair.x_d, pair.y_d), "s": (pair.x_s, pair.y_s)}.items():
            offset = Signal(signed(KP_BITS + 1), name=f"offset_{frame}")
            saturated = Signal(signed(DELTA_BITS), name=f"saturated_{frame}")
            # beyond ±DELTA_LIMIT from the offset's bits, not two comparisons in
            # series (ECP5's critical path): the top bits (from DELTA_BITS − 1 up)
            # are not all the sign, or the offset is −2^(DELTA_BITS − 1) exactly
            top, low = offset[DELTA_BITS - 1 : -1], offset[: DELTA_BITS - 1]
            sign = offset[-1]
            over = ~sign & top.any()
            under = sign & ~(top.all() & low.any())
            m.d.sync += [
                offset.eq(g - Mux(setup_l, y, x)),
                saturated.eq(Mux(over, DELTA_LIMIT, Mux(under, -DELTA_LIMIT, offset))),
            ]
            offsets.append(saturated)

        # -- M: the two squares, landed in fabric registers
        squares = []
        for frame, offset in zip("ds", offsets, strict=True):
            dsp = Multiplier(DELTA_BITS, DELTA_BITS, target=target)
            m.submodules[f"square_{frame}"] = dsp
            square = Signal(unsigned(SQUARE_BITS), name=f"square_{frame}")
            m.d.comb += [dsp.a.eq(offset), dsp.b.eq(offset)]
            m.d.sync += square.eq(dsp.p)
            squares.append(square)

        # -- S: set-up beats store the row's squares with the rounding half;
        # elements read them (written at least two edges before: K + 1 beats)
        at_squares = delay(
            m,
            Cat(valid, beat.row_setup, beat.background, beat.end, beat.tag, beat.keypoint),
            BEAT_TO_SQUARES,
            "side",
        )
        sq_valid, sq_setup, sq_background, sq_end = (at_squares[k] for k in range(4))
        sq_tag, sq_keypoint = at_squares[4 : 4 + TAG_BITS], at_squares[4 + TAG_BITS :]
        m.submodules.row_squares = rows = SmallStore(
            ROW_ENTRY.size, p.act.max_keypoints, big_die=big_die
        )
        before = delay(m, beat.keypoint, BEAT_TO_SQUARES - LOOKUP_LATENCY, "row_read")
        written = Signal(ROW_ENTRY)
        m.d.comb += [
            written.d.eq(squares[0] + ROUNDING),
            written.s.eq(squares[1] + ROUNDING),
            rows.w_addr.eq(sq_keypoint),
            rows.w_data.eq(written),
            rows.w_en.eq(sq_valid & sq_setup),
            rows.r_addr.eq(before),
        ]
        row = data.View(ROW_ENTRY, rows.r_data)
        distances = []
        for frame, square, row_square in zip("ds", squares, (row.d, row.s), strict=True):
            distance = Signal(unsigned(SQUARE_BITS + 1), name=f"distance_{frame}")
            m.d.sync += distance.eq(square + row_square)
            distances.append(distance)
        at_sum = delay(
            m, Cat(sq_valid & ~sq_setup, sq_background, sq_end, sq_tag), SUM_LATENCY, "sum"
        )
        sum_output, sum_background = at_sum[0], at_sum[1]

        # -- T: both tables (index ≥ depth, and the background, read 0)
        depth = p.act.gaussian_depth
        tables = []
        for frame, distance in zip("ds", distances, strict=True):
            table = RegisteredRAM(8, depth, target=target)
            m.submodules[f"table_{frame}"] = table
            index = distance[DIST_SHIFT : DIST_SHIFT + INDEX_BITS]
            m.d.comb += [
                table.w_addr.eq(table_w.index),
                table.w_data.eq(table_w.data),
                table.w_en.eq(table_w_en),
                table.r_addr.eq(index),
                table.r_clear.eq(sum_background | (index >= depth)),
            ]
            tables.append(table.r_data)
        at_tables = delay(m, Cat(sum_output, at_sum[2:]), RegisteredRAM.READ_LATENCY, "tables")
        out_valid, out_end, out_tag = at_tables[0], at_tables[1], at_tables[2:]

        # -- X: the difference, saturated by the output path
        m.submodules.output = path = OutputPath(
            OUTPUT_NUMERIC, 1, producer_latency=ISSUE_TO_OUTPUT, token_slots=TOKEN_SLOTS,
            dsp_target=target,
        )  # fmt: skip
        element = path.i.payload
        user = data.View(element_user_layout(1), element.user)
        m.d.sync += [
            path.i.valid.eq(out_valid),
            element.acc.eq(tables[0].as_unsigned() - tables[1].as_unsigned()),
            element.bias.eq(0),
            element.multiplier.eq(1),
            element.shift.eq(0),
            element.relu.eq(0),
            user.lane.eq(0),
            user.pool.eq(0),
            user.quad.eq(0),
            user.end.eq(out_end),
            user.tag.eq(out_tag),
        ]
        m.d.comb += issue.room_next.eq(
            lanes_in_lockstep(m, [path], reserve=issue.reserve, o=self.o, done=self.done)
        )
        return m
