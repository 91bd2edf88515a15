"""Train the decoder (keypoint detector + generator) on synthetic talking-face clips.

FOMM's self-supervised recipe without its GAN and without VGG (whose weights
would have to be downloaded): reconstruct a driving frame from a source frame of
the same clip through the keypoints, with an image-pyramid L1 loss standing in
for the perceptual pyramid, plus FOMM's equivariance losses that make keypoints
move with the image under random affine transforms. Checkpoints are written
every few hundred steps and training resumes from the last one.
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
from model.checkpoint import save_checkpoint
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
    kp_detector, generator, source: Tensor, driving: Tensor, cfg: TrainConfig, rng: torch.Generator
) -> dict[str, Tensor]:
    kp_source, kp_driving = kp_detector(source), kp_detector(driving)
    prediction = generator(source, kp_driving, kp_source)["prediction"]
    out = {"reconstruction": pyramid_l1(prediction, driving)}
    affine = random_affine(driving.shape[0], 0.05, rng)
    kp_transformed = kp_detector(transform_frames(driving, affine))
    mapped = apply_affine(kp_transformed["value"], affine)
    out["equivariance"] = cfg.equivariance_weight * (kp_driving["value"] - mapped).abs().mean()
    if "jacobian" in kp_driving:
        jac = torch.matmul(affine[:, :, :2].unsqueeze(1), kp_transformed["jacobian"])
        normed = torch.matmul(torch.inverse(kp_driving["jacobian"]), jac)
        eye = torch.eye(2).view(1, 1, 2, 2)
        out["equivariance_jacobian"] = cfg.equivariance_weight * (eye - normed).abs().mean()
    return out


def train(
    m: ModelParams,
    cfg: TrainConfig,
    work_dir: Path,
    *,
    resume: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> Path:
    """Train, checkpointing to `work_dir/checkpoint.pth`; returns that path."""
    torch.manual_seed(cfg.seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / "checkpoint.pth"
    kp_detector, generator = build_kp_detector(m), build_generator(m)
    params = list(kp_detector.parameters()) + list(generator.parameters())
    optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=(0.5, 0.999))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps, cfg.lr * 0.05)
    step = 0
    if resume and path.exists():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("grace_model_params") == dataclasses.asdict(m):
            kp_detector.load_state_dict(state["kp_detector"])
            generator.load_state_dict(state["generator"])
            optimizer.load_state_dict(state["optimizer"])
            schedule.load_state_dict(state["schedule"])
            step = int(state["step"])
    data = to_tensor(make_dataset(m, cfg))  # (N, T, 3, H, W)
    n_clips, n_frames = data.shape[:2]
    rng = torch.Generator().manual_seed(cfg.seed + step)
    start = time.monotonic()
    kp_detector.train()
    generator.train()

    def checkpoint() -> None:
        save_checkpoint(
            path,
            m,
            kp_detector,
            generator,
            optimizer=optimizer.state_dict(),
            schedule=schedule.state_dict(),
            step=step,
        )

    while step < cfg.steps:
        clip = torch.randint(n_clips, (cfg.batch_size,), generator=rng)
        pair = torch.randint(n_frames, (2, cfg.batch_size), generator=rng)
        source, driving = data[clip, pair[0]], data[clip, pair[1]]
        parts = losses(kp_detector, generator, source, driving, cfg, rng)
        loss = sum(parts.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
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
