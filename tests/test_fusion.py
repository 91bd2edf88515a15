"""Layer fusion: folding is exact, and the fusion plan covers every conv of the decoder once."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from defs.params import preset
from model.agc import build_generator
from model.fusion import batchnorm_affine, fold_batchnorm, fusion_plan, plan_markdown
from model.macs import count_macs

DOCS = Path(__file__).resolve().parent.parent / "docs" / "numerics.md"


def _randomised_bn(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.uniform_(-2, 2)  # negative scales too
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.1, 3)
    return bn.eval()


@torch.no_grad()
def test_fold_batchnorm_is_exact_in_float64() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, padding=1).double()
    bn = _randomised_bn(7).double()
    x = torch.randn(2, 5, 9, 9, dtype=torch.float64)
    weight, bias = fold_batchnorm(conv, bn)
    folded = nn.functional.conv2d(x, weight, bias, padding=1)
    torch.testing.assert_close(folded, bn(conv(x)), rtol=1e-12, atol=1e-12)


@torch.no_grad()
def test_batchnorm_affine() -> None:
    bn = _randomised_bn(4).double()
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    scale, offset = batchnorm_affine(bn)
    torch.testing.assert_close(x * scale.view(1, -1, 1, 1) + offset.view(1, -1, 1, 1), bn(x))


def test_plan_covers_every_conv_once_with_all_macs() -> None:
    for name in ("tiny", "fomm-256"):
        m = preset(name).model
        ops = fusion_plan(m)
        count = count_macs(m)
        assert sum(o.macs for o in ops if o.phase == "per frame") == count.per_frame
        assert sum(o.macs for o in ops if o.phase == "per GOP") == count.per_gop
        convs = {n for n, mod in build_generator(m).named_modules() if isinstance(mod, nn.Conv2d)}
        planned = [o.name for o in ops if o.op == "conv" and o.name != "dense_motion_network.down"]
        assert sorted(n.removesuffix(".conv") for n in convs) == sorted(planned)


def test_docs_table_is_current() -> None:
    """docs/numerics.md carries `grace layers --preset fomm-256 --markdown` verbatim."""
    table = plan_markdown(fusion_plan(preset("fomm-256").model))
    assert table in DOCS.read_text(), "regenerate the table: grace layers --markdown"
