"""Privacy metrics (FDeID `eval_privacy_lfw.py` semantics) against sklearn and hand-worked numbers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from vision_models.privacy_eval import (
    best_accuracy,
    privacy_report,
    protection_success_rate,
    sweep_thresholds,
    verification_metrics,
)

# Genuine pairs 0.9, 0.8, 0.3; impostors 0.7, 0.153, 0.1 (worked by hand in each test; 0.153 keeps the
# hand-worked threshold off the sweep's grid, where arange's rounding would decide).
SIMS = [0.9, 0.8, 0.3, 0.7, 0.153, 0.1]
LABELS = [1, 1, 1, 0, 0, 0]


def test_threshold_sweep_is_the_references_arange():
    ts = sweep_thresholds()
    assert len(ts) == 200 and ts[0] == -1.0 and ts[-1] < 1.0


def test_best_accuracy_by_hand():
    # t in (0.153, 0.3]: accepts .9 .8 .7 .3 -> 3 genuine + 2 impostors right = 5/6; the first sweep value
    # above 0.153 is 0.16 (t <= 0.153 also accepts that impostor: 4/6; t in (0.3, 0.7]: 4/6 too).
    acc, thr = best_accuracy(SIMS, LABELS)
    assert acc == pytest.approx(5 / 6)
    assert thr == pytest.approx(0.16)


def test_best_accuracy_matches_a_plain_loop_like_the_reference():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.clip(rng.normal(0.3 * y, 0.25), -1, 1)
    best, best_t = 0.0, 0.0
    for t in np.arange(-1.0, 1.0, 0.01):
        acc = float(np.mean((s >= t).astype(int) == y))
        if acc > best:
            best, best_t = acc, t
    assert best_accuracy(s, y) == (pytest.approx(best), pytest.approx(best_t))


def test_auc_eer_tar_by_hand():
    # ROC (sklearn, collinear points dropped): (0,0) (0,2/3) (1/3,2/3) (1/3,1) (1,1);
    # |FPR - FNR| is 0 at (1/3, 2/3) -> EER 1/3. AUC: 8 of 9 genuine/impostor pairs ordered right.
    m = verification_metrics(SIMS, LABELS)
    assert m["auc"] == pytest.approx(8 / 9)
    assert m["eer"] == pytest.approx(1 / 3)
    assert m["tar_at_far_1"] == pytest.approx(2 / 3)  # no impostor may pass at FAR 1 %: .9 and .8 pass
    assert m["tar_at_far_10"] == pytest.approx(2 / 3)


def test_auc_and_tar_against_sklearn_on_random_scores():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    s = np.clip(rng.normal(0.5 * y, 0.3), -1, 1)
    m = verification_metrics(s, y)
    assert m["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)  # the full curve: interpolation agrees
    for key, far in {"0_1": 0.001, "1": 0.01, "10": 0.1}.items():
        assert m[f"tar_at_far_{key}"] == pytest.approx(np.interp(far, fpr, tpr), abs=1e-12)


def test_eer_against_a_brute_force_threshold_scan():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 4000)
    s = rng.normal(1.0 * y, 1.0)
    far = np.array([np.mean(s[y == 0] >= t) for t in np.sort(s)])
    frr = np.array([np.mean(s[y == 1] < t) for t in np.sort(s)])
    i = np.argmin(np.abs(far - frr))
    assert verification_metrics(s, y)["eer"] == pytest.approx((far[i] + frr[i]) / 2, abs=2e-3)


def test_psr_by_hand():
    # t = 0.16 on the originals: all three genuine pairs accepted; after protection 0.1 and 0.1 fall
    # below it, 0.5 does not -> 2/3. Impostor pairs never count.
    prot = [0.1, 0.5, 0.1, 0.9, 0.9, 0.9]
    assert protection_success_rate(SIMS, prot, LABELS, 0.16) == pytest.approx(2 / 3)
    report = privacy_report(SIMS, prot, LABELS)
    assert report.original["threshold"] == pytest.approx(0.16)
    assert report.psr == pytest.approx(2 / 3)


def test_psr_counts_only_pairs_accepted_on_originals_in_the_numerator():
    orig = [0.9, 0.1, 0.0]  # the second and third genuine pairs are rejected on the originals
    prot = [0.0, 0.0, 0.0]
    assert protection_success_rate(orig, prot, [1, 1, 0], 0.5) == pytest.approx(1 / 2)


def test_identity_protection_has_zero_psr_and_missing_face_counts_as_protected():
    report = privacy_report(SIMS, SIMS, LABELS)
    assert report.psr == 0.0
    assert report.protected["accuracy"] == report.original["accuracy"]
    missing = privacy_report(SIMS, [None, None, None, 0.7, 0.153, 0.1], LABELS)
    assert missing.psr == 1.0  # a face nobody can find is not recognised


def test_one_class_of_pairs_gives_nan_not_a_degenerate_threshold():
    # Only genuine pairs: t = -1 would accept all at 100 %, and PSR would measure nothing.
    report = privacy_report([0.9, 0.8], [-0.5, 0.1], [1, 1])
    assert np.isnan(report.original["accuracy"]) and np.isnan(report.original["threshold"])
    assert np.isnan(report.psr)


def test_a_missing_protected_face_is_below_every_threshold():
    report = privacy_report([0.9, 0.1], [None, None], [1, 0])
    assert report.protected["accuracy"] == 0.5  # nothing accepted: the genuine pair is lost, the impostor kept out
    assert report.psr == 1.0


def test_k_fold_accuracy_by_hand():
    from vision_models.privacy_eval import k_fold_accuracy

    # Fold A: genuine 0.9, impostor 0.5; fold B: genuine 0.6, impostor 0.2.
    # Threshold for A chosen on B: the first sweep value just above 0.2 -> on A both 0.9 and 0.5 accepted: 1/2.
    # Threshold for B chosen on A: the first value just above 0.5 -> on B 0.6 accepted, 0.2 rejected: 2/2.
    sims, labels, folds = [0.9, 0.5, 0.6, 0.2], [1, 0, 1, 0], ["A", "A", "B", "B"]
    assert k_fold_accuracy(sims, labels, folds) == pytest.approx((0.5 + 1.0) / 2)
    assert np.isnan(k_fold_accuracy(sims, labels, ["A"] * 4))
