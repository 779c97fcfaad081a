"""PNG plots of a submitted run, made once when the board accepts it and stored with the run:
confusion matrices found in the task's report, the PNGs the task's own report writes, and a
Bland–Altman plot from paired per-sample `<x>_pred`/`<x>_ref` scores when the report made none (rPPG's
report writes SVG, so its HR Bland–Altman on the board is this one).

Also the privacy–utility Pareto plot of a task that declares `Task.pareto_axes`: it only exists across
runs (one protection per run), so the board draws it from a group's rows on request, not per run.
`pareto_front` and `draw_pareto` are the one implementation (fdeid's report draws with them too)."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.core import Record

MAX_PLOTS = 12
MAX_PLOT_BYTES = 2 * 1024 * 1024
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_plot_name(text: str) -> str:
    name = _SAFE.sub("_", text).strip("._")[:80] or "plot"
    return name if name.endswith(".png") else name + ".png"


def find_confusion_matrices(report: Any, path: str = "") -> Iterator[tuple[str, list[str], list[str], list[list]]]:
    """(where, row labels, column labels, counts) for each confusion matrix in a report: an object with
    2-D integer `counts` (or `matrix`) and labels (`rows_true`/`columns_predicted`, or `labels`)."""
    if isinstance(report, dict):
        counts = report.get("counts", report.get("matrix"))
        if isinstance(counts, list) and counts and all(isinstance(r, list) for r in counts):
            rows = report.get("rows_true") or report.get("labels") or [str(i) for i in range(len(counts))]
            cols = report.get("columns_predicted") or report.get("labels") or [str(i) for i in range(len(counts[0]))]
            yield path or "confusion", [str(x) for x in rows], [str(x) for x in cols], counts
            return
        for k, v in report.items():
            yield from find_confusion_matrices(v, f"{path}.{k}" if path else str(k))


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def confusion_png(title: str, rows: list[str], cols: list[str], counts: list[list]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(counts, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(cols), 1.0 + 0.8 * len(rows)))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel="predicted", ylabel="true", title=title[:60])
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black")
    return _png(fig)


def paired_values(records: Sequence[Record]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-sample `<x>_pred` / `<x>_ref` scores (numbers or lists of numbers), flattened, finite pairs."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for r in records:
        if not r.ok:
            continue
        for key, pred in r.scores.items():
            if not key.endswith("_pred") or f"{key[:-5]}_ref" not in r.scores:
                continue
            ref = r.scores[f"{key[:-5]}_ref"]
            p = pred if isinstance(pred, list) else [pred]
            q = ref if isinstance(ref, list) else [ref]
            if len(p) != len(q):
                continue
            acc = out.setdefault(key[:-5], ([], []))
            for a, b in zip(p, q, strict=True):
                if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                    acc[0].append(float(a))
                    acc[1].append(float(b))
    result = {}
    for k, (p, q) in out.items():
        pa, qa = np.asarray(p), np.asarray(q)
        ok = np.isfinite(pa) & np.isfinite(qa)
        if ok.sum() >= 2:
            result[k] = (pa[ok], qa[ok])
    return result


def bland_altman_png(name: str, pred: np.ndarray, ref: np.ndarray) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean, diff = (pred + ref) / 2, pred - ref
    bias, sd = float(diff.mean()), float(diff.std(ddof=1))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(mean, diff, s=12, alpha=0.7)
    ax.axhline(bias, color="k", lw=1, label=f"bias {bias:.2f}")
    for k in (-1.96, 1.96):
        ax.axhline(bias + k * sd, color="k", ls="--", lw=1)
    ax.set(xlabel=f"mean of predicted and reference {name}", ylabel=f"predicted − reference {name}",
           title=f"Bland–Altman ({name}; limits {bias - 1.96 * sd:.1f} to {bias + 1.96 * sd:.1f})")
    ax.legend(loc="upper right")
    return _png(fig)


def run_plots(report: dict[str, Any], records: Sequence[Record], report_dir: Path | None) -> dict[str, bytes]:
    """name -> PNG bytes for a run (at most MAX_PLOTS, each at most MAX_PLOT_BYTES)."""
    plots: dict[str, bytes] = {}
    if report_dir is not None and report_dir.is_dir():
        for f in sorted(report_dir.rglob("*.png")):
            if len(plots) < MAX_PLOTS and f.is_file() and f.stat().st_size <= MAX_PLOT_BYTES:
                plots[safe_plot_name(f.name)] = f.read_bytes()
    found = list(find_confusion_matrices(report))
    top = min((w.count(".") for w, *_ in found), default=0)
    for where, rows, cols, counts in found:  # the outermost ones (pooled), not one per fold
        if len(plots) >= MAX_PLOTS or where.count(".") > top:
            continue
        try:
            plots[safe_plot_name(f"confusion_{where}")] = confusion_png(f"confusion matrix: {where}", rows, cols,
                                                                        counts)
        except (ValueError, TypeError):
            continue  # not a numeric matrix after all
    if not any("bland" in k for k in plots):
        for name, (pred, ref) in paired_values(records).items():
            if len(plots) < MAX_PLOTS:
                plots[safe_plot_name(f"bland_altman_{name}")] = bland_altman_png(name, pred, ref)
    return {k: v for k, v in plots.items() if len(v) <= MAX_PLOT_BYTES}


# ------------------------------------------------------------------------------------------ Pareto plots
MAX_LABEL = 40


@dataclass(frozen=True)
class ParetoPoint:
    label: str  # the solver (method) name, shown beside the point
    x: float
    y: float
    run_id: str = ""


def pareto_front(points: Sequence[tuple[float, float]], higher: tuple[bool, bool] = (True, True)) -> list[int]:
    """Indices (in input order) of the points no other point dominates. `higher` says per axis whether
    higher is better; a point dominates another when it is at least as good on both axes and better
    on one. Points with a NaN coordinate are never on the front and dominate nothing; equal points
    are all on it."""
    sx, sy = (1.0 if h else -1.0 for h in higher)
    pts = [(sx * x, sy * y) if math.isfinite(x) and math.isfinite(y) else None for x, y in points]
    front = []
    for i, p in enumerate(pts):
        if p is None:
            continue
        if not any(q is not None and q[0] >= p[0] and q[1] >= p[1] and (q[0] > p[0] or q[1] > p[1]) for q in pts):
            front.append(i)
    return front


def pareto_points(rows: Sequence[Any], x: str, y: str) -> list[ParetoPoint]:
    """One point per row (a `BoardRow`: `.method`, `.source`, `.metrics[name]["value"]`) that has
    finite values of both metrics, in display units."""
    out = []
    for r in rows:
        vx = (r.metrics.get(x) or {}).get("value")
        vy = (r.metrics.get(y) or {}).get("value")
        if isinstance(vx, (int, float)) and isinstance(vy, (int, float)) and math.isfinite(vx) and math.isfinite(vy):
            out.append(ParetoPoint(str(r.method), float(vx), float(vy), str(r.source)))
    return out


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[:MAX_LABEL - 1] + "…"


def draw_pareto(ax: Any, points: Sequence[ParetoPoint], higher: tuple[bool, bool], *, series: str | None = None,
                highlight: str | None = None) -> list[int]:
    """Scatter the points on a matplotlib Axes, label each (as plain text: no mathtext, so a solver
    name cannot inject markup), join the Pareto front with a dashed line and ring the `highlight` run.
    Returns the front's indices."""
    front = pareto_front([(p.x, p.y) for p in points], higher)
    on = set(front)
    sc = ax.scatter([p.x for p in points], [p.y for p in points], s=28, label=series, zorder=3,
                    c=["tab:red" if i in on else "tab:blue" for i in range(len(points))] if series is None else None)
    for p in points:
        ax.annotate(_label(p.label), (p.x, p.y), fontsize=7, xytext=(4, 3), textcoords="offset points",
                    parse_math=False)
    ordered = sorted((points[i] for i in front), key=lambda p: (p.x, p.y))
    ax.plot([p.x for p in ordered], [p.y for p in ordered], linestyle="--", linewidth=1,
            color="tab:red" if series is None else sc.get_facecolor()[0], zorder=2)
    for p in points:
        if highlight and p.run_id == highlight:
            ax.scatter([p.x], [p.y], s=160, facecolors="none", edgecolors="black", linewidths=2, zorder=4,
                       label="this run")
    return front


def pareto_png(points: Sequence[ParetoPoint], x: str, y: str, higher: tuple[bool, bool], title: str, *,
               highlight: str | None = None) -> bytes:
    """The Pareto plot as PNG bytes; matplotlib's object API (no pyplot state), so request threads can
    draw at the same time."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    draw_pareto(ax, points, higher, highlight=highlight)
    ax.set_xlabel(f"{x} ({'higher' if higher[0] else 'lower'} is better)")
    ax.set_ylabel(f"{y} ({'higher' if higher[1] else 'lower'} is better)")
    ax.set_title(_label(title) + " — Pareto front dashed, red", fontsize=10, parse_math=False)
    ax.grid(alpha=0.3)
    if highlight and any(p.run_id == highlight for p in points):
        ax.legend(loc="best", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()
