"""Dense optical-flow features between two frames (OpenCV Farneback), pooled over a grid of face ROIs.

Why: micro-expressions are tiny, brief motions; the classic AU/MER baselines (e.g. MEB's traditional
methods, Bi-WOOF-style features) describe the onset->apex motion by the flow magnitude in facial regions.
Frames are converted to grey and resized to `size` x `size` so every clip gives the same feature length;
the face is assumed roughly aligned (CASME II / SAMM crops or the raw frames of a static camera).
"""

from __future__ import annotations

import numpy as np

__all__ = ["farneback_flow", "roi_flow_features"]


def _grey(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    img = np.asarray(img)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def farneback_flow(a: np.ndarray, b: np.ndarray, size: int = 128) -> np.ndarray:
    """[size, size, 2] flow (dx, dy) from frame `a` to frame `b` (OpenCV defaults of common use:
    pyramid scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5, poly_sigma 1.2)."""
    import cv2

    return cv2.calcOpticalFlowFarneback(_grey(a, size), _grey(b, size), None, 0.5, 3, 15, 3, 5, 1.2, 0)


def roi_flow_features(a: np.ndarray, b: np.ndarray, grid: int = 6, size: int = 128) -> np.ndarray:
    """Per cell of a `grid` x `grid` partition: mean flow magnitude, mean dx, mean dy (length 3*grid^2)."""
    flow = farneback_flow(a, b, size)
    mag = np.linalg.norm(flow, axis=2)
    cells = []
    edges = np.linspace(0, size, grid + 1).astype(int)
    for i in range(grid):
        for j in range(grid):
            sl = (slice(edges[i], edges[i + 1]), slice(edges[j], edges[j + 1]))
            cells.append((mag[sl].mean(), flow[sl][..., 0].mean(), flow[sl][..., 1].mean()))
    return np.asarray(cells, dtype=np.float32).ravel()
