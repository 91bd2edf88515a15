"""The memory side's bus: Wishbone B4 pipelined, and the client interface in front of it.

Pipelined Wishbone lets a master issue one request per cycle without waiting for
its answer (a request is taken on a cycle with cyc & stb & ~stall; each gets one
ack or err, in order, on a later cycle), which is what keeps a DMA at full rate
behind a memory with latency. Clients never see the bus: they send requests on a
stream and take every response they asked for on an always-ready stream, so the
port routes responses without buffering them."""

from __future__ import annotations

from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


def check_data_bytes(data_bytes: int) -> int:
    """log2(data_bytes); the bus word is a power of two from 4 to 64 bytes."""
    if data_bytes not in (4, 8, 16, 32, 64):
        raise ValueError(f"data_bytes must be a power of two from 4 to 64, not {data_bytes}")
    return data_bytes.bit_length() - 1


def wishbone_signature(addr_bits: int, data_bytes: int) -> wiring.Signature:
    """The master's view; `adr` is a word address (byte address >> log2(data_bytes))."""
    check_data_bytes(data_bytes)
    return wiring.Signature(
        {
            "cyc": Out(1),
            "stb": Out(1),
            "we": Out(1),
            "adr": Out(addr_bits),
            "dat_w": Out(8 * data_bytes),
            "sel": Out(data_bytes),
            "dat_r": In(8 * data_bytes),
            "ack": In(1),
            "err": In(1),
            "stall": In(1),
        }
    )


def request_layout(addr_bits: int, data_bytes: int) -> data.StructLayout:
    """One bus word to read or write; `sel` masks the bytes of a write."""
    return data.StructLayout(
        {"addr": addr_bits, "write": 1, "data": 8 * data_bytes, "sel": data_bytes}
    )


def read_request_layout(addr_bits: int) -> data.StructLayout:
    """A read-only client's request: the word's address alone. Sent in the full layout,
    the constant zeros of its data and byte selects still took registers in the port
    (Yosys keeps a register held at zero through a loop of enabled registers)."""
    return data.StructLayout({"addr": addr_bits})


def response_layout(data_bytes: int) -> data.StructLayout:
    """A read's data (meaningless for a write) and whether the slave answered err."""
    return data.StructLayout({"data": 8 * data_bytes, "error": 1})


def client_signature(addr_bits: int, data_bytes: int, *, writes: bool = True) -> wiring.Signature:
    """The client's (master-side) view: requests out, responses in, always accepted. A
    client that only reads (`writes` False) sends addresses only."""
    check_data_bytes(data_bytes)
    layout = request_layout(addr_bits, data_bytes) if writes else read_request_layout(addr_bits)
    return wiring.Signature(
        {
            "request": Out(stream.Signature(layout)),
            "response": In(stream.Signature(response_layout(data_bytes), always_ready=True)),
        }
    )
