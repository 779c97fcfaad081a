"""Aggregate HR metrics over windows (or whole videos), as rPPG-Toolbox reports them.

Every value comes with the toolbox's "±", which is a **standard error**, not a confidence interval:
std(x)/sqrt(n) of the per-window absolute errors (MAE), absolute percentage errors (MAPE), SNRs and
MACCs; sqrt(std(squared errors)/sqrt(n)) for RMSE (the toolbox's formula, kept as is); and
sqrt((1 - r^2)/(n - 2)) for Pearson r. numpy's `std` is the population std (ddof=0), as in the toolbox.
The runner adds a cluster bootstrap CI on top; the two are reported under different names.

Windows whose predicted or reference HR is undefined (NaN, e.g. fewer than two peaks with
`hr_method="peak"`) are dropped from the HR metrics and counted in `n_undefined`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _pairs(hr_pred: Sequence[float], hr_ref: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(hr_pred, dtype=np.float64)
    r = np.asarray(hr_ref, dtype=np.float64)
    if p.shape != r.shape:
        raise ValueError(f"hr_pred and hr_ref differ in length: {p.shape} vs {r.shape}")
    ok = np.isfinite(p) & np.isfinite(r)
    return p[ok], r[ok]


def mae(hr_pred: Sequence[float], hr_ref: Sequence[float]) -> float:
    p, r = _pairs(hr_pred, hr_ref)
    return float(np.mean(np.abs(p - r))) if p.size else float("nan")


def rmse(hr_pred: Sequence[float], hr_ref: Sequence[float]) -> float:
    p, r = _pairs(hr_pred, hr_ref)
    return float(np.sqrt(np.mean((p - r) ** 2))) if p.size else float("nan")


def mape(hr_pred: Sequence[float], hr_ref: Sequence[float]) -> float:
    """Mean absolute percentage error, in percent."""
    p, r = _pairs(hr_pred, hr_ref)
    return float(np.mean(np.abs((p - r) / r)) * 100) if p.size else float("nan")


def pearson_r(hr_pred: Sequence[float], hr_ref: Sequence[float]) -> float:
    """Pearson correlation; NaN with fewer than 3 windows or a constant side."""
    p, r = _pairs(hr_pred, hr_ref)
    if p.size < 3:
        return float("nan")
    dp, dr = p - p.mean(), r - r.mean()
    sp, sr = float(dp @ dp), float(dr @ dr)
    if sp == 0 or sr == 0:
        return float("nan")
    return float(np.clip((dp @ dr) / np.sqrt(sp * sr), -1.0, 1.0))


def pearson_se(r: float, n: int) -> float:
    """The toolbox's standard error of r: sqrt((1 - r^2) / (n - 2))."""
    if n <= 2 or not np.isfinite(r):
        return float("nan")
    return float(np.sqrt((1 - r**2) / (n - 2)))


def mean_finite(values: Sequence[float | None]) -> float:
    """Mean over the finite values (None and NaN dropped); NaN when there are none."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def _se(x: np.ndarray) -> float:
    return float(np.std(x) / np.sqrt(x.size)) if x.size else float("nan")


def summary(
    hr_pred: Sequence[float], hr_ref: Sequence[float], snr: Sequence[float] | None = None,
    macc: Sequence[float | None] | None = None,
) -> dict[str, float | int | str]:
    """All metrics with their toolbox standard errors (`<name>_se`)."""
    p, r = _pairs(hr_pred, hr_ref)
    n = int(p.size)
    err = p - r
    corr = pearson_r(p, r)
    out: dict[str, float | int | str] = {
        "n": n,
        "n_undefined": len(hr_pred) - n,
        "mae": mae(p, r),
        "mae_se": _se(np.abs(err)),
        "rmse": rmse(p, r),
        "rmse_se": float(np.sqrt(np.std(err**2) / np.sqrt(n))) if n else float("nan"),
        "mape": mape(p, r),
        "mape_se": _se(np.abs(err / r)) * 100 if n else float("nan"),
        "pearson_r": corr,
        "pearson_r_se": pearson_se(corr, n),
        "se_kind": "standard error (rPPG-Toolbox formulas), not a confidence interval",
    }
    if snr is not None:
        s = np.asarray([v for v in snr if v is not None], dtype=np.float64)
        s = s[np.isfinite(s)]
        out["snr_db"], out["snr_db_se"] = mean_finite(s), _se(s)
    if macc is not None:
        m = np.asarray([v for v in macc if v is not None], dtype=np.float64)
        m = m[np.isfinite(m)]
        out["macc"], out["macc_se"] = mean_finite(m), _se(m)
    return out
