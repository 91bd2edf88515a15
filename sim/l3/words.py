"""Packed words as L3 reads them: two's complement fields, lane 0 in the low bits."""

from __future__ import annotations

import functools
from collections.abc import Callable

from amaranth.hdl import Shape
from amaranth.lib import data


def signed(value: int, bits: int) -> int:
    """The low `bits` of `value` as a two's complement number."""
    half = 1 << (bits - 1)
    return ((value & ((1 << bits) - 1)) ^ half) - half


def lanes(word: int, count: int, bits: int) -> list[int]:
    """A packed word's `count` signed lanes of `bits`, lane 0 in the low bits."""
    return [signed(word >> (k * bits), bits) for k in range(count)]


Unpack = Callable[[int], dict[str, int]]


def unpacker(layout: data.StructLayout) -> Unpack:
    """word → {field: value} by the layout's offsets, signed fields as two's complement;
    a nested layout's field as its raw bits. Plain shifts: L3 unpacks every payload word
    a program loads, and `from_bits` views are slow at that rate."""
    spec = []
    for name, f in layout:
        is_signed = not isinstance(f.shape, data.Layout) and Shape.cast(f.shape).signed
        spec.append((name, f.offset, (1 << f.width) - 1, f.width, is_signed))

    def unpack(word: int) -> dict[str, int]:
        out = {}
        for name, offset, mask, width, is_signed in spec:
            v = (word >> offset) & mask
            out[name] = v - (1 << width) if is_signed and v >> (width - 1) else v
        return out

    return unpack


@functools.cache
def cached_unpacker(layout_of: Callable[..., data.StructLayout], *args: object) -> Unpack:
    """The unpacker of `layout_of(*args)` (a layout function and its parameters), built once."""
    return unpacker(layout_of(*args))
