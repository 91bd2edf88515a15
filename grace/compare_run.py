"""`grace compare`: a candidate checkpoint against the committed one, on the same held-out
clips, with the rule that decides whether the candidate replaces it.

The rule (issue 18): keep a new checkpoint only if its perceptual score (GMSD, lower is
better) beats the old one's on every held-out group (unseen identities, and the colour
photo with unseen motion) while it loses at most `MAX_PSNR_LOSS_DB` of PSNR on each.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from defs.params import GraceParams
from model.metrics import Quality

MAX_PSNR_LOSS_DB = 0.5


@dataclasses.dataclass(frozen=True)
class Verdict:
    keep: bool
    reasons: list[str]  # one line per held-out group and criterion


def keep_rule(
    baseline: dict[str, Quality],
    candidate: dict[str, Quality],
    max_psnr_loss_db: float = MAX_PSNR_LOSS_DB,
) -> Verdict:
    """Per group: GMSD strictly lower, and PSNR at most `max_psnr_loss_db` lower."""
    keep, reasons = True, []
    for group, old in baseline.items():
        new = candidate[group]
        sharper = new.gmsd < old.gmsd
        loss = old.psnr - new.psnr
        close = loss <= max_psnr_loss_db
        keep = keep and sharper and close
        reasons.append(
            f"{group}: GMSD {old.gmsd:.4f} → {new.gmsd:.4f} "
            f"({'better' if sharper else 'not better'}), "
            f"PSNR {old.psnr:.2f} → {new.psnr:.2f} dB "
            f"({'within' if close else 'beyond'} the {max_psnr_loss_db} dB allowed)"
        )
    return Verdict(keep, reasons)


def run_compare(
    console: Console,
    params: GraceParams,
    baseline_path: Path,
    candidate_path: Path,
    out_dir: Path,
    *,
    clips: int = 8,
    frames: int = 32,
) -> Verdict:
    """Score both checkpoints' float decoders; write a side-by-side strip and a JSON table."""
    from grace.train_run import heldout_clips
    from model.checkpoint import load_checkpoint
    from model.evaluate import evaluate, reconstruct
    from model.video_io import write_strip

    models = {
        "baseline": load_checkpoint(baseline_path, params.model),
        "candidate": load_checkpoint(candidate_path, params.model),
    }
    names = {"baseline": baseline_path.name, "candidate": candidate_path.name}
    groups = heldout_clips(params, clips, frames=frames)
    scores: dict[str, dict[str, Quality]] = {"baseline": {}, "candidate": {}}
    strip: dict[str, np.ndarray] = {}
    for g, (group, group_clips) in enumerate(groups.items()):
        table = Table(
            "decoder", *Quality.COLUMNS, title=f"{group}: {len(group_clips)} clips × {frames}"
        )
        short = "unseen" if g == 0 else "photo"
        strip[f"{short}: source"] = group_clips[0]
        for role, (kp_detector, generator) in models.items():
            with console.status(f"{group}: {role} {names[role]}…"):
                result = evaluate(kp_detector, generator, group_clips)
                strip[f"{short}: {role}"] = reconstruct(kp_detector, generator, group_clips[0])[
                    "decoder"
                ]
            scores[role][group] = result["decoder"]
            table.add_row(f"{role} ({names[role]})", *result["decoder"].cells())
        table.add_row("repeat key frame", *result["repeat key frame"].cells())
        console.print(table)
    verdict = keep_rule(scores["baseline"], scores["candidate"])
    for line in verdict.reasons:
        console.print(f"  {line}")
    console.print(
        f"verdict: {'keep the candidate' if verdict.keep else 'keep the baseline'} "
        f"(GMSD better on every group, PSNR loss ≤ {MAX_PSNR_LOSS_DB} dB)"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_strip(strip, out_dir / "strip.png")
    report = {
        "baseline": str(baseline_path),
        "candidate": str(candidate_path),
        "clips": clips,
        "frames": frames,
        "scores": {
            role: {group: dataclasses.asdict(q) for group, q in per_group.items()}
            for role, per_group in scores.items()
        },
        "keep": verdict.keep,
        "reasons": verdict.reasons,
    }
    (out_dir / "compare.json").write_text(json.dumps(report, indent=2))
    console.print(f"wrote {out_dir / 'compare.json'} and {out_dir / 'strip.png'}")
    return verdict
