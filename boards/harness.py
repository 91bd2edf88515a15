"""A board top that keeps a stream block honest in synthesis.

A block with ~90 input bits cannot be wired to pins, and a block whose inputs
are constant is optimised away. The harness feeds the block's `i` stream from
free-running LFSRs (payload, valid) and its `o` ready from another LFSR bit, and
folds every output into a multiple-input signature register whose parity drives
an LED. Every block register sits between harness registers, so the post-route
Fmax is the block's register-to-register Fmax. The harness itself costs about
`32·ceil(W/32) + 64` flip-flops for a W-bit payload; the build report says so.
"""

from __future__ import annotations

from amaranth import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import io, wiring

# x^32 + x^22 + x^2 + x + 1 (maximal length), as a Fibonacci LFSR shifting left.
_LFSR_TAPS = (31, 21, 1, 0)


def _lfsr(m: Module, seed: int) -> Signal:
    state = Signal(32, init=seed & 0xFFFF_FFFF or 1)
    feedback = (
        state[_LFSR_TAPS[0]] ^ state[_LFSR_TAPS[1]] ^ state[_LFSR_TAPS[2]] ^ state[_LFSR_TAPS[3]]
    )
    m.d.sync += state.eq(Cat(feedback, state[:-1]))
    return state


def lfsr_count(payload_width: int) -> int:
    """LFSRs the harness needs for a payload of this width (one spare for valid/ready)."""
    return -(-payload_width // 32) + 1


class StreamHarness(Elaboratable):
    """Drive `block.i` pseudo-randomly, fold `block.o` into a signature, blink it on an LED."""

    def __init__(self, block: wiring.Component) -> None:
        self.block = block

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.block = block = self.block
        payload = block.i.payload.as_value()
        sources = [_lfsr(m, 0x9E37_79B9 * (k + 1)) for k in range(lfsr_count(len(payload)))]
        control = sources.pop()
        m.d.comb += [
            payload.eq(Cat(*sources)[: len(payload)]),
            block.i.valid.eq(control[3]),
            block.o.ready.eq(control[17]),
        ]

        signature = Signal(32)
        with m.If(block.o.valid & block.o.ready):
            out = Value.cast(block.o.payload).as_unsigned()
            m.d.sync += signature.eq(Cat(signature[-1], signature[:-1]) ^ out)

        if platform is not None:
            m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
            m.d.comb += led.o.eq(signature.xor())
        return m
