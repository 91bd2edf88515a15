"""Hardware limits fixed by the RTL's field widths, shared by compiler, engines and tests.

They bound what one engine command can describe; a layer beyond them is split
or refused by whoever lays it out (sim/conv.py today), never silently clamped.
`MAX_PRODUCT_BITS` bounds the datapath widths the NumPy reference can check.
"""

from __future__ import annotations

#: Spatial sizes (heights, widths, row and plane strides are separate fields).
DIM_BITS = 12
#: Largest kernel side the engine iterates (FOMM uses 1, 3, 7).
MAX_KERNEL = 7
#: Largest zero padding on the top or left edge (bottom/right follow from the output size).
MAX_PAD = 7
#: Completion tags: the controller's name for a tile.
TAG_BITS = 8
#: Input/output channel-group counters (1 .. 2^GROUP_BITS groups).
GROUP_BITS = 10

#: Widest requantize product, (accumulator + bias) × multiplier, signed, so that
#: the NumPy reference (model.fixed.requantize) stays exact in int64: the
#: product's magnitude is below 2^62 and its rounding constant 2^(shift-1) at
#: most 2^61 (shift < product width), so their sum stays below 2^63. At 64 bits
#: that sum would wrap. NumericParams refuses wider widths; requantize checks again.
MAX_PRODUCT_BITS = 63


def bits_for(count: int) -> int:
    """Bits of an unsigned counter that holds 0 .. count - 1."""
    return max(1, (count - 1).bit_length())
