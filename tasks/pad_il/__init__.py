"""pad_il: face anti-spoofing, OULU-NPU protocols, cross-dataset, and rehearsal-free domain-incremental
learning (SVLP-IL, arXiv 2512.19022).

A solver scores every sampled frame of a video (higher = live); the video's score is the mean of its frame
scores (the prediction holds both). Metric definitions are in `padmetrics.py`, protocols in
`protocols.py`, layouts in `datasets.py`.
- OULU-NPU (`oulu-p1`..`oulu-p4`): `acer` (headline), `apcer`, `bpcer` at the dev EER threshold; P3/P4 are
  the mean over their six splits. `hter`/`auc` of the test scores are given too.
- `cross`: `hter` at the EER threshold of the held-out domain's scores and `auc`, mean over held-out domains.
- `il`: after the last step, the mean over domains of `hter` (headline) and `auc`; `bwt_hter` = mean over
  earlier domains of (final HTER - HTER just after learning it) (positive = forgetting, as HTER is an
  error); the report holds the step x domain HTER and AUC matrices and the per-step seen-domain mean.
  Unseen domains: after every step but the last, the test videos of the domains not learned yet are
  solved too (split `unseen`); `hter_unseen` = mean over those steps of the mean unseen-domain HTER (each
  domain at the EER threshold of its own scores), and the report's `hter_unseen` holds the step x domain
  matrix and the per-step mean. No CI for it (the core resamples only test records).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from harness.core import JSON, DataError, Fold, Metric, Record, Sample, SolverOptions, Task
from harness.sequential import accuracy_matrix, backward_transfer, seen_average
from tasks.pad_il import padmetrics as pm
from tasks.pad_il import (
    prompt_solver,  # noqa: F401 - registers clip-prompt
    solvers,  # noqa: F401 - registers the solvers
)
from tasks.pad_il.datasets import find_domains
from tasks.pad_il.protocols import IL_ORDER, OULU_PROTOCOLS, cross_folds, il_folds, oulu_folds


class PadProtocolOptions(SolverOptions):
    """`-P order=C,M,O,I`: the order of the domain-incremental sequence (protocol `il`)."""

    order: str = Field(",".join(IL_ORDER), description="il step order: letters M (MSU), C (CASIA), I (Replay), "
                       "O (OULU), comma-separated; domains absent from --data are skipped")

    @field_validator("order")
    @classmethod
    def _letters(cls, v: str) -> str:
        letters = [x.strip().upper() for x in v.split(",") if x.strip()]
        if sorted(set(letters)) != sorted(letters) or not set(letters) <= set(IL_ORDER) or len(letters) < 2:
            raise ValueError(f"order {v!r}: give two or more distinct letters of {','.join(IL_ORDER)}")
        return ",".join(letters)


def _st(records: Sequence[Record]) -> tuple[list[float], list[int]]:
    return [r.scores["score"] for r in records], [int(r.target["label"]) for r in records]


def _split(records: Sequence[Record], name: str) -> list[Record]:
    return [r for r in records if getattr(r, "split", "test") == name]


def hter_of(records: Sequence[Record]) -> float:
    return pm.hter(*_st(records))


def auc_of(records: Sequence[Record]) -> float:
    return pm.auc(*_st(records))


def _dev_rates(index: int) -> Callable[[Sequence[Record]], float]:
    """APCER (0), BPCER (1) or ACER (2) on test at the EER threshold of the dev records."""

    def fn(records: Sequence[Record]) -> float:
        dev, test = _split(records, "dev"), _split(records, "test")
        t = pm.eer_threshold(*_st(dev))
        if math.isnan(t) or not test:
            return math.nan
        scores, labels = _st(test)
        return pm.apcer_bpcer_acer(scores, labels, [r.target["attack"] for r in test], t)[index]

    return fn


def _step_no(fold: str) -> int:
    return int(fold.split(":", 1)[0])


def _final(fn: Callable[[Sequence[Record]], float]) -> Callable[[Sequence[Record]], float]:
    """Mean over domains of `fn` on the records of the last step."""

    def final(records: Sequence[Record]) -> float:
        if not records:
            return math.nan
        last = max(_step_no(r.fold) for r in records)
        by_domain: dict[str, list[Record]] = {}
        for r in records:
            if _step_no(r.fold) == last:
                by_domain.setdefault(r.groups["domain"], []).append(r)
        values = [fn(rs) for rs in by_domain.values()]
        return sum(values) / len(values) if values else math.nan

    return final


def _ordered(records: Sequence[Record]) -> list[Record]:
    return sorted(records, key=lambda r: _step_no(r.fold))


def bwt_hter(records: Sequence[Record]) -> float:
    matrix, _, _ = accuracy_matrix(_ordered(records), hter_of)
    return backward_transfer(matrix)


def unseen_by_step(records: Sequence[Record]) -> tuple[list[str], list[str], list[list[float | None]], list[float]]:
    """(steps, domains, matrix, per-step mean) of the HTER on the domains not learned yet, from the
    `unseen` records; steps without unseen domains (the last) are absent."""
    matrix, steps, domains = accuracy_matrix(_ordered(records), hter_of)
    return steps, domains, matrix, seen_average(matrix)


def hter_unseen(records: Sequence[Record]) -> float:
    """Mean over steps that have unseen domains of (mean over those domains of the HTER, each at the EER
    threshold of its own scores); `records` are the `unseen` split's."""
    means = [m for m in unseen_by_step(records)[3] if not math.isnan(m)]
    return sum(means) / len(means) if means else math.nan


class PadIlTask(Task):
    name: ClassVar[str] = "pad_il"
    description: ClassVar[str] = "Face anti-spoofing: OULU-NPU ACER, cross-dataset HTER/AUC, domain-incremental BWT"
    protocols: ClassVar[dict[str, str]] = {
        "oulu-p1": "OULU-NPU protocol 1 (unseen sessions): ACER at the dev threshold",
        "oulu-p2": "OULU-NPU protocol 2 (unseen attack devices)",
        "oulu-p3": "OULU-NPU protocol 3 (unseen phones, 6 splits, mean)",
        "oulu-p4": "OULU-NPU protocol 4 (all unseen, 6 splits, mean)",
        "cross": "leave one dataset out over O/C/I/M present: HTER at the EER threshold, AUC",
        "il": "domain-incremental M->C->I->O (present ones): final mean HTER/AUC, BWT, accuracy matrices",
    }
    default_protocol: ClassVar[str] = "oulu-p1"
    default_solver: ClassVar[str] = "lbp-svm"
    data_folder: ClassVar[str] = "pad"
    accepted_roles: ClassVar[tuple[str, ...] | None] = ()  # no model roles
    example_data: ClassVar[tuple[str, str] | None] = ("python -m tasks.pad_il.synthetic /tmp/pad", "/tmp/pad")
    cluster_key: ClassVar[str | None] = "subject"
    version: ClassVar[str] = "1"
    scorer_version: ClassVar[str] = "1"

    def sequential(self, protocol: str) -> bool:
        return protocol == "il"

    def detect_protocol(self, data_dir: Path) -> str | None:
        found = find_domains(data_dir) if data_dir.is_dir() else {}
        if len(found) >= 2:
            return "il"
        if "O" in found and (found["O"] / "Protocols").is_dir():
            return "oulu-p1"
        return None

    def resolve_data(self, data: Path | None) -> Path:
        path = super().resolve_data(data)
        if not find_domains(path):
            raise DataError(f"{path}: no OULU-NPU (Train_files/), CASIA-FASD (train_release/), Replay-Attack "
                            "(train/real/, devel/) or MSU-MFSD (scene01/) layout here or in sub-folders")
        return path

    ProtocolOptions = PadProtocolOptions

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        return self.folds_with(data_dir, protocol, PadProtocolOptions())

    def folds_with(self, data_dir: Path, protocol: str, options: Any) -> list[Fold]:
        if protocol != "il" and options.order != PadProtocolOptions().order:
            raise DataError(f"-P order applies to protocol il only, not {protocol!r}")
        if protocol in OULU_PROTOCOLS:
            found = find_domains(data_dir)
            if "O" not in found:
                raise DataError(f"{data_dir}: no OULU-NPU copy (Train_files/, Dev_files/, Test_files/, Protocols/)")
            return oulu_folds(found["O"], OULU_PROTOCOLS[protocol])
        if protocol == "cross":
            return cross_folds(data_dir)
        if protocol == "il":
            return il_folds(data_dir, tuple(options.order.split(",")))
        raise DataError(f"unknown pad_il protocol {protocol!r}; known: {', '.join(self.protocols)}")

    def score(self, sample: Sample, prediction: JSON) -> dict[str, JSON]:
        score = prediction.get("score") if isinstance(prediction, dict) else None
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ValueError(f"prediction has no finite 'score' (got {score!r})")
        return {"score": float(score), "live": float(sample.target["label"])}

    def metrics(self, protocol: str) -> list[Metric]:
        if protocol in OULU_PROTOCOLS:
            per_fold = protocol in ("oulu-p3", "oulu-p4")
            both = ("dev", "test")
            return [
                Metric("acer", _dev_rates(2), per_fold=per_fold, higher_is_better=False, scale=100.0, splits=both),
                Metric("apcer", _dev_rates(0), per_fold=per_fold, higher_is_better=False, scale=100.0, splits=both),
                Metric("bpcer", _dev_rates(1), per_fold=per_fold, higher_is_better=False, scale=100.0, splits=both),
                Metric("hter", hter_of, per_fold=per_fold, higher_is_better=False, scale=100.0),
                Metric("auc", auc_of, per_fold=per_fold, scale=100.0),
            ]
        if protocol == "cross":
            return [Metric("hter", hter_of, per_fold=True, higher_is_better=False, scale=100.0),
                    Metric("auc", auc_of, per_fold=True, scale=100.0)]
        return [
            Metric("hter", _final(hter_of), higher_is_better=False, scale=100.0),
            Metric("auc", _final(auc_of), scale=100.0),
            Metric("bwt_hter", bwt_hter, higher_is_better=False, scale=100.0),
            # the unseen split is not resampled by the core (only test/probe are): no CI rather than a
            # zero-width one
            Metric("hter_unseen", hter_unseen, higher_is_better=False, scale=100.0, splits=("unseen",),
                   resample="none"),
        ]

    def report(self, records: Sequence[Record], protocol: str, out_dir: Path) -> dict[str, Any]:
        ok = [r for r in records if r.ok and getattr(r, "split", "test") == "test"]
        if protocol == "il":
            out: dict[str, Any] = {}
            for name, fn in (("hter", hter_of), ("auc", auc_of)):
                matrix, steps, domains = accuracy_matrix(_ordered(ok), fn)
                out[name] = {"steps": steps, "domains": domains, "matrix": matrix,
                             "seen_mean": seen_average(matrix), "bwt": backward_transfer(matrix)}
            unseen = [r for r in records if r.ok and getattr(r, "split", "test") == "unseen"]
            steps, domains, matrix, means = unseen_by_step(unseen)
            out["hter_unseen"] = {"steps": steps, "domains": domains, "matrix": matrix, "mean": means}
            return out
        by_fold: dict[str, list[Record]] = {}
        for r in ok:
            by_fold.setdefault(r.fold, []).append(r)
        return {"per_fold": {f: {"hter": hter_of(rs), "auc": auc_of(rs), "n": len(rs)} for f, rs in by_fold.items()}}
