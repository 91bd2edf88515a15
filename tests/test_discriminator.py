"""FOMM's adversarial training: the multi-scale discriminator, its losses, GAN steps, resume."""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner

from defs.params import preset
from grace.cli import main
from model.checkpoint import CheckpointError, load_checkpoint
from model.discriminator import (
    build_discriminator,
    feature_matching_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    output_size,
)
from model.train import FOMM_GAN_WEIGHTS, TrainConfig, adversarial_losses, train

M = preset("tiny").model
#: A few steps at batch 2 on 2 short clips: seconds.
SMALL = {"batch_size": 2, "train_clips": 2, "frames_per_clip": 4, "checkpoint_every": 2}
GAN = TrainConfig(steps=2, **SMALL, **FOMM_GAN_WEIGHTS)


def test_gan_is_off_by_default() -> None:
    cfg = TrainConfig()
    assert not cfg.gan
    assert cfg.generator_gan_weight == cfg.feature_matching_weight == 0
    assert GAN.gan and FOMM_GAN_WEIGHTS == {
        "generator_gan_weight": 1.0,
        "feature_matching_weight": 10.0,
    }


def test_multiscale_outputs_and_features_have_the_expected_shapes() -> None:
    disc = build_discriminator(M)  # tiny: 64², 10 keypoints, generator 16 → 64 features
    out = disc(torch.rand(2, 3, 64, 64), torch.rand(2, 10, 2) * 2 - 1)
    assert list(out) == [1.0, 0.5]
    shapes = {s: ([tuple(f.shape) for f in feats], tuple(p.shape)) for s, (feats, p) in out.items()}
    assert shapes[1.0] == ([(2, 16, 30, 30), (2, 32, 13, 13), (2, 64, 10, 10)], (2, 1, 10, 10))
    assert shapes[0.5] == ([(2, 16, 14, 14), (2, 32, 5, 5), (2, 64, 2, 2)], (2, 1, 2, 2))
    assert output_size(64, 3) == 10 and output_size(32, 3) == 2
    # conditioned on the keypoints: 3 colour channels + 10 heatmaps into the first conv
    assert disc.discs["1-0"].down_blocks[0].conv.in_channels == 13
    unconditioned = build_discriminator(M, scales=(1.0,), use_kp=False)
    assert unconditioned.discs["1-0"].down_blocks[0].conv.in_channels == 3
    assert list(unconditioned(torch.rand(1, 3, 64, 64))) == [1.0]
    with pytest.raises(ValueError, match=r"at scale 0\.5 of a 64² frame has no output"):
        build_discriminator(M, num_blocks=4)  # FOMM's 4 blocks leave nothing of 32²


def test_lsgan_losses_on_hand_computed_scores() -> None:
    real = {1.0: ([], torch.full((1, 1, 2, 2), 0.5)), 0.5: ([], torch.tensor([[[[1.0, 3.0]]]]))}
    fake = {1.0: ([], torch.full((1, 1, 2, 2), -1.0)), 0.5: ([], torch.tensor([[[[0.0, 2.0]]]]))}
    # generator: mean (1 - D(fake))² per scale, summed: (1 - -1)² = 4; ((1-0)² + (1-2)²)/2 = 1
    assert lsgan_generator_loss(fake).item() == pytest.approx(4 + 1)
    # discriminator: mean (1 - D(real))² + D(fake)²: 0.25 + 1; ((0 + 4) + (0 + 4))/2 = 4
    assert lsgan_discriminator_loss(real, fake).item() == pytest.approx(1.25 + 4)
    perfect = {1.0: ([], torch.ones(1, 1, 2, 2))}
    assert lsgan_generator_loss(perfect).item() == 0
    assert lsgan_discriminator_loss(perfect, {1.0: ([], torch.zeros(1, 1, 2, 2))}).item() == 0


def test_feature_matching_is_zero_only_for_equal_features() -> None:
    disc = build_discriminator(M)
    image, kp = torch.rand(2, 3, 64, 64), torch.rand(2, 10, 2) * 2 - 1
    same = disc(image, kp)
    assert feature_matching_loss(same, disc(image.clone(), kp)).item() == 0
    assert feature_matching_loss(same, disc(image * 0.9, kp)).item() > 0
    # by hand: one block of one scale off by 0.5 everywhere, the other two equal
    a = {1.0: ([torch.zeros(1, 2, 3, 3), torch.ones(1, 4, 2, 2)], torch.zeros(1, 1, 1, 1))}
    b = {1.0: ([torch.full((1, 2, 3, 3), 0.5), torch.ones(1, 4, 2, 2)], torch.zeros(1, 1, 1, 1))}
    assert feature_matching_loss(a, b).item() == pytest.approx(0.5)


def test_generator_losses_leave_the_discriminator_without_gradient() -> None:
    disc = build_discriminator(M)
    prediction = torch.rand(2, 3, 64, 64, requires_grad=True)
    driving, kp = torch.rand(2, 3, 64, 64), torch.rand(2, 10, 2) * 2 - 1
    parts = adversarial_losses(disc, prediction, driving, kp, GAN)
    assert set(parts) == {"generator_gan", "feature_matching"}
    with torch.no_grad():  # FOMM's weights: GAN 1, feature matching 10
        fake, real = disc(prediction, kp), disc(driving, kp)
        assert parts["generator_gan"].item() == pytest.approx(lsgan_generator_loss(fake).item())
        fm = feature_matching_loss(real, fake).item()
        assert parts["feature_matching"].item() == pytest.approx(10 * fm)
    sum(parts.values()).backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    assert all(p.grad is None for p in disc.parameters())
    assert all(p.requires_grad for p in disc.parameters())  # restored for its own step


def test_gan_steps_move_both_networks_with_finite_losses(tmp_path) -> None:
    seen: list[dict[str, float]] = []
    path = train(M, GAN, tmp_path / "a", on_step=lambda _, parts: seen.append(parts))
    assert len(seen) == 2
    for parts in seen:
        assert {"reconstruction", "equivariance", "generator_gan", "feature_matching"} <= set(parts)
        assert "discriminator_gan" in parts
        assert all(math.isfinite(v) for v in parts.values())
    state = torch.load(path, weights_only=True)
    assert {"discriminator", "optimizer_discriminator", "schedule_discriminator"} <= set(state)
    torch.manual_seed(GAN.seed)  # the initial weights, built as train() builds them
    from model.agc import build_generator, build_kp_detector

    build_kp_detector(M)
    generator = build_generator(M)
    disc = build_discriminator(M)
    for initial, key in ((generator, "generator"), (disc, "discriminator")):
        moved = [
            name
            for name, p in initial.named_parameters()
            if not torch.equal(p.detach(), state[key][name])
        ]
        assert moved, f"no {key} parameter changed"
    # the exported decoder does not need the discriminator: evaluation loads as ever
    kp_detector, _ = load_checkpoint(path, M)
    assert not kp_detector.training


def _stop_after(step_limit: int):
    class Killed(Exception):
        pass

    def on_step(step: int, _: dict) -> None:
        if step > step_limit:
            raise Killed

    return Killed, on_step


@pytest.mark.parametrize("weights", [{}, FOMM_GAN_WEIGHTS], ids=["plain", "gan"])
def test_resume_continues_bit_identically(tmp_path, weights) -> None:
    cfg = TrainConfig(steps=4, **SMALL, **weights)
    whole = torch.load(train(M, cfg, tmp_path / "whole"), weights_only=True)
    killed, on_step = _stop_after(2)  # dies in step 3, after the checkpoint of step 2
    with pytest.raises(killed):
        train(M, cfg, tmp_path / "split", on_step=on_step)
    assert torch.load(tmp_path / "split" / "checkpoint.pth", weights_only=True)["step"] == 2
    steps: list[int] = []
    split = torch.load(
        train(M, cfg, tmp_path / "split", on_step=lambda s, _: steps.append(s)), weights_only=True
    )
    assert steps == [3, 4]
    keys = ["kp_detector", "generator"] + (["discriminator"] if weights else [])
    for key in keys:
        for name, tensor in whole[key].items():
            assert torch.equal(tensor, split[key][name]), f"{key}.{name} differs after resume"


def test_resume_refuses_to_switch_gan_on_or_off(tmp_path) -> None:
    plain = TrainConfig(steps=1, **SMALL)
    train(M, plain, tmp_path / "plain")
    with pytest.raises(CheckpointError, match="without the GAN losses"):
        train(M, TrainConfig(steps=2, **SMALL, **FOMM_GAN_WEIGHTS), tmp_path / "plain")
    train(M, TrainConfig(steps=1, **SMALL, **FOMM_GAN_WEIGHTS), tmp_path / "gan")
    with pytest.raises(CheckpointError, match="with the GAN losses"):
        train(M, TrainConfig(steps=2, **SMALL), tmp_path / "gan")


def test_checkpoint_from_before_the_gan_still_resumes(tmp_path) -> None:
    """Checkpoints written before this change have no sampler state, no train config."""
    path = train(M, TrainConfig(steps=1, **SMALL), tmp_path)
    state = torch.load(path, weights_only=True)
    del state["rng_state"], state["grace_train_config"]
    torch.save(state, path)
    steps: list[int] = []
    train(M, TrainConfig(steps=2, **SMALL), tmp_path, on_step=lambda s, _: steps.append(s))
    assert steps == [2]


def test_cli_refuses_gan_with_no_weight() -> None:
    result = CliRunner().invoke(
        main, ["train", "--gan", "--gan-weight", "0", "--fm-weight", "0", "--steps", "1"]
    )
    assert result.exit_code == 2
    assert "--gan-weight and --fm-weight must be >= 0, one of them > 0" in result.output
