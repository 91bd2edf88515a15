"""`verilator --lint-only -Wall` on elaborated Verilog, with named waivers only.

Each waiver is a warning class Amaranth's Verilog back end produces by design,
not a defect of a GRACE block; any other warning fails the lint.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from defs.tool_errors import failure_message
from sim.runner import SimulationError, prepare_environment

WAIVERS = {
    # Amaranth gives every register an initial value in its declaration and then
    # assigns it in an always block; that is how it expresses reset values.
    "PROCASSINIT": "register initial values next to process assignments (Amaranth style)",
    # Struct fields become named alias wires for debugging; intermediate operators
    # are emitted at full width and then sliced.
    "UNUSEDSIGNAL": "debug aliases of struct fields, sliced-off operator bits",
    # Amaranth relies on Verilog's implicit sign/zero extension of operands.
    "WIDTHEXPAND": "implicit operand extension in emitted arithmetic",
    # A block with submodules (FIFOs, memories) is one file of several modules,
    # named `top.sub`; Verilator wants one module per file named after it.
    "DECLFILENAME": "submodules emitted into the top's file",
}

_WARNING = re.compile(r"%Warning-([A-Z0-9_]+):")


@dataclass(frozen=True)
class LintResult:
    ok: bool
    unwaived: dict[str, int]  # warning class → count, outside WAIVERS
    output: str


def lint_verilog(path: Path) -> LintResult:
    prepare_environment()
    if shutil.which("verilator") is None:
        raise SimulationError("verilator not found on PATH; run `make setup`")
    waive = [f"-Wno-{name}" for name in WAIVERS]
    run = subprocess.run(
        ["verilator", "--lint-only", "-Wall", *waive, str(path)],
        capture_output=True,
        text=True,
    )
    output = run.stdout + run.stderr
    classes: dict[str, int] = {}
    for name in _WARNING.findall(output):
        classes[name] = classes.get(name, 0) + 1
    # Warnings and errors about the Verilog are the lint's answer; anything else
    # (a signal, a status with no diagnostic) means verilator itself failed.
    if run.returncode < 0 or (run.returncode and not classes and "%Error" not in output):
        raise SimulationError(
            failure_message("verilator --lint-only", run.returncode, where=path, output=output)
        )
    return LintResult(run.returncode == 0 and not classes, classes, output)
