"""Convolution engine: a rows × cols array of int8 MACs with its buffers and output path.

Dataflow (docs/conv_engine.md has the full contract and the cycle model). Every
cycle ("beat") the issue loop picks one output pixel, one input-channel group
g and one kernel tap (u, v). The input buffer returns the `cols` channels of
group g at the tapped pixel (zero outside the image: padding), the weight
buffers return the rows × cols weights of that (g, u, v) for `rows` output
channels; row r of the array forms the dot product of the two vectors and
adds it to its accumulator. After G·k_h·k_w beats the `rows` accumulators hold
one output pixel of `rows` channels (output-stationary), and the next pixel
starts on the following beat, so the MACs never wait. The parts, one file
each, joined here by streams::

      cmd ─► IssueLoop (issue.py) ── beat: tap (y, x), group plane, weight word
               │                └─ pixel: what the output unit needs of it ──┐
               ▼                                                             │
      AddressGenerator (address.py) ─► input buffer ─┐                       │
      weight address (delayed to match) ─► weight buffers ─► MacArray        │
                                          (mac_array.py: DSPs, adder trees,  │
                                           accumulators, row queues)         │
                                                     ▼                       ▼
                                    ConvOutputUnit (output.py): lane by lane,
                                    + residual × gain ─► OutputPath (rtl/output_path.py):
                                    requantize, ReLU, 2×2 pool ─► o, done

The MAC pipeline never stalls: the issue loop only starts a pixel when the
row queues have a slot reserved for it (credits), so back-pressure on `o`
stops issue instead of gating every DSP's clock enable. Output channels beyond
`rows`, input channels beyond `cols`, stride 2, nearest ×2 upsampling and zero
padding are all address generation; channels that do not fill the last group
read zero weights (the loader writes them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth import Cat, Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from defs.limits import TAG_BITS
from rtl.bram import RegisteredRAM
from rtl.conv.address import AddressGenerator
from rtl.conv.issue import IssueLoop
from rtl.conv.mac_array import OPERAND_GROUP, MacArray, operand_groups
from rtl.conv.output import ConvOutputUnit
from rtl.conv_layouts import (
    command_layout,
    input_addr_bits,
    input_write_layout,
    param_write_layout,
    weight_write_layout,
)
from rtl.dsp import platform_target
from rtl.pipeline import delay, equals, tree_levels
from rtl.replica import replica

if TYPE_CHECKING:
    from collections.abc import Mapping

    from defs.params import GraceParams

#: Register levels of the input buffer's read address: copies per group of its
#: block-RAM tiles, then per tile (rtl/bram.py).
INPUT_ADDRESS_STAGES = 2
#: Register levels of the weight buffers' read address: a copy per group of
#: rows, then one per row (one register feeding all rows across the die took
#: 7.8 ns on ECP5).
WEIGHT_ADDRESS_STAGES = 2


def input_buffer_latency() -> int:
    """Edges from the input buffer's read address to its data (RegisteredRAM)."""
    return RegisteredRAM.READ_LATENCY + INPUT_ADDRESS_STAGES


#: Tiles in flight (accepted, done token not yet taken) at most. Tiles shorter
#: than the pipeline overlap; with one-beat tiles about eight fit in its fill,
#: so sixteen never bind unless `done` is back-pressured.
TOKEN_SLOTS = 16

#: Edges from a beat issuing to its products leaving the DSPs: the issue loop's
#: A0/A1, the address generator, the input buffer read, operand fan-out and multiply.
ISSUE_TO_TREE = (
    IssueLoop.LATENCY + AddressGenerator.LATENCY + input_buffer_latency() + MacArray.OPERAND_LATENCY
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
        # signals across an ECP5-85F only give its placer more to spread there
        big_die = target != "ice40"

        m.submodules.issue = issue = IssueLoop(
            p, token_slots=TOKEN_SLOTS, dsp_target=self.dsp_target
        )
        m.submodules.address = address = AddressGenerator(
            input_addr_bits(p), user_bits=2, dsp_target=self.dsp_target
        )
        m.submodules.macs = macs = MacArray(p, dsp_target=self.dsp_target, mac_sites=self.mac_sites)
        m.submodules.output = output = ConvOutputUnit(
            p, token_slots=TOKEN_SLOTS, dsp_target=self.dsp_target
        )
        wiring.connect(m, wiring.flipped(self.cmd), issue.cmd)
        wiring.connect(m, wiring.flipped(self.param_write), output.param_write)
        wiring.connect(m, wiring.flipped(self.residual), output.residual)
        wiring.connect(m, wiring.flipped(self.o), output.o)
        wiring.connect(m, wiring.flipped(self.done), output.done)
        wiring.connect(m, issue.pixel, output.pixel)
        m.d.comb += address.geometry.eq(issue.geometry)
        m.d.comb += [
            macs.pop.eq(output.pop_next),
            output.heads.eq(macs.heads),
            output.finished.eq(macs.finished),
            issue.slot_return.eq(output.pop),
            issue.token_return.eq(self.done.valid & self.done.ready),
        ]

        # -- buffers: block RAM with registered outputs (rtl/bram.py) ----------
        # (the input buffer's read address and clear reach each of its tiles from
        # a copy of their own: one register drove all 32 tiles' resets on ECP5, 8.4 ns)
        m.submodules.input_buffer = in_ram = RegisteredRAM(
            cols * n.act_bits,
            p.buffers.input_depth,
            target=self.dsp_target,
            address_stages=INPUT_ADDRESS_STAGES,
            write_stages=int(big_die),
        )
        assert in_ram.latency == input_buffer_latency(), "the cycle model's input read"
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
        # The write streams are always ready (one word per cycle; their `ready`
        # is a real port held at 1, since Amaranth 0.5 cannot make the constant
        # `ready` of an `always_ready` stream a port of a top-level block).
        m.d.comb += [self.input_write.ready.eq(1), self.weight_write.ready.eq(1)]
        # Writes pass through registers (a copy per group of rows for the weights,
        # then the buffers' own copies per group of tiles) before they fan out to
        # the block RAM tiles spread over the die: a write lands at most two edges
        # later than its transfer, and a command reads its data at least six edges
        # after its own transfer, so write-then-command holds.
        m.d.sync += [
            in_ram.w_addr.eq(self.input_write.payload.addr),
            in_ram.w_data.eq(self.input_write.payload.data),
            in_ram.w_en.eq(self.input_write.valid),
        ]
        wp = self.weight_write.payload
        for g in range(operand_groups(rows)):
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

        # -- beats → input addresses (zero padding: the buffer's output register
        # clears instead) -------------------------------------------------------
        beat = issue.beat.payload
        m.d.comb += [
            address.i.valid.eq(issue.beat.valid),
            address.i.payload.y.eq(beat.y),
            address.i.payload.x.eq(beat.x),
            address.i.payload.base.eq(beat.base),
            address.i.payload.user.eq(Cat(beat.first, beat.last)),
            in_ram.r_addr.eq(address.o.payload.addr),
            in_ram.r_clear.eq(~address.o.payload.inside),
        ]
        # the weights are read when the inputs are: the weight buffers' address
        # (a copy per group of rows, one per row, then the RAM) arrives as the
        # input buffer's data does
        w_addr = delay(
            m,
            beat.weight_addr,
            AddressGenerator.LATENCY
            + input_buffer_latency()
            - WEIGHT_ADDRESS_STAGES
            - RegisteredRAM.READ_LATENCY,
            "waddr",
        )
        w_addr_groups = [replica(m, w_addr, f"waddr_group{g}") for g in range(operand_groups(rows))]
        for r, ram in enumerate(w_rams):
            m.d.comb += ram.r_addr.eq(
                replica(m, w_addr_groups[r // OPERAND_GROUP], f"waddr_row{r}")
            )

        # -- operands, with the beat's flags, into the MAC array -----------------
        flags = delay(m, address.o.payload.user, input_buffer_latency(), "flags")
        m.d.comb += [
            macs.operands.valid.eq(delay(m, address.o.valid, input_buffer_latency(), "valid")),
            macs.operands.payload.x.eq(in_ram.r_data),
            macs.operands.payload.w.eq(Cat(*[ram.r_data for ram in w_rams])),
            macs.operands.payload.first.eq(flags[0]),
            macs.operands.payload.last.eq(flags[1]),
        ]
        return m
