"""Keypoint detector (encoder side only): image → K keypoints (+ optional Jacobians).

The decoder never runs it: the sender transmits the keypoints. Names follow
first-order-model's `KPDetector` so checkpoints load as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.blocks import AntiAliasInterpolation2d, Hourglass, make_coordinate_grid


class KPDetector(nn.Module):
    def __init__(
        self,
        block_expansion: int,
        num_kp: int,
        num_channels: int,
        max_features: int,
        num_blocks: int,
        temperature: float,
        estimate_jacobian: bool = False,
        scale_factor: float = 1.0,
        pad: int = 0,
    ) -> None:
        super().__init__()
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=7, padding=pad)
        if estimate_jacobian:
            self.jacobian = nn.Conv2d(
                self.predictor.out_filters, 4 * num_kp, kernel_size=7, padding=pad
            )
            # Start from identity Jacobians, as first-order-model does.
            self.jacobian.weight.data.zero_()
            self.jacobian.bias.data.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0] * num_kp))
        else:
            self.jacobian = None
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if self.scale_factor != 1:
            x = self.down(x)
        features = self.predictor(x)
        logits = self.kp(features)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)
        grid = make_coordinate_grid(h, w, heatmap.dtype).to(heatmap.device)
        value = (heatmap.unsqueeze(-1) * grid.view(1, 1, h, w, 2)).sum(dim=(2, 3))
        out = {"value": value}
        if self.jacobian is not None:
            maps = self.jacobian(features).view(b, k, 4, h, w)
            jac = (heatmap.unsqueeze(2) * maps).view(b, k, 4, -1).sum(dim=-1)
            out["jacobian"] = jac.view(b, k, 2, 2)
        return out
