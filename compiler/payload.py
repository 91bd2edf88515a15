"""Engine write-stream payloads as memory words: pack fields by a `lib.data` layout.

A LOAD into a write stream moves payload words that carry their own place
(a table index, a bank address); the compiler lays them out in the image,
packed by the layouts the engines define, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from amaranth.lib import data

from model.fixed_ops import LUT_SIZE
from rtl.act.layouts import table_write_layout


def pack(layout: data.StructLayout, fields: Mapping[str, npt.ArrayLike]) -> list[int]:
    """Pack per-field integer arrays into one integer per element, by the layout's offsets."""
    missing = set(name for name, _ in layout) - set(fields)
    if missing:
        raise ValueError(f"pack: no values for field(s) {', '.join(sorted(missing))}")
    if layout.size <= 64:  # every word fits an unsigned 64-bit integer: NumPy throughout
        arrays = {
            name: np.asarray(values, dtype=np.int64).ravel() for name, values in fields.items()
        }
        count = len(next(iter(arrays.values())))
        packed = np.zeros(count, np.uint64)
        for name, fld in layout:
            value = arrays[name].astype(np.uint64) & np.uint64((1 << fld.width) - 1)
            packed |= value << np.uint64(fld.offset)
        return [int(w) for w in packed]
    # Python ints: a field (a nested struct) may be wider than 64 bits.
    columns = {
        name: [int(v) for v in np.asarray(values, dtype=object).ravel()]
        for name, values in fields.items()
    }
    count = len(next(iter(columns.values())))
    words = [0] * count
    for name, fld in layout:
        mask = (1 << fld.width) - 1
        for k, value in enumerate(columns[name]):
            words[k] |= (value & mask) << fld.offset
    return words


def word_bytes(layout: data.StructLayout) -> int:
    """Bytes a payload word takes in memory (whole bytes, little-endian)."""
    return -(-layout.size // 8)


def payload_bytes(layout: data.StructLayout, fields: Mapping[str, npt.ArrayLike]) -> bytes:
    """The packed words as the memory image holds them."""
    size = word_bytes(layout)
    words = pack(layout, fields)
    if size <= 8:
        raw = np.array(words, dtype="<u8").view(np.uint8).reshape(-1, 8)[:, :size]
        return raw.tobytes()
    return b"".join(w.to_bytes(size, "little") for w in words)


def table_bytes(table: int, entries: npt.ArrayLike) -> bytes:
    """A 256-entry element-wise table as its TABLE write words (entry i at index i)."""
    values = np.asarray(entries, dtype=np.int64)
    if values.shape != (LUT_SIZE,):
        raise ValueError(f"a table has {LUT_SIZE} entries, not {values.shape}")
    fields = {"table": np.full(LUT_SIZE, table), "index": np.arange(LUT_SIZE), "data": values}
    return payload_bytes(table_write_layout(), fields)
