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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`heavy` tests first (in their order): pytest-xdist deals the first quarter of the
    tests out in turn, so two heavy ones start on different workers at once, and no
    worker is left with one at the end while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


@pytest.fixture(scope="session")
def build_root() -> Path:
    root = REPO / "build" / "tests"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def tiny_quantized():
    """(kp_detector, the calibrated int8 decoder) of the committed tiny checkpoint, built
    once per test process (calibration takes seconds)."""
    import torch

    from defs.params import preset
    from grace.codec_run import load_models
    from model.int_backend import quantize_decoder

    params = preset("tiny")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # calibration is slow when two cores are shared
    try:
        kp_detector, generator = load_models(params, None)
        return kp_detector, quantize_decoder(kp_detector, generator, params)
    finally:
        torch.set_num_threads(threads)
