"""Post-training static quantization: float decoder → `QuantizedDecoder` (integers).

Activations: int8, symmetric, one scale per tensor, calibrated on synthetic
clips (`minmax`: the largest |value| seen; `percentile`: the 99.99th percentile
of |value|, which ignores rare outliers). Weights: int8, symmetric, one scale
per output channel, after BatchNorm folding (`model.fusion`). Where a
convolution reads channels of different scales (concatenations, the heatmap +
warped-source input), the per-input-channel scales are folded into its float
weights before they are quantized, so the engine needs no rescaling pass.
Biases and residuals enter the accumulator; one requantize per output.

`float_trace` runs the float decoder through the same steps as the integer
decoder and returns every tensor that gets a scale.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.blocks import warp
from model.fixed import round_float, scale_to_multiplier
from model.fixed_decoder import IMAGE_SCALE, QAffine, QConv, QuantizedDecoder
from model.fixed_motion import HEAT_FRAC_BITS, gaussian_table
from model.fixed_ops import make_lut, sigmoid_lut
from model.fusion import batchnorm_affine, fold_batchnorm
from model.generator import OcclusionAwareGenerator

if TYPE_CHECKING:
    from defs.params import NumericParams


class QuantizationError(ValueError):
    """The float model cannot be quantized with these parameters (one line)."""


@torch.no_grad()
def float_trace(
    g: OcclusionAwareGenerator, source: Tensor, kp_driving: Tensor, kp_source: Tensor
) -> dict[str, Tensor]:
    """Every activation that gets a scale, for one source image and one keypoint pair."""
    t: dict[str, Tensor] = {}
    x = g.first(source)
    t["first"] = x
    for i, block in enumerate(g.down_blocks):
        pre = F.relu(block.norm(block.conv(x)))
        t[f"down{i}"] = pre  # the pooled output keeps this scale
        x = t[f"down{i}.pooled"] = F.avg_pool2d(pre, 2)
    features = x
    dm = g.dense_motion_network
    small = dm.downscale(source)
    kp_d = kp_driving if isinstance(kp_driving, dict) else {"value": kp_driving}
    kp_s = kp_source if isinstance(kp_source, dict) else {"value": kp_source}
    b, _, h, w = small.shape
    heat = dm.heatmaps(small, kp_d, kp_s)
    motions = dm.sparse_motions(small, kp_d, kp_s)
    deformed = dm.deformed_sources(small, motions)
    skips = [torch.cat([heat, deformed], dim=2).view(b, -1, h, w)]
    for i, block in enumerate(dm.hourglass.encoder.down_blocks):
        pre = F.relu(block.norm(block.conv(skips[-1])))
        t[f"hg_down{i}"] = pre
        skips.append(F.avg_pool2d(pre, 2))
        t[f"hg_down{i}.pooled"] = skips[-1]
    out = skips.pop()
    for i, block in enumerate(dm.hourglass.decoder.up_blocks):
        up = block(out)
        t[f"hg_up{i}"] = up
        out = torch.cat([up, skips.pop()], dim=1)
    t["mask_logits"] = dm.mask(out)
    t["occ_logits"] = dm.occlusion(out)
    mask = F.softmax(t["mask_logits"], dim=1)
    flow = (motions.permute(0, 1, 4, 2, 3) * mask.unsqueeze(2)).sum(dim=1).permute(0, 2, 3, 1)
    feat = warp(features, flow) * torch.sigmoid(t["occ_logits"])
    for i, block in enumerate(g.bottleneck):
        act = F.relu(block.norm1(feat))
        t[f"r{i}.act"] = act
        mid = F.relu(block.norm2(block.conv1(act)))
        t[f"r{i}.mid"] = mid
        feat = block.conv2(mid) + feat
        t[f"r{i}.out"] = feat
    for i, block in enumerate(g.up_blocks):
        feat = block(feat)
        t[f"up{i}"] = feat
    t["final_logits"] = g.final(feat)
    t["prediction"] = torch.sigmoid(t["final_logits"])
    return t


@torch.no_grad()
def calibrate(
    g: OcclusionAwareGenerator,
    samples: list[tuple[Tensor, Tensor, Tensor]],
    method: str = "percentile",
    percentile: float = 99.99,
) -> dict[str, float]:
    """Per-tensor activation scales (|value| range / 127) over (source, kp_d, kp_s) samples."""
    if method not in ("minmax", "percentile"):
        raise QuantizationError(f"calibration method {method!r}: choose minmax or percentile")
    seen: dict[str, list[np.ndarray]] = defaultdict(list)
    for source, kp_d, kp_s in samples:
        for name, value in float_trace(g, source, kp_d, kp_s).items():
            seen[name].append(value.abs().flatten().numpy())
    scales = {}
    for name, values in seen.items():
        a = np.concatenate(values)
        top = a.max() if method == "minmax" else np.percentile(a, percentile)
        scales[name] = float(max(top, 1e-8) / 127)
    return scales


def quantize_conv(
    weight: Tensor,
    bias: Tensor | None,
    in_scales: np.ndarray,
    out_scale: float,
    numeric: NumericParams,
    *,
    residual_scale: float | None = None,
    **flags: object,
) -> QConv:
    """Fold per-input-channel scales into the weights, quantize per output channel."""
    w = weight.detach().double().numpy()
    if w.shape[1] != len(in_scales):
        raise QuantizationError(f"conv has {w.shape[1]} inputs, {len(in_scales)} input scales")
    w = w * np.asarray(in_scales)[None, :, None, None]
    w_scale = np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127
    w_scale = np.where(w_scale > 0, w_scale, 1.0)
    qw = round_float(w / w_scale[:, None, None, None], -127, 127)
    b = np.zeros(w.shape[0]) if bias is None else bias.detach().double().numpy()
    limit = 1 << (numeric.bias_bits - 1)
    qb = round_float(b / w_scale, -limit, limit)  # clamped only where it is refused
    if np.abs(qb).max() >= limit:
        raise QuantizationError(f"bias needs more than {numeric.bias_bits} bits")
    mult, shift = scale_to_multiplier(w_scale / out_scale, numeric)
    gain_top = 1 << numeric.gain_bits
    gain = None if residual_scale is None else round_float(residual_scale / w_scale, hi=gain_top)
    if gain is not None and gain.max() >= gain_top:
        raise QuantizationError(
            f"residual gain {gain.max()} needs more than {numeric.gain_bits} bits "
            f"(NumericParams.gain_bits)"
        )
    return QConv(qw, qb, mult, shift, **flags, residual_gain=gain)


def quantize_affine(
    bn: nn.BatchNorm2d, in_scale: float, out_scale: float, numeric: NumericParams
) -> QAffine:
    a, b = (v.detach().double().numpy() for v in batchnorm_affine(bn))
    a = np.where(np.abs(a) > 1e-12, a, 1e-12)
    step = np.abs(a) * in_scale  # one input LSB, in real units
    limit = 1 << (numeric.bias_bits - 1)
    bias = round_float(b / step, -limit, limit)  # clamped only where it is refused
    if np.abs(bias).max() >= limit:
        raise QuantizationError(f"BatchNorm offset needs more than {numeric.bias_bits} bits")
    mult, shift = scale_to_multiplier(step / out_scale, numeric)
    return QAffine((a < 0).astype(np.int64), bias, mult, shift)


def build_quantized(
    g: OcclusionAwareGenerator, scales: dict[str, float], numeric: NumericParams, num_kp: int
) -> QuantizedDecoder:
    """The integer decoder's parameters from the float generator and calibrated scales."""
    g = g.eval()
    dm = g.dense_motion_network

    def conv_bn(block: nn.Module, s_in: np.ndarray, s_out: float, **flags: object) -> QConv:
        weight, bias = fold_batchnorm(block.conv, block.norm)
        pad = block.conv.padding[0]
        return quantize_conv(weight, bias, s_in, s_out, numeric, relu=True, padding=pad, **flags)

    def vec(scale: float, n: int) -> np.ndarray:
        return np.full(n, scale)

    first = conv_bn(g.first, vec(IMAGE_SCALE, g.first.conv.in_channels), scales["first"])
    down, s = [], scales["first"]
    for i, block in enumerate(g.down_blocks):
        down.append(conv_bn(block, vec(s, block.conv.in_channels), scales[f"down{i}"], pool=True))
        s = scales[f"down{i}"]
    feature_scale = s

    antialias = None
    if dm.scale_factor != 1:
        d = dm.down
        channels = d.weight.shape[0]
        # Zero padding of the float blur is (ka, kb); the integer conv pads ka on every
        # side, which equals it whenever ka == kb (odd kernels, as FOMM builds them).
        if d.ka != d.kb:
            raise QuantizationError("anti-alias kernel with asymmetric padding")
        antialias = quantize_conv(
            d.weight,
            None,
            vec(IMAGE_SCALE, 1),
            IMAGE_SCALE,
            numeric,
            padding=d.ka,
            stride=d.int_inv_scale,
            groups=channels,
        )
    c = g.num_channels
    hg_in = np.tile(np.concatenate([[2.0**-HEAT_FRAC_BITS], vec(IMAGE_SCALE, c)]), num_kp + 1)
    skip_scales = [hg_in]
    hg_down = []
    for i, block in enumerate(dm.hourglass.encoder.down_blocks):
        hg_down.append(conv_bn(block, skip_scales[-1], scales[f"hg_down{i}"], pool=True))
        skip_scales.append(vec(scales[f"hg_down{i}"], block.conv.out_channels))
    s_in = skip_scales.pop()
    hg_up = []
    for i, block in enumerate(dm.hourglass.decoder.up_blocks):
        hg_up.append(conv_bn(block, s_in, scales[f"hg_up{i}"], upsample=True))
        s_in = np.concatenate(
            [vec(scales[f"hg_up{i}"], block.conv.out_channels), skip_scales.pop()]
        )
    mask = quantize_conv(
        dm.mask.weight,
        dm.mask.bias,
        s_in,
        scales["mask_logits"],
        numeric,
        padding=dm.mask.padding[0],
    )
    occlusion = quantize_conv(
        dm.occlusion.weight,
        dm.occlusion.bias,
        s_in,
        scales["occ_logits"],
        numeric,
        padding=dm.occlusion.padding[0],
    )

    bottleneck, s = [], feature_scale
    for i, block in enumerate(g.bottleneck):
        affine = quantize_affine(block.norm1, s, scales[f"r{i}.act"], numeric)
        w1, b1 = fold_batchnorm(block.conv1, block.norm2)
        conv1 = quantize_conv(
            w1,
            b1,
            vec(scales[f"r{i}.act"], w1.shape[1]),
            scales[f"r{i}.mid"],
            numeric,
            relu=True,
            padding=block.conv1.padding[0],
        )
        conv2 = quantize_conv(
            block.conv2.weight,
            block.conv2.bias,
            vec(scales[f"r{i}.mid"], block.conv2.in_channels),
            scales[f"r{i}.out"],
            numeric,
            residual_scale=s,
            padding=block.conv2.padding[0],
        )
        bottleneck.append((affine, conv1, conv2))
        s = scales[f"r{i}.out"]
    up = []
    for i, block in enumerate(g.up_blocks):
        up.append(conv_bn(block, vec(s, block.conv.in_channels), scales[f"up{i}"], upsample=True))
        s = scales[f"up{i}"]
    final = quantize_conv(
        g.final.weight,
        g.final.bias,
        vec(s, g.final.in_channels),
        scales["final_logits"],
        numeric,
        padding=g.final.padding[0],
    )
    return QuantizedDecoder(
        numeric=numeric,
        antialias=antialias,
        first=first,
        down_blocks=down,
        hourglass_down=hg_down,
        hourglass_up=hg_up,
        mask=mask,
        occlusion=occlusion,
        softmax_in_scale=scales["mask_logits"],
        occlusion_lut=sigmoid_lut(scales["occ_logits"]),
        bottleneck=bottleneck,
        up_blocks=up,
        final=final,
        pixel_lut=make_lut(
            lambda v: 255 / (1 + np.exp(-v)), scales["final_logits"], 1.0, 8, signed_out=False
        ),
        gaussian_table=gaussian_table(dm.kp_variance),
        num_kp=num_kp,
        activation_scales=dict(scales),
        jacobian=g.estimate_jacobian,
    )


def activation_scale(scales: dict[str, float], name: str) -> float:
    """The scale of an integer activation: pooled outputs keep their conv's scale."""
    return scales[name.removesuffix(".pooled")]


def sqnr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    """10·log10(Σ ref² / Σ (ref − approx)²); inf when they agree exactly."""
    noise = float(((reference - approximation) ** 2).sum())
    signal = float((reference**2).sum())
    return float("inf") if noise == 0 else 10 * np.log10(max(signal, 1e-30) / noise)
