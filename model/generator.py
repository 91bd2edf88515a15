"""Occlusion-aware generator: the decoder proper, split into per-GOP and per-frame work.

Per GOP, `encode_source` runs the encoder (conv7x7 + down blocks) on the decoded
key frame and downscales it for the motion network; the result is cached.
Per inter frame, `decode` estimates the dense motion from the keypoints, warps
the cached features, multiplies by the occlusion map, and runs the bottleneck,
up blocks and final conv + sigmoid. Names follow first-order-model's
`OcclusionAwareGenerator`, so its checkpoints load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, warp
from model.dense_motion import DenseMotionNetwork


@dataclass
class SourceCache:
    """What the decoder keeps per GOP."""

    image: Tensor  # (B, C, H, W) decoded key frame
    features: Tensor  # encoder output, (B, F, H/2^d, W/2^d)
    small: Tensor  # key frame downscaled for the dense motion network


class OcclusionAwareGenerator(nn.Module):
    def __init__(
        self,
        num_channels: int,
        num_kp: int,
        block_expansion: int,
        max_features: int,
        num_down_blocks: int,
        num_bottleneck_blocks: int,
        estimate_occlusion_map: bool = True,
        dense_motion_params: dict | None = None,
        estimate_jacobian: bool = False,
    ) -> None:
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(
            num_kp=num_kp,
            num_channels=num_channels,
            estimate_occlusion_map=estimate_occlusion_map,
            **(dense_motion_params or {}),
        )
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)

        def width(level: int) -> int:
            return min(max_features, block_expansion * (2**level))

        self.down_blocks = nn.ModuleList(
            DownBlock2d(width(i), width(i + 1)) for i in range(num_down_blocks)
        )
        self.up_blocks = nn.ModuleList(
            UpBlock2d(width(num_down_blocks - i), width(num_down_blocks - i - 1))
            for i in range(num_down_blocks)
        )
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(width(num_down_blocks), 3, 1))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)
        self.num_channels = num_channels
        self.estimate_jacobian = estimate_jacobian

    def encode_source(self, source_image: Tensor) -> SourceCache:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        return SourceCache(source_image, out, self.dense_motion_network.downscale(source_image))

    @staticmethod
    def _resize_flow(flow: Tensor, h: int, w: int) -> Tensor:
        if flow.shape[1:3] == (h, w):
            return flow
        flow = F.interpolate(flow.permute(0, 3, 1, 2), size=(h, w), mode="bilinear")
        return flow.permute(0, 2, 3, 1)

    def decode(
        self, cache: SourceCache, kp_driving: dict, kp_source: dict, with_extras: bool = False
    ) -> dict[str, Tensor]:
        motion = self.dense_motion_network(cache.small, kp_driving, kp_source)
        h, w = cache.features.shape[2:]
        out = warp(cache.features, self._resize_flow(motion["deformation"], h, w))
        occlusion = motion.get("occlusion_map")
        if occlusion is not None:
            if occlusion.shape[2:] != out.shape[2:]:
                occlusion = F.interpolate(occlusion, size=out.shape[2:], mode="bilinear")
            out = out * occlusion
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        result = {"prediction": torch.sigmoid(self.final(out)), **motion}
        if with_extras:
            ih, iw = cache.image.shape[2:]
            result["deformed"] = warp(cache.image, self._resize_flow(motion["deformation"], ih, iw))
        return result

    def forward(self, source_image: Tensor, kp_driving: dict, kp_source: dict) -> dict[str, Tensor]:
        return self.decode(
            self.encode_source(source_image), kp_driving, kp_source, with_extras=True
        )
