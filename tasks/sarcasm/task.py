"""The `sarcasm` task: MUStARD (Castro et al. 2019) and the MUStARD++ CSV layout."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from harness.core import JSON, DataError, Fold, Metric, Record, Sample, Task
from tasks.sarcasm import bundled, loader, protocols
from tasks.sarcasm.metrics import confusion_summary, prediction_label, sarcasm_metrics

SPEAKER_DEPENDENT = "speaker-dependent"
SPEAKER_INDEPENDENT = "speaker-independent"
PLUS_PLUS_5FOLD = "mustard++-5fold"


def _is_mustard_folder(path: Path) -> bool:
    return (path / loader.ANNOTATIONS_FILE).is_file()


def _is_plus_plus_folder(path: Path) -> bool:
    return (path / loader.MUSTARD_PLUS_PLUS_FILE).is_file()


def validate_data_dir(path: Path) -> Path:
    """Check that `path` (or its `mustard/` subfolder) holds MUStARD or MUStARD++ and return it."""
    if not path.exists():
        raise DataError(f"{path}: data folder does not exist")
    for candidate in (path, path / SarcasmTask.data_folder):
        if _is_mustard_folder(candidate):
            has_split = any((candidate / name).is_file()
                            for name in (loader.OFFICIAL_SPLIT_FILE, loader.DERIVED_SPLIT_FILE))
            if not has_split:
                raise DataError(f"{candidate}: has {loader.ANNOTATIONS_FILE} but no fold file "
                                f"({loader.OFFICIAL_SPLIT_FILE} or {loader.DERIVED_SPLIT_FILE})")
            return candidate
        if _is_plus_plus_folder(candidate):
            return candidate
    raise DataError(f"{path}: expected MUStARD's {loader.ANNOTATIONS_FILE} (+ {loader.OFFICIAL_SPLIT_FILE}) "
                    f"or MUStARD++'s {loader.MUSTARD_PLUS_PLUS_FILE}")


class SarcasmTask(Task):
    """Sarcasm detection in TV-show dialogue: is the utterance sarcastic, given its context?"""

    name: ClassVar[str] = "sarcasm"
    description: ClassVar[str] = "MUStARD sarcasm detection (text, context, speaker; clips when present)"
    protocols: ClassVar[Mapping[str, str]] = {
        SPEAKER_DEPENDENT: "official 5-fold CV (split_indices.p, Python-2 key order; 69/69 per test fold)",
        SPEAKER_INDEPENDENT: "train on BBT/GOLDENGIRLS/SARCASMOHOLICS (334), test on FRIENDS (356)",
        PLUS_PLUS_5FOLD: "MUStARD++ CSV: 5-fold StratifiedKFold, shuffle, random_state=0",
    }
    default_protocol: ClassVar[str] = SPEAKER_DEPENDENT
    default_solver: ClassVar[str] = "tfidf"
    mllm_solver: ClassVar[str | None] = "mllm"
    data_folder: ClassVar[str] = "mustard"
    accepted_roles: ClassVar[tuple[str, ...] | None] = (r"judge\d*",)  # --judge: label extraction
    cluster_key: ClassVar[str | None] = None

    def resolve_data(self, data: Path | None, *, environ: Mapping[str, str] | None = None) -> Path:
        """`data` if given; else $HARNESS_DATA/mustard; else the MUStARD files shipped in this package
        (no network needed)."""
        if data is not None:
            return validate_data_dir(Path(data))
        folder, _ = bundled.default_data_dir(self.data_folder, os.environ if environ is None else environ)
        if not folder.exists():
            raise DataError(f"{folder}: not found (HARNESS_DATA is set; put MUStARD's data/ files there "
                            "or pass --data)")
        return validate_data_dir(folder)

    def data_status(self, data_root: Path | None) -> str:
        if data_root is None:
            return f"shipped MUStARD text ({bundled.BUNDLED_DIR})"
        return super().data_status(data_root)

    def detect_protocol(self, data_dir: Path) -> str | None:
        """A folder holding only MUStARD++'s CSV implies its 5-fold protocol."""
        if _is_plus_plus_folder(data_dir) and not _is_mustard_folder(data_dir):
            return PLUS_PLUS_5FOLD
        return None

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        if protocol not in self.protocols:
            raise DataError(f"unknown protocol {protocol!r} for sarcasm; choose one of {', '.join(self.protocols)}")
        if protocol == PLUS_PLUS_5FOLD:
            csv_path = data_dir / loader.MUSTARD_PLUS_PLUS_FILE
            return protocols.plus_plus_stratified_folds(loader.mustard_plus_plus_samples(csv_path), csv_path)
        if not _is_mustard_folder(data_dir):
            raise DataError(f"{data_dir}: protocol {protocol!r} needs MUStARD's {loader.ANNOTATIONS_FILE}"
                            + (f"; this folder holds MUStARD++, use --protocol {PLUS_PLUS_5FOLD}"
                               if _is_plus_plus_folder(data_dir) else ""))
        samples = loader.mustard_samples(data_dir)
        if protocol == SPEAKER_INDEPENDENT:
            return protocols.speaker_independent_split(samples, data_dir / loader.ANNOTATIONS_FILE)
        official = loader.official_folds(data_dir, list(samples))
        return protocols.speaker_dependent_folds(samples, official, data_dir)

    def score(self, sample: Sample, prediction: JSON) -> dict[str, JSON]:
        label = prediction_label(prediction)
        return {"correct": 1.0 if label is not None and label == bool(sample.target) else 0.0}

    def metrics(self, protocol: str) -> list[Metric]:
        return sarcasm_metrics()

    def report(self, records: Sequence[Record], protocol: str, out_dir: Path) -> dict[str, JSON]:
        """Confusion matrix and per-class P/R/F1 for each fold and for all folds pooled; the judges'
        agreement when `--judge` read labels."""
        ok = [r for r in records if r.ok]
        by_fold: dict[str, list[Record]] = {}
        for record in ok:
            by_fold.setdefault(record.fold, []).append(record)
        result: dict[str, Any] = {
            "per_fold": {name: confusion_summary(fold_records) for name, fold_records in sorted(by_fold.items())},
            "pooled": confusion_summary(ok),
            "failed_records": len(records) - len(ok),
        }
        # `--judge` panels that read labels out of free-text answers: their agreement over the run (Cohen's
        # kappa for two judges, Fleiss' for more), as motor reports it
        ratings = [list(r.info["judge"]["labels"]) for r in ok
                   if isinstance(r.info.get("judge"), Mapping) and r.info["judge"].get("labels")]
        if ratings:
            from harness.judges import agreement

            result["judge_agreement"] = agreement(ratings)
        return result
