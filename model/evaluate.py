"""Reconstruct clips from their first frame and keypoints; score against baselines."""

from __future__ import annotations

import numpy as np
import torch

from model.baselines import global_affine_warp, repeat_key_frame
from model.generator import OcclusionAwareGenerator
from model.keypoints import KPDetector
from model.metrics import Quality, quality

METHODS = ("decoder", "repeat key frame", "global affine")


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) in [0, 1] → uint8 (B, H, W, 3), rounding half up."""
    scaled = images.clamp(0, 1).mul(255).add(0.5).floor()
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def reconstruct(
    kp_detector: KPDetector, generator: OcclusionAwareGenerator, frames: np.ndarray
) -> dict[str, np.ndarray]:
    """Every frame of a (T, H, W, 3) clip rebuilt from frame 0 by each method."""
    video = torch.from_numpy(frames).float().div(255).permute(0, 3, 1, 2)
    source = video[:1]
    kp_source = kp_detector(source)
    cache = generator.encode_source(source)
    out: dict[str, list[np.ndarray]] = {name: [] for name in METHODS}
    for t in range(video.shape[0]):
        kp_driving = kp_detector(video[t : t + 1])
        out["decoder"].append(
            to_uint8(generator.decode(cache, kp_driving, kp_source)["prediction"])
        )
        out["repeat key frame"].append(to_uint8(repeat_key_frame(source)))
        out["global affine"].append(
            to_uint8(global_affine_warp(source, kp_driving["value"], kp_source["value"]))
        )
    return {name: np.concatenate(frames_) for name, frames_ in out.items()}


def evaluate(
    kp_detector: KPDetector, generator: OcclusionAwareGenerator, clips: list[np.ndarray]
) -> dict[str, Quality]:
    """Mean quality over the inter frames (frame 0 is the key frame) of every clip."""
    kp_detector.eval()
    generator.eval()
    references, methods = [], {name: [] for name in METHODS}
    for clip in clips:
        rebuilt = reconstruct(kp_detector, generator, clip)
        references.append(clip[1:])
        for name in METHODS:
            methods[name].append(rebuilt[name][1:])
    reference = np.concatenate(references)
    return {name: quality(reference, np.concatenate(v)) for name, v in methods.items()}
