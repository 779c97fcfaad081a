"""Bootstrap speed: the vectorised bootstrap against the per-replicate one it replaced, in the same run.

The workload is a cached sarcasm re-run's aggregation: 690 records in five folds, the five MUStARD
metrics (weighted P/R/F1, macro-F1, accuracy, each per fold), 1000 replicates. Baseline: the earlier
procedure, kept here verbatim in spirit: per replicate, per fold, draw indices, build record lists,
and count each metric's confusion with Counters (as tasks/sarcasm/metrics.py did). New: harness.stats
with the count-based metrics of harness.metrics (one index matrix, one bincount for all replicates).
Both use the same seeded draws, so their CIs are checked equal. Target: new <= 0.15 s (the cached
re-run's budget is 1.0 s in all).

Usage: python benchmarks/bootstrap_speed.py [--replicates 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np

from harness.core import Metric, Record
from harness.stats import bootstrap
from tasks.sarcasm.metrics import prediction_label, sarcasm_metrics


def make_records(n_folds: int = 5, per_fold: int = 138, seed: int = 0) -> list[Record]:
    rng = random.Random(seed)
    out = []
    for f in range(n_folds):
        for i in range(per_fold):
            target = rng.random() < 0.5
            pred = target if rng.random() < 0.65 else rng.choice([not target, None])
            out.append(Record(f"f{f}-{i}", f"fold{f + 1}", target, pred))
    return out


# -- the earlier approach: Counter-based metric functions called once per replicate and fold ---------
def _labels(records: Sequence[Record]) -> tuple[list[int], list[int]]:
    y_true = [int(bool(r.target)) for r in records]
    y_pred = [-1 if (lab := prediction_label(r.prediction)) is None else int(lab) for r in records]
    return y_true, y_pred


def _class_scores(records: Sequence[Record]) -> dict[int, tuple[float, float, float, int]]:
    y_true, y_pred = _labels(records)
    pairs, true_counts, pred_counts = Counter(zip(y_true, y_pred, strict=True)), Counter(y_true), Counter(y_pred)
    out = {}
    for label in (0, 1):
        hits = pairs[(label, label)]
        p = hits / pred_counts[label] if pred_counts[label] else 0.0
        r = hits / true_counts[label] if true_counts[label] else 0.0
        den = pred_counts[label] + true_counts[label]
        out[label] = (p, r, 2 * hits / den if den else 0.0, true_counts[label])
    return out


def _weighted(k: int):
    def fn(records: Sequence[Record]) -> float:
        scores = _class_scores(records)
        total = sum(s[3] for s in scores.values())
        return sum(s[k] * s[3] for s in scores.values()) / total if total else 0.0
    return fn


def _macro_f1(records: Sequence[Record]) -> float:
    return sum(s[2] for s in _class_scores(records).values()) / 2


def _accuracy(records: Sequence[Record]) -> float:
    y_true, y_pred = _labels(records)
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


OLD_FNS = {"weighted_f1": _weighted(2), "weighted_precision": _weighted(0), "weighted_recall": _weighted(1),
           "macro_f1": _macro_f1, "accuracy": _accuracy}


def old_bootstrap(records: list[Record], n_boot: int, seed: int) -> dict[str, tuple[float, float]]:
    """The per-replicate loop of the earlier harness.stats (samples within folds, per-fold mean)."""
    folds: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        folds.setdefault(r.fold, []).append(i)
    idx_folds = [np.asarray(v) for v in folds.values()]
    rng = np.random.default_rng(seed)
    reps: dict[str, list[float]] = {name: [] for name in OLD_FNS}
    for _ in range(n_boot):
        drawn = [f[rng.integers(0, len(f), len(f))] for f in idx_folds]
        for name, fn in OLD_FNS.items():
            reps[name].append(float(np.mean([fn([records[i] for i in d]) for d in drawn])))
    return {k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for k, v in reps.items()}


def best_of(repeat: int, fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="timings are the best of this many runs")
    args = ap.parse_args()
    records = make_records()
    metrics = sarcasm_metrics()
    t_old, old = best_of(1, lambda: old_bootstrap(records, args.replicates, 0))
    t_new, new = best_of(args.repeat, lambda: bootstrap(metrics, records, n_boot=args.replicates, seed=0))
    fn_metrics = [Metric(name, fn, per_fold=True) for name, fn in OLD_FNS.items()]
    t_fn, _ = best_of(1, lambda: bootstrap(fn_metrics, records, n_boot=args.replicates, seed=0))
    for name, (lo, hi) in old.items():  # same draws, same numbers
        assert abs(new[name].ci_low - lo) < 1e-12 and abs(new[name].ci_high - hi) < 1e-12, name
    print(f"{len(records)} records, 5 folds, 5 metrics per fold, {args.replicates} replicates")
    print(f"  per-replicate loop (earlier harness.stats + Counter metrics): {t_old:7.3f} s")
    print(f"  harness.stats, same metrics as fn= (called per replicate):     {t_fn:7.3f} s")
    print(f"  harness.stats, count-based metrics (vectorised):              {t_new:7.3f} s   (target <= 0.15 s)")
    print(f"  speed-up vectorised / per-replicate loop: {t_old / t_new:.0f}x; CIs identical")
    print(json.dumps({"records": len(records), "replicates": args.replicates, "old_s": t_old, "fn_s": t_fn,
                      "new_s": t_new, "speedup": t_old / t_new}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
