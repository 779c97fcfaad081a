"""Extra rPPG results for metrics.json: toolbox-style summary with standard errors, breakdowns per
subject / scenario / view, face-detection failure per video, Bland–Altman and scatter plots."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.core import JSON, Record
from tasks.rppg import metrics as hr_metrics


def _windows(records: Sequence[Record], pred_key: str = "hr_pred") -> tuple[list, list]:
    pred: list = []
    ref: list = []
    for r in records:
        p = r.scores.get(pred_key)
        if p is None:
            continue
        pred += list(p)
        ref += list(r.scores.get("hr_ref") or [])
    return pred, ref


def _brief(pred: list, ref: list) -> dict[str, JSON]:
    s = hr_metrics.summary(pred, ref)
    return {k: s[k] for k in ("n", "mae", "mae_se", "rmse", "mape", "pearson_r", "pearson_r_se")}


def _by_group(records: Sequence[Record], key: str) -> dict[str, JSON]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        groups[str(r.groups.get(key, "?"))].append(r)
    return {g: _brief(*_windows(rs)) for g, rs in sorted(groups.items())}


def _plots(pred: list, ref: list, out_dir: Path) -> list[str]:
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(r)
    p, r = p[ok], r[ok]
    if not p.size:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(r, p, s=14, alpha=0.7)
    lo, hi = float(min(r.min(), p.min())) - 5, float(max(r.max(), p.max())) + 5
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set(xlabel="reference HR [bpm]", ylabel="rPPG HR [bpm]", xlim=(lo, hi), ylim=(lo, hi),
           title="Predicted vs reference HR")
    ax.legend(loc="upper left")
    path = out_dir / "hr_scatter.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    paths.append(str(path))

    mean, diff = (p + r) / 2, p - r
    bias, sd = float(diff.mean()), float(diff.std(ddof=1)) if diff.size > 1 else 0.0
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(mean, diff, s=14, alpha=0.7)
    ax.axhline(bias, color="k", lw=1, label=f"bias {bias:.2f} bpm")
    for k in (-1.96, 1.96):
        ax.axhline(bias + k * sd, color="k", ls="--", lw=1)
    ax.set(xlabel="mean of rPPG and reference HR [bpm]", ylabel="rPPG − reference HR [bpm]",
           title=f"Bland–Altman (limits of agreement {bias - 1.96 * sd:.1f} to {bias + 1.96 * sd:.1f})")
    ax.legend(loc="upper right")
    path = out_dir / "hr_bland_altman.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    paths.append(str(path))
    return paths


def build_report(records: Sequence[Record], protocol: str, out_dir: Path) -> dict[str, JSON]:
    ok = [r for r in records if r.ok]
    pred, ref = _windows(ok)
    summary = hr_metrics.summary(pred, ref, hr_metrics_values(ok, "snr_db"), hr_metrics_values(ok, "macc"))
    missing = {r.sample_id: float(r.scores.get("face_missing_fraction", 0.0)) for r in ok}
    report: dict[str, JSON] = {
        "toolbox_summary": summary,
        "pearson_r_text": f"r = {summary['pearson_r']:.3f} ± {summary['pearson_r_se']:.3f} (standard error)",
        "chain": _chain(ok),
        "per_subject": _by_group(ok, "subject"),
        "per_scenario": _by_group(ok, "scenario"),
        "face_detection": {
            "missing_fraction_per_video": missing,
            "mean_missing_fraction": float(np.mean(list(missing.values()))) if missing else float("nan"),
            "videos_with_missing_frames": sum(v > 0 for v in missing.values()),
            "note": "frames without a detected face are interpolated, never silently replaced by the full frame",
        },
        "failed_records": [{"sample_id": r.sample_id, "error": r.error} for r in records if not r.ok],
        "plots": _plots(pred, ref, out_dir),
    }
    views = sorted({k[len("hr_pred_"):] for r in ok for k in r.scores if k.startswith("hr_pred_")})
    if views:
        report["per_view"] = {v: _brief(*_windows(ok, f"hr_pred_{v}")) for v in views}
    return report


def hr_metrics_values(records: Sequence[Record], key: str) -> list:
    out: list = []
    for r in records:
        out += list(r.scores.get(key) or [])
    return out


def _chain(records: Sequence[Record]) -> dict[str, JSON]:
    """The post-processing settings the predictions used (band preset, window, HR method)."""
    seen = {(str(p.get("band")), float(p.get("window_s", 0)), str(p.get("hr_method")))
            for r in records if isinstance(p := r.prediction, dict)}
    if len(seen) == 1:
        band, window_s, hr_method = next(iter(seen))
        return {"band": band, "window_s": window_s, "hr_method": hr_method}
    return {"mixed": sorted(map(list, seen))}
