"""Where a feature map lives in the memory image: planes of pixels, channels inside.

Every engine reads and writes external memory through LOAD and STORE
transfers (docs/isa.md): `rows` rows of `row_words` contiguous words, the
rows `stride` bytes apart. A map's layout is chosen so that what each engine
reads or writes is one such transfer:

- a `Plane` holds some channels of every pixel, pixel-major: channel c of
  pixel p is at `addr + p·pixel_bytes + c·channel_bytes`;
- a `Tensor` is planes side by side in channel order (a concatenation is
  their planes together, nothing moved).

The conv engine's input layout is planes of `cols` channels (one input word
per pixel), its output layout planes of `rows` lanes (fewer in the last).
Payload slots (`channel_bytes` > 1) hold one engine write-stream word per
value with its place already filled in by the compiler; a STORE writes only
the data byte at the start of each (the warp's feature words, the flow
entries).
"""

from __future__ import annotations

from dataclasses import dataclass


class LoweringError(ValueError):
    """A layer the compiler cannot lower for these parameters (one line, with the sizes)."""


@dataclass(frozen=True)
class Plane:
    addr: int
    channels: int
    pixel_bytes: int  # from one pixel's first channel to the next pixel's
    channel_bytes: int = 1  # from one channel to the next within a pixel

    def __post_init__(self) -> None:
        if self.channels < 1 or self.pixel_bytes < self.channels * self.channel_bytes:
            raise LoweringError(
                f"plane: {self.channels} channels {self.channel_bytes} bytes apart do not fit "
                f"{self.pixel_bytes} bytes a pixel"
            )

    def transfer(self, channel: int, count: int, pixel: int, pixels: int) -> dict[str, int]:
        """The transfer of channels [channel, channel + count) of `pixels` pixels from
        `pixel` on, one byte a value, in pixel ▸ channel order."""
        if channel < 0 or count < 1 or channel + count > self.channels:
            raise LoweringError(
                f"plane: channels {channel}..{channel + count - 1} of a {self.channels}-channel "
                "plane"
            )
        first = self.addr + pixel * self.pixel_bytes + channel * self.channel_bytes
        if self.channel_bytes == 1:
            if count == self.pixel_bytes and pixels * count <= MAX_FIELD:  # one run of bytes
                return transfer_fields(first, 0, 1, pixels * count)
            return transfer_fields(first, self.pixel_bytes, pixels, count)
        if count * self.channel_bytes != self.pixel_bytes:
            raise LoweringError(
                f"plane: {count} of {self.channels} slots {self.channel_bytes} bytes apart are "
                "not evenly spaced across pixels"
            )
        return transfer_fields(first, self.channel_bytes, pixels * count, 1)


@dataclass(frozen=True)
class Tensor:
    """A (C, H, W) feature map's planes, in channel order."""

    planes: tuple[Plane, ...]
    height: int
    width: int

    @property
    def channels(self) -> int:
        return sum(p.channels for p in self.planes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width

    def __add__(self, other: Tensor) -> Tensor:
        """The channel concatenation."""
        if (self.height, self.width) != (other.height, other.width):
            raise LoweringError(
                f"concatenation of {self.height}×{self.width} and {other.height}×{other.width} maps"
            )
        return Tensor(self.planes + other.planes, self.height, self.width)

    def locate(self, channel: int, count: int = 1) -> tuple[Plane, int]:
        """The plane holding channels [channel, channel + count), and the first's index in it."""
        first = 0
        for plane in self.planes:
            if first <= channel < first + plane.channels:
                if channel + count > first + plane.channels:
                    raise LoweringError(
                        f"channels {channel}..{channel + count - 1} span two planes of the map"
                    )
                return plane, channel - first
            first += plane.channels
        raise LoweringError(f"channel {channel} of a {self.channels}-channel map")


#: The largest `rows` or `row_words` a transfer takes (16-bit fields, docs/isa.md).
MAX_FIELD = 0xFFFF
#: Pixels per element-wise tile when a map is split: a transfer's rows and row_words
#: fields are 16 bits, and a row may hold a pixel's 3 bytes.
CHUNK_PIXELS = 16384


def pixel_chunks(pixels: int, chunk: int = CHUNK_PIXELS) -> list[tuple[int, int]]:
    """(first pixel, pixels) of the tiles a map of `pixels` pixels is split into."""
    return [(p0, min(chunk, pixels - p0)) for p0 in range(0, pixels, chunk)]


def transfer_fields(addr: int, stride: int, rows: int, row_words: int) -> dict[str, int]:
    """A LOAD's or STORE's memory side: `rows` rows of `row_words` words."""
    return {"dram_addr": addr, "stride": stride, "rows": rows, "row_words": row_words}


def grouped(
    addr: int, channels: int, height: int, width: int, lanes: int, *, padded: bool = False
) -> Tensor:
    """Planes of `lanes` channels (fewer in the last), one after another from `addr`:
    the conv engine's output layout (lanes = rows), and with `padded` (the last plane's
    pixels as wide as the others) its input layout (lanes = cols)."""
    planes, offset = [], addr
    for c0 in range(0, channels, lanes):
        n = min(lanes, channels - c0)
        width_bytes = lanes if padded else n
        planes.append(Plane(offset, n, width_bytes))
        offset += height * width * width_bytes
    return Tensor(tuple(planes), height, width)


def tensor_bytes(tensor: Tensor) -> int:
    """Bytes from the first plane's start to the last one's end (planes laid one after another)."""
    last = tensor.planes[-1]
    return last.addr + tensor.height * tensor.width * last.pixel_bytes - tensor.planes[0].addr
