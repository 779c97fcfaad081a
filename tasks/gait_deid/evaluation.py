"""CASIA-B Rank-1 as OpenGait's `single_view_gallery_evaluation` defines it (evaluator.py, re-implemented).

For each probe condition (NM 5-6, BG 1-2, CL 1-2), probe view v1 and gallery view v2: the probes of view
v1 are matched (1-NN, ties to the earlier gallery item) against the gallery sequences (NM 1-4) of view v2
only; acc[v1, v2] = share of probes whose nearest gallery item is their subject, rounded as OpenGait rounds
it (percent to two decimals). The distance is OpenGait's `cuda_dist(..., "euc")`: embeddings of `parts`
horizontal parts ([n, c, p] flattened) are compared part by part (Euclidean) and the distances averaged over
parts; with one part it is the plain Euclidean distance (the GEI recogniser).
Identical views are excluded (`de_diag`): per probe view, the mean of acc over the other gallery views;
the condition's Rank-1 is the mean over probe views. OpenGait divides by (views - 1) and assumes every
pair exists; here a pair without probes or gallery (a partial copy) is left out of those means, which is
the same number on complete data. Impersonation success uses the same matrix with "hit" = the nearest
gallery item's subject is the probe's chosen target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

PROBE_CONDITIONS = {"nm": ("nm-05", "nm-06"), "bg": ("bg-01", "bg-02"), "cl": ("cl-01", "cl-02")}
GALLERY = ("nm-01", "nm-02", "nm-03", "nm-04")


def part_distance(x: np.ndarray, y: np.ndarray, parts: int = 1) -> np.ndarray:
    """[len(x), len(y)] distances: per part sqrt(max(|a|^2 + |b|^2 - 2ab, 0)), averaged over the parts of
    embeddings flattened from [c, parts] (OpenGait's "euc" metric)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape[1] % parts or y.shape[1] != x.shape[1]:
        raise ValueError(f"embeddings of width {x.shape[1]} and {y.shape[1]} cannot hold {parts} parts")
    x, y = x.reshape(len(x), -1, parts), y.reshape(len(y), -1, parts)
    dist = np.zeros((len(x), len(y)))
    for i in range(parts):
        a, b = x[:, :, i], y[:, :, i]
        sq = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T
        dist += np.sqrt(np.maximum(sq, 0.0))
    return dist / parts


def rank1_matrix(probe_x: np.ndarray, probe_view: Sequence[str], probe_hit_label: Sequence[str],
                 gal_x: np.ndarray, gal_label: Sequence[str], gal_view: Sequence[str],
                 views: Sequence[str], parts: int = 1) -> np.ndarray:
    """acc[v1, v2] in [0, 1] (nan where the pair has no probe or no gallery item)."""
    probe_x, gal_x = np.asarray(probe_x, float), np.asarray(gal_x, float)
    pv, gv = np.asarray(probe_view), np.asarray(gal_view)
    hit, gl = np.asarray(probe_hit_label), np.asarray(gal_label)
    acc = np.full((len(views), len(views)), np.nan)
    for i, v1 in enumerate(views):
        pm = pv == v1
        if not pm.any():
            continue
        for j, v2 in enumerate(views):
            gm = gv == v2
            if not gm.any():
                continue
            d = part_distance(probe_x[pm], gal_x[gm], parts)
            nearest = gl[gm][np.argmin(d, axis=1)]
            acc[i, j] = round(float(np.sum(nearest == hit[pm])) * 100 / int(pm.sum()), 2) / 100
    return acc


def exclude_identical_views(acc: np.ndarray) -> tuple[np.ndarray, float]:
    """(per probe view mean over the other gallery views, mean over probe views)."""
    acc = np.array(acc, dtype=float)
    np.fill_diagonal(acc, np.nan)
    with np.errstate(invalid="ignore"):
        per_view = np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan for row in acc])
    finite = per_view[np.isfinite(per_view)]
    return per_view, float(finite.mean()) if finite.size else math.nan
