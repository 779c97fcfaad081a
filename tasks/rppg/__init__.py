"""rPPG: heart rate from face video (UBFC-rPPG, PURE, MVRD multi-view, real skin-ROI clips).

Signal chain and metrics follow rPPG-Toolbox (`postprocess.py`, `metrics.py` say where and how);
layouts are in `loaders.py`, the classical solvers in `solvers.py`, plots and breakdowns in `report.py`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from harness.core import JSON, DataError, Fold, Metric, Record, Sample, Task
from tasks.rppg import metrics as hr_metrics
from tasks.rppg.loaders import LAYOUTS, check_target, detect_layout, load_samples, read_reference
from tasks.rppg.postprocess import evaluate_windows
from tasks.rppg.solvers import SOLVERS  # noqa: F401 - registers the classical solvers


def _pooled(records: Sequence[Record], key: str) -> list[float | None]:
    out: list[float | None] = []
    for r in records:
        out += list(r.scores.get(key) or [])
    return out


_ARRAYS: dict[int, tuple[weakref.ref, dict[str, np.ndarray]]] = {}


def _pooled_array(records: Sequence[Record], key: str) -> np.ndarray:
    """The per-window values of `key` of all records as one float array (None -> nan). The bootstrap
    calls this for every replicate, so each record's array is built once, remembered by the record's
    identity (a weak reference: a new record at a reused address is never mistaken for an old one)."""
    parts = []
    for r in records:
        entry = _ARRAYS.get(id(r))
        if entry is None or entry[0]() is not r:
            if len(_ARRAYS) > 100_000:  # forget records that are gone
                for k in [k for k, (ref, _) in _ARRAYS.items() if ref() is None]:
                    del _ARRAYS[k]
            entry = _ARRAYS[id(r)] = (weakref.ref(r), {})
        memo = entry[1]
        if key not in memo:
            memo[key] = np.array([np.nan if v is None else v for v in r.scores.get(key) or []], dtype=np.float64)
        parts.append(memo[key])
    return np.concatenate(parts) if parts else np.zeros(0)


def _hr_metric(fn: Callable[[np.ndarray, np.ndarray], float]) -> Callable[[Sequence[Record]], float]:
    return lambda records: fn(_pooled_array(records, "hr_pred"), _pooled_array(records, "hr_ref"))


def _none_if_nan(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None or not np.isfinite(v) else float(v) for v in values]


class RppgTask(Task):
    name = "rppg"
    description = "Remote PPG: heart rate from face video (rPPG-Toolbox post-processing and metrics)"
    protocols = {
        "ubfc": "UBFC-rPPG DATASET_2 (vid.avi + ground_truth.txt) or DATASET_1 (vid.avi + gtdump.xmp)",
        "pure": "PURE: PNG frame folders + 60 Hz pulse-oximeter json (original or toolbox nesting)",
        "mvrd": "MVRD multi-view: <subject>/<scenario>/view1..3 + ppg.csv; views fused (mean or best-snr)",
        "roi": "bias-eval-rppg real skin-ROI clips (whole frame is skin) with a mean HR per video",
    }
    version = "2"  # 2: references validated at load (invalid ones are per-sample errors)
    scorer_version = "2"  # 2: windows of 9 frames skipped, toolbox windowing, references checked against the video
    default_protocol = "ubfc"
    default_solver = "pos"
    data_folder = "rppg"
    accepted_roles = ()  # no model roles
    cluster_key = "subject"

    def __init__(self) -> None:
        self.detected_protocol: str | None = None

    def detect_protocol(self, data_dir: Path) -> str | None:
        """The protocol whose layout `data_dir` holds (for runs without --protocol)."""
        return detect_layout(data_dir)

    def resolve_data(self, data: Path | None) -> Path:
        data = super().resolve_data(data)
        self.detected_protocol = detect_layout(data)
        if self.detected_protocol is None:
            expected = "; ".join(f"{k}: {v}" for k, v in self.protocols.items())
            raise DataError(f"{data}: no rPPG layout found (expected one of — {expected})")
        return data

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        protocol = protocol or self.detected_protocol or detect_layout(data_dir) or self.default_protocol
        if protocol not in LAYOUTS:
            raise DataError(f"unknown rppg protocol {protocol!r}; known: {', '.join(LAYOUTS)}")
        # Classical methods are not trained: one test fold holding every recording.
        return [Fold("test", load_samples(data_dir, protocol))]

    def score(self, sample: Sample, prediction: JSON) -> dict[str, JSON]:
        """Per-window HRs of the prediction's BVP and of the reference, through the same chain. A bad
        reference raises DataError naming its file: the sample is an error, never a number."""
        target = sample.target or {}
        check_target(target)
        bvp = np.asarray(prediction["bvp"], dtype=np.float64)
        fps = float(prediction["fps"])
        chain = {k: prediction[k] for k in ("window_s", "hr_method")}
        chain["band"] = tuple(prediction["band_hz"])
        chain["windowing"] = prediction.get("windowing", "same")
        n_frames = int(prediction.get("n_frames") or len(bvp))  # the video's frames (a toolbox CHROM BVP is shorter)
        if "hr_bpm" in target:
            ref_kw = {"ref_hr_bpm": float(target["hr_bpm"])}
        else:
            ref_kw = {"ref_ppg": read_reference(target, n_frames, fps)}
        windows = evaluate_windows(bvp, fps, **ref_kw, **chain)
        hr_pred = [w.hr_pred for w in windows]
        hr_ref = [w.hr_ref for w in windows]
        scores: dict[str, JSON] = {
            "hr_pred": _none_if_nan(hr_pred),
            "hr_ref": _none_if_nan(hr_ref),
            "abs_err": _none_if_nan([abs(p - r) for p, r in zip(hr_pred, hr_ref, strict=True)]),
            "snr_db": _none_if_nan([w.snr_db for w in windows]),
            "windows_s": [[w.start / fps, w.stop / fps] for w in windows],
            "face_missing_fraction": float(prediction.get("face_missing_fraction", 0.0)),
        }
        if "ref_ppg" in ref_kw:
            scores["macc"] = _none_if_nan([w.macc for w in windows])  # type: ignore[misc]
        for view, info in (prediction.get("views") or {}).items():
            per_view = evaluate_windows(np.asarray(info["bvp"], dtype=np.float64), fps, **ref_kw, **chain)
            scores[f"hr_pred_{view}"] = _none_if_nan([w.hr_pred for w in per_view])
            scores[f"face_missing_fraction_{view}"] = float(info.get("face_missing_fraction", 0.0))
        return scores

    def metrics(self, protocol: str) -> list[Metric]:
        # MACC compares two waveforms: the roi protocol has only a mean HR per video, so it has none.
        return [
            Metric("mae", _hr_metric(hr_metrics.mae), higher_is_better=False),
            Metric("rmse", _hr_metric(hr_metrics.rmse), higher_is_better=False),
            Metric("mape", _hr_metric(hr_metrics.mape), higher_is_better=False),
            Metric("pearson_r", _hr_metric(hr_metrics.pearson_r)),
            Metric("snr_db", lambda rs: hr_metrics.mean_finite(_pooled(rs, "snr_db"))),
            Metric("macc", lambda rs: hr_metrics.mean_finite(_pooled(rs, "macc"))),
        ][: 5 if protocol == "roi" else 6]

    def report(self, records: Sequence[Record], protocol: str, out_dir: Path) -> dict[str, JSON]:
        from tasks.rppg.report import build_report

        return build_report(records, protocol, out_dir)
