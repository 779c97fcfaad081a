"""Metrics against sklearn; the bootstrap CI and the paired comparison against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_recall_fscore_support

from harness import metrics as hm
from harness.core import Metric, Record
from harness.stats import bootstrap, evaluate, paired_bootstrap


def _records(targets, preds, folds=None, groups=None):
    folds = folds or ["f"] * len(targets)
    groups = groups or [{}] * len(targets)
    rows = zip(targets, preds, folds, groups, strict=True)
    return [Record(f"s{i}", fo, t, p, groups=g) for i, (t, p, fo, g) in enumerate(rows)]


def _acc(records):
    return float(np.mean([r.prediction == r.target for r in records]))


@pytest.mark.parametrize("average", ["macro", "weighted"])
def test_precision_recall_f1_equal_sklearn(average):
    rng = np.random.default_rng(3)
    labels = ["a", "b", "c", "d"]
    for _ in range(50):
        t = list(rng.choice(labels[:3], 40))
        p = list(rng.choice(labels, 40))  # "d" never true: a predicted-only class
        ours = hm.precision_recall_f1(t, p, average, labels=labels[:3])
        ref = precision_recall_fscore_support(t, p, average=average, labels=labels[:3], zero_division=0)[:3]
        assert ours == pytest.approx(ref, abs=1e-12)


def test_invalid_predictions_count_as_wrong_for_every_class():
    t = [True, True, False, False]
    p = [True, None, False, None]  # None = unparseable answer
    ours = hm.precision_recall_f1(t, p, "macro", labels=[False, True])
    ref = precision_recall_fscore_support(
        ["T", "T", "F", "F"], ["T", "X", "F", "X"], average="macro", labels=["F", "T"], zero_division=0)[:3]
    assert ours == pytest.approx(ref)
    assert hm.accuracy(t, p) == accuracy_score(["T", "T", "F", "F"], ["T", "X", "F", "X"])


def test_uar_equals_balanced_accuracy():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    assert hm.balanced_recall(list(t), list(p)) == pytest.approx(balanced_accuracy_score(t, p))


def test_bootstrap_ci_equals_hand_computation_at_fixed_seed():
    targets = [1, 0, 1, 1, 0, 0, 1, 0]
    preds = [1, 0, 0, 1, 1, 0, 1, 0]
    recs = _records(targets, preds)
    out = bootstrap([Metric("acc", _acc)], recs, n_boot=200, seed=7)["acc"]
    # by hand: one fold, units = samples, rng.integers(0, n, n) per replicate
    rng = np.random.default_rng(7)
    correct = np.array(targets) == np.array(preds)
    reps = [correct[rng.integers(0, 8, 8)].mean() for _ in range(200)]
    assert out.value == pytest.approx(6 / 8)
    assert (out.ci_low, out.ci_high) == pytest.approx((np.percentile(reps, 2.5), np.percentile(reps, 97.5)))


def test_clustered_bootstrap_resamples_whole_clusters_within_folds():
    targets = [1, 1, 0, 0, 1, 0]
    preds = [1, 0, 0, 0, 0, 0]
    folds = ["f1", "f1", "f1", "f2", "f2", "f2"]
    groups = [{"subj": g} for g in ["a", "a", "b", "c", "d", "d"]]
    recs = _records(targets, preds, folds, groups)
    out = bootstrap([Metric("acc", _acc, per_fold=True)], recs, cluster_key="subj", n_boot=100, seed=1)["acc"]
    rng = np.random.default_rng(1)
    units = {"f1": [[0, 1], [2]], "f2": [[3], [4, 5]]}
    correct = np.array(targets) == np.array(preds)
    reps = []
    for _ in range(100):
        vals = []
        for f in ("f1", "f2"):
            draw = rng.integers(0, 2, 2)
            idx = [i for u in draw for i in units[f][u]]
            vals.append(correct[idx].mean())
        reps.append(np.mean(vals))
    # point value: mean of fold accuracies (2/3 and 2/3)
    assert out.value == pytest.approx(2 / 3)
    assert (out.ci_low, out.ci_high) == pytest.approx((np.percentile(reps, 2.5), np.percentile(reps, 97.5)))


def test_evaluate_per_fold_is_mean_of_folds_not_pooled():
    recs = _records([1, 1, 1, 0], [1, 1, 1, 1], ["a", "a", "a", "b"])
    assert evaluate(Metric("acc", _acc, per_fold=True), recs) == pytest.approx((1.0 + 0.0) / 2)
    assert evaluate(Metric("acc", _acc), recs) == pytest.approx(3 / 4)


def test_paired_bootstrap_hand_computation_and_identical_runs():
    t = [1, 0, 1, 0, 1, 0, 1, 0, 1, 1]
    a = _records(t, [1, 0, 1, 0, 1, 0, 1, 0, 0, 1])
    b = _records(t, [0, 0, 1, 1, 1, 0, 0, 0, 0, 1])
    c = paired_bootstrap(Metric("acc", _acc), a, b, n_boot=300, seed=4)
    ca = np.array(t) == np.array([r.prediction for r in a])
    cb = np.array(t) == np.array([r.prediction for r in b])
    rng = np.random.default_rng(4)
    diffs = []
    for _ in range(300):
        idx = rng.integers(0, 10, 10)
        diffs.append(ca[idx].mean() - cb[idx].mean())
    diffs = np.array(diffs)
    p = min(1.0, 2 * min((diffs <= 0).sum() + 1, (diffs >= 0).sum() + 1) / 301)
    assert c.diff == pytest.approx(0.9 - 0.6) and c.n_shared == 10
    assert (c.ci_low, c.ci_high) == pytest.approx((np.percentile(diffs, 2.5), np.percentile(diffs, 97.5)))
    assert c.p_value == pytest.approx(p)
    same = paired_bootstrap(Metric("acc", _acc), a, a, n_boot=100)
    assert same.diff == 0 and same.p_value == 1.0


def test_paired_bootstrap_uses_only_shared_successful_samples():
    a = _records([1, 1, 1], [1, 1, 1])
    b = _records([1, 1, 1], [0, 1, 1])
    b[2].error = "timeout"
    c = paired_bootstrap(Metric("acc", _acc), a, b, n_boot=50)
    assert c.n_shared == 2 and c.diff == pytest.approx(1.0 - 0.5)
