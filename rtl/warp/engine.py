"""Warp engine: bilinear grid sampling of stored feature planes by a flow, bit-exact with L2.

Per beat (one output pixel × one plane of `lanes` channels) the engine reads
the four taps of the pixel at once, one from each bank of the feature buffer
(bank = row parity × column parity, so the taps of any position fall in four
different banks), interpolates each lane, and rounds (× occlusion, if fused)
in the shared output path. Nothing stalls behind the issue loop: a beat
issues only with a result slot reserved. docs/warp_engine.md has the
specification, the widths and the cycle model::

    cmd ─► WarpIssue (issue.py) ◄─ flow queue (PrefetchQueue) ◄─ flow
              │ beat: flow (x, y, occ), plane base, sizes, end, tag
              ▼
    AxisUnit × 2 (coordinates.py): tap row/column, parity, weight, inside
              ▼
    AddressGenerator (rtl/conv/address.py): base + row·in_row + column
              ▼
    bank select: four addresses, four clears ─► 4 × RegisteredRAM
              ▼
    Lerp per lane (lerp.py) ─► OutputPath per lane (rtl/output_path.py):
    × (occ or 1), round, saturate ─► o, done
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.limits import TAG_BITS
from model.fixed_ops import OCC_BITS, PIXEL_FRAC_BITS
from rtl.bram import RegisteredRAM
from rtl.conv.address import AddressGenerator
from rtl.dsp import platform_target
from rtl.output_path import OutputPath, element_user_layout, lanes_in_lockstep
from rtl.pipeline import delay, equals
from rtl.prefetch import PrefetchQueue
from rtl.replica import replica
from rtl.warp.coordinates import HALF_BITS, AxisUnit
from rtl.warp.issue import WarpIssue
from rtl.warp.layouts import (
    BANKS,
    command_layout,
    feature_write_layout,
    flow_layout,
    warp_addr_bits,
)
from rtl.warp.lerp import ACC_BITS, Lerp

if TYPE_CHECKING:
    from defs.params import GraceParams, NumericParams

#: Tiles in flight (accepted, done token not yet taken) at most.
TOKEN_SLOTS = 16
#: Register levels of the banks' read address: a copy per block-RAM tile.
BANK_ADDRESS_STAGES = 1
#: Edges of the bank select: four addresses and clears from the odd banks' one.
BANK_SELECT_LATENCY = 1


def bank_read_latency() -> int:
    """Edges from a bank's read address to its data (RegisteredRAM)."""
    return RegisteredRAM.READ_LATENCY + BANK_ADDRESS_STAGES


#: Edges from a beat issuing to its sum entering the output path.
ISSUE_TO_OUTPUT = (
    WarpIssue.LATENCY
    + AxisUnit.LATENCY
    + AddressGenerator.LATENCY
    + BANK_SELECT_LATENCY
    + bank_read_latency()
    + Lerp.LATENCY
)


#: L2's one rounding of a warp fused with occlusion: acc·occ >> (2·8 + 8), where
#: the weights carry 2·PIXEL_FRAC_BITS fraction bits and occ is occ / 2^OCC_BITS.
OCCLUDED_SHIFT = 2 * PIXEL_FRAC_BITS + OCC_BITS


def warp_numeric(numeric: NumericParams) -> NumericParams:
    """The output path's widths for a warp: L2's rounding is requantize(acc, 0, M, s).

    M = occ and s = 2·8 + 8 with occlusion, M = 1 and s = 16 without
    (docs/warp_engine.md §4.2); narrower than a convolution's, so fewer registers.
    """
    return dataclasses.replace(
        numeric, acc_bits=ACC_BITS, bias_bits=8, mult_bits=OCC_BITS, max_shift=OCCLUDED_SHIFT
    )


class WarpEngine(wiring.Component):
    """One warp tile per command: `planes` words of `lanes` channels per output pixel."""

    def __new__(cls, params: GraceParams, *, dsp_target: str | None = None) -> WarpEngine:
        # Validated before the object exists, so a rejected one is not reported by
        # Amaranth as an elaboratable that was created but never used.
        if params.numeric.act_bits != 8:
            raise ValueError(
                f"the warp engine's widths are derived for int8 features "
                f"(act_bits = 8), not act_bits = {params.numeric.act_bits}"
            )
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, params: GraceParams, *, dsp_target: str | None = None) -> None:
        self.params = params
        self.dsp_target = dsp_target
        n = params.numeric
        super().__init__(
            {
                "cmd": In(stream.Signature(command_layout(params))),
                "feature_write": In(stream.Signature(feature_write_layout(params))),
                "flow": In(stream.Signature(flow_layout())),
                # lane l in bits [8l, 8l + 8)
                "o": Out(stream.Signature(unsigned(params.warp.lanes * n.act_bits))),
                "done": Out(stream.Signature(unsigned(TAG_BITS))),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        p = self.params
        lanes, act = p.warp.lanes, p.numeric.act_bits
        target = self.dsp_target
        # iCE40's die is small: copies that carry writes across an ECP5 only cost there
        big_die = platform_target(platform, target) != "ice40"

        m.submodules.issue = issue = WarpIssue(p, token_slots=TOKEN_SLOTS)
        m.submodules.flow_queue = flow_queue = PrefetchQueue(flow_layout().size)
        wiring.connect(m, wiring.flipped(self.cmd), issue.cmd)
        wiring.connect(m, wiring.flipped(self.flow), flow_queue.i)
        m.d.comb += [
            issue.flow.eq(flow_queue.head),
            issue.flow_valid.eq(flow_queue.head_valid),
            issue.flow_valid_next.eq(flow_queue.head_valid_next),
            flow_queue.pop.eq(issue.flow_pop),
            issue.token_return.eq(self.done.valid & self.done.ready),
        ]
        beat = issue.beat.payload

        # -- coordinates: both axes at once ------------------------------------
        axes = {}
        for name, coord, size in (
            ("x", beat.flow.x, beat.in_width),
            ("y", beat.flow.y, beat.in_height),
        ):
            m.submodules[f"axis_{name}"] = axis = AxisUnit(dsp_target=target)
            m.d.comb += [
                axis.i.valid.eq(issue.beat.valid),
                axis.i.payload.coord.eq(coord),
                axis.i.payload.size.eq(size),
            ]
            axes[name] = axis.o.payload
        x, y = axes["x"], axes["y"]

        # -- the odd banks' address, then the four banks' -----------------------
        m.submodules.address = address = AddressGenerator(
            warp_addr_bits(p), coord_bits=HALF_BITS, user_bits=BANKS, dsp_target=target
        )
        in_row = delay(m, beat.in_row, AxisUnit.LATENCY, "in_row")
        # inside[2·ry + rx]: the tap read from bank (ry, rx) lies in the map
        inside = Cat(*[y.inside[ry] & x.inside[rx] for ry in (0, 1) for rx in (0, 1)])
        m.d.comb += [
            address.i.valid.eq(delay(m, issue.beat.valid, AxisUnit.LATENCY, "tap_valid")),
            address.i.payload.y.eq(y.half),
            address.i.payload.x.eq(x.half),
            address.i.payload.base.eq(delay(m, beat.base, AxisUnit.LATENCY, "base")),
            address.i.payload.user.eq(inside),
            address.geometry.row.eq(in_row),
        ]
        # each bank's offset from the odd banks' address: the even-parity bank's
        # tap is one row (column) further when y0 (x0) is odd; formed beside the
        # address generator, so the bank select is one add
        x_step = x.parity
        y_step = Signal.like(in_row)
        both_steps = Signal(len(in_row) + 1)
        m.d.comb += [
            y_step.eq(Mux(y.parity, in_row, 0)),
            both_steps.eq(y_step + x_step),
        ]
        offsets = {3: 0, 2: x_step, 1: y_step, 0: both_steps}
        odd = address.o.payload.addr  # bank (1, 1)
        bank_inside = address.o.payload.user
        bank_addr = {
            k: odd + delay(m, offset, AddressGenerator.LATENCY, f"offset{k}") if k != 3 else odd
            for k, offset in offsets.items()
        }
        banks = []
        for k in range(BANKS):
            # (on a big die writes reach each group of block-RAM tiles from a
            # copy of their own: one write address register for all 16 DP16KD
            # took 6.3 ns of routing on ECP5)
            ram = RegisteredRAM(
                lanes * act,
                p.warp.depth,
                target=target,
                address_stages=BANK_ADDRESS_STAGES,
                write_stages=int(big_die),
            )
            m.submodules[f"bank{k}"] = ram
            m.d.sync += [ram.r_addr.eq(bank_addr[k]), ram.r_clear.eq(~bank_inside[k])]
            banks.append(ram)

        # -- feature writes: a register, then the addressed bank ---------------
        # (a write lands at most three edges after its transfer, a command reads
        # a bank many edges after its own: writes before a command are seen by it)
        wp = self.feature_write.payload
        m.d.comb += self.feature_write.ready.eq(1)
        # own registers (replicas): Yosys merges registers of the same signal, and in
        # the co-processor every engine registers the same router words
        w_addr, w_data = replica(m, wp.addr, "w_addr"), replica(m, wp.data, "w_data")
        for k, ram in enumerate(banks):
            enable = Signal(name=f"w_en{k}")
            m.d.sync += enable.eq(self.feature_write.valid & equals(wp.bank, k))
            m.d.comb += [ram.w_addr.eq(w_addr), ram.w_data.eq(w_data), ram.w_en.eq(enable)]

        # -- interpolation and the output path, per lane ------------------------
        to_lerp = AddressGenerator.LATENCY + BANK_SELECT_LATENCY + bank_read_latency()
        weight_x = delay(m, x.weight, to_lerp, "weight_x")
        weight_y = delay(m, y.weight, to_lerp, "weight_y")
        # what the output path needs of the beat, beside the datapath
        side = delay(
            m,
            Cat(issue.beat.valid, beat.flow.occ, beat.occlusion, beat.end, beat.tag),
            ISSUE_TO_OUTPUT - WarpIssue.LATENCY,
            "side",
        )
        side_valid, occ = side[0], side[1 : 1 + OCC_BITS]
        occlusion, end, tag = side[1 + OCC_BITS], side[2 + OCC_BITS], side[3 + OCC_BITS :]
        numeric = warp_numeric(p.numeric)
        paths = []
        for lane in range(lanes):
            m.submodules[f"lerp{lane}"] = lerp = Lerp(act, dsp_target=target)
            for k, ram in enumerate(banks):
                m.d.comb += getattr(lerp, f"b{k >> 1}{k & 1}").eq(
                    ram.r_data[lane * act : (lane + 1) * act]
                )
            m.d.comb += [lerp.weight_x.eq(weight_x), lerp.weight_y.eq(weight_y)]
            m.submodules[f"output{lane}"] = path = OutputPath(
                numeric,
                1,
                producer_latency=ISSUE_TO_OUTPUT,
                token_slots=TOKEN_SLOTS,
                dsp_target=target,
                tags_beside=True,
            )
            element = path.i.payload
            user = data.View(element_user_layout(1), element.user)
            m.d.comb += [
                path.i.valid.eq(side_valid),
                element.acc.eq(lerp.acc),
                element.bias.eq(0),
                element.multiplier.eq(Mux(occlusion, occ, 1)),
                element.shift.eq(Mux(occlusion, OCCLUDED_SHIFT, 2 * PIXEL_FRAC_BITS)),
                element.relu.eq(0),
                user.lane.eq(0),
                user.pool.eq(0),
                user.quad.eq(0),
                user.end.eq(end),
                user.tag.eq(tag),
            ]
            paths.append(path)
        m.d.comb += issue.room_next.eq(
            lanes_in_lockstep(m, paths, reserve=issue.reserve, o=self.o, done=self.done)
        )
        return m
