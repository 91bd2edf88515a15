"""`grace compile`: programs, image and per-layer report on disk; refusals in one line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from compiler.report import StepCost, touched_bytes
from grace.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_compile_tiny_for_the_ulx3s(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # build/ lands here
    result = run("compile", "--preset", "tiny", "--params", "ulx3s-85f")
    assert result.exit_code == 0, result.output
    out = tmp_path / "build" / "compile" / "tiny-ulx3s-85f"
    report = json.loads((out / "report.json").read_text())
    frame = report["frame"]
    names = [row["step"] for row in frame["steps"]]
    for step in ("heatmaps", "hg_down0", "mask", "softmax", "warp.features", "r1.conv2", "final"):
        assert step in names
    assert frame["instructions"] == sum(r["instructions"] for r in frame["steps"])
    assert (out / "frame.bin").stat().st_size == 32 * frame["instructions"]
    assert (out / "image.bin").stat().st_size == report["image_bytes"]
    assert 0 < frame["bytes_minimum"] <= frame["bytes_moved"]
    assert (out / "report.png").stat().st_size > 0
    assert "bytes moved against a minimum" in result.output


def test_refusals_are_one_line(monkeypatch, tmp_path) -> None:
    """fomm-256 does not fit the ULX3S (its buffers or its 32 MB); tiny's image does not
    fit a board without RAM."""
    monkeypatch.chdir(tmp_path)
    for args in (
        ("--preset", "fomm-256", "--params", "ulx3s-85f", "--random-weights"),
        ("--preset", "tiny", "--params", "icebreaker"),
    ):
        result = run("compile", *args)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("grace: error: "), result.output


def test_the_minimum_counts_each_byte_once() -> None:
    cost = StepCost("x")
    cost.ranges += [(0, 10, 3, 4), (2, 0, 1, 4), (100, 0, 1, 1)]  # 0-3, 10-13, 20-23, 2-5
    assert touched_bytes([cost]) == 4 + 2 + 4 + 4 + 1


def test_an_image_larger_than_the_boards_ram_is_refused(tmp_path) -> None:
    import pytest
    from rich.console import Console

    from defs.params import preset
    from grace.compile_run import CompileError, run_compile

    no_ram = preset("ulx3s-85f").replace(board="icebreaker")  # the ULX3S engine, 0 bytes of RAM
    with pytest.raises(CompileError, match=r"memory image is [\d,]+ bytes; the icebreaker has 0"):
        run_compile(
            Console(file=None, quiet=True), preset("tiny"), no_ram, tmp_path, random_weights=False
        )
