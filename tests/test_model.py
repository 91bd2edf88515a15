"""The float AGC model: FOMM's graph, MAC count, checkpoint layout, per-GOP caching."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from defs.params import preset
from model.agc import build_generator, build_kp_detector
from model.checkpoint import CheckpointError, load_checkpoint
from model.macs import count_macs


def test_fomm_256_mac_count() -> None:
    """≈43.4 GMAC per inter frame (dense motion 4.09 + generator 39.3); encoder 10.3 per GOP."""
    count = count_macs(preset("fomm-256").model)
    dense = count.part("per_frame:dense_motion_network")
    assert count.per_frame == pytest.approx(43.4e9, rel=0.01)
    assert dense == pytest.approx(4.09e9, rel=0.01)
    assert count.per_frame - dense == pytest.approx(39.3e9, rel=0.01)
    assert count.per_gop == pytest.approx(10.3e9, rel=0.01)


def fomm_generator_keys(num_down: int, num_bottleneck: int, dense_blocks: int) -> set[str]:
    """first-order-model's generator state-dict names, written out from its module tree."""

    def conv_bn(prefix: str) -> list[str]:
        return [f"{prefix}.conv.weight", f"{prefix}.conv.bias", *bn(f"{prefix}.norm")]

    def bn(prefix: str) -> list[str]:
        return [
            f"{prefix}.{n}"
            for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        ]

    keys = conv_bn("first")
    keys += [k for i in range(num_down) for k in conv_bn(f"down_blocks.{i}")]
    keys += [k for i in range(num_down) for k in conv_bn(f"up_blocks.{i}")]
    for i in range(num_bottleneck):
        r = f"bottleneck.r{i}"
        keys += [f"{r}.conv1.weight", f"{r}.conv1.bias", f"{r}.conv2.weight", f"{r}.conv2.bias"]
        keys += bn(f"{r}.norm1") + bn(f"{r}.norm2")
    keys += ["final.weight", "final.bias"]
    d = "dense_motion_network"
    keys += [
        k for i in range(dense_blocks) for k in conv_bn(f"{d}.hourglass.encoder.down_blocks.{i}")
    ]
    keys += [
        k for i in range(dense_blocks) for k in conv_bn(f"{d}.hourglass.decoder.up_blocks.{i}")
    ]
    keys += [f"{d}.mask.weight", f"{d}.mask.bias", f"{d}.occlusion.weight", f"{d}.occlusion.bias"]
    keys += [f"{d}.down.weight"]
    return set(keys)


def test_generator_has_fomm_state_dict_names_and_shapes() -> None:
    m = preset("fomm-256").model
    state = build_generator(m).state_dict()
    assert set(state) == fomm_generator_keys(2, 6, 5)
    # A few shapes of vox-256.pth.tar, as published.
    assert state["first.conv.weight"].shape == (64, 3, 7, 7)
    assert state["bottleneck.r5.conv2.weight"].shape == (256, 256, 3, 3)
    assert state["final.weight"].shape == (3, 64, 7, 7)
    assert state["dense_motion_network.hourglass.encoder.down_blocks.0.conv.weight"].shape == (
        128,
        44,
        3,
        3,
    )
    assert state["dense_motion_network.mask.weight"].shape == (11, 108, 7, 7)
    assert state["dense_motion_network.down.weight"].shape == (3, 1, 13, 13)


def test_kp_detector_has_fomm_names() -> None:
    state = build_kp_detector(preset("fomm-256").model).state_dict()
    assert state["kp.weight"].shape == (10, 35, 7, 7)
    assert state["jacobian.weight"].shape == (40, 35, 7, 7)
    assert "predictor.encoder.down_blocks.4.conv.weight" in state
    assert "predictor.decoder.up_blocks.4.norm.running_var" in state
    assert "down.weight" in state


def test_load_fomm_layout_checkpoint(tmp_path) -> None:
    """A vox-256.pth.tar-style dict (with optimiser entries) loads into our modules."""
    m = preset("tiny").model
    torch.manual_seed(3)
    kp_src, gen_src = build_kp_detector(m), build_generator(m)
    for p in list(kp_src.parameters()) + list(gen_src.parameters()):
        torch.nn.init.normal_(p)
    path = tmp_path / "vox-like.pth.tar"
    torch.save(
        {
            "kp_detector": kp_src.state_dict(),
            "generator": gen_src.state_dict(),
            "discriminator": {},
            "optimizer_generator": {},
            "epoch": 99,
        },
        path,
    )
    _, gen = load_checkpoint(path, m)
    for a, b in zip(gen.state_dict().values(), gen_src.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not gen.training


def test_checkpoint_errors(tmp_path) -> None:
    m = preset("tiny").model
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pth", m)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch file"):
        load_checkpoint(tmp_path / "junk.pth", m)
    torch.save({"generator": {}}, tmp_path / "nokp.pth")
    with pytest.raises(CheckpointError, match="no 'kp_detector' entry"):
        load_checkpoint(tmp_path / "nokp.pth", m)
    big = dataclasses.replace(m, block_expansion=m.block_expansion * 2)
    torch.save(
        {
            "kp_detector": build_kp_detector(big).state_dict(),
            "generator": build_generator(big).state_dict(),
        },
        tmp_path / "other.pth",
    )
    with pytest.raises(CheckpointError, match=r"has shape .* the model expects"):
        load_checkpoint(tmp_path / "other.pth", m)


@torch.no_grad()
def test_cached_source_decode_equals_full_forward() -> None:
    m = preset("tiny").model
    torch.manual_seed(0)
    kp_detector, generator = build_kp_detector(m).eval(), build_generator(m).eval()
    source = torch.rand(2, 3, m.image_size, m.image_size)
    driving = torch.rand(2, 3, m.image_size, m.image_size)
    kp_s, kp_d = kp_detector(source), kp_detector(driving)
    full = generator(source, kp_d, kp_s)["prediction"]
    cache = generator.encode_source(source)
    torch.testing.assert_close(generator.decode(cache, kp_d, kp_s)["prediction"], full)
    assert full.shape == (2, 3, m.image_size, m.image_size)
    assert full.min() >= 0 and full.max() <= 1


@torch.no_grad()
def test_identity_motion_is_identity_flow() -> None:
    """Same keypoints for source and driving: every candidate motion is the identity."""
    g = build_generator(dataclasses.replace(preset("tiny").model, estimate_jacobian=True))
    small = torch.rand(1, 3, 16, 16)
    kp = {"value": torch.rand(1, 10, 2) * 2 - 1, "jacobian": torch.eye(2).expand(1, 10, 2, 2) * 1.3}
    motions = g.dense_motion_network.sparse_motions(small, kp, kp)
    identity = motions[:, :1].expand_as(motions)
    torch.testing.assert_close(motions, identity, rtol=1e-5, atol=1e-5)
