"""The privacy–quality report of fdeid: a table and a Pareto plot (PSR vs SSIM) from leaderboard rows.

Why from the leaderboard and not from one run: each protection is its own run (one solver per run),
so the trade-off only exists across runs; the board holds them all, with reference rows beside them.

    python -m tasks.fdeid.report --db sqlite:///runs/leaderboard.sqlite --out fdeid_pareto.png
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.board.plots import ParetoPoint, draw_pareto, pareto_front
from tasks.fdeid import FdeidTask

X_METRIC, Y_METRIC = FdeidTask.pareto_axes  # ssim, psr: both higher is better
HIGHER = (True, True)

__all__ = ["pareto_front", "pareto_plot", "plot_points"]  # pareto_front: harness.board.plots' one implementation


def plot_points(rows: Sequence[Any], protocol: str | None = None) -> list[tuple[str, str, float, float]]:
    """(protocol, method, ssim, psr) of each row that has both numbers (optionally one protocol)."""
    out = []
    for r in rows:
        if protocol and r.protocol != protocol:
            continue
        x = (r.metrics.get(X_METRIC) or {}).get("value")
        y = (r.metrics.get(Y_METRIC) or {}).get("value")
        if x is not None and y is not None and x == x and y == y:
            out.append((r.protocol, r.method, float(x), float(y)))
    return out


def pareto_plot(rows: Sequence[Any], out: Path, protocol: str | None = None) -> Path:
    """One point per run (and reference row) with PSR and SSIM; the Pareto front joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = plot_points(rows, protocol)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for proto in sorted({p[0] for p in pts}):
        draw_pareto(ax, [ParetoPoint(m, x, y) for pr, m, x, y in pts if pr == proto], HIGHER, series=proto)
    ax.set_xlabel("SSIM to the original (quality, higher is better)")
    ax.set_ylabel("PSR (privacy, higher is better)")
    ax.set_title("fdeid: privacy vs quality" + (f" ({protocol})" if protocol else ""))
    ax.grid(alpha=0.3)
    if pts:
        ax.legend(title="protocol", fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    from harness.leaderboard import Leaderboard, reference_rows

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="leaderboard URL (sqlite:///runs/leaderboard.sqlite)")
    ap.add_argument("--out", type=Path, default=Path("fdeid_pareto.png"))
    ap.add_argument("--protocol", default=None)
    args = ap.parse_args(argv)
    rows = Leaderboard(args.db).measured("fdeid") + reference_rows("fdeid")
    for proto, method, x, y in sorted(plot_points(rows, args.protocol)):
        print(f"{proto:10s} {method:32s} ssim={x:.4f} psr={y:.3f}")
    print(pareto_plot(rows, args.out, args.protocol))


if __name__ == "__main__":
    main()
