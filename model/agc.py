"""Build the FOMM / DAC models from the shared parameters object."""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.generator import OcclusionAwareGenerator
from model.keypoints import KPDetector

if TYPE_CHECKING:
    from defs.params import ModelParams


def build_kp_detector(m: ModelParams) -> KPDetector:
    return KPDetector(
        block_expansion=m.kp_block_expansion,
        num_kp=m.num_kp,
        num_channels=m.num_channels,
        max_features=m.kp_max_features,
        num_blocks=m.kp_num_blocks,
        temperature=m.kp_temperature,
        estimate_jacobian=m.estimate_jacobian,
        scale_factor=m.kp_scale_factor,
    )


def build_generator(m: ModelParams) -> OcclusionAwareGenerator:
    return OcclusionAwareGenerator(
        num_channels=m.num_channels,
        num_kp=m.num_kp,
        block_expansion=m.block_expansion,
        max_features=m.max_features,
        num_down_blocks=m.num_down_blocks,
        num_bottleneck_blocks=m.num_bottleneck_blocks,
        estimate_occlusion_map=True,
        dense_motion_params={
            "block_expansion": m.dense_block_expansion,
            "max_features": m.dense_max_features,
            "num_blocks": m.dense_num_blocks,
            "scale_factor": m.dense_scale_factor,
        },
        estimate_jacobian=m.estimate_jacobian,
    )
