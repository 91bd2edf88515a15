"""Dense motion network: keypoints of source and driving frame → a dense flow + occlusion.

From K keypoint pairs it builds K+1 candidate motions (background identity plus
one per keypoint, translation or first-order affine), warps the downscaled
source with each, and lets an hourglass choose among them per pixel (softmax
mask); the flow is the mask-weighted sum. Names follow first-order-model's
`DenseMotionNetwork`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.blocks import (
    AntiAliasInterpolation2d,
    Hourglass,
    kp2gaussian,
    make_coordinate_grid,
    warp,
)


class DenseMotionNetwork(nn.Module):
    def __init__(
        self,
        block_expansion: int,
        num_blocks: int,
        max_features: int,
        num_kp: int,
        num_channels: int,
        estimate_occlusion_map: bool = False,
        scale_factor: float = 1.0,
        kp_variance: float = 0.01,
    ) -> None:
        super().__init__()
        self.hourglass = Hourglass(
            block_expansion, (num_kp + 1) * (num_channels + 1), num_blocks, max_features
        )
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.occlusion = (
            nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=7, padding=3)
            if estimate_occlusion_map
            else None
        )
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def downscale(self, source_image: Tensor) -> Tensor:
        """Per-GOP: the low-resolution source the motion is estimated on."""
        return self.down(source_image) if self.scale_factor != 1 else source_image

    def heatmaps(self, small: Tensor, kp_driving: dict, kp_source: dict) -> Tensor:
        """(B, K+1, 1, H, W): driving minus source Gaussians, zero for the background."""
        b, _, h, w = small.shape
        diff = kp2gaussian(kp_driving["value"], h, w, self.kp_variance) - kp2gaussian(
            kp_source["value"], h, w, self.kp_variance
        )
        zeros = torch.zeros(b, 1, h, w, dtype=diff.dtype, device=diff.device)
        return torch.cat([zeros, diff], dim=1).unsqueeze(2)

    def sparse_motions(self, small: Tensor, kp_driving: dict, kp_source: dict) -> Tensor:
        """(B, K+1, H, W, 2): where each driving pixel comes from in the source, per keypoint."""
        b, _, h, w = small.shape
        identity = make_coordinate_grid(h, w, small.dtype).to(small.device).view(1, 1, h, w, 2)
        grid = identity - kp_driving["value"].view(b, self.num_kp, 1, 1, 2)
        if "jacobian" in kp_driving:
            jac = torch.matmul(kp_source["jacobian"], torch.inverse(kp_driving["jacobian"]))
            jac = jac.view(b, self.num_kp, 1, 1, 2, 2)
            grid = torch.matmul(jac, grid.unsqueeze(-1)).squeeze(-1)
        to_source = grid + kp_source["value"].view(b, self.num_kp, 1, 1, 2)
        return torch.cat([identity.repeat(b, 1, 1, 1, 1), to_source], dim=1)

    def deformed_sources(self, small: Tensor, motions: Tensor) -> Tensor:
        """(B, K+1, C, H, W): the low-resolution source warped by every candidate motion."""
        b, c, h, w = small.shape
        k1 = self.num_kp + 1
        repeated = small.unsqueeze(1).repeat(1, k1, 1, 1, 1).view(b * k1, c, h, w)
        warped = warp(repeated, motions.view(b * k1, h, w, 2))
        return warped.view(b, k1, c, h, w)

    def forward(self, small: Tensor, kp_driving: dict, kp_source: dict) -> dict[str, Tensor]:
        """`small` is `downscale(source_image)`, computed once per GOP."""
        b, _, h, w = small.shape
        heatmap = self.heatmaps(small, kp_driving, kp_source)
        motions = self.sparse_motions(small, kp_driving, kp_source)
        deformed = self.deformed_sources(small, motions)
        prediction = self.hourglass(torch.cat([heatmap, deformed], dim=2).view(b, -1, h, w))
        mask = F.softmax(self.mask(prediction), dim=1)
        flow = (motions.permute(0, 1, 4, 2, 3) * mask.unsqueeze(2)).sum(dim=1)
        out = {"sparse_deformed": deformed, "mask": mask, "deformation": flow.permute(0, 2, 3, 1)}
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))
        return out
