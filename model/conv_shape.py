"""The shape of one convolution layer, as the cost model and the engine see it.

Pure data: the fusion plan attaches one to every conv, the engine's cycle model
(`rtl.conv_cycles`) prices it, and the engine tests generate random ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConvShape:
    """A k_h × k_w convolution over a stored C × H × W input, with its fused options."""

    channels: int
    out_channels: int
    height: int  # stored input (before nearest ×2 upsampling on read)
    width: int
    kernel_h: int
    kernel_w: int
    stride: int = 1
    padding: int = 0  # zeros on every side...
    padding_w: int | None = None  # ...or, when set, this many on the left and right
    upsample: bool = False
    pool: bool = False
    groups: int = 1  # C for a depthwise conv
    residual: bool = False  # a residual enters the accumulator (the cycles do not change)

    @property
    def pad_left(self) -> int:
        return self.padding if self.padding_w is None else self.padding_w

    @property
    def conv_size(self) -> tuple[int, int]:
        """Convolution output height and width, before pooling."""
        up = 2 if self.upsample else 1
        return (
            (self.height * up + 2 * self.padding - self.kernel_h) // self.stride + 1,
            (self.width * up + 2 * self.pad_left - self.kernel_w) // self.stride + 1,
        )

    @property
    def computed_pixels(self) -> int:
        """Output pixels the engine computes (pooling drops an odd last row/column)."""
        h, w = self.conv_size
        return (h // 2) * (w // 2) * 4 if self.pool else h * w

    @property
    def macs(self) -> int:
        """Useful multiply-accumulates: the float model's count."""
        h, w = self.conv_size
        per_pixel = self.out_channels * (self.channels // self.groups) * self.kernel_h
        return per_pixel * self.kernel_w * h * w

    def describe(self) -> str:
        up = " up×2" if self.upsample else ""
        pool = " pool" if self.pool else ""
        h, w = self.conv_size
        return (
            f"{self.channels}→{self.out_channels} {self.kernel_h}×{self.kernel_w}"
            f"/s{self.stride} {self.height}×{self.width}→{h}×{w}{up}{pool}"
        )

    def fold_taps(self) -> ConvShape:
        """The same layer with the horizontal taps moved onto input channels.

        x'[(c, v), y, j] = x[c, y, j + v - pad]: a C·k_w-channel input and a
        k_h × 1 kernel compute the same outputs. The host lays x' out while
        loading, which fills idle input lanes when C is below the array's
        width (the 3-channel 7×7 layers). Stride 1 only.
        """
        if self.stride != 1 or self.upsample or self.groups != 1:
            raise ValueError("fold_taps: stride 1, no upsampling, dense conv only")
        _, w = self.conv_size
        return ConvShape(
            channels=self.channels * self.kernel_w,
            out_channels=self.out_channels,
            height=self.height,
            width=w,
            kernel_h=self.kernel_h,
            kernel_w=1,
            padding=self.padding,
            padding_w=0,
            pool=self.pool,
            residual=self.residual,
        )

    def fold_rows(self, fold: int) -> ConvShape:
        """The same layer with `fold` output rows moved onto output channels.

        Output row y = fold·Y + p of channel o becomes row Y of channel o·fold + p.
        It reads x'[c·fold + r, Y', j] = x[c, fold·Y' + r, j] (rows of x stacked
        `fold` deep as channels, zero beyond x; at least ⌈H/fold⌉ rows) through
        a kernel of `above + below + 1` rows, where above = ⌈pad/fold⌉ and
        below = ⌊(fold + k_h − 2 − pad)/fold⌋, whose weights the host spreads
        so that each output row meets its own k_h of them. That fills the
        array's idle rows when O is below them (the 3-channel 7×7 final layer).
        Stride 1 and no pooling (it mixes output rows); no upsampling or residual
        either (they would need folded layouts of their own, not built).
        """
        if fold < 1:
            raise ValueError(f"fold_rows: fold {fold} must be at least 1")
        if self.stride != 1 or self.upsample or self.pool or self.residual or self.groups != 1:
            raise ValueError(
                "fold_rows: stride 1, no upsampling, pooling or residual, dense conv only"
            )
        out_h, _ = self.conv_size
        above = -(-self.padding // fold)
        below = (fold + self.kernel_h - 2 - self.padding) // fold
        # enough rows to yield ⌈Ho/F⌉ output rows, and to hold every row of x
        # (uneven padding can add a discarded row)
        height = max(-(-out_h // fold) + below - above, -(-self.height // fold))
        return ConvShape(
            channels=self.channels * fold,
            out_channels=self.out_channels * fold,
            height=height,
            width=self.width,
            kernel_h=above + below + 1,
            kernel_w=self.kernel_w,
            padding=above,
            padding_w=self.pad_left,
        )
