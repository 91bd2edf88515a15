"""Building blocks of the FOMM / DAC decoder family, with first-order-model's names.

Attribute names follow AliaksandrSiarohin/first-order-model (`modules/util.py`)
so that a `vox-256.pth.tar` state dict loads without renaming. Behaviour follows
the same graph: conv → BN → ReLU (→ avg-pool 2) down blocks, nearest ×2 → conv →
BN → ReLU up blocks, pre-activation residual blocks, and an hourglass that
concatenates skips.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Coordinates run from -1 (centre of the first pixel) to +1 (centre of the last),
#: as first-order-model's `make_coordinate_grid` builds them; `grid_sample` must
#: therefore use align_corners=True (the behaviour of the PyTorch 1.0 it was
#: trained with). The fixed-point warp (issue 4) follows the same convention.
ALIGN_CORNERS = True


def make_coordinate_grid(height: int, width: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(H, W, 2) grid of (x, y) in [-1, 1]."""
    x = torch.arange(width, dtype=dtype)
    y = torch.arange(height, dtype=dtype)
    x = 2 * (x / (width - 1)) - 1
    y = 2 * (y / (height - 1)) - 1
    yy = y.view(-1, 1).repeat(1, width)
    xx = x.view(1, -1).repeat(height, 1)
    return torch.stack([xx, yy], dim=2)


def kp2gaussian(kp: Tensor, height: int, width: int, variance: float) -> Tensor:
    """Gaussian heatmaps (B, K, H, W) centred on keypoints kp (B, K, 2)."""
    grid = make_coordinate_grid(height, width, kp.dtype).to(kp.device)
    diff = grid.view(1, 1, height, width, 2) - kp.view(*kp.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * (diff**2).sum(-1) / variance)


def warp(features: Tensor, grid: Tensor) -> Tensor:
    """Bilinear backward warp with zero padding (`grid`: (B, H, W, 2) in [-1, 1])."""
    return F.grid_sample(
        features, grid, mode="bilinear", padding_mode="zeros", align_corners=ALIGN_CORNERS
    )


class ResBlock2d(nn.Module):
    """BN → ReLU → conv → BN → ReLU → conv, plus the input (channels preserved)."""

    def __init__(self, in_features: int, kernel_size: int, padding: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(in_features, affine=True)
        self.norm2 = nn.BatchNorm2d(in_features, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class _ConvNorm(nn.Module):
    """A conv and its batch norm, under the names first-order-model's blocks use."""

    def __init__(
        self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features, affine=True)


class UpBlock2d(_ConvNorm):
    """Nearest ×2 upsampling → conv → BN → ReLU."""

    def forward(self, x: Tensor) -> Tensor:
        out = F.interpolate(x, scale_factor=2)
        return F.relu(self.norm(self.conv(out)))


class DownBlock2d(_ConvNorm):
    """conv → BN → ReLU → 2×2 average pooling."""

    def forward(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class SameBlock2d(_ConvNorm):
    """conv → BN → ReLU at the same resolution."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(self.conv(x)))


def _width(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * (2**level))


class Encoder(nn.Module):
    """Hourglass encoder: returns the input and every down block's output."""

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int, max_features: int
    ) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock2d(
                in_features if i == 0 else _width(block_expansion, max_features, i),
                _width(block_expansion, max_features, i + 1),
            )
            for i in range(num_blocks)
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder: up blocks, each followed by concatenating the matching skip."""

    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int, max_features: int
    ) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            in_filters = (1 if i == num_blocks - 1 else 2) * _width(
                block_expansion, max_features, i + 1
            )
            blocks.append(UpBlock2d(in_filters, _width(block_expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, skips: list[Tensor]) -> Tensor:
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class Hourglass(nn.Module):
    def __init__(
        self, block_expansion: int, in_features: int, num_blocks: int, max_features: int
    ) -> None:
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur then subsample by 1/scale: the band-limited downscale FOMM uses."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.ka = size // 2
        self.kb = self.ka - 1 if size % 2 == 0 else self.ka
        axis = torch.arange(size, dtype=torch.float32)
        g = torch.exp(-((axis - (size - 1) / 2) ** 2) / (2 * sigma**2))
        kernel = g.view(-1, 1) * g.view(1, -1)
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.view(1, 1, size, size).repeat(channels, 1, 1, 1))
        self.groups = channels
        self.scale = scale
        self.int_inv_scale = round(1 / scale)

    def forward(self, x: Tensor) -> Tensor:
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        out = F.conv2d(out, weight=self.weight, groups=self.groups)
        return out[:, :, :: self.int_inv_scale, :: self.int_inv_scale]
