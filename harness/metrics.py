"""The one classification-metric implementation of the harness: precision, recall and F1 (binary,
macro, weighted, micro, per class, multi-label), UAR, WAR and accuracy, all computed from counts.

Why counts: the bootstrap evaluates every metric on a thousand resamples. Each metric here is a
function of confusion counts, and counts add up over samples, so `harness.stats` builds the counts of
all replicates (and folds) at once with one `np.bincount` and evaluates them as one array. A task
declares such a metric with a `Classification` spec on its `Metric`; its `codes` function turns the
records into integer codes once per run.

Conventions (checked against scikit-learn's `labels=`, `zero_division=0` in tests/test_metrics.py):
- The label set is FIXED: classes are the codes 0..k-1 of a given label list. A class absent from a
  (re)sample keeps its place, scoring 0 where a ratio is undefined, so it never vanishes from a macro
  average (sklearn without `labels=` would drop it, and resamples that lose a rare class score higher).
- A predicted code outside 0..k-1 (e.g. -1) is an invalid answer: a miss of the true class and a false
  positive of none; it counts in n (accuracy). True codes must lie in 0..k-1 (a bad reference is an
  error the task reports per sample, before metrics).
- Multi-label: true and pred are (n, L) 0/1 matrices, each label a binary problem (P/R/F1 of its
  positive class); "macro" is the mean over labels, "weighted" weights by positive support, "micro"
  pools the counts; accuracy is exact-match accuracy (sklearn's accuracy_score on indicator matrices).
  A predicted entry other than 0/1 is an invalid answer for that label: counted as wrong (1 - truth).
- UAR is macro recall (the mean per-class recall over the fixed set); WAR is accuracy (recall weighted
  by true support, which is the share of correct answers). Every metric of an empty set is nan.

Count layout (what `counts` returns and `score` reads): single-label, k*(k+1) cells, cell
t*(k+1) + p, rows = true class, columns = predicted class then one "invalid" column; multi-label,
4L + 2 cells, cell 4j + 2t + p per label j (tn, fp, fn, tp), then [not exact match, exact match].
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

STATS = ("precision", "recall", "f1", "accuracy")
AVERAGES = ("binary", "macro", "weighted", "micro")


@dataclass(frozen=True)
class Coded:
    """Integer codes of a set of records: `true` and `pred` ((n,) class codes, or (n, L) 0/1 for
    multi-label) and `labels`, the fixed label set (names of codes 0..k-1, or of the L labels)."""

    true: np.ndarray
    pred: np.ndarray
    labels: tuple[Hashable, ...]

    def __post_init__(self) -> None:
        true, pred = np.asarray(self.true, dtype=np.int64), np.asarray(self.pred, dtype=np.int64)
        if true.ndim == 1 and len(true) == 0:
            true = true.reshape(0, *pred.shape[1:]) if pred.ndim == 2 else true
        if true.shape != pred.shape or true.ndim not in (1, 2):
            raise ValueError(f"true {true.shape} and pred {pred.shape} must be (n,) or (n, L) of one shape")
        k = len(self.labels)
        if true.ndim == 2 and true.shape[1] != k:
            raise ValueError(f"multi-label codes have {true.shape[1]} columns for {k} labels")
        bad = (true < 0) | (true > (1 if true.ndim == 2 else k - 1))
        if bad.any():
            raise ValueError(f"true code {int(true[bad].flat[0])} outside the label set of {k}")
        object.__setattr__(self, "true", true)
        object.__setattr__(self, "pred", pred)
        object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def multilabel(self) -> bool:
        return self.true.ndim == 2

    @property
    def k(self) -> int:
        return len(self.labels)

    @property
    def n_cells(self) -> int:
        return 4 * self.k + 2 if self.multilabel else self.k * (self.k + 1)

    def cells(self) -> np.ndarray:
        """(n, m) cell index of each record: m = 1 (single-label) or L + 1 (multi-label)."""
        t, p, k = self.true, self.pred, self.k
        if not self.multilabel:
            return (t * (k + 1) + np.where((p >= 0) & (p < k), p, k))[:, None]
        p = np.where((p == 0) | (p == 1), p, 1 - t)  # an invalid entry is wrong
        exact = (p == t).all(axis=1) if k else np.ones(len(t), dtype=bool)
        return np.concatenate([4 * np.arange(k) + 2 * t + p, (4 * k + exact)[:, None]], axis=1)


def counts(coded: Coded) -> np.ndarray:
    """The count vector (see the module docstring for its layout)."""
    return np.bincount(coded.cells().ravel(), minlength=coded.n_cells)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def class_counts(c: np.ndarray, k: int, multilabel: bool) -> tuple[np.ndarray, ...]:
    """(tp, predicted, support) per class (shape (..., k)), n and the correct count (shape (...)) from
    counts of shape (..., n_cells)."""
    c = np.asarray(c, dtype=float)
    if multilabel:
        per = c[..., : 4 * k].reshape(*c.shape[:-1], k, 4)
        tp, fp, fn = per[..., 3], per[..., 1], per[..., 2]
        return tp, tp + fp, tp + fn, c[..., 4 * k] + c[..., 4 * k + 1], c[..., 4 * k + 1]
    cm = c.reshape(*c.shape[:-1], k, k + 1)
    tp = np.diagonal(cm[..., :k], axis1=-2, axis2=-1)
    support = cm.sum(axis=-1)
    return tp, cm[..., :k].sum(axis=-2), support, support.sum(axis=-1), tp.sum(axis=-1)


def score(c: np.ndarray, k: int, multilabel: bool, stat: str, average: str | None = "macro",
          pos_label: int = 1) -> np.ndarray:
    """`stat` ("precision", "recall", "f1", "accuracy") from counts of shape (..., n_cells), averaged
    by `average` ("binary": class `pos_label` only; "macro"; "weighted" by true support; "micro";
    None: per class, shape (..., k)). Ignored for accuracy. nan where n = 0."""
    tp, pred, support, n, correct = class_counts(c, k, multilabel)
    if stat == "accuracy":
        value = _ratio(correct, n)
    elif average == "micro":
        tp, pred, support = tp.sum(-1), pred.sum(-1), support.sum(-1)
        value = {"precision": _ratio(tp, pred), "recall": _ratio(tp, support),
                 "f1": _ratio(2 * tp, pred + support)}[stat]
    else:
        per = {"precision": _ratio(tp, pred), "recall": _ratio(tp, support),
               "f1": _ratio(2 * tp, pred + support)}[stat]
        if average is None:
            value = per
        elif average == "binary":
            value = per[..., pos_label]
        elif average == "macro":
            value = per.mean(axis=-1) if k else np.zeros(per.shape[:-1])
        elif average == "weighted":
            value = _ratio((per * support).sum(axis=-1), support.sum(axis=-1))
        else:
            raise ValueError(f"unknown average {average!r}; choose one of {AVERAGES}")
    nan = n == 0 if average is not None or stat == "accuracy" else (n == 0)[..., None]
    return np.where(nan, np.nan, value)


@dataclass(frozen=True, eq=False)
class Classification:
    """A count-based metric that the bootstrap evaluates vectorised: `codes(records) -> Coded` reads
    the integer codes (called once per evaluation, so a label set derived from the data is fixed for
    all resamples), `stat` and `average` as in `score`. Several metrics of one task should share one
    `codes` function object: the bootstrap builds the counts once per function."""

    codes: Callable[[Sequence[Any]], Coded]
    stat: str = "f1"
    average: str = "macro"
    pos_label: int = 1

    def __post_init__(self) -> None:
        if self.stat not in STATS:
            raise ValueError(f"unknown stat {self.stat!r}; choose one of {STATS}")
        if self.average not in AVERAGES:
            raise ValueError(f"unknown average {self.average!r}; choose one of {AVERAGES}")

    def of_counts(self, c: np.ndarray, coded: Coded) -> np.ndarray:
        return score(c, coded.k, coded.multilabel, self.stat, self.average, self.pos_label)

    def evaluate(self, records: Sequence[Any]) -> float:
        coded = self.codes(records)
        return float(self.of_counts(counts(coded), coded))


def encode(values: Sequence[Hashable], labels: Sequence[Hashable]) -> np.ndarray:
    """Codes of `values` in `labels` (their positions); -1 for a value outside the label set."""
    index = {lab: i for i, lab in enumerate(labels)}
    return np.fromiter((index.get(v, -1) for v in values), dtype=np.int64, count=len(values))


def _coded(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], labels: Sequence[Hashable] | None) -> Coded:
    if labels is None:  # sklearn's default: every value seen (invalid answers are None)
        labels = sorted({y for y in y_true} | {y for y in y_pred if y is not None}, key=repr)
    return Coded(encode(y_true, labels), encode(y_pred, labels), tuple(labels))


# -- label-list convenience API (reports, small sets); the bootstrap uses `Classification` -------------
def confusion(y_true: Sequence[Hashable], y_pred: Sequence[Hashable],
              labels: Sequence[Hashable] | None = None) -> tuple[np.ndarray, list[Hashable]]:
    """Confusion matrix (rows = true, columns = predicted, then one column of predictions outside
    `labels`) and the label list. True values must be in `labels`."""
    coded = _coded(y_true, y_pred, labels)
    return counts(coded).reshape(coded.k, coded.k + 1), list(coded.labels)


def per_class(y_true: Sequence[Hashable], y_pred: Sequence[Hashable],
              labels: Sequence[Hashable] | None = None) -> dict[str, dict[str, float]]:
    coded = _coded(y_true, y_pred, labels)
    c = counts(coded)
    p, r, f = (score(c, coded.k, False, s, None) for s in ("precision", "recall", "f1"))
    support = class_counts(c, coded.k, False)[2]
    return {str(lab): {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                       "support": int(support[i])} for i, lab in enumerate(coded.labels)}


def precision_recall_f1(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], average: str,
                        labels: Sequence[Hashable] | None = None, pos_label: int = 1) -> tuple[float, float, float]:
    """`average`: "macro", "weighted", "micro", or "binary" (the class of code `pos_label`)."""
    coded = _coded(y_true, y_pred, labels)
    c = counts(coded)
    p, r, f = (float(score(c, coded.k, False, s, average, pos_label)) for s in ("precision", "recall", "f1"))
    return p, r, f


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """The share of exact answers (nan for no samples)."""
    if not len(y_true):
        return float("nan")
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


def uar(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], labels: Sequence[Hashable] | None = None) -> float:
    """Unweighted average recall: the mean per-class recall over the (fixed) label set."""
    coded = _coded(y_true, y_pred, labels)
    return float(score(counts(coded), coded.k, False, "recall", "macro"))


def war(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], labels: Sequence[Hashable] | None = None) -> float:
    """Weighted average recall: recall weighted by true support, i.e. accuracy."""
    coded = _coded(y_true, y_pred, labels)
    return float(score(counts(coded), coded.k, False, "accuracy"))


balanced_recall = uar  # the earlier name


def multilabel_f1(y_true: np.ndarray, y_pred: np.ndarray, average: str = "macro") -> float:
    """F1 of (n, L) 0/1 indicator matrices: per-label binary F1, averaged by `average`."""
    true = np.asarray(y_true)
    coded = Coded(true, np.asarray(y_pred), tuple(range(true.shape[1])))
    return float(score(counts(coded), coded.k, True, "f1", average))
