"""Aggregation with uncertainty: metric values, seeded percentile-bootstrap CIs, paired comparisons.

Resampling respects the protocol. Only records of the resampled splits (`test`, `probe`) are drawn;
records of other splits (`dev`, `gallery`) enter every replicate once, unchanged. The unit drawn is
a sample, or, when the task names a cluster key (subject, session), a whole cluster, since samples of
one cluster are not independent. With `within_folds` (the default) every fold is a stratum of its
own, so a fold-averaged metric keeps every fold; without it the units of all folds are pooled, so a
leave-one-subject-out protocol (one subject per fold) resamples subjects and gets a CI of non-zero
width, where within-fold resampling can only redraw the one subject of each fold (a CI of width 0).

The bootstrap, spelled out so a test can redo it by hand:
1. Records: the successful ones. Folds in order of first appearance. Units: the records of the
   resampled splits, one per record, or clusters (records sharing `str(groups[cluster_key])`, a record
   without the key being its own cluster) in order of first appearance. Strata: with `within_folds`,
   one per fold (in fold order) holding that fold's units; otherwise one holding all units.
2. `rng = np.random.default_rng(seed)`; replicate b draws, for each stratum s in order,
   `rng.integers(0, U_s, U_s)` unit indices (U_s = its number of units). All replicates are drawn as
   index matrices, `rng.integers(0, highs, size=(rows, sum U_s))` with `highs` = each U_s repeated
   U_s times (a scalar bound when all U_s are equal), for consecutive chunks of rows (row b =
   replicate b); numpy draws the same numbers in the same order as the loop over replicates and strata.
3. A replicate's records: the drawn units' records, in draw order (a unit drawn twice counts twice),
   then every record of the non-resampled splits. A metric sees those of its `splits`.
4. Each metric on each replicate: pooled, or, when `per_fold`, the mean of its per-fold values.
   Within folds every fold is present once; across folds a fold's value is weighted by how often it
   was drawn (its drawn records / its records; a fold drawn twice counts twice, a fold not drawn 0).
5. CI: the alpha/2 and 1 - alpha/2 percentiles (numpy's linear interpolation) of the non-nan
   replicate values. A metric with `resample="none"` (set-level: FID, EER, Rank-1) gets CI nan.

Evaluation is vectorised over replicates for `Classification` metrics (confusion counts of every
(replicate, fold) from one np.bincount, see harness.metrics) and for `mean_of` metrics (sums by
np.bincount); a metric given as `fn` is called once per replicate (and fold) on record lists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from harness.core import Metric, Record
from harness.metrics import Classification, Coded

RESAMPLED_SPLITS = ("test", "probe")
_CHUNK_ELEMENTS = 2_000_000  # drawn records per chunk of replicates (bounds memory for 100k samples)


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


def _split(r: Record) -> str:
    return getattr(r, "split", "test")


class Design:
    """The resampling design of a list of (successful) records: folds, units, strata, fixed records."""

    def __init__(self, records: Sequence[Record], cluster_key: str | None = None, within_folds: bool = True) -> None:
        self.records = records
        self.within_folds = within_folds
        names: dict[str, int] = {}
        self.fold = np.fromiter((names.setdefault(r.fold, len(names)) for r in records), np.int64, len(records))
        self.n_folds = max(1, len(names))
        resampled = np.fromiter((_split(r) in RESAMPLED_SPLITS for r in records), bool, len(records))
        drawn, self.fixed = np.flatnonzero(resampled), np.flatnonzero(~resampled)
        stratum_of = self.fold[drawn] if within_folds else np.zeros(len(drawn), np.int64)
        self.regular = cluster_key is None  # every unit one record: replicates have equal size
        if cluster_key is None:  # units = records, stratum by stratum (stable: record order within)
            per = np.bincount(stratum_of, minlength=self.n_folds)
            per = per[per > 0]
            self.members = drawn[np.argsort(stratum_of, kind="stable")]
            self.sizes = np.ones(len(drawn), np.int64)
            self.highs, self.offsets = np.repeat(per, per), np.repeat(np.cumsum(per) - per, per)
        else:
            strata: dict[int, list[int]] = {}
            for i, st in zip(drawn.tolist(), stratum_of.tolist(), strict=True):
                strata.setdefault(st, []).append(i)
            units: list[list[int]] = []
            highs: list[int] = []
            offsets: list[int] = []
            for _, members in sorted(strata.items()):
                clusters: dict[str, list[int]] = {}
                for i in members:
                    r = records[i]
                    clusters.setdefault(str(r.groups.get(cluster_key, r.sample_id)), []).append(i)
                stratum = list(clusters.values())
                highs += [len(stratum)] * len(stratum)
                offsets += [len(units)] * len(stratum)
                units += stratum
            self.highs = np.asarray(highs, np.int64)
            self.offsets = np.asarray(offsets, np.int64)
            self.sizes = np.asarray([len(u) for u in units], np.int64)
            self.members = np.asarray([i for u in units for i in u], np.int64) if units else np.zeros(0, np.int64)
        self.starts = np.cumsum(self.sizes) - self.sizes
        self.n_drawn = len(drawn)

    def identity(self) -> tuple[np.ndarray, np.ndarray]:
        """(rep, rec) of the original set as one 'replicate': every drawn record once."""
        return np.zeros(len(self.members), np.int64), self.members

    def draw(self, rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """`rows` replicates: (rep, rec) = replicate row (0..rows-1) and record index of each drawn
        record, grouped by row in draw order."""
        if not len(self.highs):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        # equal strata: a scalar bound draws the same numbers as the array of bounds, ~5x faster
        high = int(self.highs[0]) if (self.highs == self.highs[0]).all() else self.highs
        picks = (rng.integers(0, high, size=(rows, len(self.highs))) + self.offsets).ravel()
        if (self.sizes == 1).all():
            return np.repeat(np.arange(rows), len(self.highs)), self.members[picks]
        lengths = self.sizes[picks]
        total = int(lengths.sum())
        rep = np.repeat(np.repeat(np.arange(rows), len(self.highs)), lengths)
        within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return rep, self.members[np.repeat(self.starts[picks], lengths) + within]


class _Evaluator:
    """One metric on one record list under a design: values of a batch of replicates at once."""

    def __init__(self, metric: Metric, design: Design, records: Sequence[Record],
                 coded: dict[tuple[int, tuple[str, ...]], tuple[Coded, np.ndarray]] | None = None) -> None:
        self.metric, self.design, self.records = metric, design, records
        self.member = np.fromiter((_split(r) in metric.splits for r in records), bool, len(records))
        self.fixed = design.fixed[self.member[design.fixed]] if len(design.fixed) else design.fixed
        self.n = int(self.member.sum())
        drawable = np.zeros(len(records), bool)
        drawable[design.members] = True
        self.fold_size = np.bincount(design.fold[self.member & drawable], minlength=design.n_folds).astype(float)
        self.specs: tuple[Classification, ...] = ()
        if metric.classification is not None:
            specs = metric.classification
            self.specs = (specs,) if isinstance(specs, Classification) else tuple(specs)
            coded = {} if coded is None else coded
            self.coded = []
            for spec in self.specs:
                key = (id(spec.codes), tuple(metric.splits))
                if key not in coded:
                    coded[key] = self._encode(spec)
                self.coded.append(coded[key])
        elif metric.mean_of is not None:
            self.score = np.zeros(len(records))
            idx = np.flatnonzero(self.member)
            self.score[idx] = [records[i].scores[metric.mean_of] for i in idx]

    def _encode(self, spec: Classification) -> tuple[Coded, np.ndarray]:
        """Codes of the member records, and each record's bincount keys fold * S + cell (trash = F * S)."""
        idx = np.flatnonzero(self.member)
        coded = spec.codes([self.records[i] for i in idx])
        cells = coded.cells()
        s = coded.n_cells
        keys = np.full((len(self.records), cells.shape[1]), self.design.n_folds * s, np.int64)
        keys[idx] = self.design.fold[idx, None] * s + cells
        return coded, keys

    def values(self, rep: np.ndarray, rec: np.ndarray, rows: int, shared: dict | None = None) -> np.ndarray:
        """Values of `rows` replicates; `shared` caches counts between metrics of one batch."""
        if self.specs:
            shared = {} if shared is None else shared
            return np.mean([self._counted(spec, coded, keys, rep, rec, rows, shared)
                            for spec, (coded, keys) in zip(self.specs, self.coded, strict=True)], axis=0)
        if self.metric.mean_of is not None:
            return self._mean(rep, rec, rows)
        return self._called(rep, rec, rows)

    def _fold_mean(self, per_fold: np.ndarray, drawn: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Mean over folds, (rows, F) -> (rows,). Within folds: over the folds with records. Across
        folds: weighted by draws (drawn records / the fold's records; a fold holding only fixed records
        weighs 1). A nan value of a fold that counts makes the mean nan, as np.mean does."""
        if self.design.within_folds:
            w = (n > 0).astype(float)
        else:
            size = self.fold_size
            w = np.where(size > 0, drawn / np.where(size > 0, size, 1), 1.0) * (n > 0)
        total = w.sum(axis=1)
        nan = (np.isnan(per_fold) & (w > 0)).any(axis=1) | (total == 0)
        mean = (np.where(w > 0, per_fold, 0.0) * w).sum(axis=1) / np.where(total > 0, total, 1)
        return np.where(nan, np.nan, mean)

    def _drawn_per_fold(self, rep: np.ndarray, rec: np.ndarray, rows: int) -> np.ndarray:
        f = self.design.n_folds
        keys = rep * (f + 1) + np.where(self.member[rec], self.design.fold[rec], f)
        return np.bincount(keys, minlength=rows * (f + 1)).reshape(rows, f + 1)[:, :f].astype(float)

    def _counted(self, spec: Classification, coded: Coded, keys: np.ndarray, rep: np.ndarray, rec: np.ndarray,
                 rows: int, shared: dict) -> np.ndarray:
        f, s = self.design.n_folds, coded.n_cells
        c = shared.get(id(keys))
        if c is None:  # counts of every (replicate, fold, cell): one bincount on offset keys
            stride = f * s + 1
            flat = (rep[:, None] * stride + keys[rec]).ravel()
            c = np.bincount(flat, minlength=rows * stride).reshape(rows, stride)[:, : f * s].reshape(rows, f, s)
            if len(self.fixed):
                c = c + np.bincount(keys[self.fixed].ravel(), minlength=stride)[: f * s].reshape(f, s)
            shared[id(keys)] = c
        if not self.metric.per_fold:
            return spec.of_counts(c.sum(axis=1), coded)
        per_fold = spec.of_counts(c, coded)
        n = (c.sum(axis=2) if not coded.multilabel else c[..., -2:].sum(axis=2)).astype(float)
        drawn = self._drawn_per_fold(rep, rec, rows) if not self.design.within_folds else n
        return self._fold_mean(per_fold, drawn, n)

    def _mean(self, rep: np.ndarray, rec: np.ndarray, rows: int) -> np.ndarray:
        f = self.design.n_folds
        if self.design.regular and not self.metric.per_fold and len(rec):  # pooled: row sums of a gather
            drawn = rec.reshape(rows, -1)
            total = self.score[drawn].sum(axis=1) + self.score[self.fixed].sum()
            n = self.member[drawn].sum(axis=1) + self.member[self.fixed].sum()
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(n > 0, total / np.where(n > 0, n, 1), np.nan)
        keys = rep * (f + 1) + np.where(self.member[rec], self.design.fold[rec], f)
        sums = np.bincount(keys, weights=self.score[rec], minlength=rows * (f + 1)).reshape(rows, f + 1)[:, :f]
        n = np.bincount(keys, minlength=rows * (f + 1)).reshape(rows, f + 1)[:, :f].astype(float)
        drawn = n.copy()
        if len(self.fixed):
            fk = self.design.fold[self.fixed]
            sums = sums + np.bincount(fk, weights=self.score[self.fixed], minlength=f)
            n = n + np.bincount(fk, minlength=f)
        with np.errstate(invalid="ignore", divide="ignore"):
            if not self.metric.per_fold:
                return np.where(n.sum(axis=1) > 0, sums.sum(axis=1) / n.sum(axis=1), np.nan)
            return self._fold_mean(np.where(n > 0, sums / np.where(n > 0, n, 1), np.nan), drawn, n)

    def _called(self, rep: np.ndarray, rec: np.ndarray, rows: int) -> np.ndarray:
        out = np.full(rows, np.nan)
        bounds = np.searchsorted(rep, np.arange(rows + 1))
        fixed = [self.records[i] for i in self.fixed]
        for b in range(rows):
            idx = rec[bounds[b]: bounds[b + 1]]
            idx = idx[self.member[idx]]
            if not self.metric.per_fold:
                chosen = [self.records[i] for i in idx] + fixed
                out[b] = self.metric.compute(chosen) if chosen else np.nan
                continue
            folds = self.design.fold[idx]
            n_f = self.design.n_folds
            per_fold, n, drawn = np.full(n_f, np.nan), np.zeros(n_f), np.bincount(folds, minlength=n_f).astype(float)
            for f in range(n_f):
                chosen = [self.records[i] for i in idx[folds == f]]
                chosen += [r for i, r in zip(self.fixed, fixed, strict=True) if self.design.fold[i] == f]
                if chosen:
                    per_fold[f], n[f] = self.metric.compute(chosen), len(chosen)
            out[b] = self._fold_mean(per_fold[None], drawn[None], n[None])[0]
        return out


def _percentiles(reps: np.ndarray, alpha: float) -> tuple[float, float]:
    r = reps[~np.isnan(reps)]
    if not r.size:
        return float("nan"), float("nan")
    return float(np.percentile(r, 100 * alpha / 2)), float(np.percentile(r, 100 * (1 - alpha / 2)))


def _replicates(evaluators: Sequence[_Evaluator], design: Design, n_boot: int, seed: int,
                every: bool = False) -> list[np.ndarray]:
    """Replicate values of each evaluator (nan for metrics that are not resampled, unless `every`)."""
    out = [np.full(n_boot, np.nan) for _ in evaluators]
    live = [i for i, e in enumerate(evaluators) if e.n and (every or e.metric.resample != "none")]
    if not live or not design.n_drawn or n_boot <= 0:
        return out
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _CHUNK_ELEMENTS // max(1, design.n_drawn)))
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        rep, rec = design.draw(rng, rows)
        shared: dict = {}
        for i in live:
            out[i][start: start + rows] = evaluators[i].values(rep, rec, rows, shared)
    return out


def evaluate(metric: Metric, records: Sequence[Record], cluster_key: str | None = None,
             within_folds: bool = True) -> float:
    """The metric's point value on the records (mean over folds when `per_fold`, else pooled)."""
    design = Design(records, cluster_key, within_folds)
    e = _Evaluator(metric, design, records)
    return float(e.values(*design.identity(), 1)[0]) if e.n else float("nan")


def bootstrap(
    metrics: Sequence[Metric],
    records: Sequence[Record],
    *,
    cluster_key: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    within_folds: bool = True,
) -> dict[str, MetricValue]:
    """Point values and percentile-bootstrap CIs for each metric over the successful records."""
    ok = [r for r in records if r.ok]
    design = Design(ok, cluster_key, within_folds)
    coded: dict = {}
    evaluators = [_Evaluator(m, design, ok, coded) for m in metrics]
    reps = _replicates(evaluators, design, n_boot, seed)
    out = {}
    for m, e, r in zip(metrics, evaluators, reps, strict=True):
        value = float(e.values(*design.identity(), 1)[0]) if e.n else float("nan")
        lo, hi = _percentiles(r, alpha) if m.resample != "none" else (float("nan"), float("nan"))
        out[m.name] = MetricValue(m.name, value, lo, hi, e.n, m.higher_is_better, m.scale)
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
    within_folds: bool = True,
) -> Comparison:
    """Difference a - b on the samples both runs scored (same fold, split and id), with a paired
    bootstrap CI (both runs evaluated on the same drawn indices, the procedure of `bootstrap`) and a
    two-sided p-value: p = min(1, 2 * min(#(d* <= 0) + 1, #(d* >= 0) + 1) / (B + 1)) over replicate
    differences d*, i.e. the percentile-bootstrap test of "no difference" with the usual +1 correction."""
    key: Callable[[Record], tuple[str, str, str]] = lambda r: (r.fold, _split(r), r.sample_id)  # noqa: E731
    b_by_key = {key(r): r for r in b if r.ok}
    pairs = [(r, b_by_key[key(r)]) for r in a if r.ok and key(r) in b_by_key]
    nan = float("nan")
    if not pairs:
        return Comparison(metric.name, nan, nan, nan, nan, nan, nan, 0, metric.scale)
    ra, rb = [p[0] for p in pairs], [p[1] for p in pairs]
    design = Design(ra, cluster_key, within_folds)
    ea, eb = _Evaluator(metric, design, ra), _Evaluator(metric, design, rb)
    va, vb = (float(e.values(*design.identity(), 1)[0]) for e in (ea, eb))
    reps_a, reps_b = _replicates([ea, eb], design, n_boot, seed, every=True)
    diffs = reps_a - reps_b
    diffs = diffs[~np.isnan(diffs)]
    lo, hi = _percentiles(diffs, 0.05)
    below, above = int((diffs <= 0).sum()), int((diffs >= 0).sum())
    p = min(1.0, 2 * min(below + 1, above + 1) / (len(diffs) + 1))
    return Comparison(metric.name, va, vb, va - vb, lo, hi, p, len(pairs), metric.scale)
