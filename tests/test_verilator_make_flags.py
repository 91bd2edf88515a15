"""The make flags every Verilator build runs under (sim/runner.py `prepare_environment`)."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import cocotb_tools.runner as cocotb_runner
import pytest

from sim import coproc_cpp
from sim.runner import OPT_SLOW, SimulationError, opt_fast_flag, prepare_environment, run_cocotb


def test_run_once_code_is_compiled_without_optimisation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAKEFLAGS", "")
    prepare_environment()
    flags = os.environ["MAKEFLAGS"].split()
    assert f"OPT_SLOW={OPT_SLOW}" in flags and OPT_SLOW == "-O0"
    assert "CFG_CXXFLAGS_PCH_I=-include" in flags
    prepare_environment()  # a second call adds nothing
    assert os.environ["MAKEFLAGS"].split() == flags


def test_a_users_own_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAKEFLAGS", "OPT_SLOW=-O2")
    prepare_environment()
    flags = os.environ["MAKEFLAGS"].split()
    assert "OPT_SLOW=-O2" in flags and f"OPT_SLOW={OPT_SLOW}" not in flags


@pytest.mark.parametrize("long_run", [False, True])
def test_the_cpp_harness_optimises_its_model_by_run_length(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, long_run: bool
) -> None:
    """Only `OPT_FAST` (and the runtime's `OPT_GLOBAL`) carry the harness's level: a
    `-CFLAGS -O2` comes last on every compile line and would optimise the run-once
    C++ too (it did: 155 s of CPU for the tiny model instead of 56 s at -O1)."""
    commands: list[list[str]] = []

    def verilator(command: list[str], **_: object) -> subprocess.CompletedProcess:
        commands.append(command)
        binary.touch()
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(coproc_cpp.subprocess, "run", verilator)
    monkeypatch.setenv("MAKEFLAGS", "")
    binary = tmp_path / "obj" / coproc_cpp.TOPLEVEL
    binary.parent.mkdir()
    coproc_cpp._build(
        "module grace_coproc; endmodule\n", tmp_path, binary, coproc_cpp.OPT_FAST[long_run]
    )
    (command,) = commands
    opt = "-O2" if long_run else "-O1"
    assert command[command.index("-MAKEFLAGS") + 1].split() == [
        f"OPT_FAST={opt}",
        f"OPT_GLOBAL={opt}",
    ]
    assert "-CFLAGS" not in command
    assert f"OPT_SLOW={OPT_SLOW}" in os.environ["MAKEFLAGS"].split()


def test_a_builds_opt_fast_lasts_for_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAKEFLAGS", "OPT_SLOW=-O0")
    with opt_fast_flag("-O1"):
        assert os.environ["MAKEFLAGS"].split() == ["OPT_SLOW=-O0", "OPT_FAST=-O1"]
    assert os.environ["MAKEFLAGS"] == "OPT_SLOW=-O0"
    monkeypatch.setenv("MAKEFLAGS", "OPT_FAST=-O3")  # the user's own wins
    with opt_fast_flag("-O1"):
        assert os.environ["MAKEFLAGS"] == "OPT_FAST=-O3"
    monkeypatch.delenv("MAKEFLAGS")
    with opt_fast_flag(None):
        assert "MAKEFLAGS" not in os.environ
    with opt_fast_flag("-O0"):
        assert os.environ["MAKEFLAGS"] == "OPT_FAST=-O0"
    assert "MAKEFLAGS" not in os.environ


def test_run_cocotb_builds_at_its_level(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """cocotb's runner runs make itself: the level must be in MAKEFLAGS as it builds."""
    seen: list[str] = []

    class Runner:
        log = logging.getLogger("fake cocotb runner")

        def build(self, **_: object) -> None:
            seen.append(os.environ.get("MAKEFLAGS", ""))

        def test(self, **_: object) -> None:
            pass

    monkeypatch.setattr(cocotb_runner, "get_runner", lambda simulator: Runner())
    monkeypatch.setenv("MAKEFLAGS", "")
    with pytest.raises(SimulationError, match="no results"):
        run_cocotb(
            verilog="module m; endmodule\n", toplevel="m", test_module="none",
            simulator="verilator", build_dir=tmp_path, run_dir=tmp_path / "run", opt_fast="-O1",
        )  # fmt: skip
    assert "OPT_FAST=-O1" in seen[0].split()
    assert "OPT_FAST" not in os.environ["MAKEFLAGS"]
