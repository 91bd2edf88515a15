"""`grace train`: train a preset's decoder, evaluate it on held-out identities, export it."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from defs.params import GraceParams

HELDOUT_SEED = 1_000_003
#: Progress labels of the adversarial losses (the others show their first 5 letters).
LABELS = {"generator_gan": "G-gan", "feature_matching": "feat", "discriminator_gan": "D-gan"}


def heldout_clips(params: GraceParams, count: int, frames: int = 32) -> dict[str, list]:
    """Evaluation clips, fixed seeds never used in training, in two groups."""
    from model.synthetic import ClipSpec, synthesize_clip
    from model.train import HELDOUT_FACES, PHOTO_FACE

    size = params.model.image_size

    def clip(i: int, face: int) -> np.ndarray:
        return synthesize_clip(
            ClipSpec(seed=HELDOUT_SEED + i, num_frames=frames, size=size, face=face)
        )

    return {
        "unseen identities (lfw 81-100)": [
            clip(i, HELDOUT_FACES[i % len(HELDOUT_FACES)]) for i in range(count)
        ],
        "colour photo, unseen motion": [clip(i, PHOTO_FACE) for i in range(max(1, count // 2))],
    }


def run_training(
    console: Console,
    params: GraceParams,
    work_dir: Path,
    *,
    steps: int,
    minutes: float | None,
    fresh: bool,
    output: Path | None,
    eval_clips: int,
    gan_weights: tuple[float, float] | None = None,
) -> dict:
    """Train (resuming the run in `work_dir` unless `fresh`), score, export.

    gan_weights: (generator GAN, feature matching) to add FOMM's adversarial
    losses; None trains with the reconstruction and equivariance losses only.
    """
    import torch

    from model.checkpoint import load_checkpoint, save_checkpoint
    from model.evaluate import evaluate, reconstruct
    from model.metrics import Quality
    from model.train import TrainConfig, train
    from model.video_io import write_strip

    gan = {}
    if gan_weights is not None:
        gan = {"generator_gan_weight": gan_weights[0], "feature_matching_weight": gan_weights[1]}
    cfg = TrainConfig(steps=steps, minutes=minutes, **gan)
    start = time.monotonic()
    columns = (
        TextColumn("training {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        name = params.name + (" + GAN" if cfg.gan else "")
        task = progress.add_task(name, total=cfg.steps, losses="")

        last = {"step": 0, "text": ""}

        def on_step(step: int, losses: dict[str, float]) -> None:
            text = "  ".join(f"{LABELS.get(k, k[:5])} {v:.4f}" for k, v in losses.items())
            last.update(step=step, text=text)
            progress.update(task, completed=step, losses=text)
            if not console.is_terminal and step % 100 == 0:  # CI logs: a line now and then
                console.print(f"step {step}/{cfg.steps}  {text}")

        path = train(params.model, cfg, work_dir, resume=not fresh, on_step=on_step)
    if last["step"]:
        console.print(f"step {last['step']}/{cfg.steps}  {last['text']}")
    done = int(torch.load(path, map_location="cpu", weights_only=True)["step"])
    if done < cfg.steps:
        console.print(f"stopped at step {done}: run again (without --fresh) to resume")
    train_minutes = (time.monotonic() - start) / 60
    kp_detector, generator = load_checkpoint(path, params.model)
    groups = heldout_clips(params, eval_clips)
    summary: dict[str, dict] = {}
    for group, clips in groups.items():
        with console.status(f"evaluating: {group}…"):
            scores = evaluate(kp_detector, generator, clips)
        table = Table(
            "method",
            *Quality.COLUMNS,
            title=f"{group}: {len(clips)} clips × {clips[0].shape[0]} frames "
            "(frame 0 = key frame, not scored)",
        )
        for name, q in scores.items():
            table.add_row(name, *q.cells())
        console.print(table)
        summary[group] = {name: dataclasses.asdict(q) for name, q in scores.items()}
        strip = work_dir / f"heldout-{len(summary)}.png"
        write_strip({"source": clips[0], **reconstruct(kp_detector, generator, clips[0])}, strip)
        console.print(f"strip: {strip}")
    console.print(f"training time {train_minutes:.1f} min")
    if output is not None:
        save_checkpoint(
            output,
            params.model,
            kp_detector,
            generator,
            grace_heldout=summary,
            grace_train_config=dataclasses.asdict(cfg),
        )
        console.print(f"exported weights to {output} ({output.stat().st_size / 1e6:.2f} MB)")
    return summary
