"""Aggregation with uncertainty: metric values, seeded percentile-bootstrap CIs, paired comparisons.

Resampling respects the protocol: samples are resampled within their fold (so a fold-averaged
metric keeps every fold), and when the task names a cluster key (subject, session) whole clusters
are resampled instead of samples, since samples of one cluster are not independent.

The bootstrap, spelled out so a test can redo it by hand: `rng = np.random.default_rng(seed)`;
for each replicate, for each fold in order of first appearance, for each stratum draw
`rng.integers(0, n_units, n_units)` unit indices (units = samples, or clusters in order of first
appearance), take their records, and evaluate the metric; the CI is the 2.5/97.5 percentile
(numpy's default linear interpolation) of the replicate values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.core import Metric, Record


@dataclass(frozen=True)
class MetricValue:
    name: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    higher_is_better: bool = True
    scale: float = 1.0

    def to_dict(self) -> dict[str, float | int | str | bool]:
        return {
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n": self.n,
            "higher_is_better": self.higher_is_better,
            "scale": self.scale,
        }

    def display(self, digits: int = 1) -> str:
        if math.isnan(self.value):
            return "nan"
        s = self.scale
        if math.isnan(self.ci_low):
            return f"{self.value * s:.{digits}f}"
        return f"{self.value * s:.{digits}f} [{self.ci_low * s:.{digits}f}, {self.ci_high * s:.{digits}f}]"


def _folds(records: Sequence[Record]) -> list[list[int]]:
    order: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        order.setdefault(r.fold, []).append(i)
    return list(order.values())


def _units(records: Sequence[Record], indices: list[int], cluster_key: str | None) -> list[list[int]]:
    """Resampling units of one fold: single samples, or clusters of samples sharing a group key."""
    if cluster_key is None:
        return [[i] for i in indices]
    clusters: dict[str, list[int]] = {}
    for i in indices:
        clusters.setdefault(str(records[i].groups.get(cluster_key, records[i].sample_id)), []).append(i)
    return list(clusters.values())


def evaluate(metric: Metric, records: Sequence[Record], folds: list[list[int]] | None = None) -> float:
    """The metric's point value: mean over folds when `per_fold`, else on all records pooled."""
    if not records:
        return float("nan")
    if not metric.per_fold:
        return float(metric.fn(records))
    folds = folds if folds is not None else _folds(records)
    return float(np.mean([metric.fn([records[i] for i in f]) for f in folds]))


def _resample(
    rng: np.random.Generator, fold_units: list[list[list[int]]], per_fold: bool
) -> list[list[int]]:
    """One bootstrap replicate: per fold, draw units with replacement; returns index lists per fold."""
    out = []
    for units in fold_units:
        draw = rng.integers(0, len(units), len(units))
        out.append([i for u in draw for i in units[u]])
    return out if per_fold else [[i for f in out for i in f]]


def bootstrap(
    metrics: Sequence[Metric],
    records: Sequence[Record],
    *,
    cluster_key: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, MetricValue]:
    """Point values and percentile-bootstrap CIs for each metric over the successful records."""
    ok = [r for r in records if r.ok]
    folds = _folds(ok)
    fold_units = [_units(ok, f, cluster_key) for f in folds]
    rng = np.random.default_rng(seed)
    reps: dict[str, list[float]] = {m.name: [] for m in metrics}
    if ok and n_boot > 0:
        for _ in range(n_boot):
            idx_folds = _resample(rng, fold_units, True)
            for m in metrics:
                if m.per_fold:
                    vals = [m.fn([ok[i] for i in f]) for f in idx_folds]
                    reps[m.name].append(float(np.mean(vals)))
                else:
                    reps[m.name].append(float(m.fn([ok[i] for f in idx_folds for i in f])))
    out = {}
    for m in metrics:
        value = evaluate(m, ok, folds)
        r = np.asarray(reps[m.name], dtype=float)
        r = r[~np.isnan(r)]
        lo, hi = (
            (float(np.percentile(r, 100 * alpha / 2)), float(np.percentile(r, 100 * (1 - alpha / 2))))
            if r.size
            else (float("nan"), float("nan"))
        )
        out[m.name] = MetricValue(m.name, value, lo, hi, len(ok), m.higher_is_better, m.scale)
    return out


@dataclass(frozen=True)
class Comparison:
    metric: str
    a: float
    b: float
    diff: float  # a - b
    ci_low: float
    ci_high: float
    p_value: float
    n_shared: int
    scale: float = 1.0


def paired_bootstrap(
    metric: Metric,
    a: Sequence[Record],
    b: Sequence[Record],
    *,
    cluster_key: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Difference a - b on the samples both runs scored, with a paired bootstrap CI and a two-sided
    p-value: p = min(1, 2 * min(#(d* <= 0) + 1, #(d* >= 0) + 1) / (B + 1)) over replicate differences
    d*, i.e. the percentile-bootstrap test of "no difference" with the usual +1 correction."""
    b_by_key = {(r.fold, r.sample_id): r for r in b if r.ok}
    pairs = [(r, b_by_key[(r.fold, r.sample_id)]) for r in a if r.ok and (r.fold, r.sample_id) in b_by_key]
    ra = [p[0] for p in pairs]
    rb = [p[1] for p in pairs]
    nan = float("nan")
    if not pairs:
        return Comparison(metric.name, nan, nan, nan, nan, nan, nan, 0, metric.scale)
    folds = _folds(ra)
    va, vb = evaluate(metric, ra, folds), evaluate(metric, rb, folds)
    fold_units = [_units(ra, f, cluster_key) for f in folds]
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for k in range(n_boot):
        idx_folds = _resample(rng, fold_units, metric.per_fold)
        da = evaluate(metric, [ra[i] for f in idx_folds for i in f], _offsets(idx_folds))
        db = evaluate(metric, [rb[i] for f in idx_folds for i in f], _offsets(idx_folds))
        diffs[k] = da - db
    diffs = diffs[~np.isnan(diffs)]
    lo, hi = float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))
    below, above = int((diffs <= 0).sum()), int((diffs >= 0).sum())
    p = min(1.0, 2 * min(below + 1, above + 1) / (len(diffs) + 1))
    return Comparison(metric.name, va, vb, va - vb, lo, hi, p, len(pairs), metric.scale)


def _offsets(idx_folds: list[list[int]]) -> list[list[int]]:
    """Fold index lists re-expressed as positions in the flattened replicate."""
    out, start = [], 0
    for f in idx_folds:
        out.append(list(range(start, start + len(f))))
        start += len(f)
    return out
