"""Macro-F1 per head, their mean, accuracy, per-class F1 and confusion matrices.

A prediction is ``{"behavior": label | None, "cognition": ..., "emotion": ...}``; ``None`` (or a label
outside the vocabulary) is an invalid answer. Invalid answers are scored as a sentinel class that
never matches a target: they count as misses of the true class, and the sentinel itself is left out
of the macro average. The macro average runs over the vocabulary labels that occur in the targets or
the valid predictions (sklearn's default label set without the sentinel); on the full benchmark every
vocabulary label occurs in the targets, so this is the whole vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

from harness.core import Metric, Record
from tasks.motor.data import HEADS

INVALID = "<invalid>"


def predicted_label(prediction: Any, head: str, allowed: Sequence[str] | None = None) -> str:
    """The predicted label of a head, or the INVALID sentinel."""
    if not isinstance(prediction, Mapping):
        return INVALID
    label = prediction.get(head)
    if not isinstance(label, str) or not label or (allowed is not None and label not in allowed):
        return INVALID
    return label


def _pairs(records: Sequence[Record], head: str) -> tuple[list[str], list[str]]:
    y_true = [str(r.target[head]) for r in records]
    # score() flags labels outside the sample's vocabulary as invalid; trust that flag too
    y_pred = [
        INVALID if r.scores.get(f"invalid_{head}") else predicted_label(r.prediction, head) for r in records
    ]
    return y_true, y_pred


def _labels(y_true: Sequence[str], y_pred: Sequence[str]) -> list[str]:
    return sorted((set(y_true) | set(y_pred)) - {INVALID})


class LabelCodes:
    """Integer codes of (target, prediction) per head, computed once per record object: the
    bootstrap evaluates macro-F1 on thousands of resamples of the same records. Code 0 is INVALID."""

    def __init__(self) -> None:
        self.index: dict[str, dict[str, int]] = {h: {INVALID: 0} for h in HEADS}
        self._memo: dict[int, tuple[Record, tuple[int, ...]]] = {}  # holding the record keeps its id unique

    def _code(self, head: str, label: str) -> int:
        return self.index[head].setdefault(label, len(self.index[head]))

    def matrix(self, records: Sequence[Record]) -> np.ndarray:
        """(n, 2 * heads) int array: target code, prediction code for each head."""
        rows = []
        for r in records:
            hit = self._memo.get(id(r))
            if hit is None or hit[0] is not r:
                codes: list[int] = []
                for head in HEADS:
                    (t,), (p,) = _pairs([r], head)
                    codes += [self._code(head, t), self._code(head, p)]
                hit = self._memo[id(r)] = (r, tuple(codes))
            rows.append(hit[1])
        return np.asarray(rows, dtype=np.int64).reshape(len(rows), 2 * len(HEADS))

    def macro_f1(self, records: Sequence[Record], head: str, codes: np.ndarray | None = None) -> float:
        """sklearn's ``f1_score(average="macro", zero_division=0)`` over the labels present in the
        targets or the valid predictions (tests check it against sklearn)."""
        if not records:
            return float("nan")
        codes = self.matrix(records) if codes is None else codes
        j = HEADS.index(head)
        k = len(self.index[head])
        cm = np.bincount(codes[:, 2 * j] * k + codes[:, 2 * j + 1], minlength=k * k).reshape(k, k)
        tp = np.diag(cm).astype(float)
        predicted, support = cm.sum(axis=0).astype(float), cm.sum(axis=1).astype(float)
        present = (support > 0) | (predicted > 0)
        present[0] = False  # the INVALID sentinel is no class
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(predicted > 0, tp / predicted, 0.0)
            recall = np.where(support > 0, tp / support, 0.0)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        return float(f1[present].mean()) if present.any() else float("nan")

    def mean_macro_f1(self, records: Sequence[Record]) -> float:
        if not records:
            return float("nan")
        codes = self.matrix(records)
        return float(np.mean([self.macro_f1(records, head, codes) for head in HEADS]))


def macro_f1(records: Sequence[Record], head: str) -> float:
    return LabelCodes().macro_f1(records, head)


def mean_macro_f1(records: Sequence[Record]) -> float:
    return LabelCodes().mean_macro_f1(records)


def motor_metrics() -> list[Metric]:
    """Headline first: mean macro-F1, then macro-F1 and accuracy per head, then invalid-answer rates
    (accuracy and invalid rate are means of the per-sample scores of `MotorTask.score`)."""
    codes = LabelCodes()  # one per run: its memo lives as long as the metrics
    metrics = [Metric("mean_macro_f1", codes.mean_macro_f1, scale=100.0)]
    for head in HEADS:
        metrics.append(Metric(f"macro_f1_{head}", lambda rs, h=head: codes.macro_f1(rs, h), scale=100.0))
    for head in HEADS:
        metrics.append(Metric(f"accuracy_{head}", mean_of=f"correct_{head}", scale=100.0))
    for head in HEADS:
        metrics.append(Metric(f"invalid_rate_{head}", mean_of=f"invalid_{head}", higher_is_better=False))
    return metrics


def head_report(records: Sequence[Record], head: str, vocabulary: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-class F1, the confusion matrix (rows = targets, columns = predictions with an 'invalid'
    column) and invalid-answer counts of one head."""
    y_true, y_pred = _pairs(records, head)
    labels = list(vocabulary) if vocabulary else _labels(y_true, y_pred)
    per_class = (f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0) if y_true
                 else np.zeros(len(labels)))
    columns = [*labels, INVALID]
    matrix = confusion_matrix(y_true, y_pred, labels=columns) if y_true else np.zeros((0, 0))
    return {
        "labels": labels,
        "per_class_f1": {label: float(v) for label, v in zip(labels, per_class, strict=True)},
        "support": {label: int(sum(t == label for t in y_true)) for label in labels},
        "confusion_matrix": {
            "rows": labels,
            "columns": [*labels, "invalid"],
            "counts": [[int(v) for v in row] for row in matrix[: len(labels)]],
        },
        "invalid": int(sum(p == INVALID for p in y_pred)),
        "n": len(y_true),
    }


def judge_ratings(records: Sequence[Record]) -> list[list[Any]]:
    """Per-judge labels of every `--judge` extraction in a run (rows: extractions, columns: judges),
    from the MLLM solver's info and from agent traces."""
    rows: list[list[Any]] = []
    for r in records:
        found = list((r.info.get("judge") or {}).values())
        found += [e["judge"] for e in r.info.get("trace") or [] if isinstance(e, Mapping) and e.get("judge")]
        rows += [list(j["labels"]) for j in found if isinstance(j, Mapping) and j.get("labels")]
    return rows


def motor_report(
    records: Sequence[Record], vocabulary: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    ok = [r for r in records if r.ok]
    heads = {h: head_report(ok, h, (vocabulary or {}).get(h)) for h in HEADS}
    extra: dict[str, Any] = {}
    ratings = judge_ratings(ok)
    if ratings:
        from harness.judges import agreement

        extra["judge_agreement"] = agreement(ratings)
    return {
        "heads": heads,
        "invalid_answers": {h: heads[h]["invalid"] for h in HEADS},
        "samples_with_any_invalid": int(sum(any(r.scores.get(f"invalid_{h}") for h in HEADS) for r in ok)),
        "errored_samples": int(sum(not r.ok for r in records)),
        **extra,
    }
