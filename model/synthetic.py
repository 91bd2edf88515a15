"""Deterministic synthetic talking-head clips, built offline from images in the scikit-image wheel.

Why: the codec needs training and test video with something real to learn, and nothing may
be downloaded. Each clip is a static background with a head layer composited on top; the
head moves smoothly (translation, in-plane rotation, zoom, and non-affine yaw/pitch remaps),
blinks and talks. Because the background stays put while the head moves and deforms, no
single global affine warp of the first frame predicts later frames, which is exactly the
situation a FOMM-style motion-transfer decoder is built for.

Identities: face 0 is `skimage.data.astronaut()` (colour photo); faces 1..100 are the 100
face crops of `skimage.data.lfw_subset()` (grey 25x25, upsampled, tinted to a skin tone and
given hair, neck, shoulders and a synthetic room). The remaining 100 lfw_subset images are
non-faces and are not used.

Randomness: the motion, blinks and mouth depend on the seed only (not on the face, size or
clip length), so one seed drives the same performance for every identity and resolution, and
a longer clip starts with the shorter one. Colour jitter and background texture depend on
(seed, face). Everything is NumPy/SciPy/scikit-image in float64 with no threads of our own,
so the same spec gives bit-identical uint8 frames on a given platform.

Frame rate convention: 25 frames per second (mouth syllables at 3-5 Hz are 0.12-0.2
cycles per frame).
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage import data as skdata
from skimage.transform import resize

FloatArray = npt.NDArray[np.float64]

MIN_SIZE = 32
MAX_SIZE = 512
NUM_LFW_FACES = 100  # lfw_subset(): images 0..99 are faces, 100..199 are not

#: Columns of the pose array returned by `synthesize_clip_with_pose`.
POSE_COLUMNS: tuple[str, ...] = (
    "tx",  # head-centre shift right, as a fraction of the frame size S
    "ty",  # head-centre shift down, as a fraction of S
    "rot",  # in-plane rotation in radians; positive turns the head clockwise on screen
    "scale",  # zoom factor of the head (1 = canonical size)
    "yaw",  # horizontal remap coefficient; positive moves the face interior to +x (turn right)
    "pitch",  # vertical remap coefficient; positive moves the face interior down (nod down)
    "blink",  # eyelid closure, 0 = open, 1 = closed
    "mouth",  # mouth opening, 0 = closed, 1 = fully open
)

# Motion bounds (amplitude of each pose parameter's excursion from neutral).
_TX_MAX = 0.06
_TY_MAX = 0.04
_ROT_MAX = 0.15  # radians, about 8.6 degrees
_LOG_SCALE_MAX = 0.07
_YAW_MAX = 0.2
_PITCH_MAX = 0.08


@dataclass(frozen=True)
class FaceGeometry:
    """Where the head and its features sit in the still image, in fractions of the frame size.

    Why: tests and analysis need ground-truth locations (e.g. to track the eyes under motion);
    the renderer uses the same numbers so they cannot drift apart.
    """

    center: tuple[float, float]  # head ellipse centre (x, y); rotation and zoom pivot here
    axes: tuple[float, float]  # head ellipse semi-axes (x, y)
    eyes: tuple[tuple[float, float], tuple[float, float]]  # eye centres (x, y), image-left first
    eye_axes: tuple[float, float]  # eyelid ellipse semi-axes (x, y)
    mouth: tuple[float, float]  # centre of the lip line that opens (x, y)
    mouth_half_width: float
    chin_y: float  # below this the jaw-drop displacement fades out


_ASTRONAUT_GEOMETRY = FaceGeometry(
    # Crop of the 512x512 photo: x 82..370, y -32..256 (top padded), 288 px square.
    # Measured on the photo: head incl. hair centre (228, 98), semi-axes (78, 84); eyes at
    # (202, 101) and (247, 103); lower teeth edge centre (224, 148); chin at y = 178.
    center=(0.507, 0.451),
    axes=(0.271, 0.292),
    eyes=((0.417, 0.462), (0.573, 0.469)),
    eye_axes=(0.042, 0.024),
    mouth=(0.493, 0.625),
    mouth_half_width=0.076,
    chin_y=0.729,
)
_ASTRO_CROP = (82, -32, 288)  # x0, y0, side in source pixels

# lfw_subset crops are aligned. Measured on the mean of the 100 faces (25x25 pixel indices):
# eyes (6.1, 8.0) and (15.0, 8.0), lip line (10.6, 17.8), face centre (10.6, 12.3), chin 23.5.
_LFW_CROP_SIDE = 0.66  # the 25-pixel crop spans this fraction of the frame
_LFW_FACE_POS = (0.5, 0.47)  # where the face centre lands in the frame
_LFW_FACE_CENTRE_PX = (10.6, 12.3)
_LFW_PX = _LFW_CROP_SIDE / 25.0


def _lfw_norm(x_px: float, y_px: float) -> tuple[float, float]:
    """lfw crop pixel index coordinates -> frame fraction."""
    return (
        _LFW_FACE_POS[0] + (x_px - _LFW_FACE_CENTRE_PX[0]) * _LFW_PX,
        _LFW_FACE_POS[1] + (y_px - _LFW_FACE_CENTRE_PX[1]) * _LFW_PX,
    )


_LFW_GEOMETRY = FaceGeometry(
    # The head ellipse is the hair outline: face ellipse (8.4, 12.0) px plus a hair rim.
    center=_lfw_norm(10.6, 11.3),
    axes=(10.0 * _LFW_PX, 13.0 * _LFW_PX),
    eyes=(_lfw_norm(6.1, 8.0), _lfw_norm(15.0, 8.0)),
    eye_axes=(2.4 * _LFW_PX, 1.4 * _LFW_PX),
    mouth=_lfw_norm(10.6, 17.8),
    mouth_half_width=4.3 * _LFW_PX,
    chin_y=_lfw_norm(0.0, 23.5)[1],
)

_SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.92, 0.74, 0.60],
        [0.86, 0.66, 0.52],
        [0.76, 0.56, 0.42],
        [0.62, 0.44, 0.31],
        [0.47, 0.32, 0.22],
    ]
)
_HAIR_COLOURS = np.array(
    [
        [0.10, 0.08, 0.07],
        [0.25, 0.17, 0.11],
        [0.45, 0.32, 0.20],
        [0.70, 0.58, 0.38],
        [0.55, 0.55, 0.55],
    ]
)
_WALL_COLOURS = np.array(
    [
        [0.78, 0.76, 0.72],
        [0.62, 0.70, 0.78],
        [0.74, 0.68, 0.58],
        [0.55, 0.62, 0.55],
        [0.85, 0.82, 0.80],
        [0.45, 0.47, 0.55],
    ]
)
_MOUTH_INSIDE = np.array([0.22, 0.06, 0.07])

_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = np.linalg.inv(_RGB2YIQ)


@dataclass(frozen=True)
class ClipSpec:
    """One synthetic clip: which performance (seed), how long, how large, which identity."""

    seed: int
    num_frames: int = 32
    size: int = 64
    face: int = 0

    def __post_init__(self) -> None:
        _check_int("seed", self.seed, 0, None)
        _check_int("num_frames", self.num_frames, 1, None)
        _check_int("size", self.size, MIN_SIZE, MAX_SIZE)
        _check_int("face", self.face, 0, num_faces() - 1)


def _check_int(name: str, value: object, lo: int, hi: int | None) -> None:
    """Raise a one-line ValueError naming the field and its allowed range."""
    allowed = f"{lo}..{hi}" if hi is not None else f">= {lo}"
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer in {allowed}, got {value!r}")
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be an integer in {allowed}, got {value!r}") from None
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"{name} must be in {allowed}, got {v}")


def num_faces() -> int:
    """Number of identities: the astronaut plus the lfw_subset faces."""
    return 1 + NUM_LFW_FACES


def face_geometry(face: int) -> FaceGeometry:
    """Head ellipse and feature positions of identity `face` (fractions of the frame size)."""
    _check_int("face", face, 0, num_faces() - 1)
    return _ASTRONAUT_GEOMETRY if face == 0 else _LFW_GEOMETRY


# ---------------------------------------------------------------------------------------------
# Small image helpers


def _readonly(a: FloatArray) -> FloatArray:
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[FloatArray, FloatArray]:
    """Pixel-centre coordinates as fractions of the frame: (x, y), each (S, S), read-only."""
    u = (np.arange(size, dtype=np.float64) + 0.5) / size
    x, y = np.meshgrid(u, u, indexing="xy")
    return _readonly(x), _readonly(y)


def _smoothstep(x: FloatArray) -> FloatArray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _soft_ellipse(
    x: FloatArray,
    y: FloatArray,
    centre: tuple[float, float],
    axes: tuple[float, float],
    feather: float,
) -> FloatArray:
    """Feathered ellipse mask; `feather` is the edge width in the same units as x, y."""
    r = np.hypot((x - centre[0]) / axes[0], (y - centre[1]) / axes[1])
    dist = (1.0 - r) * min(axes)  # approximate signed distance to the outline, inside > 0
    return _smoothstep(dist / feather + 0.5)


def _smooth_field(rng: np.random.Generator, cells: int, size: int) -> FloatArray:
    """Smooth random field in [-1, 1] at S x S: cubic spline through a cells x cells grid."""
    coarse = rng.uniform(-1.0, 1.0, size=(cells, cells))
    x, y = _grid(size)
    coords = np.stack([y * cells - 0.5, x * cells - 0.5])
    field = ndimage.map_coordinates(coarse, coords, order=3, mode="nearest")
    return field / max(1e-9, float(np.abs(field).max()))


def _jitter_matrix(brightness: float, hue: float, saturation: float) -> FloatArray:
    """3x3 RGB->RGB matrix scaling luma and rotating/scaling chroma in YIQ space."""
    c, s = np.cos(hue), np.sin(hue)
    m = np.array(
        [
            [brightness, 0.0, 0.0],
            [0.0, saturation * c, -saturation * s],
            [0.0, saturation * s, saturation * c],
        ]
    )
    return _YIQ2RGB @ m @ _RGB2YIQ


# ---------------------------------------------------------------------------------------------
# Identities: head layer, head mask, default background (cached per face and size)


@dataclass(frozen=True)
class _Identity:
    head: FloatArray  # (S, S, 3) colours of the head layer in canonical pose
    mask: FloatArray  # (S, S) head layer alpha
    background: FloatArray  # (S, S, 3) default (seed-independent) background
    lid_colours: FloatArray  # (2, 3) eyelid skin colour per eye
    geometry: FaceGeometry


@functools.lru_cache(maxsize=8)
def _astronaut_crop(size: int) -> FloatArray:
    """Square crop around the astronaut's head (face in the central ~50%), resized to S."""
    img = skdata.astronaut().astype(np.float64) / 255.0
    x0, y0, side = _ASTRO_CROP
    pad = max(0, -y0)
    padded = np.pad(img, ((pad, 0), (0, 0), (0, 0)), mode="edge")
    crop = padded[y0 + pad : y0 + pad + side, x0 : x0 + side]
    out = resize(crop, (size, size), order=3, anti_aliasing=size < side, mode="edge")
    return np.clip(out, 0.0, 1.0)


def _fill_hole(img: FloatArray, hole: FloatArray, sigma: float) -> FloatArray:
    """Replace the soft `hole` region by a smooth extrapolation of its surroundings."""
    w = (1.0 - hole) ** 2
    num = np.stack([ndimage.gaussian_filter(img[..., c] * w, sigma) for c in range(3)], -1)
    den = ndimage.gaussian_filter(w, sigma)[..., None]
    filled = num / np.maximum(den, 1e-6)
    return img * (1.0 - hole[..., None]) + filled * hole[..., None]


def _lid_colours(head: FloatArray, geo: FaceGeometry, size: int) -> FloatArray:
    """Skin colour under each eye (median of a cheek patch), used to paint the eyelid."""
    x, y = _grid(size)
    out = []
    for ex, ey in geo.eyes:
        zx = (x - ex) / geo.eye_axes[0]
        zy = (y - ey) / geo.eye_axes[1]
        r = np.hypot(zx, zy)
        sel = (r > 1.4) & (r < 2.4) & (zy > 0.5)
        if not sel.any():  # tiny sizes: fall back to the nearest pixels below the eye
            sel = np.zeros_like(r, dtype=bool)
            iy = min(size - 1, int((ey + 1.8 * geo.eye_axes[1]) * size))
            ix = min(size - 1, int(ex * size))
            sel[iy, ix] = True
        out.append(np.median(head[sel], axis=0))
    return np.array(out)


def _astronaut_identity(size: int) -> _Identity:
    geo = _ASTRONAUT_GEOMETRY
    crop = _astronaut_crop(size)
    x, y = _grid(size)
    feather = 0.025
    mask = _soft_ellipse(x, y, geo.center, geo.axes, feather)
    # Background: the photo with a slightly larger head region filled in, so no hair or face
    # is left behind when the head moves away; then a light blur (depth of field).
    hole = _soft_ellipse(x, y, geo.center, (geo.axes[0] * 1.12, geo.axes[1] * 1.1), feather)
    bg = _fill_hole(crop, hole, sigma=0.06 * size)
    bg = np.stack([ndimage.gaussian_filter(bg[..., c], size / 300.0) for c in range(3)], -1)
    return _Identity(crop, mask, bg, _lid_colours(crop, geo, size), geo)


@functools.lru_cache(maxsize=1)
def _lfw_faces() -> FloatArray:
    return skdata.lfw_subset()[:NUM_LFW_FACES].astype(np.float64)


def _lfw_identity(face: int, size: int) -> _Identity:
    geo = _LFW_GEOMETRY
    grey = _lfw_faces()[face - 1]
    rng = np.random.default_rng([face, 0x5EED])
    tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.95, 1.05, 3)
    hair_col = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.9, 1.1, 3)
    wall = _WALL_COLOURS[rng.integers(len(_WALL_COLOURS))] * rng.uniform(0.9, 1.1, 3)
    cloth = rng.uniform(0.1, 0.7, 3)

    x, y = _grid(size)
    # Crop pixel coordinates of every frame pixel; smooth (cubic) upsampling of the crop.
    cx = _LFW_FACE_CENTRE_PX[0] + (x - _LFW_FACE_POS[0]) / _LFW_PX
    cy = _LFW_FACE_CENTRE_PX[1] + (y - _LFW_FACE_POS[1]) / _LFW_PX
    g = ndimage.map_coordinates(grey, np.stack([cy, cx]), order=3, mode="nearest")
    face_ell = ((10.6, 12.3), (8.4, 12.0))
    face_mask = _soft_ellipse(cx, cy, face_ell[0], face_ell[1], 1.2)
    inside = face_mask > 0.5
    lo, hi = np.percentile(g[inside], [2.0, 98.0])
    gn = np.clip((g - lo) / max(hi - lo, 1e-3), 0.0, 1.0)
    skin = np.clip(tone * (0.45 + 0.65 * gn)[..., None], 0.0, 1.0)
    hair = np.clip(hair_col * (0.65 + 0.6 * gn)[..., None], 0.0, 1.0)
    # Hair: the head ellipse above ear level, behind the face.
    hair_mask = _soft_ellipse(x, y, geo.center, geo.axes, 0.02) * _smoothstep(
        (_lfw_norm(0, 15.5)[1] - y) / (3.0 * _LFW_PX)
    )
    mask = np.maximum(face_mask, hair_mask)
    head = skin * face_mask[..., None] + hair * (1.0 - face_mask[..., None])

    # Default room: wall with a vertical light gradient and a smooth texture, neck, shoulders.
    tex = _smooth_field(rng, 5, size)
    bg = wall * (1.08 - 0.18 * y + 0.06 * tex)[..., None]
    neck_x = _smoothstep((0.085 - np.abs(x - 0.5)) / 0.02 + 0.5)
    neck = neck_x * _smoothstep((y - 0.6) / 0.02 + 0.5)
    neck_col = tone * 0.62
    bg = bg * (1.0 - neck[..., None]) + neck_col * neck[..., None]
    torso = _soft_ellipse(x, y, (0.5, 1.22), (0.62, 0.4), 0.015)
    cloth_img = cloth * (0.9 + 0.1 * tex)[..., None]
    bg = bg * (1.0 - torso[..., None]) + cloth_img * torso[..., None]
    bg = np.clip(bg, 0.0, 1.0)
    return _Identity(head, mask, bg, _lid_colours(skin, geo, size), geo)


@functools.lru_cache(maxsize=32)
def _identity(face: int, size: int) -> _Identity:
    ident = _astronaut_identity(size) if face == 0 else _lfw_identity(face, size)
    for a in (ident.head, ident.mask, ident.background, ident.lid_colours):
        _readonly(a)
    return ident


# ---------------------------------------------------------------------------------------------
# Performance: pose, blinks and mouth over time (depends on the seed only)


def _sinusoids(rng: np.random.Generator, t: FloatArray, bound: float) -> FloatArray:
    """Sum of three slow sinusoids (25-125 frame periods) with |value| <= bound."""
    w = rng.uniform(0.2, 1.0, 3)
    amp = bound * w / w.sum()
    freq = rng.uniform(0.008, 0.04, 3)  # cycles per frame (0.2-1 Hz at 25 fps)
    phase = rng.uniform(0.0, 2.0 * np.pi, 3)
    return (amp[:, None] * np.sin(2.0 * np.pi * freq[:, None] * t + phase[:, None])).sum(0)


def _blinks(rng: np.random.Generator, num_frames: int) -> FloatArray:
    """Eyelid closure per frame: a few blinks, each closing over 2-3 frames and reopening."""
    closure = np.zeros(num_frames)
    t0 = int(rng.integers(1, 12))
    while t0 < num_frames:
        close = int(rng.integers(2, 4))
        hold = int(rng.integers(0, 2))
        reopen = int(rng.integers(2, 5))
        for k in range(close + hold + reopen + 1):
            t = t0 + k
            if t >= num_frames:
                break
            if k <= close:
                v = k / close
            elif k <= close + hold:
                v = 1.0
            else:
                v = 1.0 - (k - close - hold) / reopen
            closure[t] = max(closure[t], float(_smoothstep(np.asarray(v))))
        t0 += close + hold + reopen + int(rng.integers(6, 18))
    return closure


def _mouth(rng: np.random.Generator, t: FloatArray) -> FloatArray:
    """Mouth opening in [0, 1]: syllables at 3-5 Hz under a slow talk/pause envelope."""
    f1, f2, f3 = rng.uniform(0.12, 0.2), rng.uniform(0.05, 0.1), rng.uniform(0.015, 0.04)
    p1, p2, p3 = rng.uniform(0.0, 2.0 * np.pi, 3)
    syll = 0.65 * (0.5 - 0.5 * np.cos(2 * np.pi * f1 * t + p1))
    syll += 0.35 * (0.5 - 0.5 * np.cos(2 * np.pi * f2 * t + p2))
    env = np.clip(0.55 + 0.6 * np.sin(2 * np.pi * f3 * t + p3), 0.0, 1.0)
    return env * syll


def _performance(seed: int, num_frames: int) -> FloatArray:
    """(T, 8) pose table, columns as POSE_COLUMNS."""
    motion, blink, mouth = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    t = np.arange(num_frames, dtype=np.float64)
    tx = _sinusoids(motion, t, _TX_MAX)
    ty = _sinusoids(motion, t, _TY_MAX)
    rot = _sinusoids(motion, t, _ROT_MAX)
    scale = np.exp(_sinusoids(motion, t, _LOG_SCALE_MAX))
    yaw = _sinusoids(motion, t, _YAW_MAX)
    pitch = _sinusoids(motion, t, _PITCH_MAX)
    return np.stack(
        [tx, ty, rot, scale, yaw, pitch, _blinks(blink, num_frames), _mouth(mouth, t)], axis=1
    )


# ---------------------------------------------------------------------------------------------
# Rendering


def _render_frame(
    ident: _Identity,
    head_coeffs: list[FloatArray],
    mask: FloatArray,
    background: FloatArray,
    lid_colours: FloatArray,
    mouth_colour: FloatArray,
    pose: FloatArray,
    size: int,
) -> FloatArray:
    """One frame, float RGB in [0, 1]: backward-map every pixel into the canonical head."""
    geo = ident.geometry
    tx, ty, rot, scale, yaw, pitch, blink, mouth = (float(v) for v in pose)
    x, y = _grid(size)
    # Inverse similarity transform about the head centre (all in frame fractions).
    dx = x - geo.center[0] - tx
    dy = y - geo.center[1] - ty
    c, s = np.cos(rot), np.sin(rot)
    vx = (c * dx + s * dy) / scale
    vy = (-s * dx + c * dy) / scale
    # Yaw / pitch: smooth non-affine remaps that vanish on the head outline.
    xn = vx / geo.axes[0]
    yn = vy / geo.axes[1]
    bump = np.clip(1.0 - xn * xn - yn * yn, 0.0, None)
    qx = geo.center[0] + (xn - yaw * bump) * geo.axes[0]
    qy = geo.center[1] + (yn - pitch * bump) * geo.axes[1]

    # Mouth: the jaw below the lip line drops by delta; the gap opens dark.
    mx, my = geo.mouth
    zx = (qx - mx) / geo.mouth_half_width
    wx = np.clip(1.0 - zx * zx, 0.0, None)
    fall = np.clip(1.0 - (qy - geo.chin_y) / 0.08, 0.0, 1.0)
    delta = mouth * 0.45 * geo.mouth_half_width * wx * fall
    below = np.clip(qy - my, 0.0, None)
    qy_src = qy - np.minimum(below, delta)
    px = 1.0 / size
    gap = _smoothstep(below / px) * _smoothstep((delta - below) / px)

    coords = np.stack([qy_src * size - 0.5, qx * size - 0.5])
    rgb = np.stack(
        [
            ndimage.map_coordinates(coef, coords, order=3, mode="nearest", prefilter=False)
            for coef in head_coeffs
        ],
        axis=-1,
    )
    alpha = ndimage.map_coordinates(mask, coords, order=1, mode="constant", cval=0.0)

    # Blink: an eyelid of cheek colour slides down over each eye, with a darker lash line.
    if blink > 0.0:
        for (ex, ey), lid in zip(geo.eyes, lid_colours, strict=True):
            ax_, ay_ = geo.eye_axes
            zx_e = (qx - ex) / ax_
            zy_e = (qy - ey) / ay_
            inside = _soft_ellipse(zx_e, zy_e, (0.0, 0.0), (1.0, 1.0), max(0.4, px / ay_))
            edge = -1.15 + 1.75 * blink  # closed: the lash line sits below the eye centre
            dist = (edge - zy_e) * ay_ / px  # pixels above the lid edge
            cover = inside * _smoothstep(dist + 0.5)
            lash = inside * np.exp(-0.5 * (dist / 0.8) ** 2) * min(1.0, 2.0 * blink)
            # Upper lid: cheek colour, a little darker towards the lash line, then the lashes.
            shade = 0.9 + 0.08 * np.clip(-zy_e, -1.0, 1.0) - 0.4 * lash
            colour = lid * shade[..., None]
            rgb = rgb * (1.0 - cover[..., None]) + colour * cover[..., None]
    if mouth > 0.0:
        rgb = rgb * (1.0 - gap[..., None]) + mouth_colour * gap[..., None]

    alpha = np.clip(alpha, 0.0, 1.0)[..., None]
    return rgb * alpha + background * (1.0 - alpha)


def _clip_colours(face: int, size: int, seed: int | None) -> tuple[FloatArray, FloatArray]:
    """Colour jitter matrix for the whole frame and the background, per (seed, face).

    seed None: no jitter and the identity's default background (what `face_image` shows).
    """
    background = _identity(face, size).background
    if seed is None:
        return np.eye(3), background
    rng = np.random.default_rng([seed, face, 0xC010])
    jitter = _jitter_matrix(rng.uniform(0.9, 1.1), rng.uniform(-0.1, 0.1), rng.uniform(0.85, 1.15))
    bg_jitter = _jitter_matrix(rng.uniform(0.85, 1.08), rng.uniform(-0.35, 0.35), 1.0)
    shade = 1.0 + 0.1 * _smooth_field(rng, 4, size)
    return jitter, np.clip((background * shade[..., None]) @ bg_jitter.T, 0.0, 1.0)


def _check_poses(poses: npt.ArrayLike) -> FloatArray:
    p = np.asarray(poses, dtype=np.float64)
    k = len(POSE_COLUMNS)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] != k:
        raise ValueError(f"poses must have shape (T >= 1, {k}), got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("poses must be finite")
    if (p[:, 3] <= 0).any():
        raise ValueError("poses: scale (column 3) must be > 0")
    if (np.abs(p[:, 4:6]) >= 0.5).any():
        raise ValueError("poses: yaw and pitch (columns 4, 5) must be in (-0.5, 0.5)")
    if ((p[:, 6:8] < 0) | (p[:, 6:8] > 1)).any():
        raise ValueError("poses: blink and mouth (columns 6, 7) must be in 0..1")
    return p


def render_poses(face: int, size: int, poses: npt.ArrayLike, seed: int | None = None) -> np.ndarray:
    """Render identity `face` under an explicit pose table (T, 8) -> (T, S, S, 3) uint8.

    Why: controlled motion (e.g. a pure similarity, or one clip's motion on another identity
    for cross-identity reenactment). `seed` picks the colours of that seed's clip; None gives
    no jitter and the default background. `synthesize_clip_with_pose` is exactly this with
    the seed's own pose table.
    """
    _check_int("face", face, 0, num_faces() - 1)
    _check_int("size", size, MIN_SIZE, MAX_SIZE)
    if seed is not None:
        _check_int("seed", seed, 0, None)
    p = _check_poses(poses)
    jitter, background = _clip_colours(face, size, seed)
    ident = _identity(face, size)
    head = np.clip(ident.head @ jitter.T, 0.0, 1.0)
    head_coeffs = [ndimage.spline_filter(head[..., k], order=3, mode="nearest") for k in range(3)]
    lids = np.clip(ident.lid_colours @ jitter.T, 0.0, 1.0)
    mouth_colour = np.clip(_MOUTH_INSIDE @ jitter.T, 0.0, 1.0)
    bg = np.clip(background @ jitter.T, 0.0, 1.0)
    frames = np.empty((len(p), size, size, 3), dtype=np.uint8)
    for i, pose in enumerate(p):
        img = _render_frame(ident, head_coeffs, ident.mask, bg, lids, mouth_colour, pose, size)
        frames[i] = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return frames


def synthesize_clip_with_pose(spec: ClipSpec) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, S, S, 3) uint8 and the ground-truth pose (T, 8) float64 (see POSE_COLUMNS).

    Why: tests and analysis compare what a codec recovers against the motion that made the clip.
    """
    poses = _performance(spec.seed, spec.num_frames)
    return render_poses(spec.face, spec.size, poses, spec.seed), poses


def synthesize_clip(spec: ClipSpec) -> np.ndarray:
    """A deterministic talking-head clip: (T, S, S, 3) uint8."""
    return synthesize_clip_with_pose(spec)[0]


#: The canonical pose: no motion, eyes open, mouth closed.
NEUTRAL_POSE = np.array([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
NEUTRAL_POSE.setflags(write=False)


def face_image(face: int, size: int) -> np.ndarray:
    """The still identity (S, S, 3) uint8: neutral pose, eyes open, mouth closed, no jitter.

    Why: a clean reference of each identity on its default background (the head layer and
    background before any motion).
    """
    return render_poses(face, size, NEUTRAL_POSE[None])[0]


def example_strip(spec: ClipSpec, frames: int = 8) -> np.ndarray:
    """Evenly spaced frames of a clip side by side, (S, n*S, 3) uint8: for eyeballing a clip."""
    clip = synthesize_clip(spec)
    pick = np.linspace(0, len(clip) - 1, min(frames, len(clip))).round().astype(int)
    return np.concatenate(list(clip[pick]), axis=1)


if __name__ == "__main__":  # python -m model.synthetic [out.png]: write an example strip
    import sys
    from pathlib import Path

    from PIL import Image

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/synthetic_example.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [example_strip(ClipSpec(seed=s, size=128, face=f)) for s, f in ((1, 0), (3, 7), (2, 42))]
    Image.fromarray(np.concatenate(rows, axis=0)).save(out)
    print(out)
