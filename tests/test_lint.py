"""`grace elaborate` output passes `verilator --lint-only -Wall` with named waivers only."""

from __future__ import annotations

import pytest

from defs.params import NumericParams, preset
from grace.summary import elaborate_block
from sim.lint import WAIVERS, lint_verilog

PARAMS = {
    "tiny": preset("tiny"),
    "narrow": preset("tiny").replace(
        numeric=NumericParams(act_bits=4, acc_bits=20, bias_bits=24, mult_bits=8, max_shift=20)
    ),
    "wide": preset("tiny").replace(
        numeric=NumericParams(act_bits=12, acc_bits=40, bias_bits=36, mult_bits=12, max_shift=52)
    ),
}


@pytest.mark.parametrize("name", list(PARAMS))
def test_requant_lints_clean(name: str, build_root) -> None:
    path, _ = elaborate_block("requant", PARAMS[name], build_root / "lint" / name)
    result = lint_verilog(path)
    assert result.ok, f"unwaived warnings {result.unwaived}:\n{result.output[:3000]}"


def test_lint_catches_an_unwaived_warning(tmp_path) -> None:
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input [7:0] a, output [3:0] y);\n  assign y = a;\nendmodule\n")
    result = lint_verilog(bad)
    assert not result.ok
    assert "WIDTHTRUNC" in result.unwaived
    assert "WIDTHTRUNC" not in WAIVERS


@pytest.mark.parametrize("preset_name", ["tiny", "ulx3s-85f", "icebreaker"])
def test_conv_engine_lints_clean(preset_name: str, build_root) -> None:
    path, _ = elaborate_block(
        "conv", preset(preset_name), build_root / "lint" / f"conv-{preset_name}"
    )
    result = lint_verilog(path)
    assert result.ok, f"unwaived warnings {result.unwaived}:\n{result.output[:3000]}"


@pytest.mark.parametrize("block", ["warp", "act", "softmax", "heatmap", "motion"])
@pytest.mark.parametrize("preset_name", ["tiny", "ulx3s-85f", "icebreaker"])
def test_streaming_engines_lint_clean(block: str, preset_name: str, build_root) -> None:
    path, _ = elaborate_block(
        block, preset(preset_name), build_root / "lint" / f"{block}-{preset_name}"
    )
    result = lint_verilog(path)
    assert result.ok, f"unwaived warnings {result.unwaived}:\n{result.output[:3000]}"
