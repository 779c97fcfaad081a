"""MUStARD's metrics: sklearn's "weighted avg" precision/recall/F1 per fold, as the paper reports,
plus macro-F1 and accuracy. A missing or unreadable prediction becomes a third label that matches
no class, so it counts as wrong instead of being silently read as "not sarcastic"."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
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


def _weighted(index: int) -> Callable[[Sequence[Record]], float]:
    def compute(records: Sequence[Record]) -> float:
        from sklearn.metrics import precision_recall_fscore_support

        y_true, y_pred = label_arrays(records)
        scores = precision_recall_fscore_support(
            y_true, y_pred, labels=list(CLASS_LABELS), average="weighted", zero_division=0
        )
        return float(scores[index])

    return compute


weighted_precision = _weighted(0)
weighted_recall = _weighted(1)
weighted_f1 = _weighted(2)


def macro_f1(records: Sequence[Record]) -> float:
    from sklearn.metrics import f1_score

    y_true, y_pred = label_arrays(records)
    return float(f1_score(y_true, y_pred, labels=list(CLASS_LABELS), average="macro", zero_division=0))


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
    from sklearn.metrics import precision_recall_fscore_support

    y_true, y_pred = label_arrays(records)
    pairs = Counter(zip(y_true, y_pred, strict=True))
    matrix = [[pairs[(true, pred)] for pred in (*CLASS_LABELS, INVALID)] for true in CLASS_LABELS]
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(CLASS_LABELS), average=None, zero_division=0
    )
    return {
        "confusion_matrix": {
            "rows_true": list(CLASS_NAMES),
            "columns_predicted": [*CLASS_NAMES, "invalid"],
            "counts": matrix,
        },
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(CLASS_NAMES)
        },
        "n": len(y_true),
        "invalid_predictions": sum(p == INVALID for p in y_pred),
    }
