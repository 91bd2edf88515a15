"""GMSD, a perceptual full-reference metric that needs no trained weights.

Gradient Magnitude Similarity Deviation (W. Xue, L. Zhang, X. Mou, A. C. Bovik,
"Gradient Magnitude Similarity Deviation: A Highly Efficient Perceptual Image
Quality Index", IEEE TIP 23(2), 2014), written here from the paper's formulas:

1. luminance Y = 0.299 R + 0.587 G + 0.114 B, on the [0, 255] scale;
2. a 2x2 average filter and 2x downsampling (non-overlapping 2x2 means);
3. Prewitt gradients h_x = [[1, 0, -1]] * 3 rows / 3 and h_y = h_x transposed,
   magnitude m = sqrt((Y ⊛ h_x)² + (Y ⊛ h_y)²) for the reference (m_r) and the
   distorted image (m_d);
4. the gradient magnitude similarity map GMS = (2 m_r m_d + c) / (m_r² + m_d² + c),
   c = 170 for [0, 255] data (0.0026 on [0, 1]);
5. GMSD = the standard deviation of the GMS map, sqrt(mean((GMS − mean GMS)²)).

0 means identical gradient structure; larger is worse (the paper's LIVE scores
run to about 0.35). One choice of ours: the gradients are taken on the "valid"
part of the pooled image only (no padding; the authors' MATLAB code pads with
zeros), so a border of zeros cannot create edges that are not in the picture,
and a constant brightness shift leaves the score at exactly 0. On a 64² frame
the map is 30 x 30. The deviation divides by N as the paper writes it (MATLAB's
std2 divides by N - 1: a factor 1.0006 on 900 values).
"""

from __future__ import annotations

import numpy as np

GMSD_C = 170.0  # the paper's constant for [0, 255] data
_LUMA = np.array([0.299, 0.587, 0.114])


def luminance(images: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) RGB (uint8 or float on [0, 255]) → (..., H, W) float64 luma."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim < 3 or images.shape[-1] != 3:
        raise ValueError(f"expected (..., H, W, 3) RGB images, got shape {images.shape}")
    return images @ _LUMA


def _pool2(y: np.ndarray) -> np.ndarray:
    """Means of non-overlapping 2x2 blocks over the last two axes (an odd row/column is dropped)."""
    h, w = y.shape[-2] // 2 * 2, y.shape[-1] // 2 * 2
    y = y[..., :h, :w]
    return (y[..., 0::2, 0::2] + y[..., 0::2, 1::2] + y[..., 1::2, 0::2] + y[..., 1::2, 1::2]) / 4


def gradient_magnitude(y: np.ndarray) -> np.ndarray:
    """Prewitt gradient magnitude over the last two axes, valid part only: (H-2, W-2)."""
    if y.shape[-2] < 3 or y.shape[-1] < 3:
        raise ValueError(f"image of {y.shape[-2]}x{y.shape[-1]} is too small for 3x3 gradients")
    # Column sums of three rows, then the horizontal difference (and the transpose for y).
    rows = y[..., :-2, :] + y[..., 1:-1, :] + y[..., 2:, :]
    gx = (rows[..., :, :-2] - rows[..., :, 2:]) / 3
    cols = y[..., :, :-2] + y[..., :, 1:-1] + y[..., :, 2:]
    gy = (cols[..., :-2, :] - cols[..., 2:, :]) / 3
    return np.sqrt(gx**2 + gy**2)


def gms_map(reference: np.ndarray, distorted: np.ndarray, c: float = GMSD_C) -> np.ndarray:
    """The gradient magnitude similarity map of RGB images (..., H, W, 3) on [0, 255]."""
    reference, distorted = np.asarray(reference), np.asarray(distorted)
    if reference.shape != distorted.shape:
        raise ValueError(f"shape mismatch: {reference.shape} vs {distorted.shape}")
    m_r = gradient_magnitude(_pool2(luminance(reference)))
    m_d = gradient_magnitude(_pool2(luminance(distorted)))
    return (2 * m_r * m_d + c) / (m_r**2 + m_d**2 + c)


def gmsd(reference: np.ndarray, distorted: np.ndarray, c: float = GMSD_C) -> np.ndarray | float:
    """GMSD of one image pair (H, W, 3) → float, or of a batch (N, H, W, 3) → (N,)."""
    gms = gms_map(reference, distorted, c)
    score = gms.std(axis=(-2, -1))  # population deviation, as the paper writes it
    return float(score) if np.ndim(score) == 0 else score


def clip_gmsd(reference: np.ndarray, distorted: np.ndarray) -> float:
    """Mean GMSD over the frames of two (T, H, W, 3) clips."""
    return float(np.mean(gmsd(reference, distorted)))
