"""Packed words as L3 reads them: two's complement fields, lane 0 in the low bits."""

from __future__ import annotations


def signed(value: int, bits: int) -> int:
    """The low `bits` of `value` as a two's complement number."""
    half = 1 << (bits - 1)
    return ((value & ((1 << bits) - 1)) ^ half) - half


def lanes(word: int, count: int, bits: int) -> list[int]:
    """A packed word's `count` signed lanes of `bits`, lane 0 in the low bits."""
    return [signed(word >> (k * bits), bits) for k in range(count)]
