"""Reference points a trained decoder must beat: repeat the key frame, or warp it globally.

Both use exactly what the decoder receives (the decoded key frame and the
transmitted keypoints), so the comparison measures what the neural decoder adds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from model.blocks import make_coordinate_grid, warp


def repeat_key_frame(source: Tensor) -> Tensor:
    return source


def fit_affine(kp_driving: Tensor, kp_source: Tensor) -> Tensor:
    """(B, 2, 3) least-squares A with A·[x_d, y_d, 1] ≈ (x_s, y_s) over the K keypoints."""
    ones = torch.ones(*kp_driving.shape[:2], 1, dtype=kp_driving.dtype)
    design = torch.cat([kp_driving, ones], dim=2)  # (B, K, 3)
    solution = torch.linalg.lstsq(design, kp_source).solution  # (B, 3, 2)
    return solution.transpose(1, 2)


def global_affine_warp(source: Tensor, kp_driving: Tensor, kp_source: Tensor) -> Tensor:
    """The key frame warped by the single affine motion that best explains the keypoints."""
    b, _, h, w = source.shape
    affine = fit_affine(kp_driving, kp_source)
    grid = make_coordinate_grid(h, w, source.dtype).view(1, h * w, 2)
    ones = torch.ones(1, h * w, 1, dtype=source.dtype)
    points = torch.cat([grid, ones], dim=2).expand(b, -1, -1)  # (B, HW, 3)
    mapped = torch.bmm(points, affine.transpose(1, 2)).view(b, h, w, 2)
    return warp(source, mapped)
