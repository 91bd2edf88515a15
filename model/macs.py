"""Count convolution multiply-accumulates of the decoder, per GOP and per inter frame.

Counted by forward hooks on every `nn.Conv2d` while the real model runs, so the
count follows the graph as built (no second, hand-written description of it to
drift). Only conv MACs are counted, as in DESIGN.md §3: warps, softmax and
element-wise work are not.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from model.agc import build_generator

if TYPE_CHECKING:
    from defs.params import ModelParams


@dataclass
class MacCount:
    per_gop: int = 0  # source encoder + the motion network's downscale of the key frame
    per_frame: int = 0  # dense motion + generator after the encoder
    by_layer: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def part(self, prefix: str) -> int:
        return sum(v for k, v in self.by_layer.items() if k.startswith(prefix))


def conv_macs(conv: nn.Conv2d, output: torch.Tensor) -> int:
    out_elems = output[0].numel()  # one batch element
    kh, kw = conv.kernel_size
    return out_elems * (conv.in_channels // conv.groups) * kh * kw


@torch.no_grad()
def count_macs(m: ModelParams) -> MacCount:
    """MACs of one decoded frame of a `ModelParams` graph (random weights; shapes only)."""
    generator = build_generator(m).eval()
    count = MacCount()
    phase = {"name": "per_gop"}

    def hook(name: str):
        def record(module: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
            macs = conv_macs(module, output)
            count.by_layer[f"{phase['name']}:{name}"] += macs
            setattr(count, phase["name"], getattr(count, phase["name"]) + macs)

        return record

    handles = [
        module.register_forward_hook(hook(name))
        for name, module in generator.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    # AntiAliasInterpolation2d convolves with F.conv2d, not a module: add it by hand.
    source = torch.rand(1, m.num_channels, m.image_size, m.image_size)
    kp = {"value": torch.rand(1, m.num_kp, 2) * 2 - 1}
    if m.estimate_jacobian:
        kp["jacobian"] = torch.eye(2).expand(1, m.num_kp, 2, 2).clone()
    try:
        cache = generator.encode_source(source)
        down = getattr(generator.dense_motion_network, "down", None)
        if down is not None:
            k = down.weight.shape[-1]
            macs = cache.small[0].numel() * (down.int_inv_scale**2) * k * k
            count.by_layer["per_gop:dense_motion_network.down"] += macs
            count.per_gop += macs
        phase["name"] = "per_frame"
        generator.decode(cache, kp, kp)
    finally:
        for h in handles:
            h.remove()
    return count
