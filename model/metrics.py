"""Quality metrics of decoded frames against the source: PSNR, SSIM, MS-SSIM, GMSD."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pytorch_msssim import ms_ssim
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from model.perceptual import clip_gmsd

_WIN = 7  # SSIM window for skimage; odd, fits 32 px frames


@dataclass(frozen=True)
class Quality:
    psnr: float  # dB, mean over frames
    ssim: float
    ms_ssim: float
    gmsd: float  # perceptual (model/perceptual.py); lower is better

    #: Column headings for `cells`, for tables that list several qualities.
    COLUMNS = ("PSNR dB", "SSIM", "MS-SSIM", "GMSD")

    def cells(self) -> tuple[str, ...]:
        return f"{self.psnr:.2f}", f"{self.ssim:.4f}", f"{self.ms_ssim:.4f}", f"{self.gmsd:.4f}"

    def row(self) -> str:
        return (
            f"PSNR {self.psnr:5.2f} dB  SSIM {self.ssim:.4f}  MS-SSIM {self.ms_ssim:.4f}  "
            f"GMSD {self.gmsd:.4f}"
        )


def frame_psnr(ref: np.ndarray, out: np.ndarray) -> float:
    if np.array_equal(ref, out):
        return 100.0  # identical frames: report a finite cap, not inf
    return float(peak_signal_noise_ratio(ref, out, data_range=255))


def quality(reference: np.ndarray, decoded: np.ndarray) -> Quality:
    """Mean over frames of (T, H, W, 3) uint8 clips of the same shape."""
    if reference.shape != decoded.shape:
        raise ValueError(f"shape mismatch: reference {reference.shape}, decoded {decoded.shape}")
    psnr = np.mean([frame_psnr(r, d) for r, d in zip(reference, decoded, strict=True)])
    ssim = np.mean(
        [
            structural_similarity(r, d, channel_axis=-1, data_range=255, win_size=_WIN)
            for r, d in zip(reference, decoded, strict=True)
        ]
    )
    return Quality(
        float(psnr), float(ssim), _ms_ssim(reference, decoded), clip_gmsd(reference, decoded)
    )


def _ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Five-scale MS-SSIM; below 161 px the Gaussian window shrinks so all scales fit.

    pytorch-msssim needs the smaller side > (window - 1) · 2^4; the standard window
    is 11. For a 64² clip the window becomes 3: comparable between codecs at the
    same resolution, not with numbers published at 256².
    """
    size = min(reference.shape[1:3])
    window = 11
    while window > 3 and (window - 1) * 16 >= size:
        window -= 2
    if (window - 1) * 16 >= size:
        return float("nan")  # below 33 px there is no multi-scale structure to measure

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(0, 3, 1, 2).float()

    return float(ms_ssim(tensor(reference), tensor(decoded), data_range=255, win_size=window))
