"""Integer motion ops against the float dense-motion network's definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from model.blocks import kp2gaussian, make_coordinate_grid
from model.fixed_motion import (
    COORD_FRAC_BITS,
    HEAT_FRAC_BITS,
    compose_flow,
    gaussian_table,
    grid_axis,
    heatmaps,
    keypoints_to_coords,
    sparse_motions,
)

ONE = 1 << COORD_FRAC_BITS


@pytest.mark.parametrize("size", [2, 3, 16, 33, 64])
def test_grid_axis_is_the_rounded_float_grid(size: int) -> None:
    ref = make_coordinate_grid(size, size, torch.float64)[0, :, 0].numpy() * ONE
    np.testing.assert_array_equal(grid_axis(size), np.floor(ref + 0.5).astype(np.int64))
    assert grid_axis(size)[0] == -ONE and grid_axis(size)[-1] == ONE


def test_gaussian_table() -> None:
    table = gaussian_table(0.01)
    assert table[0] == 1 << HEAT_FRAC_BITS and table[-1] >= 1
    assert (np.diff(table) <= 0).all()


@given(st.integers(0, 2**32 - 1), st.sampled_from([8, 16, 33]))
def test_heatmaps_track_float(seed: int, size: int) -> None:
    rng = np.random.default_rng(seed)
    kp_d, kp_s = rng.integers(-300, 300, (2, 10, 2))
    got = heatmaps(keypoints_to_coords(kp_d), keypoints_to_coords(kp_s), size, gaussian_table(0.01))
    ref = (
        kp2gaussian(torch.tensor(kp_d / 256.0)[None], size, size, 0.01)
        - kp2gaussian(torch.tensor(kp_s / 256.0)[None], size, size, 0.01)
    )[0].numpy()
    assert got.shape == (11, size, size) and not got[0].any()
    # two rounded Gaussians (±0.5 each) plus the table's distance step (≤ 50·128·2^-15 ≈ 0.2)
    assert np.abs(got[1:] - np.clip(ref * 2**HEAT_FRAC_BITS, -128, 127)).max() <= 1.4


def test_sparse_motions_and_flow() -> None:
    rng = np.random.default_rng(1)
    kp_d, kp_s = keypoints_to_coords(rng.integers(-200, 200, (2, 3, 2)))
    motions = sparse_motions(kp_d, kp_s, 8)
    axis = grid_axis(8)
    assert motions.shape == (4, 8, 8, 2)
    np.testing.assert_array_equal(motions[0, 2, 5], [axis[5], axis[2]])  # (x, y)
    np.testing.assert_array_equal(
        motions[2] - motions[0], np.broadcast_to(kp_s[1] - kp_d[1], (8, 8, 2))
    )
    # A one-hot mask picks one motion exactly; a 50/50 mask averages (round half up).
    one_hot = np.zeros((4, 8, 8), np.int64)
    one_hot[3] = 256
    np.testing.assert_array_equal(compose_flow(one_hot, motions), motions[3])
    half = np.zeros((4, 8, 8), np.int64)
    half[0] = half[1] = 128
    np.testing.assert_array_equal(compose_flow(half, motions), (motions[0] + motions[1] + 1) >> 1)


@given(st.integers(0, 2**32 - 1))
def test_first_order_motions_track_float(seed: int) -> None:
    """J = J_s · J_d⁻¹ within half an LSB; affine motions within a few 2^-14 of float."""
    from model.fixed_motion import (
        JAC_FRAC_BITS,
        JAC_LIMIT_BITS,
        affine_motions,
        compose_jacobians,
    )

    rng = np.random.default_rng(seed)
    eye = np.eye(2, dtype=np.int64) * 64
    jd = rng.integers(-40, 40, (10, 2, 2)) + eye  # well conditioned, 6 fraction bits
    js = rng.integers(-40, 40, (10, 2, 2)) + eye
    singular = jd[:, 0, 0] * jd[:, 1, 1] - jd[:, 0, 1] * jd[:, 1, 0] == 0
    jd[singular] = eye  # the float reference cannot invert these (tested separately)
    jac = compose_jacobians(js, jd)
    ref = (torch.tensor(js / 64.0) @ torch.inverse(torch.tensor(jd / 64.0))).numpy()
    limit = 2.0**JAC_LIMIT_BITS  # entries saturate there (near-singular J_d)
    assert np.abs(jac / 2**JAC_FRAC_BITS - np.clip(ref, -limit, limit)).max() <= (
        2.0**-JAC_FRAC_BITS / 2 + 1e-12
    )
    kp_d, kp_s = keypoints_to_coords(rng.integers(-200, 200, (2, 10, 2)))
    got = affine_motions(kp_d, kp_s, jac, 16)
    grid = make_coordinate_grid(16, 16, torch.float64)
    rel = grid[None] - torch.tensor(kp_d / ONE)[:, None, None, :]
    want = torch.einsum("kij,khwj->khwi", torch.tensor(jac / 2**JAC_FRAC_BITS), rel)
    want = want + torch.tensor(kp_s / ONE)[:, None, None, :]
    # the grid's rounding (≤ 1/2 LSB per coordinate) through J, plus the final rounding
    bound = 0.5 * np.abs(jac / 2**JAC_FRAC_BITS).sum(axis=2).max() + 0.5 + 1e-6
    assert np.abs(got[1:] - want.numpy() * ONE).max() <= bound


def test_singular_driving_jacobian_gives_identity() -> None:
    from model.fixed_motion import JAC_FRAC_BITS, compose_jacobians

    singular = np.array([[[64, 64], [64, 64]]])
    jac = compose_jacobians(np.eye(2, dtype=np.int64)[None] * 64, singular)
    np.testing.assert_array_equal(jac, np.eye(2, dtype=np.int64)[None] << JAC_FRAC_BITS)
