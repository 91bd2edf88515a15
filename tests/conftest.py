"""Shared fixtures: one build root for every test's generated files, under build/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def build_root() -> Path:
    root = REPO / "build" / "tests"
    root.mkdir(parents=True, exist_ok=True)
    return root
