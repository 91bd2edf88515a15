"""GMSD (model/perceptual.py) against hand-computed cases and a plain-loop implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.perceptual import clip_gmsd, gms_map, gmsd


def grey(values: np.ndarray) -> np.ndarray:
    """A (H, W) array as an RGB image with equal channels (luma = the value)."""
    return np.repeat(np.asarray(values, dtype=np.float64)[..., None], 3, axis=-1)


def loop_gmsd(ref: np.ndarray, dist: np.ndarray, c: float = 170.0) -> float:
    """The paper's steps one pixel at a time, no vectorisation: the independent check."""

    def pooled_luma(img: np.ndarray) -> list[list[float]]:
        h, w = img.shape[0] // 2, img.shape[1] // 2
        out = [[0.0] * w for _ in range(h)]
        for i in range(h):
            for j in range(w):
                total = 0.0
                for di in (0, 1):
                    for dj in (0, 1):
                        r, g, b = img[2 * i + di, 2 * j + dj]
                        total += 0.299 * r + 0.587 * g + 0.114 * b
                out[i][j] = total / 4
        return out

    def magnitudes(y: list[list[float]]) -> list[float]:
        px = [[1, 0, -1], [1, 0, -1], [1, 0, -1]]
        out = []
        for i in range(1, len(y) - 1):
            for j in range(1, len(y[0]) - 1):
                gx = gy = 0.0
                for u in range(3):
                    for v in range(3):
                        pixel = y[i - 1 + u][j - 1 + v]
                        gx += px[u][v] * pixel / 3
                        gy += px[v][u] * pixel / 3  # the transposed kernel
                out.append(math.sqrt(gx * gx + gy * gy))
        return out

    m_r, m_d = magnitudes(pooled_luma(ref)), magnitudes(pooled_luma(dist))
    gms = [(2 * a * b + c) / (a * a + b * b + c) for a, b in zip(m_r, m_d, strict=True)]
    mean = sum(gms) / len(gms)
    return math.sqrt(sum((g - mean) ** 2 for g in gms) / len(gms))


def test_identical_images_score_zero() -> None:
    image = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert gmsd(image, image) == 0.0


def test_constant_shift_scores_zero() -> None:
    image = np.random.default_rng(2).integers(0, 200, (32, 32, 3), dtype=np.uint8)
    assert gmsd(image, image + np.uint8(40)) == pytest.approx(0.0, abs=1e-12)


def test_hand_computed_step_edge() -> None:
    """An 8x8 step (columns 6-7 at 90) against a flat image.

    Pooled 4x4 luma has columns (0, 0, 0, 90); the valid 2x2 gradient positions see
    |g| = 0 in column 1 and 3·90/3 = 90 in column 2. Against a flat image (|g| = 0)
    GMS = 1 and c / (90² + c), so GMSD = (1 − c / (8100 + c)) / 2.
    """
    ref = np.zeros((8, 8))
    ref[:, 6:] = 90
    expected = (1 - 170 / (8100 + 170)) / 2
    assert gmsd(grey(ref), grey(np.full((8, 8), 37.0))) == pytest.approx(expected, rel=1e-12)
    assert gms_map(grey(ref), grey(np.zeros((8, 8)))).shape == (2, 2)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_matches_a_plain_loop_implementation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 256, (14, 18, 3)).astype(np.uint8)  # rectangular, 7x9 after pooling
    noise = rng.normal(0, 25, ref.shape)
    dist = np.clip(ref + noise, 0, 255).astype(np.uint8)
    assert gmsd(ref, dist) == pytest.approx(loop_gmsd(ref, dist), rel=1e-10)


def test_more_distortion_scores_worse_and_batches_match() -> None:
    rng = np.random.default_rng(6)
    ref = rng.integers(0, 256, (5, 32, 32, 3)).astype(np.float64)
    light = np.clip(ref + rng.normal(0, 5, ref.shape), 0, 255)
    heavy = np.clip(ref + rng.normal(0, 40, ref.shape), 0, 255)
    assert 0 < clip_gmsd(ref, light) < clip_gmsd(ref, heavy)
    batch = gmsd(ref, heavy)
    assert batch.shape == (5,)
    assert batch[2] == pytest.approx(gmsd(ref[2], heavy[2]))


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="shape mismatch"):
        gmsd(np.zeros((8, 8, 3)), np.zeros((8, 10, 3)))
    with pytest.raises(ValueError, match="RGB"):
        gmsd(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="too small"):
        gmsd(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)))
