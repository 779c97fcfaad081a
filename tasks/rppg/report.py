"""Extra rPPG results for metrics.json: toolbox-style summary with standard errors, breakdowns per
subject / scenario / view, face-detection failure per video, Bland–Altman and scatter plots (SVG,
written directly: importing matplotlib and rendering two PNGs took longer than a 20 s video)."""

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


_W, _H, _M = 480, 360, 56  # SVG size and margin (px)


def _svg(title: str, xlabel: str, ylabel: str, x: np.ndarray, y: np.ndarray, lines: list[tuple]) -> str:
    """A scatter plot as SVG text (no plotting library: matplotlib's import and rendering cost more than
    a whole rPPG video here). `lines`: (kind "diag" | "h", value, dashed, label) drawn over the points."""
    from html import escape

    values_y = [y] + [np.array([v]) for kind, v, _, _ in lines if kind == "h"]
    lo_x, hi_x = float(x.min()), float(x.max())
    lo_y, hi_y = float(min(v.min() for v in values_y)), float(max(v.max() for v in values_y))
    if any(kind == "diag" for kind, *_ in lines):
        lo_x = lo_y = min(lo_x, lo_y)
        hi_x = hi_y = max(hi_x, hi_y)
    pad_x, pad_y = max((hi_x - lo_x) * 0.08, 1.0), max((hi_y - lo_y) * 0.08, 1.0)
    lo_x, hi_x, lo_y, hi_y = lo_x - pad_x, hi_x + pad_x, lo_y - pad_y, hi_y + pad_y

    def px(v: float) -> float:
        return _M + (v - lo_x) / (hi_x - lo_x) * (_W - 1.5 * _M)

    def py(v: float) -> float:
        return _H - _M - (v - lo_y) / (hi_y - lo_y) * (_H - 1.7 * _M)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" font-family="sans-serif" '
           f'font-size="11"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{_W / 2}" y="18" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<text x="{_W / 2}" y="{_H - 10}" text-anchor="middle">{escape(xlabel)}</text>',
           f'<text x="14" y="{_H / 2}" text-anchor="middle" transform="rotate(-90 14 {_H / 2})">'
           f'{escape(ylabel)}</text>',
           f'<rect x="{_M}" y="{0.7 * _M}" width="{_W - 1.5 * _M}" height="{_H - 1.7 * _M}" fill="none" '
           'stroke="#444"/>']
    for i in range(5):  # ticks
        vx, vy = lo_x + (hi_x - lo_x) * (i + 0.5) / 5, lo_y + (hi_y - lo_y) * (i + 0.5) / 5
        out.append(f'<text x="{px(vx):.1f}" y="{_H - _M + 14}" text-anchor="middle">{vx:.1f}</text>')
        out.append(f'<text x="{_M - 4}" y="{py(vy) + 4:.1f}" text-anchor="end">{vy:.1f}</text>')
    for kind, value, dashed, label in lines:
        dash = ' stroke-dasharray="5,4"' if dashed else ""
        if kind == "diag":
            a, b = max(lo_x, lo_y), min(hi_x, hi_y)
            out.append(f'<line x1="{px(a):.1f}" y1="{py(a):.1f}" x2="{px(b):.1f}" y2="{py(b):.1f}" '
                       f'stroke="black"{dash}/>')
        else:
            out.append(f'<line x1="{_M}" y1="{py(value):.1f}" x2="{_W - 0.5 * _M}" y2="{py(value):.1f}" '
                       f'stroke="black"{dash}/>')
        if label:
            ly = py(value) - 4 if kind == "h" else 0.7 * _M + 14
            out.append(f'<text x="{_W - 0.5 * _M - 4}" y="{ly:.1f}" text-anchor="end">{escape(label)}</text>')
    out += [f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="3" fill="#1f77b4" fill-opacity="0.7"/>'
            for a, b in zip(x.tolist(), y.tolist(), strict=True)]
    out.append("</svg>\n")
    return "\n".join(out)


def _plots(pred: list, ref: list, out_dir: Path) -> list[str]:
    """Predicted-vs-reference scatter and Bland–Altman plots as SVG files."""
    p = np.asarray(pred, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(r)
    p, r = p[ok], r[ok]
    if not p.size:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    scatter = _svg("Predicted vs reference HR", "reference HR [bpm]", "rPPG HR [bpm]", r, p,
                   [("diag", 0.0, True, "y = x")])
    mean, diff = (p + r) / 2, p - r
    bias, sd = float(diff.mean()), float(diff.std(ddof=1)) if diff.size > 1 else 0.0
    lo, hi = bias - 1.96 * sd, bias + 1.96 * sd
    bland = _svg(f"Bland–Altman (limits of agreement {lo:.1f} to {hi:.1f})", "mean of rPPG and reference HR [bpm]",
                 "rPPG − reference HR [bpm]", mean, diff,
                 [("h", bias, False, f"bias {bias:.2f} bpm"), ("h", lo, True, ""), ("h", hi, True, "")])
    paths = []
    for name, text in (("hr_scatter.svg", scatter), ("hr_bland_altman.svg", bland)):
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
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
