"""FOMM's multi-scale patch discriminator and its losses, for training only.

Follows the computation of first-order-model's `modules/discriminator.py` and the
adversarial part of `modules/model.py` (Siarohin et al., NeurIPS 2019; config
`vox-adv-256.yaml`), written here for GRACE's sizes:

- per scale, a Pix2Pix-style patch discriminator: `num_blocks` 4×4 convolutions
  without padding, each followed by instance norm (all but the first), leaky
  ReLU 0.2 and a 2×2 average pool (all but the last), then a 1×1 conv to one
  real/fake score per patch;
- its input is the frame downscaled to that scale (FOMM's anti-aliased
  pyramid), optionally with the driving keypoints' Gaussian heatmaps
  concatenated (FOMM's `use_kp`, variance 0.01);
- least-squares GAN losses (Mao et al. 2017): the generator pushes the scores
  of its frames to 1, the discriminator pushes real scores to 1 and generated
  ones to 0;
- feature matching: L1 between the discriminator's block outputs on the real
  and on the generated frame, every block weighted alike.

The discriminator is not part of the decoder: no hardware, quantization or
export path sees it; it lives only in training checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.blocks import AntiAliasInterpolation2d, kp2gaussian

if TYPE_CHECKING:
    from defs.params import ModelParams

#: One scale's output: the feature map of every block, and the patch scores.
ScaleOutput = tuple[list[Tensor], Tensor]

KP_VARIANCE = 0.01  # FOMM's kp_variance for the discriminator's heatmaps
KERNEL = 4  # FOMM's discriminator convolutions: 4×4, no padding


class DiscriminatorBlock(nn.Module):
    """conv 4×4 (valid) → [instance norm] → leaky ReLU 0.2 → [2×2 average pool]."""

    def __init__(self, in_features: int, out_features: int, *, norm: bool, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=KERNEL)
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        return F.avg_pool2d(out, 2) if self.pool else out


class PatchDiscriminator(nn.Module):
    """One scale: the blocks' feature maps and a (B, 1, h, w) map of patch scores."""

    def __init__(
        self,
        num_channels: int,
        block_expansion: int,
        max_features: int,
        num_blocks: int,
        num_kp: int = 0,
    ) -> None:
        super().__init__()

        def width(level: int) -> int:
            return min(max_features, block_expansion * (2**level))

        self.down_blocks = nn.ModuleList(
            DiscriminatorBlock(
                num_channels + num_kp if i == 0 else width(i),
                width(i + 1),
                norm=i != 0,
                pool=i != num_blocks - 1,
            )
            for i in range(num_blocks)
        )
        self.conv = nn.Conv2d(width(num_blocks), 1, kernel_size=1)

    def forward(self, x: Tensor) -> ScaleOutput:
        features = []
        out = x
        for block in self.down_blocks:
            out = block(out)
            features.append(out)
        return features, self.conv(out)


def output_size(size: int, num_blocks: int) -> int:
    """Side of a PatchDiscriminator's score map for a size × size input."""
    for i in range(num_blocks):
        size -= KERNEL - 1
        if i != num_blocks - 1:
            size //= 2
    return size


class MultiScaleDiscriminator(nn.Module):
    """A PatchDiscriminator per scale of the frame; `forward` returns {scale: output}."""

    def __init__(
        self,
        scales: Sequence[float],
        image_size: int,
        num_channels: int,
        block_expansion: int,
        max_features: int,
        num_blocks: int,
        num_kp: int = 0,
    ) -> None:
        super().__init__()
        if not scales:
            raise ValueError("the discriminator needs at least one scale")
        for scale in scales:
            side = output_size(round(image_size * scale), num_blocks)
            if side < 1:
                raise ValueError(
                    f"a {num_blocks}-block discriminator at scale {scale} of a {image_size}² "
                    f"frame has no output (score map side {side}); use fewer blocks or scales"
                )
        self.scales = tuple(float(s) for s in scales)
        self.use_kp = num_kp > 0
        self.down = nn.ModuleDict(
            {
                _key(s): nn.Identity() if s == 1 else AntiAliasInterpolation2d(num_channels, s)
                for s in self.scales
            }
        )
        self.discs = nn.ModuleDict(
            {
                _key(s): PatchDiscriminator(
                    num_channels, block_expansion, max_features, num_blocks, num_kp
                )
                for s in self.scales
            }
        )

    def forward(self, image: Tensor, kp: Tensor | None = None) -> dict[float, ScaleOutput]:
        """image (B, C, H, W) in [0, 1]; kp (B, K, 2) keypoints in [-1, 1] when use_kp."""
        if self.use_kp and kp is None:
            raise ValueError("this discriminator is conditioned on keypoints: pass kp")
        out = {}
        for scale in self.scales:
            x = self.down[_key(scale)](image)
            if self.use_kp:
                x = torch.cat([x, kp2gaussian(kp, *x.shape[2:], KP_VARIANCE)], dim=1)
            out[scale] = self.discs[_key(scale)](x)
        return out


def _key(scale: float) -> str:
    return str(float(scale)).replace(".", "-")  # ModuleDict keys may not contain '.'


def build_discriminator(
    m: ModelParams, scales: Sequence[float] = (1.0, 0.5), num_blocks: int = 3, use_kp: bool = True
) -> MultiScaleDiscriminator:
    """Sized from the generator as FOMM's vox-256 sizes it from its own: base width half
    the generator's (32 against 64), the same widest layer (512 there, 64 for tiny)."""
    return MultiScaleDiscriminator(
        scales,
        image_size=m.image_size,
        num_channels=m.num_channels,
        block_expansion=max(1, m.block_expansion // 2),
        max_features=m.max_features,
        num_blocks=num_blocks,
        num_kp=m.num_kp if use_kp else 0,
    )


def lsgan_generator_loss(fake: dict[float, ScaleOutput]) -> Tensor:
    """Σ over scales of mean (1 − D(generated))²."""
    return sum(((1 - scores) ** 2).mean() for _, scores in fake.values())


def lsgan_discriminator_loss(
    real: dict[float, ScaleOutput], fake: dict[float, ScaleOutput]
) -> Tensor:
    """Σ over scales of mean [(1 − D(real))² + D(generated)²]."""
    return sum(((1 - real[s][1]) ** 2 + fake[s][1] ** 2).mean() for s in real)


def feature_matching_loss(real: dict[float, ScaleOutput], fake: dict[float, ScaleOutput]) -> Tensor:
    """Σ over scales and blocks of mean |features(real) − features(generated)|."""
    return sum(
        (a - b).abs().mean() for s in real for a, b in zip(real[s][0], fake[s][0], strict=True)
    )
