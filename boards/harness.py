"""A board top that keeps a stream block honest in synthesis.

A block with ~90 input bits cannot be wired to pins, and a block whose inputs
are constant is optimised away. The harness feeds every input stream of the
block from free-running LFSRs (payload, valid), every output stream's ready
from another LFSR bit, and folds every output into a multiple-input signature
register whose parity drives an LED. Every block register sits between harness
registers, so the post-route Fmax is the block's register-to-register Fmax. An
output's valid and payload are registered before they are folded: the
handshake AND the fold needs is then the harness's own, not a LUT Yosys shares
with the block's `valid & ready` and places by the signature, in the middle of
the block's path (seen on ECP5). The harness costs 32 flip-flops per LFSR, the
output registers and the signature; the report says how many.
"""

from __future__ import annotations

from amaranth import Cat, Elaboratable, Module, Mux, Signal, Value
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


def stream_ports(block: wiring.Component) -> list[tuple[str, bool]]:
    """(name, is_input) of every stream interface in the block's signature."""
    ports = []
    for name, member in block.signature.members.items():
        if member.is_signature and {"valid", "ready", "payload"} <= set(member.signature.members):
            ports.append((name, member.flow == wiring.In))
    if not ports:
        raise ValueError(f"{type(block).__name__} has no stream interfaces to drive")
    return ports


class StreamHarness(Elaboratable):
    """Drive every input stream pseudo-randomly, fold every output into a signature LED."""

    def __init__(self, block: wiring.Component) -> None:
        self.block = block
        self.ports = stream_ports(block)
        width = {name: len(Value.cast(getattr(block, name).payload)) for name, _ in self.ports}
        inputs = [width[name] for name, is_in in self.ports if is_in]
        outputs = [width[name] for name, is_in in self.ports if not is_in]
        #: Flip-flops of the harness itself (LFSRs, output registers and the
        #: signature), for the report.
        self.flip_flops = (
            32 * sum(lfsr_count(w) for w in inputs)
            + sum(32 + w + 1 for w in outputs)  # LFSR for ready; payload and valid seen
            + 32
        )

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.block = block = self.block
        signature = Signal(32)
        seed = 0
        folded = []
        for name, is_input in self.ports:
            port = getattr(block, name)
            if is_input:
                payload = Value.cast(port.payload)
                sources = []
                for _ in range(lfsr_count(len(payload))):
                    seed += 1
                    sources.append(_lfsr(m, 0x9E37_79B9 * seed))
                control = sources.pop()
                m.d.comb += [payload.eq(Cat(*sources)[: len(payload)]), port.valid.eq(control[3])]
            else:
                seed += 1
                ready_source = _lfsr(m, 0x9E37_79B9 * seed)
                m.d.comb += port.ready.eq(ready_source[17])
                out = Value.cast(port.payload).as_unsigned()
                seen = Signal.like(out, name=f"{name}_seen")
                seen_valid = Signal(name=f"{name}_seen_valid")
                m.d.sync += [seen.eq(out), seen_valid.eq(port.valid)]
                # the LFSR shifts left, so bit 18 is the ready bit of the last edge
                folded.append(Mux(seen_valid & ready_source[18], seen, 0))
        mixed = 0
        for value in folded:
            mixed ^= value
        m.d.sync += signature.eq(Cat(signature[-1], signature[:-1]) ^ mixed)

        if platform is not None:
            m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
            m.d.comb += led.o.eq(signature.xor())
        return m
