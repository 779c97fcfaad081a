"""Privacy evaluation of a protection from verification pairs: one module for faces and gait.

Semantics of FDeID-Toolbox `scripts/eval_privacy_lfw.py` (the reference TASKS.md names):
- similarity = cosine of L2-normalised embeddings;
- verification accuracy = the best accuracy over thresholds `np.arange(-1.0, 1.0, 0.01)` (200 values,
  1.0 excluded), a pair accepted when `sim >= t`, the first (lowest) threshold kept on ties; the
  reference pools every pair (no per-fold threshold selection, even on LFW's 10 folds), so we do too;
- ROC from `sklearn.metrics.roc_curve` (intermediate points dropped, as the reference gets them),
  AUC by the trapezoid rule, TAR@FAR by linear interpolation of that ROC at FAR 0.01/0.1/1/10 %,
  EER = (FPR + FNR) / 2 at the ROC point where |FPR - FNR| is smallest;
- PSR = share of genuine pairs (with both protected embeddings) that are accepted on the originals
  (sim >= t) and rejected after protection (sim < t), t = the best-accuracy threshold on originals.

A protected pair whose embedding is missing (no face found) gets similarity -2 here, below every
cosine and every threshold of the sweep: a face the recogniser cannot find is not recognised, so it
counts as protected (the reference drops such pairs). With only one class of pairs (no impostors, or no
genuine pairs) the threshold choice is degenerate (t = -1 accepts everything at 100 % accuracy), so
accuracy, threshold and PSR are NaN there instead of a number that means nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FAR_TARGETS = {"0_01": 0.0001, "0_1": 0.001, "1": 0.01, "10": 0.1}  # metric suffix -> FAR
NO_FACE_SIMILARITY = -2.0


def sweep_thresholds() -> np.ndarray:
    """The reference's thresholds: np.arange(-1.0, 1.0, 0.01) (floating-point values kept as arange makes them)."""
    return np.arange(-1.0, 1.0, 0.01)


def best_accuracy(sims: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """(best accuracy, its threshold) over the sweep; the first threshold wins ties."""
    s = np.asarray(sims, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(s) == 0:
        return float("nan"), float("nan")
    ts = sweep_thresholds()
    acc = ((s[None, :] >= ts[:, None]).astype(np.int64) == y[None, :]).mean(axis=1)
    i = int(np.argmax(acc))  # first maximum, as the reference's strict `>` update keeps it
    if acc[i] <= 0:  # the reference starts from best_acc = 0 and threshold 0
        return 0.0, 0.0
    return float(acc[i]), float(ts[i])


def roc(sims: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(np.asarray(labels, dtype=np.int64), np.asarray(sims, dtype=np.float64))
    return fpr, tpr


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float) -> float:
    return float(np.interp(far, fpr, tpr)) if far <= fpr[-1] else float(tpr[-1])


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fpr - fnr)))
    return float((fpr[i] + fnr[i]) / 2)


def verification_metrics(sims: Sequence[float], labels: Sequence[int]) -> dict[str, float]:
    """accuracy, threshold, auc, eer, tar_at_far_{0_01,0_1,1,10} (NaN where a class is missing)."""
    s = np.asarray(sims, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(np.unique(y)) < 2:
        out = {"accuracy": float("nan"), "threshold": float("nan"), "auc": float("nan"), "eer": float("nan")}
        out.update({f"tar_at_far_{k}": float("nan") for k in FAR_TARGETS})
        return out
    acc, thr = best_accuracy(s, y)
    out = {"accuracy": acc, "threshold": thr}
    fpr, tpr = roc(s, y)
    out["auc"] = float(np.trapezoid(tpr, fpr))
    out["eer"] = equal_error_rate(fpr, tpr)
    out.update({f"tar_at_far_{k}": tar_at_far(fpr, tpr, far) for k, far in FAR_TARGETS.items()})
    return out


def protection_success_rate(orig_sims: Sequence[float], prot_sims: Sequence[float], labels: Sequence[int],
                            threshold: float) -> float:
    """Share of genuine pairs accepted on originals (>= t) and rejected after protection (< t)."""
    o = np.asarray(orig_sims, dtype=np.float64)
    p = np.asarray(prot_sims, dtype=np.float64)
    genuine = np.asarray(labels, dtype=np.int64) == 1
    if not genuine.any() or not np.isfinite(threshold):
        return float("nan")
    return float(np.mean((o[genuine] >= threshold) & (p[genuine] < threshold)))


@dataclass(frozen=True)
class PrivacyReport:
    original: dict[str, float]
    protected: dict[str, float]
    psr: float
    n_pairs: int
    n_genuine: int

    def flat(self) -> dict[str, float]:
        out = {f"orig_{k}": v for k, v in self.original.items()}
        out.update(self.protected)
        out["psr"] = self.psr
        return out


def privacy_report(orig_sims: Sequence[float], prot_sims: Sequence[float | None],
                   labels: Sequence[int]) -> PrivacyReport:
    """Verification metrics on originals and on protected pairs, and the PSR at the originals' threshold."""
    o = np.asarray(orig_sims, dtype=np.float64)
    p = np.array([NO_FACE_SIMILARITY if v is None or not np.isfinite(v) else v for v in prot_sims], dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if not (len(o) == len(p) == len(y)):
        raise ValueError("orig_sims, prot_sims and labels differ in length")
    original = verification_metrics(o, y)
    protected = verification_metrics(p, y)
    psr = protection_success_rate(o, p, y, original["threshold"])
    return PrivacyReport(original, protected, psr, len(y), int((y == 1).sum()))


def k_fold_accuracy(sims: Sequence[float], labels: Sequence[int], folds: Sequence[str]) -> float:
    """LFW's standard View-2 estimate: for each fold, the threshold is chosen (same sweep) on the other
    folds and the accuracy measured on it; the mean over folds. (FDeID's script pools instead; this is
    the protocol dlib and most recognisers publish their LFW accuracy under.)"""
    s = np.asarray(sims, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    f = np.asarray(folds)
    names = sorted(set(f.tolist()))
    if len(names) < 2:
        return float("nan")
    accs = []
    for name in names:
        test, train = f == name, f != name
        if len(np.unique(y[train])) < 2 or not test.any():
            return float("nan")
        _, t = best_accuracy(s[train], y[train])
        accs.append(float(np.mean((s[test] >= t).astype(np.int64) == y[test])))
    return float(np.mean(accs))
