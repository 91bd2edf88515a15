"""`grace train`: train a preset's decoder, evaluate it on held-out identities, export it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from grace.params import GraceParams

HELDOUT_SEED = 1_000_003


def heldout_clips(params: GraceParams, count: int, frames: int = 32) -> list[np.ndarray]:
    """Clips of identities never seen in training, fixed seeds."""
    from model.synthetic import ClipSpec, synthesize_clip
    from model.train import HELDOUT_FACES

    return [
        synthesize_clip(
            ClipSpec(
                seed=HELDOUT_SEED + i,
                num_frames=frames,
                size=params.model.image_size,
                face=HELDOUT_FACES[i % len(HELDOUT_FACES)],
            )
        )
        for i in range(count)
    ]


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
) -> dict:
    from model.checkpoint import load_checkpoint, save_checkpoint
    from model.evaluate import evaluate, reconstruct
    from model.train import TrainConfig, train
    from model.video_io import write_strip

    cfg = TrainConfig(steps=steps, minutes=minutes)
    start = time.monotonic()
    columns = (
        TextColumn("training {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(params.name, total=cfg.steps, losses="")

        def on_step(step: int, losses: dict[str, float]) -> None:
            text = "  ".join(f"{k[:5]} {v:.4f}" for k, v in losses.items())
            progress.update(task, completed=step, losses=text)
            if not console.is_terminal and step % 100 == 0:  # CI logs: a line now and then
                console.print(f"step {step}/{cfg.steps}  {text}")

        path = train(params.model, cfg, work_dir, resume=not fresh, on_step=on_step)
    train_minutes = (time.monotonic() - start) / 60
    kp_detector, generator = load_checkpoint(path, params.model)
    clips = heldout_clips(params, eval_clips)
    with console.status("evaluating on held-out identities…"):
        scores = evaluate(kp_detector, generator, clips)
    table = Table(
        "method",
        "PSNR dB",
        "SSIM",
        "MS-SSIM",
        title=f"held-out clips ({eval_clips} × {clips[0].shape[0]} frames, frame 0 = key frame)",
    )
    for name, q in scores.items():
        table.add_row(name, f"{q.psnr:.2f}", f"{q.ssim:.4f}", f"{q.ms_ssim:.4f}")
    console.print(table)
    rebuilt = reconstruct(kp_detector, generator, clips[0])
    strip = work_dir / "heldout.png"
    write_strip({"source": clips[0], **rebuilt}, strip)
    console.print(f"training time {train_minutes:.1f} min; strip {strip}")
    summary = {
        name: {"psnr": q.psnr, "ssim": q.ssim, "ms_ssim": q.ms_ssim} for name, q in scores.items()
    }
    if output is not None:
        save_checkpoint(output, params.model, kp_detector, generator, grace_heldout=summary)
        console.print(f"exported weights to {output} ({output.stat().st_size / 1e6:.2f} MB)")
    return summary
