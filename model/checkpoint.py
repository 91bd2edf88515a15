"""Load and save decoder checkpoints in first-order-model's layout.

A FOMM checkpoint (`vox-256.pth.tar`) is a dict with, among optimiser states,
`kp_detector` and `generator` state dicts. GRACE writes the same layout (plus a
`grace_model_params` entry so a checkpoint says which graph it belongs to), and
reads FOMM's own files unchanged.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from model.agc import build_generator, build_kp_detector
from model.generator import OcclusionAwareGenerator
from model.keypoints import KPDetector

if TYPE_CHECKING:
    from defs.params import ModelParams


class CheckpointError(ValueError):
    """The checkpoint is missing, unreadable or does not fit the model graph."""


def save_checkpoint(
    path: Path,
    m: ModelParams,
    kp_detector: KPDetector,
    generator: OcclusionAwareGenerator,
    **extra: object,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "kp_detector": kp_detector.state_dict(),
            "generator": generator.state_dict(),
            "grace_model_params": dataclasses.asdict(m),
            **extra,
        },
        path,
    )


def load_checkpoint(path: Path, m: ModelParams) -> tuple[KPDetector, OcclusionAwareGenerator]:
    """Models built from `m` with the checkpoint's weights, in eval mode."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} not found") from None
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"checkpoint {path} is not a readable PyTorch file: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict, got {type(data).__name__}")
    kp_detector, generator = build_kp_detector(m), build_generator(m)
    for key, module in (("kp_detector", kp_detector), ("generator", generator)):
        if key not in data:
            raise CheckpointError(
                f"checkpoint {path} has no '{key}' entry (found: {', '.join(map(str, data))})"
            )
        _load_state(module, data[key], f"{path}:{key}")
    return kp_detector.eval(), generator.eval()


def _load_state(module: torch.nn.Module, state: dict, where: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{where} does not match the model graph: {len(missing)} missing "
            f"(first: {missing[:1]}), {len(unexpected)} unexpected (first: {unexpected[:1]}); "
            "check the preset/--params used for this checkpoint"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise CheckpointError(
                f"{where}: {name} has shape {tuple(tensor.shape)}, the model expects "
                f"{tuple(own[name].shape)}; check the preset/--params used for this checkpoint"
            )
    module.load_state_dict(state)
