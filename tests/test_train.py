"""Training pieces: the equivariance transform, losses, and resumable checkpoints."""

from __future__ import annotations

import torch

from defs.params import preset
from model.baselines import fit_affine, global_affine_warp
from model.blocks import make_coordinate_grid
from model.train import (
    HELDOUT_FACES,
    PHOTO_FACE,
    TrainConfig,
    apply_affine,
    pyramid_l1,
    random_affine,
    train,
    training_faces,
    transform_frames,
)

M = preset("tiny").model


def test_transform_moves_content_where_apply_affine_says() -> None:
    """A bright dot at p in the transformed frame came from apply_affine(p) in the input."""
    affine = random_affine(1, 0.05, torch.Generator().manual_seed(0))
    size = 33
    grid = make_coordinate_grid(size, size)
    p = torch.tensor([[[0.25, -0.5]]])
    q = apply_affine(p, affine)[0, 0]
    frame = torch.exp(-((grid - q) ** 2).sum(-1) / 0.002).view(1, 1, size, size)
    moved = transform_frames(frame, affine)[0, 0]
    peak = torch.nonzero(moved == moved.max())[0]
    got = grid[peak[0], peak[1]]
    assert torch.allclose(got, p[0, 0], atol=2.5 / size)


def test_pyramid_l1_is_zero_only_for_equal_images() -> None:
    a = torch.rand(2, 3, 16, 16)
    assert pyramid_l1(a, a) == 0
    assert pyramid_l1(a, a + 0.1) > 0.29


def test_affine_baseline_recovers_a_known_affine() -> None:
    kp_driving = torch.rand(1, 10, 2) * 2 - 1
    true = torch.tensor([[[1.1, 0.1, 0.05], [-0.05, 0.9, -0.1]]])
    kp_source = apply_affine(kp_driving, true)
    torch.testing.assert_close(fit_affine(kp_driving, kp_source), true, rtol=1e-4, atol=1e-4)
    image = torch.rand(1, 3, 16, 16)
    identity = torch.eye(2, 3).unsqueeze(0)
    kp = torch.rand(1, 10, 2)
    torch.testing.assert_close(
        global_affine_warp(image, kp, apply_affine(kp, identity)), image, rtol=1e-4, atol=1e-4
    )


def test_identities_split() -> None:
    assert not set(training_faces()) & set(HELDOUT_FACES)
    assert len(HELDOUT_FACES) == 20
    assert PHOTO_FACE in training_faces()


def test_training_checkpoints_and_resumes(tmp_path) -> None:
    cfg = TrainConfig(steps=3, batch_size=2, train_clips=2, frames_per_clip=4, checkpoint_every=2)
    seen: list[int] = []
    path = train(M, cfg, tmp_path, on_step=lambda step, _: seen.append(step))
    assert seen == [1, 2, 3]
    assert torch.load(path, weights_only=True)["step"] == 3
    longer = TrainConfig(**{**cfg.__dict__, "steps": 4})
    seen.clear()
    train(M, longer, tmp_path, on_step=lambda step, _: seen.append(step))
    assert seen == [4]  # resumed from step 3
