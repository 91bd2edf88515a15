"""The integer decoder (L2): the whole per-GOP and per-frame work in NumPy integers.

It runs a `QuantizedDecoder` (integer weights, per-channel requantize constants,
tables; built from the float model by `model.ptq`) with the helpers of
`model.fixed*` only, so every operation is one stated integer formula
(docs/numerics.md). Both DAC (translation motions) and FOMM (first-order motions from per-keypoint
Jacobians, composed with an integer 2×2 inverse) are supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from model.fixed_conv import ConvWeights, affine_int, conv2d_int
from model.fixed_motion import (
    COORD_FRAC_BITS,
    affine_motions,
    compose_flow,
    compose_jacobians,
    heatmaps,
    keypoints_to_coords,
    sparse_motions,
)
from model.fixed_ops import (
    PIXEL_FRAC_BITS,
    apply_lut,
    grid_sample_fixed,
    grid_sample_fixed_mul,
    normalized_to_pixels,
    softmax_channels_fixed,
)

IntArray = npt.NDArray[np.int64]


@dataclass
class QConv:
    """One fused convolution: integer weights and the output unit's constants."""

    weight: IntArray  # (O, C, k, k) int8
    bias: IntArray  # (O,) in accumulator units
    multiplier: IntArray  # (O,)
    shift: IntArray  # (O,)
    padding: int
    relu: bool = False
    upsample: bool = False
    pool: bool = False
    stride: int = 1
    groups: int = 1  # 1, or C for a depthwise conv (the anti-alias blur)
    residual_gain: IntArray | None = None

    @cached_property
    def prepared(self) -> ConvWeights:
        """The weights cast and bounded once, for every frame's products."""
        return ConvWeights(self.weight)


@dataclass
class QAffine:
    """Per-channel relu(a·x + b) on the output unit (a ResBlock's BN1 + ReLU)."""

    negate: IntArray
    bias: IntArray
    multiplier: IntArray
    shift: IntArray


@dataclass
class QuantizedDecoder:
    numeric: object  # defs.params.NumericParams
    antialias: QConv | None  # key frame → motion-network resolution
    first: QConv
    down_blocks: list[QConv]
    hourglass_down: list[QConv]
    hourglass_up: list[QConv]
    mask: QConv
    occlusion: QConv
    softmax_in_scale: float
    occlusion_lut: IntArray  # sigmoid, unsigned, 8 fraction bits
    bottleneck: list[tuple[QAffine, QConv, QConv]]
    up_blocks: list[QConv]
    final: QConv
    pixel_lut: IntArray  # final logits → 0..255 pixels
    gaussian_table: IntArray
    num_kp: int
    activation_scales: dict[str, float]  # calibrated, by float_trace name (for reports)
    jacobian: bool = False  # first-order motions (FOMM) instead of translations (DAC)


def run_conv(
    q: QConv, x: npt.ArrayLike, numeric: object, residual: IntArray | None = None
) -> IntArray:
    if q.groups == 1:
        return conv2d_int(
            x,
            q.prepared,
            q.bias,
            q.multiplier,
            q.shift,
            numeric,
            stride=q.stride,
            padding=q.padding,
            relu=q.relu,
            upsample=q.upsample,
            pool=q.pool,
            residual=residual,
            residual_gain=q.residual_gain,
        )
    xi = np.asarray(x, dtype=np.int64)
    return np.concatenate(
        [
            conv2d_int(
                xi[c : c + 1],
                q.weight[c : c + 1],
                q.bias[c : c + 1],
                q.multiplier[c : c + 1],
                q.shift[c : c + 1],
                numeric,
                stride=q.stride,
                padding=q.padding,
                relu=q.relu,
            )
            for c in range(xi.shape[0])
        ]
    )


#: The key frame enters as int8 with scale 1/IMAGE_LEVELS (pixels 0..255 → 0..127).
IMAGE_LEVELS = 127
IMAGE_SCALE = 1 / IMAGE_LEVELS


def quantize_image(frame: npt.ArrayLike) -> IntArray:
    """(H, W, 3) uint8 pixels → (3, H, W) int8: round_half_up(p · 127 / 255)."""
    p = np.asarray(frame, dtype=np.int64).transpose(2, 0, 1)
    return (2 * IMAGE_LEVELS * p + 255) // (2 * 255)


@dataclass
class IntSourceCache:
    features: IntArray  # encoder output, int8
    small: IntArray  # key frame at the motion network's resolution, int8


def encode_source_int(
    q: QuantizedDecoder, frame: npt.ArrayLike, record: dict[str, IntArray] | None = None
) -> IntSourceCache:
    seen: dict[str, IntArray] = {} if record is None else record
    image = quantize_image(frame)
    out = seen.setdefault("first", run_conv(q.first, image, q.numeric))
    for i, block in enumerate(q.down_blocks):
        out = seen.setdefault(f"down{i}.pooled", run_conv(block, out, q.numeric))
    small = image if q.antialias is None else run_conv(q.antialias, image, q.numeric)
    return IntSourceCache(out, small)


def _pixels(coords: IntArray, size: int) -> IntArray:
    return normalized_to_pixels(coords, COORD_FRAC_BITS, size, PIXEL_FRAC_BITS)


def warp_int(features: IntArray, coords: IntArray, occlusion: IntArray | None = None) -> IntArray:
    """Bilinear warp of (C, H, W) int8 features at (Ho, Wo, 2) coordinates (x, y).

    Coordinates scale by the feature map's size, as `grid_sample` and L1 do
    (the warp engine's specification: docs/warp_engine.md).
    """
    h, w = features.shape[1:]
    px, py = _pixels(coords[..., 0], w), _pixels(coords[..., 1], h)
    if occlusion is None:
        return grid_sample_fixed(features, px, py, PIXEL_FRAC_BITS)
    return grid_sample_fixed_mul(features, px, py, PIXEL_FRAC_BITS, occlusion)


def decode_int(
    q: QuantizedDecoder,
    cache: IntSourceCache,
    kp_driving_q: npt.ArrayLike,
    kp_source_q: npt.ArrayLike,
    record: dict[str, IntArray] | None = None,
    jac_driving_q: npt.ArrayLike | None = None,
    jac_source_q: npt.ArrayLike | None = None,
) -> dict[str, IntArray]:
    """One inter frame: keypoints (bitstream integers) → (H, W, 3) uint8 pixels.

    `record`, when given, receives the integer activations under the names
    `model.ptq.float_trace` uses (for per-layer SQNR).
    """
    seen: dict[str, IntArray] = {} if record is None else record
    kp_d, kp_s = keypoints_to_coords(kp_driving_q), keypoints_to_coords(kp_source_q)
    size = cache.small.shape[1]
    if cache.features.shape[1:] != cache.small.shape[1:]:  # L0 would resize the flow
        raise ValueError(
            f"decode_int: source features {cache.features.shape[1:]} differ from the motion "
            f"resolution {cache.small.shape[1:]}; the integer decoder does not resize the flow"
        )
    heat = heatmaps(kp_d, kp_s, size, q.gaussian_table)  # (K+1, S, S)
    if q.jacobian:
        if jac_driving_q is None or jac_source_q is None:
            raise ValueError("decode_int: this decoder needs the keypoints' Jacobians")
        jac = compose_jacobians(jac_source_q, jac_driving_q)
        motions = affine_motions(kp_d, kp_s, jac, size)  # (K+1, S, S, 2)
    else:
        motions = sparse_motions(kp_d, kp_s, size)
    deformed = np.stack([warp_int(cache.small, m) for m in motions])  # (K+1, C, S, S)
    x = np.concatenate([heat[:, None], deformed], axis=1).reshape(-1, size, size)
    skips = [x]
    for i, block in enumerate(q.hourglass_down):
        skips.append(seen.setdefault(f"hg_down{i}.pooled", run_conv(block, skips[-1], q.numeric)))
    out = skips.pop()
    for i, block in enumerate(q.hourglass_up):
        up = seen.setdefault(f"hg_up{i}", run_conv(block, out, q.numeric))
        out = np.concatenate([up, skips.pop()])
    logits = seen.setdefault("mask_logits", run_conv(q.mask, out, q.numeric))
    mask = softmax_channels_fixed(logits, q.softmax_in_scale)
    occ_logits = seen.setdefault("occ_logits", run_conv(q.occlusion, out, q.numeric))
    occlusion = apply_lut(occ_logits, q.occlusion_lut)[0]
    flow = compose_flow(mask, motions)
    feat = warp_int(cache.features, flow, occlusion)
    for i, (affine, conv1, conv2) in enumerate(q.bottleneck):
        act = affine_int(
            feat, affine.negate, affine.bias, affine.multiplier, affine.shift, q.numeric
        )
        mid = run_conv(conv1, seen.setdefault(f"r{i}.act", act), q.numeric)
        feat = run_conv(conv2, seen.setdefault(f"r{i}.mid", mid), q.numeric, residual=feat)
        seen[f"r{i}.out"] = feat
    for i, block in enumerate(q.up_blocks):
        feat = seen.setdefault(f"up{i}", run_conv(block, feat, q.numeric))
    pixels = apply_lut(
        seen.setdefault("final_logits", run_conv(q.final, feat, q.numeric)), q.pixel_lut
    )
    return {
        "frame": pixels.transpose(1, 2, 0).astype(np.uint8),
        "mask": mask,
        "occlusion": occlusion,
        "flow": flow,
    }
