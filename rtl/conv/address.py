"""Input address generator: a tap's (y, x) in a stored map → buffer address and "inside".

address = base + (y >> upsample)·row + (x >> upsample), and `inside` says the tap
lies in the (upsampled) map, 0 ≤ y < height and 0 ≤ x < width; outside, the
reader returns zero (zero padding, or a warp tap off the map). The row × stride
product runs on a DSP (`rtl.dsp.Multiplier`). Any engine that reads a
row-major map from a buffer uses it: the conv engine for every beat, a warp
engine for each of its bilinear taps.
"""

from __future__ import annotations

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from defs.limits import DIM_BITS
from rtl.dsp import Multiplier
from rtl.pipeline import delay


def geometry_layout() -> data.StructLayout:
    """The stored map, fixed for a tile: its row stride and its (upsampled) size."""
    return data.StructLayout(
        {
            "row": unsigned(DIM_BITS),  # words from one stored row to the next
            "upsample": unsigned(1),  # nearest ×2 on read: the map is seen 2H × 2W
            "height": unsigned(DIM_BITS + 1),  # as seen, i.e. after upsampling
            "width": unsigned(DIM_BITS + 1),
        }
    )


def tap_layout(coord: object, addr_bits: int, user_bits: int) -> data.StructLayout:
    return data.StructLayout(
        {"y": coord, "x": coord, "base": unsigned(addr_bits), "user": unsigned(user_bits)}
    )


def address_layout(addr_bits: int, user_bits: int) -> data.StructLayout:
    return data.StructLayout(
        {"addr": unsigned(addr_bits), "inside": unsigned(1), "user": unsigned(user_bits)}
    )


class AddressGenerator(wiring.Component):
    """Taps in, one per cycle, never stalling; their addresses out LATENCY edges later.

    `user` travels alongside unchanged (a beat's control flags, say).
    `geometry` is sampled at the first stage only: it may change once the last
    tap of a map has entered.
    """

    #: Edges from `i` to `o`: row/column and inside test (1), row × stride on a
    #: DSP (Multiplier.LATENCY), the final add (1).
    LATENCY = 2 + Multiplier.LATENCY

    def __init__(
        self,
        addr_bits: int,
        *,
        coord_bits: int = DIM_BITS + 3,
        user_bits: int = 0,
        dsp_target: str | None = None,
    ) -> None:
        self.addr_bits, self.coord_bits, self.user_bits = addr_bits, coord_bits, user_bits
        self.dsp_target = dsp_target
        super().__init__(
            {
                "i": In(
                    stream.Signature(
                        tap_layout(signed(coord_bits), addr_bits, user_bits), always_ready=True
                    )
                ),
                "geometry": In(geometry_layout()),
                "o": Out(stream.Signature(address_layout(addr_bits, user_bits), always_ready=True)),
            }
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        tap, geometry = self.i.payload, self.geometry
        # stage 1: the stored row and column, and the inside test
        inside = Signal()
        row = Signal(signed(DIM_BITS + 2))
        part = Signal(self.addr_bits)  # base + column
        m.d.sync += [
            inside.eq(
                (tap.y >= 0) & (tap.y < geometry.height) & (tap.x >= 0) & (tap.x < geometry.width)
            ),
            row.eq(tap.y >> geometry.upsample),
            part.eq(tap.base + (tap.x >> geometry.upsample)),
        ]
        # stages 2, 3: row × stride on a DSP; stage 4: + base + column
        m.submodules.row_times_width = row_mul = Multiplier(
            DIM_BITS + 2, DIM_BITS + 1, target=self.dsp_target
        )
        m.d.comb += [row_mul.a.eq(row), row_mul.b.eq(geometry.row)]
        m.d.sync += self.o.payload.addr.eq(delay(m, part, row_mul.LATENCY, "part") + row_mul.p)
        m.d.comb += self.o.payload.inside.eq(delay(m, inside, row_mul.LATENCY + 1, "inside"))
        m.d.comb += [
            self.o.valid.eq(delay(m, self.i.valid, self.LATENCY, "valid")),
            self.o.payload.user.eq(delay(m, tap.user, self.LATENCY, "user")),
        ]
        return m
