"""micro_au: micro-expression action-unit detection, leave-one-subject-out (Micro-AU CLIP; MEB protocol).

Protocols `casme2-loso` and `samm-loso`: one fold per subject (its clips are the test part, every other
subject's clips the train part). Each clip is a multi-label target over the dataset's AU set (`aus.py`).
Metric `au_f1_mean` (headline): per-AU binary F1 of the positive class on the predictions POOLED over all
folds, then the mean over AUs (pinned: MEB has changed its default between versions);
`au_f1_subject_mean` is the same computed per subject and averaged over subjects (named apart, never
mixed). The CI resamples subjects over the pooled predictions (`bootstrap_within_folds=False`), so a LOSO
run gets an interval of non-zero width. The report gives the per-AU F1, precision, recall and positive
counts, and how many apexes were imputed by the missing-frame rule (`loaders.py`).
Protocol `mer3` (`mer.py`): 3-class emotion recognition on the composite set, `uf1` and `uar` pooled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness import metrics as hm
from harness.core import JSON, DataError, Fold, Metric, Record, Sample, Task
from tasks.micro_au import solvers  # noqa: F401 - registers the solvers
from tasks.micro_au.aus import AU_SETS, au_name
from tasks.micro_au.loaders import detect_layout, load_samples
from tasks.micro_au.mer import CLASSES as MER_CLASSES
from tasks.micro_au.mer import find_datasets, mer3_folds

PROTOCOL_DATASET = {"casme2-loso": "casme2", "samm-loso": "samm"}


def au_keys(protocol: str) -> tuple[str, ...]:
    return tuple(au_name(a) for a in AU_SETS[PROTOCOL_DATASET[protocol]])


def _value(x: Any) -> int:
    """0/1 of a predicted AU; anything else (missing, 0.5, "yes") is invalid (-1: counted wrong)."""
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, (int, float)) and x in (0, 1):
        return int(x)
    return -1


class MicroAuTask(Task):
    name: ClassVar[str] = "micro_au"
    description: ClassVar[str] = "Micro-expression AU detection, LOSO on CASME II / SAMM (per-AU F1, pooled)"
    protocols: ClassVar[dict[str, str]] = {
        "casme2-loso": "CASME II, one fold per subject; AUs " + ", ".join(au_keys("casme2-loso")),
        "samm-loso": "SAMM, one fold per subject; AUs " + ", ".join(au_keys("samm-loso")),
        "mer3": "3-class MER (negative/positive/surprise) on CASME II + SAMM present, LOSO; UF1, UAR",
    }
    default_protocol: ClassVar[str] = "casme2-loso"
    default_solver: ClassVar[str] = "flow-svm"
    data_folder: ClassVar[str] = "micro_au"
    accepted_roles: ClassVar[tuple[str, ...] | None] = ()  # no model roles
    example_data: ClassVar[tuple[str, str] | None] = ("python -m tasks.micro_au.synthetic /tmp/casme2 casme2",
                                                      "/tmp/casme2")
    cluster_key: ClassVar[str | None] = "subject"
    bootstrap_within_folds: ClassVar[bool] = False
    version: ClassVar[str] = "1"
    scorer_version: ClassVar[str] = "1"

    def detect_protocol(self, data_dir: Path) -> str | None:
        found = detect_layout(data_dir)
        if found is None and data_dir.is_dir() and find_datasets(data_dir):
            return "mer3"  # only sub-folders hold copies: the composite protocol
        return found

    def resolve_data(self, data: Path | None) -> Path:
        path = super().resolve_data(data)
        if self.detect_protocol(path) is None:
            raise DataError(f"{path}: neither a CASME II (CASME2-coding-*.xlsx) nor a SAMM "
                            "(SAMM_Micro_FACS_Codes*.xlsx) coding file here")
        return path

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        if protocol == "mer3":
            return mer3_folds(data_dir, {d: list(au_keys(p)) for p, d in PROTOCOL_DATASET.items()})
        if protocol not in PROTOCOL_DATASET:
            raise DataError(f"unknown micro_au protocol {protocol!r}; known: {', '.join(PROTOCOL_DATASET)}")
        keys = list(au_keys(protocol))
        samples = [Sample(s.id, {**s.inputs, "au_keys": keys}, s.target, s.groups)
                   for s in load_samples(data_dir, PROTOCOL_DATASET[protocol])]
        subjects = sorted({s.groups["subject"] for s in samples})
        if len(subjects) < 2:
            raise DataError(f"{data_dir}: LOSO needs at least two subjects, found {subjects}")
        return [Fold(subject, [s for s in samples if s.groups["subject"] == subject],
                     train=[s for s in samples if s.groups["subject"] != subject]) for subject in subjects]

    def score(self, sample: Sample, prediction: JSON) -> dict[str, JSON]:
        target = sample.target
        if isinstance(target, dict) and "emotion3" in target:
            label = prediction.get("emotion3") if isinstance(prediction, dict) else None
            label = label if label in MER_CLASSES else "__invalid__"
            return {"pred": label, "correct": float(label == target["emotion3"]),
                    "invalid": float(label == "__invalid__")}
        if not isinstance(target, dict) or "aus" not in target:
            raise DataError((target or {}).get("error", "bad reference AUs") if isinstance(target, dict)
                            else "bad reference AUs")
        pred = prediction if isinstance(prediction, dict) else {}
        values = [_value(pred.get(k)) for k in target["aus"]]
        return {"pred": values, "invalid": float(any(v < 0 for v in values)),
                "exact": float(values == list(target["aus"].values()))}

    def metrics(self, protocol: str) -> list[Metric]:
        if protocol == "mer3":
            def mer_codes(records: Sequence[Record]) -> hm.Coded:
                return hm.Coded(hm.encode([r.target["emotion3"] for r in records], MER_CLASSES),
                                hm.encode([r.scores["pred"] for r in records], MER_CLASSES), MER_CLASSES)

            return [
                Metric("uf1", classification=hm.Classification(mer_codes, stat="f1", average="macro"), scale=100.0),
                Metric("uar", classification=hm.Classification(mer_codes, stat="recall", average="macro"),
                       scale=100.0),
                Metric("invalid_rate", mean_of="invalid", higher_is_better=False, scale=100.0),
            ]
        keys = au_keys(protocol)

        def codes(records: Sequence[Record]) -> hm.Coded:
            true = np.array([[r.target["aus"][k] for k in keys] for r in records], dtype=np.int64)
            true = true.reshape(-1, len(keys))
            pred = np.array([r.scores["pred"] for r in records], dtype=np.int64).reshape(-1, len(keys))
            return hm.Coded(true, pred, keys)

        f1 = hm.Classification(codes, stat="f1", average="macro")
        return [
            Metric("au_f1_mean", classification=f1, scale=100.0),
            Metric("au_f1_subject_mean", classification=f1, per_fold=True, scale=100.0),
            Metric("invalid_rate", mean_of="invalid", higher_is_better=False, scale=100.0),
        ]

    def report(self, records: Sequence[Record], protocol: str, out_dir: Path) -> dict[str, Any]:
        ok = [r for r in records if r.ok]
        if not ok:
            return {}
        if protocol == "mer3":
            true, pred = [r.target["emotion3"] for r in ok], [r.scores["pred"] for r in ok]
            matrix, _ = hm.confusion(true, pred, MER_CLASSES)
            return {"classes": list(MER_CLASSES), "confusion": matrix.tolist(),
                    "per_class": hm.per_class(true, pred, MER_CLASSES),
                    "n_clips": {d: sum(r.groups.get("dataset") == d for r in ok) for d in ("casme2", "samm")}}
        keys = au_keys(protocol)
        true = np.array([[r.target["aus"][k] for k in keys] for r in ok])
        pred = np.array([r.scores["pred"] for r in ok])
        per_au = {}
        for j, k in enumerate(keys):
            p, r, f = hm.precision_recall_f1(true[:, j].tolist(), pred[:, j].tolist(), "binary", labels=[0, 1])
            per_au[k] = {"f1": f, "precision": p, "recall": r, "positives": int(true[:, j].sum()),
                         "predicted": int((pred[:, j] == 1).sum())}
        return {"per_au": per_au, "n_clips": len(ok),
                "n_apex_imputed": sum(r.groups.get("apex") == "imputed" for r in records),
                "n_subjects": len({r.groups.get("subject") for r in ok}),
                "f1_definition": "binary F1 of the positive class per AU on predictions pooled over LOSO folds"}
