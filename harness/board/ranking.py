"""Tables of the task page: measured rows grouped so that only comparable rows are ranked together
(same protocol, scorer version and data), with rank intervals and paired tests.

Rank intervals come from the joint bootstrap stored with each server-scored run (replicate k of every
run uses the same resample of the board's samples): in each replicate the runs are ranked, and a run's
interval is the 2.5-97.5 percentile range of its ranks. Paired tests use harness.stats.paired_bootstrap
on the stored per-sample records (against the group's leader and against the task's baseline solver);
they are computed for the first `paired_rows` rows of a group and cached in the database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.board.store import BoardStore
from harness.core import Task
from harness.leaderboard import BoardRow
from harness.stats import Comparison, paired_bootstrap


@dataclass
class Group:
    protocol: str
    scorer_version: str | None
    data_fingerprint: str
    headline: str
    higher_is_better: bool
    metric_names: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.protocol} · scorer v{self.scorer_version or '?'} · data {self.data_fingerprint[:8]}"


def _headline_value(row: BoardRow, name: str) -> float | None:
    m = row.metrics.get(name) or {}
    return m.get("value")


def rank_intervals(reps: np.ndarray, higher_is_better: bool) -> list[tuple[int, int]]:
    """Rows x replicates -> per row (low, high): the 95% percentile range of its rank (1 = best; tied
    runs share the best of their ranks, i.e. 1 + the number of runs strictly better); a NaN replicate
    ranks last. One sort per replicate column, vectorised over all columns."""
    v = np.where(np.isnan(reps), -np.inf, reps if higher_is_better else -reps)
    n = v.shape[0]
    order = np.argsort(-v, axis=0)  # best first in every column
    ordered = np.take_along_axis(v, order, axis=0)
    first = np.arange(n, dtype=np.int32)[:, None].repeat(v.shape[1], axis=1)
    first[1:][ordered[1:] == ordered[:-1]] = 0  # a tie keeps the position of the first of its run
    np.maximum.accumulate(first, axis=0, out=first)
    ranks = np.empty_like(first)
    np.put_along_axis(ranks, order, first + 1, axis=0)
    lo, hi = np.percentile(ranks, [2.5, 97.5], axis=1)
    return list(zip(np.floor(lo).astype(int).tolist(), np.ceil(hi).astype(int).tolist(), strict=True))


def build_groups(store: BoardStore, task: Task, rows: list[BoardRow], *, protocol: str | None = None,
                 paired_rows: int = 20, paired_boot: int = 1000) -> list[Group]:
    """Measured rows of one task, grouped and sorted by headline (best first), with rank intervals and
    paired tests."""
    groups: dict[tuple[str, str | None, str], Group] = {}
    for r in rows:
        if protocol and r.protocol != protocol:
            continue
        key = (r.protocol, r.extra.get("scorer_version"), r.extra.get("data_fingerprint") or "")
        if key not in groups:
            defs = task.metrics(r.protocol) if r.protocol in task.protocols else []
            headline = r.extra.get("headline") or (defs[0].name if defs else next(iter(r.metrics), ""))
            hib = next((m.higher_is_better for m in defs if m.name == headline), True)
            groups[key] = Group(r.protocol, key[1], key[2], headline, hib, [m.name for m in defs])
        g = groups[key]
        g.rows.append({"row": r})
        for name in r.metrics:
            if name not in g.metric_names:
                g.metric_names.append(name)
    out = []
    for g in groups.values():
        _rank(store, g)
        _paired(store, task, g, paired_rows, paired_boot)
        out.append(g)
    return sorted(out, key=lambda g: (g.protocol, str(g.scorer_version), g.data_fingerprint))


def _errors(item: dict[str, Any]) -> int:
    return int(item["row"].n_errors or 0)


def _rank(store: BoardStore, g: Group) -> None:
    """Rank the rows by headline. Errored samples are left out of every metric, so a run that errors out
    the samples it would get wrong would look better: a row with more errored samples than the group's
    fewest is listed after the ranked rows, unranked, with the reason (honest runs on the same data error
    on the same unreadable files, so they share the fewest)."""
    fewest = min((_errors(item) for item in g.rows), default=0)

    def sort_key(item: dict[str, Any]) -> tuple[bool, float]:
        v = _headline_value(item["row"], g.headline)
        if v is None or math.isnan(v):
            return _errors(item) > fewest, math.inf
        return _errors(item) > fewest, (-v if g.higher_is_better else v)

    g.rows.sort(key=sort_key)
    ranked = 0
    for item in g.rows:
        item["rank_interval"] = None
        if _errors(item) > fewest:
            item["rank"] = None
            item["not_ranked"] = (f"not ranked: {_errors(item)} errored samples, more than the {fewest} of the "
                                  "group's best-covered runs (errored samples are left out of the metrics)")
        else:
            ranked += 1
            item["rank"], item["not_ranked"] = ranked, None
    ids = [item["row"].source for item in g.rows[:ranked]]
    reps = store.replicates(ids)
    with_reps = [i for i, rid in enumerate(ids) if rid in reps]
    lengths = {len(reps[ids[i]]) for i in with_reps}
    if len(with_reps) >= 1 and len(lengths) == 1:
        matrix = np.vstack([reps[ids[i]] for i in with_reps])
        for i, interval in zip(with_reps, rank_intervals(matrix, g.higher_is_better), strict=True):
            g.rows[i]["rank_interval"] = interval


def baseline_solver(task: Task) -> str:
    return str(getattr(task, "baseline_solver", "") or task.default_solver)


def _paired(store: BoardStore, task: Task, g: Group, paired_rows: int, n_boot: int) -> None:
    defs = {m.name: m for m in task.metrics(g.protocol)} if g.protocol in task.protocols else {}
    metric = defs.get(g.headline)
    server_rows = [it for it in g.rows if it["row"].extra.get("origin") == "server"]
    leader = server_rows[0]["row"].source if server_rows else None
    base_solver = baseline_solver(task)
    baseline = next((it["row"].source for it in server_rows if it["row"].extra.get("solver") == base_solver), None)
    for it in g.rows:
        it["vs_leader"] = it["vs_baseline"] = None
    if metric is None or leader is None:
        return
    records: dict[str, Any] = {}
    for it in server_rows[:paired_rows]:
        rid = it["row"].source
        for other, slot in ((leader, "vs_leader"), (baseline, "vs_baseline")):
            if other is None or other == rid:
                continue
            it[slot] = paired_test(store, task, metric, rid, other, n_boot, records)


def paired_test(store: BoardStore, task: Task, metric: Any, run_a: str, run_b: str, n_boot: int,
                cache: dict[str, Any] | None = None) -> Comparison:
    """paired_bootstrap(a, b) on the stored records, cached in the database."""
    found = store.paired(run_a, run_b, metric.name, n_boot)
    if found is not None:
        return found
    cache = {} if cache is None else cache
    for rid in (run_a, run_b):
        if rid not in cache:
            cache[rid] = store.records(rid)
    kwargs: dict[str, Any] = {}
    if "within_folds" in paired_bootstrap.__code__.co_varnames:
        kwargs["within_folds"] = task.bootstrap_within_folds
    comp = paired_bootstrap(metric, cache[run_a], cache[run_b], cluster_key=task.cluster_key, n_boot=n_boot, seed=0,
                            **kwargs)
    store.save_paired(run_a, run_b, n_boot, comp)
    return comp
