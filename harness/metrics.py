"""Fast classification metrics for labels of any hashable type.

The bootstrap evaluates a metric thousands of times, so these work on a confusion matrix built with
numpy instead of calling sklearn each time; tests check them against sklearn. Conventions follow
sklearn: a class with no predicted (or no true) samples gets precision (recall) 0, and F1 is 0 when
precision + recall is 0 (`zero_division=0`). `labels` fixes the class set (e.g. a vocabulary);
predictions outside it (invalid answers) count as wrong for every class.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

INVALID = "__invalid__"


def confusion(
    y_true: Sequence[Hashable], y_pred: Sequence[Hashable], labels: Sequence[Hashable] | None = None
) -> tuple[np.ndarray, list[Hashable]]:
    """Confusion matrix (rows = true, columns = predicted) over `labels`, plus the label list.

    Predictions outside `labels` fall in an extra last column that is no class."""
    if labels is None:
        labels = sorted({y for y in y_true} | {y for y in y_pred if y is not None}, key=repr)
    labels = list(labels)
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    t = np.fromiter((index.get(y, k) for y in y_true), dtype=np.int64, count=len(y_true))
    p = np.fromiter((index.get(y, k) for y in y_pred), dtype=np.int64, count=len(y_pred))
    cm = np.bincount(t * (k + 1) + p, minlength=(k + 1) * (k + 1)).reshape(k + 1, k + 1)
    return cm[:k, :], labels


def _prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    k = cm.shape[0]
    tp = np.diag(cm[:, :k]).astype(float)
    pred = cm[:, :k].sum(axis=0).astype(float)
    support = cm.sum(axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred > 0, tp / pred, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1, support


def per_class(y_true, y_pred, labels=None) -> dict[str, dict[str, float]]:
    cm, labels = confusion(y_true, y_pred, labels)
    p, r, f, s = _prf(cm)
    return {
        str(lab): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, lab in enumerate(labels)
    }


def precision_recall_f1(y_true, y_pred, average: str, labels=None) -> tuple[float, float, float]:
    """`average` is "macro" (unweighted mean over classes) or "weighted" (by true support)."""
    cm, _ = confusion(y_true, y_pred, labels)
    p, r, f, s = _prf(cm)
    if average == "macro":
        return float(p.mean()), float(r.mean()), float(f.mean())
    if average == "weighted":
        w = s / s.sum() if s.sum() else s
        return float(p @ w), float(r @ w), float(f @ w)
    raise ValueError(f"unknown average {average!r}")


def accuracy(y_true, y_pred) -> float:
    if not len(y_true):
        return float("nan")
    return float(np.mean([t == p for t, p in zip(y_true, y_pred, strict=True)]))


def balanced_recall(y_true, y_pred, labels=None) -> float:
    """Unweighted average recall (UAR): the mean of the row-normalised confusion diagonal."""
    cm, _ = confusion(y_true, y_pred, labels)
    _, r, _, s = _prf(cm)
    return float(r[s > 0].mean()) if (s > 0).any() else float("nan")
