"""The synthetic talking-head clips: deterministic, smooth, static background, non-affine motion.

Why: the codec is trained and evaluated on these clips; if they were not deterministic, or if a
single global warp of the key frame could predict every frame, results would be meaningless.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, optimize

from model.synthetic import (
    NEUTRAL_POSE,
    POSE_COLUMNS,
    ClipSpec,
    FaceGeometry,
    face_geometry,
    face_image,
    num_faces,
    render_poses,
    synthesize_clip,
    synthesize_clip_with_pose,
)

LUMA = np.array([0.299, 0.587, 0.114])


def grey(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float64) @ LUMA


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    u = (np.arange(size) + 0.5) / size
    return np.meshgrid(u, u, indexing="xy")


# --- shape, determinism, variety ------------------------------------------------------------


@pytest.mark.parametrize(("size", "face"), [(32, 0), (64, 1), (100, 57), (256, 0), (64, 100)])
def test_shape_dtype_and_determinism(size: int, face: int) -> None:
    spec = ClipSpec(seed=7, num_frames=6, size=size, face=face)
    a = synthesize_clip(spec)
    assert a.shape == (6, size, size, 3)
    assert a.dtype == np.uint8
    np.testing.assert_array_equal(a, synthesize_clip(spec))
    assert a.std() > 10  # an image, not a flat colour


def test_defaults_and_pose_table() -> None:
    frames, pose = synthesize_clip_with_pose(ClipSpec(seed=0))
    assert frames.shape == (32, 64, 64, 3)
    assert pose.shape == (32, len(POSE_COLUMNS)) and pose.dtype == np.float64
    assert POSE_COLUMNS == ("tx", "ty", "rot", "scale", "yaw", "pitch", "blink", "mouth")
    # Every kind of motion is present and bounded.
    assert (pose.std(axis=0) > 0).all()
    assert np.abs(pose[:, :2]).max() <= 0.06 + 1e-12
    assert ((pose[:, 6:] >= 0) & (pose[:, 6:] <= 1)).all()
    # The pose table is the whole story: re-rendering it gives the same frames.
    np.testing.assert_array_equal(frames, render_poses(0, 64, pose, seed=0))


def test_seeds_and_faces_differ() -> None:
    a = synthesize_clip(ClipSpec(seed=1, num_frames=4))
    b = synthesize_clip(ClipSpec(seed=2, num_frames=4))
    c = synthesize_clip(ClipSpec(seed=1, num_frames=4, face=5))
    assert np.abs(a.astype(int) - b).mean() > 2
    assert np.abs(a.astype(int) - c).mean() > 10
    assert num_faces() == 101
    stills = [face_image(f, 48) for f in (0, 1, 2, 100)]
    for i in range(len(stills)):
        assert stills[i].shape == (48, 48, 3) and stills[i].dtype == np.uint8
        for j in range(i):
            assert np.abs(stills[i].astype(int) - stills[j]).mean() > 5


def test_motion_depends_on_seed_only_and_prefixes() -> None:
    """One seed drives the same performance for every identity, size and clip length."""
    short, p_short = synthesize_clip_with_pose(ClipSpec(seed=3, num_frames=10, face=4))
    long, p_long = synthesize_clip_with_pose(ClipSpec(seed=3, num_frames=20, face=4))
    np.testing.assert_array_equal(short, long[:10])
    np.testing.assert_array_equal(p_short, p_long[:10])
    _, p_other = synthesize_clip_with_pose(ClipSpec(seed=3, num_frames=10, face=0, size=40))
    np.testing.assert_array_equal(p_short, p_other)


# --- motion ----------------------------------------------------------------------------------


@pytest.mark.parametrize("face", [0, 9])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_motion_is_smooth(seed: int, face: int) -> None:
    clip = synthesize_clip(ClipSpec(seed=seed, face=face)).astype(np.float64)
    consecutive = np.abs(np.diff(clip, axis=0)).mean()
    far = np.mean([np.abs(clip[t] - clip[0]).mean() for t in range(16, 32)])
    assert far > 3.0 * consecutive, (consecutive, far)


@pytest.mark.parametrize("face", [0, 33])
def test_background_static_face_moves(face: int) -> None:
    clip = synthesize_clip(ClipSpec(seed=4, face=face)).astype(np.int16)
    k = 8  # corner squares of 8x8 pixels at 64x64
    for rows in (slice(0, k), slice(-k, None)):
        for cols in (slice(0, k), slice(-k, None)):
            corner = clip[:, rows, cols]
            assert np.abs(corner - corner[0]).max() <= 1
    centre = clip[:, 24:40, 24:40]
    assert np.abs(centre - centre[0]).mean(axis=(1, 2, 3)).max() > 10


def _warp(img: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Sample img at a @ (x, y, 1) for every pixel (coordinates are frame fractions)."""
    size = img.shape[0]
    x, y = grid(size)
    sx = a[0, 0] * x + a[0, 1] * y + a[0, 2]
    sy = a[1, 0] * x + a[1, 1] * y + a[1, 2]
    return ndimage.map_coordinates(img, [sy * size - 0.5, sx * size - 0.5], order=1, mode="nearest")


def _head_inverse(pose: np.ndarray, geo: FaceGeometry) -> np.ndarray:
    """The similarity taking frame positions at `pose` back to the neutral (canonical) frame."""
    rot, scale = pose[2], pose[3]
    r = np.array([[np.cos(rot), np.sin(rot)], [-np.sin(rot), np.cos(rot)]]) / scale
    c = np.array(geo.center)
    return np.hstack([r, (c - r @ (c + pose[:2]))[:, None]])


def _in_head(a: np.ndarray, geo: FaceGeometry, size: int, k: float) -> np.ndarray:
    x, y = grid(size)
    qx = a[0, 0] * x + a[0, 1] * y + a[0, 2]
    qy = a[1, 0] * x + a[1, 1] * y + a[1, 2]
    return ((qx - geo.center[0]) / geo.axes[0]) ** 2 + (
        (qy - geo.center[1]) / geo.axes[1]
    ) ** 2 < k * k


IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@pytest.mark.parametrize("face", [0, 10])
def test_global_affine_is_not_enough(face: int) -> None:
    """Head and background move differently, so the best global affine warp of frame 0 is
    far worse than "head by its similarity, background by the identity"."""
    size, geo = 64, face_geometry(face)
    moved = NEUTRAL_POSE.copy()
    moved[:4] = [0.05, -0.03, 0.12, 1.06]
    f0, f1 = (grey(f) for f in render_poses(face, size, np.stack([NEUTRAL_POSE, moved])))
    head_map = _head_inverse(moved, geo)
    inner = np.zeros((size, size), dtype=bool)
    inner[3:-3, 3:-3] = True
    head = _in_head(head_map, geo, size, 0.85) & _in_head(IDENTITY, geo, size, 0.85) & inner
    background = ~_in_head(head_map, geo, size, 1.15) & ~_in_head(IDENTITY, geo, size, 1.15)
    background &= inner
    both = head | background

    def error(a: np.ndarray, where: np.ndarray) -> float:
        return float(np.abs(_warp(f0, a.reshape(2, 3)) - f1)[where].mean())

    assert error(IDENTITY, background) == 0.0  # the background is static
    assert error(head_map, head) < 4.0  # the head moved by exactly its similarity
    assert error(IDENTITY, head) > 15.0
    assert error(head_map, background) > 4.0
    layered = error(head_map, head) * head.sum() / both.sum()
    best = min(
        optimize.minimize(error, a0.ravel(), args=(both,), method="Powell").fun
        for a0 in (IDENTITY, head_map)
    )
    assert best > 3.0 * layered, (best, layered)


@pytest.mark.parametrize("face", [0, 10])
def test_yaw_is_not_affine(face: int) -> None:
    """Even within the head, a yaw cannot be undone by any affine warp."""
    size, geo = 64, face_geometry(face)
    yawed = NEUTRAL_POSE.copy()
    yawed[4] = 0.2
    f0, f1 = (grey(f) for f in render_poses(face, size, np.stack([NEUTRAL_POSE, yawed])))
    core = _in_head(IDENTITY, geo, size, 0.8)

    def error(a: np.ndarray) -> float:
        return float(np.abs(_warp(f0, a.reshape(2, 3)) - f1)[core].mean())

    best = optimize.minimize(error, IDENTITY.ravel(), method="Powell").fun
    assert best > 4.0, best  # an exact similarity leaves < 4 (test above)
    assert best < 0.8 * error(IDENTITY)  # sanity: the fit did something


# --- blinks and mouth ------------------------------------------------------------------------


def _track(point: tuple[float, float], pose: np.ndarray, geo: FaceGeometry) -> tuple[float, float]:
    """Where a canonical point is drawn under `pose` (similarity plus first-order yaw/pitch)."""
    (cx, cy), (ax, ay) = geo.center, geo.axes
    xn, yn = (point[0] - cx) / ax, (point[1] - cy) / ay
    bump = max(0.0, 1.0 - xn * xn - yn * yn)
    vx, vy = (xn + pose[4] * bump) * ax, (yn + pose[5] * bump) * ay
    rot, scale = pose[2], pose[3]
    return (
        cx + pose[0] + scale * (np.cos(rot) * vx - np.sin(rot) * vy),
        cy + pose[1] + scale * (np.sin(rot) * vx + np.cos(rot) * vy),
    )


def _mean_in_ellipse(
    img: np.ndarray, centre: tuple[float, float], axes: tuple[float, float]
) -> float:
    x, y = grid(img.shape[0])
    inside = ((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2 < 1.0
    return float(img[inside].mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_blinks_happen(seed: int) -> None:
    size, geo = 128, face_geometry(0)
    clip, pose = synthesize_clip_with_pose(ClipSpec(seed=seed, size=size))
    closed = pose[:, 6] > 0.9
    opened = pose[:, 6] == 0.0
    assert closed.any() and opened.any()  # at least one full blink in 32 frames
    axes = (0.8 * geo.eye_axes[0], 0.6 * geo.eye_axes[1])
    eyes = np.array(
        [
            np.mean([_mean_in_ellipse(grey(f), _track(e, p, geo), axes) for e in geo.eyes])
            for f, p in zip(clip, pose, strict=True)
        ]
    )
    # The skin-coloured lid covers the dark iris: the eyes get much brighter.
    assert eyes[closed].mean() > eyes[opened].mean() + 15.0


def test_mouth_opens_and_closes() -> None:
    size, geo = 128, face_geometry(0)
    clip, pose = synthesize_clip_with_pose(ClipSpec(seed=0, size=size))
    mx, my = geo.mouth
    w = geo.mouth_half_width
    dark = [
        _mean_in_ellipse(grey(f), _track((mx, my + 0.15 * w), p, geo), (0.5 * w, 0.2 * w))
        for f, p in zip(clip, pose, strict=True)
    ]
    assert pose[:, 7].max() > 0.5 and pose[:, 7].min() < 0.1
    assert np.corrcoef(dark, pose[:, 7])[0, 1] < -0.7  # open mouth = dark gap


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed"),
    [
        ({"size": 8}, "size", "32..512"),
        ({"size": 4096}, "size", "32..512"),
        ({"num_frames": 0}, "num_frames", ">= 1"),
        ({"face": -1}, "face", "0..100"),
        ({"face": 101}, "face", "0..100"),
        ({"seed": -1}, "seed", ">= 0"),
        ({"size": 64.0}, "size", "32..512"),
    ],
)
def test_bad_spec(kwargs: dict[str, object], field: str, allowed: str) -> None:
    args: dict[str, object] = {"seed": 0, **kwargs}
    with pytest.raises(ValueError, match=rf"^{field} must be .*{allowed}") as info:
        synthesize_clip(ClipSpec(**args))  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_bad_still_and_pose_input() -> None:
    with pytest.raises(ValueError, match=r"^face must be in 0\.\.100"):
        face_image(num_faces(), 64)
    with pytest.raises(ValueError, match=r"^size must be in 32\.\.512"):
        face_image(0, 16)
    with pytest.raises(ValueError, match=r"poses must have shape"):
        render_poses(0, 64, np.zeros((3, 4)))
    bad = NEUTRAL_POSE.copy()
    bad[3] = 0.0
    with pytest.raises(ValueError, match=r"scale"):
        render_poses(0, 64, bad[None])
