"""Train the decoder (keypoint detector + generator) on synthetic talking-face clips.

FOMM's self-supervised recipe without its GAN and without VGG (whose weights
would have to be downloaded): reconstruct a driving frame from a source frame of
the same clip through the keypoints, with an image-pyramid L1 loss standing in
for the perceptual pyramid, plus FOMM's equivariance losses that make keypoints
move with the image under random affine transforms. Checkpoints are written
every few hundred steps and training resumes from the last one, exactly: the
checkpoint holds the optimisers, the schedules and the sampler's random state.

Optionally (off by default: `generator_gan_weight` and `feature_matching_weight`
are 0), FOMM's adversarial training is added (`model/discriminator.py`): a
multi-scale patch discriminator trained from scratch beside the decoder, a
least-squares GAN loss and a discriminator feature-matching loss for the
generator. As in FOMM's `train.py`, each step first updates the keypoint
detector and generator on all their losses, then the discriminator on the same
(detached) generated frames.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from model.agc import build_generator, build_kp_detector
from model.blocks import make_coordinate_grid, warp
from model.checkpoint import CheckpointError, save_checkpoint
from model.discriminator import (
    MultiScaleDiscriminator,
    build_discriminator,
    feature_matching_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)
from model.synthetic import ClipSpec, num_faces, synthesize_clip

if TYPE_CHECKING:
    from defs.params import ModelParams

#: lfw identities never used in training: the held-out set.
HELDOUT_FACES = tuple(range(81, 101))
#: The colour photo (face 0) is trained on, with its own share of the clips: it is
#: the only colour identity, and the demo shows it (with motion never trained on).
PHOTO_FACE = 0
PHOTO_SHARE = 4  # every 4th training clip


def training_faces() -> list[int]:
    return [f for f in range(num_faces()) if f not in HELDOUT_FACES]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 4000
    batch_size: int = 16
    lr: float = 1e-3
    train_clips: int = 160
    frames_per_clip: int = 32
    equivariance_weight: float = 1.0
    seed: int = 0
    checkpoint_every: int = 250
    minutes: float | None = None  # stop early, with a checkpoint, after this long
    # FOMM's adversarial losses, off unless one of the first two weights is non-zero
    # (`grace train --gan` sets FOMM_GAN_WEIGHTS). The discriminator's sizes: see
    # model.discriminator.build_discriminator.
    generator_gan_weight: float = 0.0
    feature_matching_weight: float = 0.0  # per discriminator block and scale
    discriminator_gan_weight: float = 1.0
    discriminator_scales: tuple[float, ...] = (1.0, 0.5)
    discriminator_blocks: int = 3
    discriminator_use_kp: bool = True

    @property
    def gan(self) -> bool:
        """Whether a discriminator is trained (and feeds the generator's losses)."""
        return self.generator_gan_weight != 0 or self.feature_matching_weight != 0


#: FOMM's `vox-adv-256.yaml` loss weights: generator_gan 1, feature_matching 10 for
#: each discriminator block (discriminator_gan 1, TrainConfig's default).
FOMM_GAN_WEIGHTS = {"generator_gan_weight": 1.0, "feature_matching_weight": 10.0}


def make_dataset(m: ModelParams, cfg: TrainConfig) -> np.ndarray:
    """(N, T, H, W, 3) uint8 training clips, deterministic in cfg.seed."""
    lfw = [f for f in training_faces() if f != PHOTO_FACE]
    rng = np.random.default_rng(cfg.seed)
    clips = []
    for i in range(cfg.train_clips):
        face = PHOTO_FACE if i % PHOTO_SHARE == 0 else lfw[i % len(lfw)]
        spec = ClipSpec(
            seed=int(rng.integers(1 << 30)),
            num_frames=cfg.frames_per_clip,
            size=m.image_size,
            face=face,
        )
        clips.append(synthesize_clip(spec))
    return np.stack(clips)


def to_tensor(frames: np.ndarray) -> Tensor:
    """uint8 (..., H, W, 3) → float (..., 3, H, W) in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(frames)).float() / 255
    return t.movedim(-1, -3)


def pyramid_l1(prediction: Tensor, target: Tensor, levels: int = 3) -> Tensor:
    loss = prediction.new_zeros(())
    for level in range(levels):
        loss = loss + (prediction - target).abs().mean()
        if level + 1 < levels:
            prediction, target = F.avg_pool2d(prediction, 2), F.avg_pool2d(target, 2)
    return loss


def random_affine(batch: int, sigma: float, generator: torch.Generator) -> Tensor:
    """(B, 2, 3) affine maps near the identity, as FOMM's equivariance transform."""
    noise = torch.randn(batch, 2, 3, generator=generator) * sigma
    return torch.eye(2, 3).unsqueeze(0) + noise


def apply_affine(points: Tensor, affine: Tensor) -> Tensor:
    """points (B, K, 2) → affine · [p, 1]."""
    return torch.matmul(points, affine[:, :, :2].transpose(1, 2)) + affine[:, :, 2].unsqueeze(1)


def transform_frames(frames: Tensor, affine: Tensor) -> Tensor:
    """Frame whose pixel at p shows the input at affine · [p, 1]."""
    b, _, h, w = frames.shape
    grid = make_coordinate_grid(h, w, frames.dtype).view(1, h * w, 2).expand(b, -1, -1)
    return warp(frames, apply_affine(grid, affine).view(b, h, w, 2))


def losses(
    kp_detector,
    generator,
    source: Tensor,
    driving: Tensor,
    cfg: TrainConfig,
    rng: torch.Generator,
    discriminator: MultiScaleDiscriminator | None = None,
) -> tuple[dict[str, Tensor], Tensor, Tensor]:
    """The keypoint detector's and generator's weighted losses, the prediction and the
    driving keypoints (B, K, 2), the last two for the discriminator's own step."""
    kp_source, kp_driving = kp_detector(source), kp_detector(driving)
    prediction = generator(source, kp_driving, kp_source)["prediction"]
    out = {"reconstruction": pyramid_l1(prediction, driving)}
    if discriminator is not None:
        out.update(adversarial_losses(discriminator, prediction, driving, kp_driving["value"], cfg))
    affine = random_affine(driving.shape[0], 0.05, rng)
    kp_transformed = kp_detector(transform_frames(driving, affine))
    mapped = apply_affine(kp_transformed["value"], affine)
    out["equivariance"] = cfg.equivariance_weight * (kp_driving["value"] - mapped).abs().mean()
    if "jacobian" in kp_driving:
        jac = torch.matmul(affine[:, :, :2].unsqueeze(1), kp_transformed["jacobian"])
        normed = torch.matmul(torch.inverse(kp_driving["jacobian"]), jac)
        eye = torch.eye(2).view(1, 1, 2, 2)
        out["equivariance_jacobian"] = cfg.equivariance_weight * (eye - normed).abs().mean()
    return out, prediction, kp_driving["value"]


def adversarial_losses(
    discriminator: MultiScaleDiscriminator,
    prediction: Tensor,
    driving: Tensor,
    kp_driving: Tensor,
    cfg: TrainConfig,
) -> dict[str, Tensor]:
    """The generator's GAN and feature-matching losses, weighted. Gradients reach the
    generator through the prediction only: the discriminator is conditioned on
    detached keypoints (as FOMM's `detach_kp`) and its real-frame features are
    constants here; its own parameters collect no gradient from these losses."""
    kp = kp_driving.detach() if discriminator.use_kp else None
    discriminator.requires_grad_(False)
    try:
        fake = discriminator(prediction, kp)
        out = {}
        if cfg.generator_gan_weight:
            out["generator_gan"] = cfg.generator_gan_weight * lsgan_generator_loss(fake)
        if cfg.feature_matching_weight:
            with torch.no_grad():
                real = discriminator(driving, kp)
            out["feature_matching"] = cfg.feature_matching_weight * feature_matching_loss(
                real, fake
            )
    finally:
        discriminator.requires_grad_(True)
    return out


def discriminator_losses(
    discriminator: MultiScaleDiscriminator,
    prediction: Tensor,
    driving: Tensor,
    kp_driving: Tensor,
    cfg: TrainConfig,
) -> dict[str, Tensor]:
    """The discriminator's weighted LSGAN loss on real and (detached) generated frames."""
    kp = kp_driving.detach() if discriminator.use_kp else None
    real = discriminator(driving, kp)
    fake = discriminator(prediction.detach(), kp)
    return {
        "discriminator_gan": cfg.discriminator_gan_weight * lsgan_discriminator_loss(real, fake)
    }


def train(
    m: ModelParams,
    cfg: TrainConfig,
    work_dir: Path,
    *,
    resume: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> Path:
    """Train, checkpointing to `work_dir/checkpoint.pth`; returns that path.

    A resumed run continues exactly where the checkpoint stopped (same next batch,
    same parameters as a run never interrupted), with or without the GAN losses;
    resuming a checkpoint with a different `cfg.gan` is refused.
    """
    torch.manual_seed(cfg.seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "checkpoint.pth"
    kp_detector, generator = build_kp_detector(m), build_generator(m)
    params = list(kp_detector.parameters()) + list(generator.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=(0.5, 0.999))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps, cfg.lr * 0.05)
    discriminator = None
    if cfg.gan:  # built after the decoder, so the decoder's initial weights do not change
        discriminator = build_discriminator(
            m, cfg.discriminator_scales, cfg.discriminator_blocks, cfg.discriminator_use_kp
        )
        d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        d_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            d_optimizer, cfg.steps, cfg.lr * 0.05
        )
    step = 0
    rng_state = None
    if resume and path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("grace_model_params") == dataclasses.asdict(m):
            _check_same_gan(path, state, cfg)
            kp_detector.load_state_dict(state["kp_detector"])
            generator.load_state_dict(state["generator"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            if discriminator is not None:
                discriminator.load_state_dict(state["discriminator"])
                d_optimizer.load_state_dict(state["optimizer_discriminator"])
                d_schedule.load_state_dict(state["schedule_discriminator"])
            step = int(state["step"])
            rng_state = state.get("rng_state")  # absent from older checkpoints
    data = to_tensor(make_dataset(m, cfg))  # (N, T, 3, H, W)
    n_clips, n_frames = data.shape[:2]
    rng = torch.Generator().manual_seed(cfg.seed + step)
    if rng_state is not None:
        rng.set_state(rng_state)
    start = time.monotonic()
    kp_detector.train()
    generator.train()
    if discriminator is not None:
        discriminator.train()

    def checkpoint() -> None:
        gan = {}
        if discriminator is not None:
            gan = {
                "discriminator": discriminator.state_dict(),
                "optimizer_discriminator": d_optimizer.state_dict(),
                "schedule_discriminator": d_schedule.state_dict(),
            }
        save_checkpoint(
            path,
            m,
            kp_detector,
            generator,
            optimizer=optimizer.state_dict(),
            schedule=schedule.state_dict(),
            step=step,
            rng_state=rng.get_state(),
            grace_train_config=dataclasses.asdict(cfg),
            **gan,
        )

    while step < cfg.steps:
        clip = torch.randint(n_clips, (cfg.batch_size,), generator=rng)
        pair = torch.randint(n_frames, (2, cfg.batch_size), generator=rng)
        source, driving = data[clip, pair[0]], data[clip, pair[1]]
        parts, prediction, kp_driving = losses(
            kp_detector, generator, source, driving, cfg, rng, discriminator
        )
        loss = sum(parts.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if discriminator is not None:
            d_parts = discriminator_losses(discriminator, prediction, driving, kp_driving, cfg)
            d_optimizer.zero_grad()
            sum(d_parts.values()).backward()
            d_optimizer.step()
            d_schedule.step()
            parts.update(d_parts)
        step += 1
        if on_step:
            on_step(step, {k: float(v.detach()) for k, v in parts.items()})
        out_of_time = cfg.minutes is not None and time.monotonic() - start > cfg.minutes * 60
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time:
            checkpoint()
        if out_of_time:
            break
    if step == cfg.steps and not path.exists():
        checkpoint()
    return path


def _check_same_gan(path: Path, state: dict, cfg: TrainConfig) -> None:
    has = "discriminator" in state
    if has and not cfg.gan:
        raise CheckpointError(
            f"{path} was trained with the GAN losses: resume it with them (--gan), "
            "or start over (--fresh)"
        )
    if cfg.gan and not has:
        raise CheckpointError(
            f"{path} was trained without the GAN losses: resume it without --gan, "
            "or start over with them (--fresh)"
        )
