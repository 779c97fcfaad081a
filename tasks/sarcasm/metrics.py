"""MUStARD's metrics: sklearn's "weighted avg" precision/recall/F1 per fold, as the paper reports,
plus macro-F1 and accuracy, all from harness.metrics over the fixed label set (not sarcastic,
sarcastic). A missing or unreadable prediction is an invalid answer that matches no class, so it
counts as wrong instead of being silently read as "not sarcastic"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.core import Metric, Record
from harness.metrics import Classification, Coded, class_counts, counts, score

NOT_SARCASTIC, SARCASTIC, INVALID = 0, 1, -1
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


def codes(records: Sequence[Record]) -> Coded:
    """Class codes: 0 not sarcastic, 1 sarcastic; INVALID (-1) for a prediction that is not a class."""
    y_true = np.fromiter((SARCASTIC if bool(r.target) else NOT_SARCASTIC for r in records), np.int64, len(records))
    labels = (prediction_label(r.prediction) for r in records)
    y_pred = np.fromiter((INVALID if label is None else int(label) for label in labels), np.int64, len(records))
    return Coded(y_true, y_pred, CLASS_NAMES)


def sarcasm_metrics() -> list[Metric]:
    """Headline first; every value is a fraction per fold, averaged over folds, shown in percent."""
    def metric(name: str, stat: str, average: str = "weighted") -> Metric:
        return Metric(name, classification=Classification(codes, stat, average), per_fold=True, scale=100)

    return [
        metric("weighted_f1", "f1"),
        metric("weighted_precision", "precision"),
        metric("weighted_recall", "recall"),
        metric("macro_f1", "f1", "macro"),
        metric("accuracy", "accuracy"),
    ]


def confusion_summary(records: Sequence[Record]) -> dict[str, Any]:
    """Confusion counts (rows: true class; columns: predicted class or invalid) and per-class P/R/F1."""
    coded = codes(records)
    c = counts(coded)
    k = len(CLASS_NAMES)
    precision, recall, f1 = (score(c, k, False, s, None) for s in ("precision", "recall", "f1"))
    support = class_counts(c, k, False)[2]
    return {
        "confusion_matrix": {
            "rows_true": list(CLASS_NAMES),
            "columns_predicted": [*CLASS_NAMES, "invalid"],
            "counts": c.reshape(k, k + 1).tolist(),
        },
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(CLASS_NAMES)
        },
        "n": len(records),
        "invalid_predictions": int((coded.pred == INVALID).sum()),
    }
