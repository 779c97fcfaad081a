"""What the board's pages and JSON show of stored rows: number formats, per-class tables found in a
report, and the JSON shapes of ranked groups and reference rows."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from harness.board import ranking
from harness.leaderboard import BoardRow
from harness.registry import get_task


def fmt(v: Any, digits: int = 1) -> str:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
        return "—"
    if isinstance(v, int):
        return str(v)  # counts (support) stay counts
    return f"{v:.{digits}f}"


def p_value(v: Any) -> str:
    if not isinstance(v, (int, float)) or math.isnan(v):
        return "—"
    return f"{v:.3f}" if v >= 0.001 else "<0.001"


def metric_order(task: str, protocol: str) -> dict[str, int]:
    try:
        return {m.name: i for i, m in enumerate(get_task(task).metrics(protocol))}
    except Exception:  # noqa: BLE001 - a task that no longer loads still shows its stored numbers
        return {}


def report_tables(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-class tables of a report: objects whose values are objects of numbers (class -> scores)."""
    out: list[dict[str, Any]] = []

    def walk(obj: Any, path: str) -> None:
        if not isinstance(obj, dict) or len(out) >= 20:
            return
        vals = list(obj.values())
        if vals and all(isinstance(v, dict) and v and all(isinstance(x, (int, float)) for x in v.values())
                        for v in vals):
            cols: list[str] = []
            for v in vals:
                cols += [c for c in v if c not in cols]
            rows = [(k, [v.get(c) for c in cols]) for k, v in obj.items()]
            out.append({"title": path, "columns": cols, "rows": rows})
            return
        for k, v in obj.items():
            walk(v, f"{path}.{k}" if path else str(k))

    walk(report, "")
    return sorted(out, key=lambda t: t["title"].count("."))  # pooled tables before per-fold ones


def group_json(g: ranking.Group, limit: int = 0) -> dict[str, Any]:
    def comp(c: Any) -> Any:
        return None if c is None else {k: (None if isinstance(v, float) and math.isnan(v) else v)
                                       for k, v in asdict(c).items()}

    return {"protocol": g.protocol, "scorer_version": g.scorer_version, "data_fingerprint": g.data_fingerprint,
            "headline": g.headline, "higher_is_better": g.higher_is_better, "rows": [
                {"rank": it["rank"], "rank_interval": it["rank_interval"], "not_ranked": it.get("not_ranked"),
                 "run_id": it["row"].source,
                 "method": it["row"].method, "metrics": it["row"].metrics, "n_samples": it["row"].n_samples,
                 "n_errors": it["row"].n_errors, "origin": it["row"].extra.get("origin"),
                 "submitter": it["row"].extra.get("submitter"), "vs_leader": comp(it["vs_leader"]),
                 "vs_baseline": comp(it["vs_baseline"])} for it in (g.rows[:limit] if limit else g.rows)],
            "n_rows": len(g.rows)}


def ref_json(r: BoardRow) -> dict[str, Any]:
    return {"protocol": r.protocol, "method": r.method, "metrics": {k: v["value"] for k, v in r.metrics.items()},
            "type": r.extra.get("type"), "arxiv": r.extra.get("arxiv"), "table": r.extra.get("table"),
            "cell": r.extra.get("cell"), "paper": r.extra.get("paper"), "note": r.note}
