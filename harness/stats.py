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


def _folds(records: Sequence[Record]) -> list[np.ndarray]:
    order: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        order.setdefault(r.fold, []).append(i)
    return [np.asarray(v, dtype=np.int64) for v in order.values()]


class _Units:
    """Resampling units of one fold: single samples, or clusters of samples sharing a group key."""

    def __init__(self, records: Sequence[Record], indices: np.ndarray, cluster_key: str | None) -> None:
        self.indices = indices
        self.clusters: list[np.ndarray] | None = None
        if cluster_key is not None:
            groups: dict[str, list[int]] = {}
            for i in indices:
                r = records[i]
                groups.setdefault(str(r.groups.get(cluster_key, r.sample_id)), []).append(int(i))
            self.clusters = [np.asarray(g, dtype=np.int64) for g in groups.values()]

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        if self.clusters is None:
            return self.indices[rng.integers(0, len(self.indices), len(self.indices))]
        picks = rng.integers(0, len(self.clusters), len(self.clusters))
        return np.concatenate([self.clusters[u] for u in picks])


def _value(metric: Metric, records: Sequence[Record], idx: np.ndarray, scores: np.ndarray | None) -> float:
    if scores is not None:
        return float(scores[idx].mean()) if len(idx) else float("nan")
    return metric.compute([records[i] for i in idx])


def _scores(metric: Metric, records: Sequence[Record]) -> np.ndarray | None:
    if metric.mean_of is None:
        return None
    return np.fromiter((r.scores[metric.mean_of] for r in records), dtype=float, count=len(records))


def _replicate(metric: Metric, records: Sequence[Record], idx_folds: list[np.ndarray],
               scores: np.ndarray | None) -> float:
    if metric.per_fold:
        return float(np.mean([_value(metric, records, f, scores) for f in idx_folds]))
    return _value(metric, records, np.concatenate(idx_folds), scores)


def evaluate(metric: Metric, records: Sequence[Record], folds: list[np.ndarray] | None = None) -> float:
    """The metric's point value: mean over folds when `per_fold`, else on all records pooled."""
    if not records:
        return float("nan")
    folds = folds if folds is not None else _folds(records)
    return _replicate(metric, records, folds, _scores(metric, records))


def _percentiles(reps: list[float], alpha: float) -> tuple[float, float]:
    r = np.asarray(reps, dtype=float)
    r = r[~np.isnan(r)]
    if not r.size:
        return float("nan"), float("nan")
    return float(np.percentile(r, 100 * alpha / 2)), float(np.percentile(r, 100 * (1 - alpha / 2)))


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
    units = [_Units(ok, f, cluster_key) for f in folds]
    scores = {m.name: _scores(m, ok) for m in metrics}
    rng = np.random.default_rng(seed)
    reps: dict[str, list[float]] = {m.name: [] for m in metrics}
    for _ in range(n_boot if ok else 0):
        idx_folds = [u.draw(rng) for u in units]
        for m in metrics:
            reps[m.name].append(_replicate(m, ok, idx_folds, scores[m.name]))
    out = {}
    for m in metrics:
        value = _replicate(m, ok, folds, scores[m.name]) if ok else float("nan")
        lo, hi = _percentiles(reps[m.name], alpha)
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
    sa, sb = _scores(metric, ra), _scores(metric, rb)
    va, vb = _replicate(metric, ra, folds, sa), _replicate(metric, rb, folds, sb)
    units = [_Units(ra, f, cluster_key) for f in folds]
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for k in range(n_boot):
        idx_folds = [u.draw(rng) for u in units]
        diffs[k] = _replicate(metric, ra, idx_folds, sa) - _replicate(metric, rb, idx_folds, sb)
    diffs = diffs[~np.isnan(diffs)]
    lo, hi = _percentiles(list(diffs), 0.05)
    below, above = int((diffs <= 0).sum()), int((diffs >= 0).sum())
    p = min(1.0, 2 * min(below + 1, above + 1) / (len(diffs) + 1))
    return Comparison(metric.name, va, vb, va - vb, lo, hi, p, len(pairs), metric.scale)
