"""`grace compare`: the rule that decides whether a new checkpoint replaces the committed
one, and the command that applies it on held-out clips."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from grace.cli import main
from grace.codec_run import default_checkpoint
from grace.compare_run import MAX_PSNR_LOSS_DB, keep_rule
from model.checkpoint import load_checkpoint, save_checkpoint
from model.metrics import Quality

GROUPS = ("unseen", "photo")


def scores(psnr: tuple[float, float], gmsd: tuple[float, float]) -> dict[str, Quality]:
    return {g: Quality(p, 0.9, 0.95, s) for g, p, s in zip(GROUPS, psnr, gmsd, strict=True)}


OLD = scores((30.0, 29.0), (0.05, 0.03))


@pytest.mark.parametrize(
    ("new", "keep"),
    [
        (scores((29.6, 28.6), (0.04, 0.02)), True),  # sharper everywhere, 0.4 dB lost
        (scores((29.5, 28.5), (0.04, 0.02)), True),  # exactly the 0.5 dB allowed
        (scores((29.4, 29.0), (0.04, 0.02)), False),  # 0.6 dB lost on one group
        (scores((31.0, 30.0), (0.04, 0.03)), False),  # GMSD only equal on the photo
        (scores((31.0, 30.0), (0.06, 0.02)), False),  # GMSD worse on unseen identities
        (OLD, False),  # the same model is not better
    ],
)
def test_keep_rule(new: dict[str, Quality], keep: bool) -> None:
    verdict = keep_rule(OLD, new)
    assert verdict.keep is keep
    assert len(verdict.reasons) == len(GROUPS)
    assert MAX_PSNR_LOSS_DB == 0.5


def test_compare_scores_both_and_rejects_a_damaged_candidate(tmp_path) -> None:
    """A candidate with noise on its generator's weights is blurrier and much worse in
    PSNR: the command scores it, writes the strip and table, and keeps the baseline."""
    from defs.params import PRESETS

    params = PRESETS["tiny"]
    kp_detector, generator = load_checkpoint(default_checkpoint(params), params.model)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in generator.parameters():
            p.add_(0.3 * p.abs().mean() * torch.randn_like(p))
    damaged = tmp_path / "damaged.pth"
    save_checkpoint(damaged, params.model, kp_detector, generator)
    out = tmp_path / "cmp"
    args = ["compare", str(damaged), "--clips", "1", "--frames", "4", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "verdict: keep the baseline" in result.output
    report = json.loads((out / "compare.json").read_text())
    assert report["keep"] is False
    base, cand = report["scores"]["baseline"], report["scores"]["candidate"]
    assert base.keys() == cand.keys() and len(base) == 2
    for group in base:
        assert cand[group]["psnr"] < base[group]["psnr"] - MAX_PSNR_LOSS_DB
    assert (out / "strip.png").stat().st_size > 0


def test_compare_missing_candidate_is_one_line(tmp_path) -> None:
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "none.pth"), "--clips", "1"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "none.pth not found" in lines[0], result.output
