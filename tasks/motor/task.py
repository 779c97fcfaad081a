"""The `motor` task: mental states in collaborative learning (MOTOR-Bench, arXiv 2605.09703).

Each clip has three label heads from self-regulated-learning theory: behavior, cognition, emotion.
Protocol `zero-shot`: every clip of the manifest is one test fold. Metrics: macro-F1 per head and
their mean (headline), accuracy per head, invalid-answer rates; the report adds per-class F1 and
confusion matrices. The bootstrap resamples sessions, since clips of one session are not independent.
The data layout is documented in `tasks.motor.data`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from harness.core import JSON, DataError, Fold, Metric, Record, Sample, Task
from tasks.motor.data import (
    HEADS,
    LABELS_NAME,
    MANIFEST_NAMES,
    find_manifest,
    label_prior,
    load_manifest,
    load_vocabulary,
)
from tasks.motor.metrics import INVALID, motor_metrics, motor_report, predicted_label

ZERO_SHOT = "zero-shot"


def _is_motor_folder(path: Path) -> bool:
    return any((path / name).is_file() for name in MANIFEST_NAMES)


class MotorTask(Task):
    name: ClassVar[str] = "motor"
    description: ClassVar[str] = "MOTOR-Bench: behavior / cognition / emotion of learners in group work"
    protocols: ClassVar[dict[str, str]] = {ZERO_SHOT: "all clips as one test fold (no training data)"}
    default_protocol: ClassVar[str] = ZERO_SHOT
    default_solver: ClassVar[str] = "majority"
    mllm_solver: ClassVar[str | None] = "mllm"
    data_folder: ClassVar[str] = "motor"
    accepted_roles: ClassVar[tuple[str, ...] | None] = (r"judge\d*",)  # --judge: label extraction
    example_data: ClassVar[tuple[str, str] | None] = ("python -m tasks.motor.fixture /tmp/motor", "/tmp/motor")
    cluster_key: ClassVar[str | None] = "session"

    def __init__(self) -> None:
        self.vocabulary: dict[str, list[str]] | None = None  # set by folds(); used by report()

    def resolve_data(self, data: Path | None) -> Path:
        path = super().resolve_data(data)
        for candidate in (path, path / self.data_folder):
            if _is_motor_folder(candidate):
                if not (candidate / LABELS_NAME).is_file():
                    raise DataError(f"{candidate / LABELS_NAME}: label vocabulary file is missing")
                return candidate
        raise DataError(f"{path}: no MOTOR manifest ({' or '.join(MANIFEST_NAMES)}) here or in {self.data_folder}/")

    def load(self, data_dir: Path) -> list[Sample]:
        vocab = load_vocabulary(data_dir / LABELS_NAME)
        clips = load_manifest(find_manifest(data_dir), vocab)
        prior = label_prior(vocab, clips)
        self.vocabulary = vocab.labels
        return [
            Sample(
                id=c.clip_id,
                inputs={
                    "video": str(c.video.resolve()),
                    "transcript": c.transcript,
                    "audio": str(c.audio.resolve()) if c.audio else None,
                    "vocab": vocab.labels,
                    "definitions": vocab.definitions,
                    "prior": prior,
                },
                target=dict(c.labels),
                groups={"session": c.session, "group": c.group},
            )
            for c in clips
        ]

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        if protocol != ZERO_SHOT:
            raise DataError(f"unknown protocol {protocol!r} for motor; choose {ZERO_SHOT}")
        return [Fold("all", self.load(data_dir))]

    def score(self, sample: Sample, prediction: JSON) -> dict[str, JSON]:
        """Per head: correct (1/0) and invalid (1/0); an invalid answer is always wrong."""
        vocab = sample.inputs.get("vocab") or {}
        scores: dict[str, JSON] = {}
        for head in HEADS:
            label = predicted_label(prediction, head, vocab.get(head))
            scores[f"correct_{head}"] = float(label != INVALID and label == sample.target[head])
            scores[f"invalid_{head}"] = float(label == INVALID)
        return scores

    def metrics(self, protocol: str) -> list[Metric]:
        return motor_metrics(self.vocabulary)  # set by folds(): the fixed label set of macro-F1

    def report(self, records: Sequence[Record], protocol: str, out_dir: Path) -> dict[str, Any]:
        return motor_report(records, self.vocabulary)
