"""MUStARD's metrics: sklearn's "weighted avg" precision/recall/F1 per fold, as the paper reports,
plus macro-F1 and accuracy. A missing or unreadable prediction becomes a third label that matches
no class, so it counts as wrong instead of being silently read as "not sarcastic"."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.core import Metric, Record

NOT_SARCASTIC, SARCASTIC, INVALID = 0, 1, -1
CLASS_LABELS = (NOT_SARCASTIC, SARCASTIC)
CLASS_NAMES = ("not_sarcastic", "sarcastic")
_TRUE_WORDS = {"true", "yes", "sarcastic", "1"}
_FALSE_WORDS = {"false", "no", "not_sarcastic", "not sarcastic", "0"}


def prediction_label(prediction: Any) -> bool | None:
    """A prediction as a class (True = sarcastic), or None when it is missing or not a yes/no answer."""
    if isinstance(prediction, bool):
        return prediction
    if isinstance(prediction, int) and prediction in (0, 1):
        return bool(prediction)
    if isinstance(prediction, str):
        word = prediction.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return None


def label_arrays(records: Sequence[Record]) -> tuple[list[int], list[int]]:
    """(y_true, y_pred) as 0/1, with INVALID (-1) for predictions that are not a class."""
    y_true = [SARCASTIC if bool(r.target) else NOT_SARCASTIC for r in records]
    y_pred = []
    for record in records:
        label = prediction_label(record.prediction)
        y_pred.append(INVALID if label is None else int(label))
    return y_true, y_pred


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall, F1 and support of one class, with sklearn's zero_division=0 convention."""

    precision: float
    recall: float
    f1: float
    support: int


def class_scores(y_true: Sequence[int], y_pred: Sequence[int]) -> dict[int, ClassScores]:
    """Per-class scores from counts: what sklearn's precision_recall_fscore_support(labels=[0, 1])
    returns, computed directly because the bootstrap calls the metrics thousands of times."""
    pairs = Counter(zip(y_true, y_pred, strict=True))
    true_counts, pred_counts = Counter(y_true), Counter(y_pred)
    scores = {}
    for label in CLASS_LABELS:
        hits = pairs[(label, label)]
        precision = hits / pred_counts[label] if pred_counts[label] else 0.0
        recall = hits / true_counts[label] if true_counts[label] else 0.0
        # F1 = 2tp / (2tp + fp + fn), as sklearn computes it; 0 when undefined.
        denominator = pred_counts[label] + true_counts[label]
        f1 = 2 * hits / denominator if denominator else 0.0
        scores[label] = ClassScores(precision, recall, f1, true_counts[label])
    return scores


def _support_weighted(records: Sequence[Record], field_name: str) -> float:
    """sklearn's "weighted avg": the class scores weighted by each class's number of true samples."""
    scores = class_scores(*label_arrays(records))
    total = sum(s.support for s in scores.values())
    return sum(getattr(s, field_name) * s.support for s in scores.values()) / total if total else 0.0


def weighted_precision(records: Sequence[Record]) -> float:
    return _support_weighted(records, "precision")


def weighted_recall(records: Sequence[Record]) -> float:
    return _support_weighted(records, "recall")


def weighted_f1(records: Sequence[Record]) -> float:
    return _support_weighted(records, "f1")


def macro_f1(records: Sequence[Record]) -> float:
    """Unweighted mean of the two classes' F1 (the invalid label is not a class)."""
    scores = class_scores(*label_arrays(records))
    return sum(s.f1 for s in scores.values()) / len(scores)


def accuracy(records: Sequence[Record]) -> float:
    y_true, y_pred = label_arrays(records)
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true) if y_true else 0.0


def sarcasm_metrics() -> list[Metric]:
    """Headline first; every value is a fraction per fold, averaged over folds, shown in percent."""
    return [
        Metric("weighted_f1", weighted_f1, per_fold=True, scale=100),
        Metric("weighted_precision", weighted_precision, per_fold=True, scale=100),
        Metric("weighted_recall", weighted_recall, per_fold=True, scale=100),
        Metric("macro_f1", macro_f1, per_fold=True, scale=100),
        Metric("accuracy", accuracy, per_fold=True, scale=100),
    ]


def confusion_summary(records: Sequence[Record]) -> dict[str, Any]:
    """Confusion counts (rows: true class; columns: predicted class or invalid) and per-class P/R/F1."""
    y_true, y_pred = label_arrays(records)
    pairs = Counter(zip(y_true, y_pred, strict=True))
    matrix = [[pairs[(true, pred)] for pred in (*CLASS_LABELS, INVALID)] for true in CLASS_LABELS]
    scores = class_scores(y_true, y_pred)
    return {
        "confusion_matrix": {
            "rows_true": list(CLASS_NAMES),
            "columns_predicted": [*CLASS_NAMES, "invalid"],
            "counts": matrix,
        },
        "per_class": {
            name: {"precision": scores[label].precision, "recall": scores[label].recall, "f1": scores[label].f1,
                   "support": scores[label].support}
            for label, name in zip(CLASS_LABELS, CLASS_NAMES, strict=True)
        },
        "n": len(y_true),
        "invalid_predictions": sum(p == INVALID for p in y_pred),
    }
