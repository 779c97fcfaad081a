"""Macro-F1 per head, their mean, accuracy, per-class F1 and confusion matrices.

A prediction is ``{"behavior": label | None, "cognition": ..., "emotion": ...}``; ``None`` (or a label
outside the vocabulary) is an invalid answer. Invalid answers are scored as a sentinel class that
never matches a target: they count as misses of the true class, and the sentinel itself is left out
of the macro average. The macro average runs over the vocabulary labels that occur in the targets or
the valid predictions (sklearn's default label set without the sentinel); on the full benchmark every
vocabulary label occurs in the targets, so this is the whole vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from harness.core import Metric, Record
from harness.metrics import Classification, Coded, counts, encode, score
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


def head_codes(head: str, vocabulary: Sequence[str] | None = None) -> Callable[[Sequence[Record]], Coded]:
    """The `codes` function of one head for harness.metrics: codes in the vocabulary's order (or, with no
    vocabulary, in the sorted labels of the records it is given: fixed for all bootstrap resamples);
    an invalid answer is code -1."""

    def codes(records: Sequence[Record]) -> Coded:
        y_true, y_pred = _pairs(records, head)
        labels = list(vocabulary) if vocabulary else _labels(y_true, y_pred)
        return Coded(encode(y_true, labels), encode(y_pred, labels), tuple(labels))

    return codes


def macro_f1(records: Sequence[Record], head: str, vocabulary: Sequence[str] | None = None) -> float:
    """sklearn's ``f1_score(labels=..., average="macro", zero_division=0)`` of one head."""
    return Classification(head_codes(head, vocabulary)).evaluate(records)


def mean_macro_f1(records: Sequence[Record], vocabulary: Mapping[str, Sequence[str]] | None = None) -> float:
    return float(np.mean([macro_f1(records, head, (vocabulary or {}).get(head)) for head in HEADS]))


def motor_metrics(vocabulary: Mapping[str, Sequence[str]] | None = None) -> list[Metric]:
    """Headline first: mean macro-F1, then macro-F1 and accuracy per head, then invalid-answer rates
    (accuracy and invalid rate are means of the per-sample scores of `MotorTask.score`). Macro-F1 runs
    over the vocabulary's labels, a fixed set, so a resample that misses a rare label scores it 0 instead
    of dropping it (without a vocabulary: the labels of the whole run)."""
    specs = {h: Classification(head_codes(h, (vocabulary or {}).get(h)), "f1", "macro") for h in HEADS}
    metrics = [Metric("mean_macro_f1", classification=tuple(specs.values()), scale=100.0)]
    for head in HEADS:
        metrics.append(Metric(f"macro_f1_{head}", classification=specs[head], scale=100.0))
    for head in HEADS:
        metrics.append(Metric(f"accuracy_{head}", mean_of=f"correct_{head}", scale=100.0))
    for head in HEADS:
        metrics.append(Metric(f"invalid_rate_{head}", mean_of=f"invalid_{head}", higher_is_better=False))
    return metrics


def head_report(records: Sequence[Record], head: str, vocabulary: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-class F1, the confusion matrix (rows = targets, columns = predictions with an 'invalid'
    column) and invalid-answer counts of one head."""
    coded = head_codes(head, vocabulary)(records)
    labels = list(coded.labels)
    c = counts(coded)
    per_class = np.nan_to_num(score(c, coded.k, False, "f1", None))  # no samples: 0
    matrix = c.reshape(coded.k, coded.k + 1)
    return {
        "labels": labels,
        "per_class_f1": {label: float(v) for label, v in zip(labels, per_class, strict=True)},
        "support": {label: int(v) for label, v in zip(labels, matrix.sum(axis=1), strict=True)},
        "confusion_matrix": {
            "rows": labels,
            "columns": [*labels, "invalid"],
            "counts": matrix.tolist(),
        },
        "invalid": int((coded.pred < 0).sum()),
        "n": len(records),
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
