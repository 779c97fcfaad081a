"""rPPG aggregate metrics (MAE, RMSE, MAPE, Pearson r ± SE, SNR, MACC) against numpy / scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from harness.core import Record
from tasks.rppg import RppgTask
from tasks.rppg import metrics as M

PRED = [72.0, 80.5, 91.0, 60.0, 101.25, 77.0]
REF = [70.0, 82.0, 90.0, 66.0, 100.0, 75.5]


def test_mae_rmse_mape_match_numpy():
    p, r = np.array(PRED), np.array(REF)
    assert M.mae(PRED, REF) == pytest.approx(np.abs(p - r).mean())
    assert M.rmse(PRED, REF) == pytest.approx(math.sqrt(((p - r) ** 2).mean()))
    assert M.mape(PRED, REF) == pytest.approx(100 * (np.abs(p - r) / r).mean())
    assert M.mae(PRED, REF) == pytest.approx((2 + 1.5 + 1 + 6 + 1.25 + 1.5) / 6)


def test_pearson_r_and_its_standard_error():
    r, _ = scipy.stats.pearsonr(PRED, REF)
    assert M.pearson_r(PRED, REF) == pytest.approx(r)
    assert M.pearson_se(r, 6) == pytest.approx(math.sqrt((1 - r**2) / 4))
    assert math.isnan(M.pearson_r([1, 2], [1, 2]))  # fewer than 3 windows
    assert math.isnan(M.pearson_se(0.5, 2))


def test_undefined_windows_are_dropped_and_counted():
    s = M.summary(PRED + [float("nan")], REF + [80.0])
    assert s["n"] == 6 and s["n_undefined"] == 1
    assert s["mae"] == pytest.approx(M.mae(PRED, REF))


def test_summary_standard_errors_follow_the_toolbox_formulas():
    p, r = np.array(PRED), np.array(REF)
    snr = [3.0, -1.0, 5.5]
    macc = [0.9, 0.7, None]
    s = M.summary(PRED, REF, snr, macc)
    n = len(p)
    assert s["mae_se"] == pytest.approx(np.std(np.abs(p - r)) / math.sqrt(n))
    assert s["rmse_se"] == pytest.approx(math.sqrt(np.std((p - r) ** 2) / math.sqrt(n)))
    assert s["mape_se"] == pytest.approx(np.std(np.abs((p - r) / r)) / math.sqrt(n) * 100)
    assert s["snr_db"] == pytest.approx(np.mean(snr)) and s["snr_db_se"] == pytest.approx(np.std(snr) / math.sqrt(3))
    assert s["macc"] == pytest.approx(0.8)
    assert "standard error" in s["se_kind"]


def _record(i, pred, ref, snr, macc=None, subject="s1"):
    scores = {"hr_pred": pred, "hr_ref": ref, "snr_db": snr}
    if macc is not None:
        scores["macc"] = macc
    return Record(sample_id=f"v{i}", fold="test", target=None, scores=scores, groups={"subject": subject})


def test_task_metrics_pool_windows_of_all_records():
    recs = [_record(0, PRED[:2], REF[:2], [1.0, 2.0], [0.5, 0.7]),
            _record(1, PRED[2:], REF[2:], [3.0, None, 4.0, 5.0], [0.9, 0.9, 0.9, 0.9]),
            Record(sample_id="bad", fold="test", target=None, error="boom")]
    ok = [r for r in recs if r.ok]
    metrics = {m.name: m for m in RppgTask().metrics("ubfc")}
    assert list(metrics) == ["mae", "rmse", "mape", "pearson_r", "snr_db", "macc"]
    assert [m.name for m in RppgTask().metrics("roi")] == ["mae", "rmse", "mape", "pearson_r", "snr_db"]
    assert metrics["mae"].higher_is_better is False and metrics["pearson_r"].higher_is_better is True
    assert not any(m.per_fold for m in metrics.values())
    assert metrics["mae"].fn(ok) == pytest.approx(M.mae(PRED, REF))
    assert metrics["rmse"].fn(ok) == pytest.approx(M.rmse(PRED, REF))
    assert metrics["pearson_r"].fn(ok) == pytest.approx(scipy.stats.pearsonr(PRED, REF)[0])
    assert metrics["snr_db"].fn(ok) == pytest.approx(np.mean([1, 2, 3, 4, 5]))
    assert metrics["macc"].fn(ok) == pytest.approx(np.mean([0.5, 0.7, 0.9, 0.9, 0.9, 0.9]))
