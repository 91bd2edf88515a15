"""Layer fusion: what each float layer of the decoder becomes in the integer pipeline.

`fold_batchnorm` folds an inference-mode BatchNorm into the convolution before
it (exact in real arithmetic). `fusion_plan` walks a decoder built from
`ModelParams` and lists every operation of the per-GOP and per-frame work as the
accelerator will run it: convolutions with their fused output path (bias,
requantize, ReLU, 2×2 average pool, nearest ×2 upsampling on read, residual),
and the other engines' ops (warp, softmax, LUT, heatmaps, flow composition).
docs/numerics.md carries the table for `fomm-256` (`grace layers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from model.agc import build_generator
from model.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from model.conv_shape import ConvShape
from model.macs import count_macs

if TYPE_CHECKING:
    from defs.params import ModelParams


@torch.no_grad()
def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of one conv equal to conv → bn in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return weight, (bias - bn.running_mean) * scale + bn.bias


@torch.no_grad()
def batchnorm_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, offset) of an inference-mode BatchNorm: y = scale·x + offset."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


@dataclass(frozen=True)
class PlannedOp:
    """One operation of the integer pipeline."""

    phase: str  # "per GOP" or "per frame"
    name: str  # float model's module name(s)
    op: str  # conv / affine / warp / softmax / sigmoid / heatmaps / flows / compose
    became: str  # what was fused into it
    shape: str  # in → out, spatial size
    macs: int  # conv MACs (0 for other engines)
    conv: ConvShape | None = None  # what the convolution engine computes


def fusion_plan(m: ModelParams) -> list[PlannedOp]:
    """Every op of one GOP's key frame and one inter frame, in execution order."""
    g = build_generator(m)
    macs = count_macs(m).by_layer
    size = m.image_size
    dm = g.dense_motion_network
    small = m.dense_size
    feat = size >> m.num_down_blocks
    k = m.num_kp + 1
    ops: list[PlannedOp] = []

    def conv_op(
        phase: str, name: str, module: nn.Module, hw: int, became: str, out_hw: int | None = None
    ) -> None:
        conv = module.conv if hasattr(module, "conv") else module
        key = f"{'per_gop' if phase == 'per GOP' else 'per_frame'}:{name}"
        key = key if key in macs else f"{key}.conv"
        kk = conv.kernel_size[0]
        upsample = "nearest ×2" in became
        stored = hw // 2 if upsample else hw
        shape = ConvShape(
            conv.in_channels,
            conv.out_channels,
            stored,
            stored,
            kk,
            conv.kernel_size[1],
            stride=conv.stride[0],
            padding=conv.padding[0],
            upsample=upsample,
            pool="avg pool" in became,
            residual="residual add" in became,
        )
        ops.append(
            PlannedOp(
                phase,
                name,
                "conv",
                became,
                f"{conv.in_channels}→{conv.out_channels}, {kk}×{kk}, {hw}²→{out_hw or hw}²",
                macs.get(key, 0),
                shape,
            )
        )

    if hasattr(dm, "down"):
        taps = dm.down.weight.shape[-1]
        ops.append(
            PlannedOp(
                "per GOP",
                "dense_motion_network.down",
                "conv",
                f"Gaussian blur + subsample = depthwise {taps}×{taps} conv, "
                f"stride {dm.down.int_inv_scale} (fixed weights)",
                f"{m.num_channels}→{m.num_channels}, {size}²→{small}²",
                macs.get("per_gop:dense_motion_network.down", 0),
            )
        )
    conv_op("per GOP", "first", g.first, size, "conv + BN (folded) + ReLU")
    hw = size
    for i, block in enumerate(g.down_blocks):
        assert isinstance(block, DownBlock2d)
        conv_op(
            "per GOP",
            f"down_blocks.{i}",
            block,
            hw,
            "conv + BN (folded) + ReLU + 2×2 avg pool",
            hw // 2,
        )
        hw //= 2

    f = "per frame"
    ops.append(
        PlannedOp(
            f,
            "dense_motion_network (heatmaps)",
            "heatmaps",
            "Gaussian(kp_d) − Gaussian(kp_s), zero background channel",
            f"{m.num_kp} kp pairs → {k}×{small}²",
            0,
        )
    )
    ops.append(
        PlannedOp(
            f,
            "dense_motion_network (sparse motions)",
            "flows",
            "identity + per-keypoint "
            + ("affine (Jacobians)" if m.estimate_jacobian else "translation"),
            f"→ {k}×{small}²×2",
            0,
        )
    )
    ops.append(
        PlannedOp(
            f,
            "dense_motion_network (deformed sources)",
            "warp",
            f"bilinear warp of the cached {small}² source, once per motion",
            f"{k}×{m.num_channels}×{small}²",
            0,
        )
    )
    hw = small
    for i, block in enumerate(dm.hourglass.encoder.down_blocks):
        conv_op(
            f,
            f"dense_motion_network.hourglass.encoder.down_blocks.{i}",
            block,
            hw,
            "conv + BN (folded) + ReLU + 2×2 avg pool"
            + (" (input = concat of heatmaps and deformed sources)" if i == 0 else ""),
            hw // 2,
        )
        hw //= 2
    for i, block in enumerate(dm.hourglass.decoder.up_blocks):
        assert isinstance(block, UpBlock2d)
        conv_op(
            f,
            f"dense_motion_network.hourglass.decoder.up_blocks.{i}",
            block,
            hw * 2,
            "nearest ×2 on read + conv + BN (folded) + ReLU; output concat with skip (layout only)",
        )
        hw *= 2
    conv_op(
        f,
        "dense_motion_network.mask",
        dm.mask,
        small,
        f"conv (bias) → softmax over {k} channels (exp LUT + integer reciprocal)",
    )
    ops.append(
        PlannedOp(
            f,
            "dense_motion_network (flow)",
            "compose",
            f"Σ over {k} motions of mask × motion",
            f"→ {small}²×2",
            0,
        )
    )
    if dm.occlusion is not None:
        conv_op(
            f, "dense_motion_network.occlusion", dm.occlusion, small, "conv (bias) → sigmoid LUT"
        )
    ops.append(
        PlannedOp(
            f,
            "deform_input + occlusion",
            "warp",
            "bilinear warp of the cached source features × occlusion (fused)",
            f"{g.down_blocks[-1].conv.out_channels}×{feat}²",
            0,
        )
    )
    for i, block in enumerate(g.bottleneck):
        assert isinstance(block, ResBlock2d)
        ch = block.conv1.in_channels
        ops.append(
            PlannedOp(
                f,
                f"bottleneck.r{i}.norm1",
                "affine",
                "BN + ReLU as a per-channel integer affine (the skip keeps the "
                "unnormalised input, so BN cannot fold backwards)",
                f"{ch}→{ch}, {feat}²",
                0,
            )
        )
        conv_op(f, f"bottleneck.r{i}.conv1", block.conv1, feat, "conv + norm2 (folded) + ReLU")
        conv_op(
            f,
            f"bottleneck.r{i}.conv2",
            block.conv2,
            feat,
            "conv + bias + residual add of the block input",
        )
    hw = feat
    for i, block in enumerate(g.up_blocks):
        conv_op(
            f, f"up_blocks.{i}", block, hw * 2, "nearest ×2 on read + conv + BN (folded) + ReLU"
        )
        hw *= 2
    conv_op(f, "final", g.final, size, "conv (bias) → sigmoid LUT → output pixels")
    assert isinstance(g.first, SameBlock2d)
    return ops


def plan_markdown(ops: list[PlannedOp]) -> str:
    lines = ["| phase | layer | op | became | shape | MMAC |", "|---|---|---|---|---|---|"]
    for o in ops:
        lines.append(
            f"| {o.phase} | `{o.name}` | {o.op} | {o.became} | {o.shape} | {o.macs / 1e6:,.1f} |"
            if o.macs
            else f"| {o.phase} | `{o.name}` | {o.op} | {o.became} | {o.shape} | – |"
        )
    return "\n".join(lines)
