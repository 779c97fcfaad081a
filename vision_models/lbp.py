"""Local binary pattern descriptors: per-image block histograms, LBP-TOP for clips, colour-space LBP.

Why here: LBP-TOP (Zhao & Pietikainen 2007) is the classic micro-expression baseline and colour-space
LBP (Boulkenafet et al. 2016, HSV + YCbCr) the classic face anti-spoofing one; both are histograms of
scikit-image's `local_binary_pattern` ("uniform", P=8, R=1: 10 bins) over a grid of blocks, L1-normalised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["block_histograms", "colour_lbp", "lbp_top"]

P, R, BINS = 8, 1, 10  # uniform LBP with 8 neighbours has P + 2 codes


def block_histograms(img: np.ndarray, grid: int = 4) -> np.ndarray:
    """Uniform-LBP histograms of a 2-D array over a `grid` x `grid` partition (length BINS * grid^2)."""
    from skimage.feature import local_binary_pattern

    img = np.asarray(img)
    if img.dtype != np.uint8:  # LBP compares neighbours: integer grey levels avoid float-noise codes
        img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    codes = local_binary_pattern(img, P, R, method="uniform").astype(np.int64)
    h, w = codes.shape
    ys, xs = np.linspace(0, h, grid + 1).astype(int), np.linspace(0, w, grid + 1).astype(int)
    out = []
    for i in range(grid):
        for j in range(grid):
            block = codes[ys[i]:ys[i + 1], xs[j]:xs[j + 1]].ravel()
            hist = np.bincount(block, minlength=BINS)[:BINS].astype(np.float64)
            out.append(hist / max(1.0, hist.sum()))
    return np.concatenate(out).astype(np.float32)


def lbp_top(frames: Sequence[np.ndarray], grid: int = 4, size: int = 64) -> np.ndarray:
    """LBP-TOP of a grey clip: block histograms on the XY plane (mean over frames), and on the XT and YT
    planes (mean over rows / columns), concatenated (length 3 * BINS * grid^2)."""
    import cv2

    if len(frames) < 3:
        raise ValueError(f"LBP-TOP needs at least 3 frames, got {len(frames)}")
    vol = np.stack([cv2.resize(np.asarray(f, dtype=np.uint8), (size, size), interpolation=cv2.INTER_AREA)
                    for f in frames])  # T, Y, X (uint8)
    xy = np.mean([block_histograms(vol[t], grid) for t in range(vol.shape[0])], axis=0)
    xt = np.mean([block_histograms(vol[:, y, :], grid) for y in range(0, size, 4)], axis=0)
    yt = np.mean([block_histograms(vol[:, :, x], grid) for x in range(0, size, 4)], axis=0)
    return np.concatenate([xy, xt, yt]).astype(np.float32)


def colour_lbp(rgb: np.ndarray, grid: int = 1, size: int = 64) -> np.ndarray:
    """Uniform-LBP histograms of each channel of HSV and YCbCr (length 6 * BINS * grid^2)."""
    import cv2

    rgb = cv2.resize(np.asarray(rgb, dtype=np.uint8), (size, size), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    return np.concatenate([block_histograms(space[:, :, c], grid) for space in (hsv, ycc) for c in range(3)])
