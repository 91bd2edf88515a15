"""The make flags every Verilator build runs under (sim/runner.py `prepare_environment`)."""

from __future__ import annotations

import os

import pytest

from sim.runner import OPT_SLOW, prepare_environment


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
