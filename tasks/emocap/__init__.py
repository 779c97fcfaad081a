"""emocap: zero-shot facial expression recognition with CLIP-style models (EmoCapCLIP, Exp-CLIP `test.py`).

Protocols are the sets of Exp-CLIP's zero-shot table: static `rafdb` (7 classes), `affectnet7`,
`affectnet8` and `ferplus` (8 classes), each one fold (the official test split is solved, the train split
is given to solvers that learn: `majority`, `linear-probe`; zero-shot solvers ignore it); and dynamic
`dfew`, `mafw` (5 folds each, metrics averaged over folds as Exp-CLIP does), `ferv39k`, `afew` in the
annotation-list layout of `dynamic.py` (16 frames per clip, features pooled over frames). Metrics: `war`
(accuracy) and `uar` (mean per-class recall), from `harness.metrics` over the protocol's fixed class
list; an unreadable answer is wrong for every class.
The report adds per-class recall and the confusion matrix. Layouts: `loaders.py`; labels: `labels.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from harness import metrics as cm
from harness.core import JSON, DataError, Fold, Metric, Record, Sample, Task
from tasks.emocap import dynamic, solvers  # noqa: F401 - registers the solvers
from tasks.emocap.labels import CLASSES_8, PROTOCOL_CLASSES
from tasks.emocap.loaders import detect_layout, load_splits, locate

INVALID = "__invalid__"  # encodes outside the label set: wrong for every class


def predicted_label(prediction: JSON, classes: Sequence[str]) -> str:
    """The class a prediction names, or INVALID (never a guess)."""
    label = prediction.get("label") if isinstance(prediction, dict) else prediction
    return label if isinstance(label, str) and label in classes else INVALID


def _labels(records: Sequence[Record]) -> tuple[list[str], list[str]]:
    return [r.target for r in records], [r.scores.get("pred", INVALID) for r in records]


class EmocapTask(Task):
    name: ClassVar[str] = "emocap"
    description: ClassVar[str] = "Zero-shot facial expression recognition (RAF-DB, AffectNet-7/8, FER+): UAR, WAR"
    protocols: ClassVar[dict[str, str]] = {
        "rafdb": "RAF-DB basic, 7 classes: test_* images (train_* for trained solvers)",
        "affectnet7": "AffectNet validation list, 7 classes (no contempt)",
        "affectnet8": "AffectNet validation list, 8 classes",
        "ferplus": "FER+ majority labels (FERPlus rules) of FER2013 PrivateTest, 8 classes",
        "dfew": "DFEW video clips, 5 folds (annotation lists), 7 classes, 16 frames per clip",
        "ferv39k": "FERV39k video clips (annotation lists), 7 classes, 16 frames per clip",
        "mafw": "MAFW video clips, 5 folds (annotation lists), 11 classes, 16 frames per clip",
        "afew": "AFEW validation clips (annotation list), 7 classes, 16 frames per clip",
    }
    default_protocol: ClassVar[str] = "rafdb"
    default_solver: ClassVar[str] = "majority"
    data_folder: ClassVar[str] = "emocap"
    accepted_roles: ClassVar[tuple[str, ...] | None] = ()  # no model roles
    example_data: ClassVar[tuple[str, str] | None] = ("python -m tasks.emocap.synthetic /tmp/raf", "/tmp/raf")
    version: ClassVar[str] = "1"
    scorer_version: ClassVar[str] = "1"

    def detect_protocol(self, data_dir: Path) -> str | None:
        found = detect_layout(data_dir) or dynamic.detect(data_dir)
        if found is None:
            for proto in ("rafdb", "ferplus", "affectnet7"):
                try:
                    locate(data_dir, proto)
                    return proto
                except DataError:
                    continue
        return found

    def resolve_data(self, data: Path | None) -> Path:
        path = super().resolve_data(data)
        if self.detect_protocol(path) is None:
            raise DataError(f"{path}: no RAF-DB, FER+, AffectNet or video annotation-list layout found "
                            "(basic/EmoLabel/list_patition_label.txt, fer2013new.csv, Manually_Annotated_file_lists/, "
                            "DFEW_set_1_test.txt, MAFW_set_1_test.txt, FERV39k_test.txt, AFEW_validation.txt)")
        return path

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        if protocol not in PROTOCOL_CLASSES:
            raise DataError(f"unknown emocap protocol {protocol!r}; known: {', '.join(PROTOCOL_CLASSES)}")
        classes = list(PROTOCOL_CLASSES[protocol])

        def with_classes(samples: list[Sample]) -> list[Sample]:
            return [Sample(s.id, {**s.inputs, "classes": classes}, s.target, s.groups) for s in samples]

        if protocol in dynamic.LISTS:
            return [Fold(name, with_classes(test), train=with_classes(train))
                    for name, test, train in dynamic.fold_lists(data_dir, protocol)]
        splits = load_splits(locate(data_dir, protocol), protocol)

        if not splits["test"]:
            raise DataError(f"{data_dir}: the {protocol} test split is empty")
        return [Fold(protocol, with_classes(splits["test"]), train=with_classes(splits.get("train", [])))]

    def score(self, sample: Sample, prediction: JSON) -> dict[str, JSON]:
        if isinstance(sample.target, dict):  # a label the loader could not read
            raise DataError(sample.target.get("error", "bad reference label"))
        # Only target and prediction are used (`harness score` re-scores from samples.jsonl): a name outside
        # every FER class list is invalid; one outside this protocol's list is wrong in `uar` too.
        label = predicted_label(prediction, CLASSES_8)
        return {"correct": float(label == sample.target), "invalid": float(label == INVALID), "pred": label}

    def metrics(self, protocol: str) -> list[Metric]:
        classes = tuple(PROTOCOL_CLASSES.get(protocol, ()))

        def codes(records: Sequence[Record]) -> cm.Coded:
            true, pred = _labels(records)
            return cm.Coded(cm.encode(true, classes), cm.encode(pred, classes), classes)

        per_fold = protocol in ("dfew", "mafw")  # Exp-CLIP averages UAR/WAR over the 5 folds
        return [
            Metric("uar", classification=cm.Classification(codes, stat="recall", average="macro"), scale=100.0,
                   per_fold=per_fold),
            Metric("war", classification=cm.Classification(codes, stat="accuracy"), scale=100.0, per_fold=per_fold),
            Metric("invalid_rate", mean_of="invalid", higher_is_better=False, scale=100.0),
        ]

    def report(self, records: Sequence[Record], protocol: str, out_dir: Path) -> dict[str, Any]:
        ok = [r for r in records if r.ok]
        classes = list(PROTOCOL_CLASSES.get(protocol, ()))
        matrix, _ = cm.confusion(*_labels(ok), labels=classes)
        per = cm.per_class(*_labels(ok), labels=classes)
        return {"classes": classes, "confusion": matrix.tolist(),
                "recall_per_class": {c: per[c]["recall"] for c in classes},
                "support": {c: per[c]["support"] for c in classes}}

