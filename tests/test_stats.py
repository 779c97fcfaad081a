"""The bootstrap CI and the paired comparison against hand computations; vectorised metrics against the
same metrics called per replicate; splits, set-level metrics and resampling across folds (LOSO)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from harness import stats
from harness.core import Metric, Record
from harness.metrics import Classification, Coded, encode
from harness.stats import bootstrap, evaluate, paired_bootstrap


def _records(targets, preds, folds=None, groups=None):
    folds = folds or ["f"] * len(targets)
    groups = groups or [{}] * len(targets)
    rows = zip(targets, preds, folds, groups, strict=True)
    return [Record(f"s{i}", fo, t, p, groups=g) for i, (t, p, fo, g) in enumerate(rows)]


def _acc(records):
    return float(np.mean([r.prediction == r.target for r in records]))


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


# -- vectorised evaluation, splits, resampling across folds --------------------------------------------
LABELS = ("a", "b", "c")


def _codes(records):
    return Coded(encode([r.target for r in records], LABELS), encode([r.prediction for r in records], LABELS), LABELS)


def _macro_f1(records):  # the same metric, one call per replicate, by sklearn
    return f1_score([r.target for r in records], [r.prediction for r in records], labels=list(LABELS),
                    average="macro", zero_division=0)


def _toy(n=60, n_folds=3, n_subjects=12, seed=0):
    rng = np.random.default_rng(seed)
    targets = list(rng.choice(["a", "a", "b", "c"], n))
    preds = [t if rng.random() < 0.6 else rng.choice(["a", "b", "c", "?"]) for t in targets]  # "?": invalid
    folds = [f"f{i % n_folds}" for i in range(n)]
    groups = [{"subj": f"p{i % n_subjects}", "score": 0} for i in range(n)]
    recs = _records(targets, preds, folds, groups)
    for r in recs:
        r.scores["correct"] = float(r.prediction == r.target)
    return recs


@pytest.mark.parametrize("per_fold", [False, True])
@pytest.mark.parametrize("cluster_key", [None, "subj"])
@pytest.mark.parametrize("within_folds", [True, False])
def test_vectorised_metrics_equal_the_same_metrics_called_per_replicate(per_fold, cluster_key, within_folds):
    recs = _toy()
    metrics = [
        Metric("f1_counts", classification=Classification(_codes, "f1", "macro"), per_fold=per_fold),
        Metric("f1_fn", _macro_f1, per_fold=per_fold),
        Metric("acc_mean", mean_of="correct", per_fold=per_fold),
        Metric("acc_fn", _acc, per_fold=per_fold),
    ]
    out = bootstrap(metrics, recs, cluster_key=cluster_key, n_boot=100, seed=3, within_folds=within_folds)
    for fast, slow in (("f1_counts", "f1_fn"), ("acc_mean", "acc_fn")):
        a, b = out[fast], out[slow]
        assert (a.value, a.ci_low, a.ci_high) == pytest.approx((b.value, b.ci_low, b.ci_high), abs=1e-12)
        assert a.ci_low < a.value < a.ci_high


def test_drawing_in_chunks_of_replicates_gives_the_same_replicates(monkeypatch):
    recs = _toy()
    metric = [Metric("f1", classification=Classification(_codes), per_fold=True)]
    whole = bootstrap(metric, recs, cluster_key="subj", n_boot=100, seed=5)["f1"]
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 70)  # 1 replicate per chunk
    chunked = bootstrap(metric, recs, cluster_key="subj", n_boot=100, seed=5)["f1"]
    assert (whole.ci_low, whole.ci_high) == (chunked.ci_low, chunked.ci_high)


def test_macro_f1_keeps_a_rare_class_absent_from_a_resample_at_zero():
    """A rare class predicted right once: resamples that miss it still average over three classes, so no
    resample scores above the point value by dropping it (the motor bug: point 19.3, CI [19.3, 36.5])."""
    targets = ["a"] * 10 + ["b"] * 10 + ["c"]
    preds = ["a"] * 6 + ["b"] * 4 + ["b"] * 6 + ["a"] * 4 + ["c"]
    recs = _records(targets, preds)
    out = bootstrap([Metric("f1", classification=Classification(_codes))], recs, n_boot=500, seed=0)["f1"]
    assert out.value == pytest.approx(_macro_f1(recs))
    assert out.ci_low < out.value < out.ci_high
    assert out.ci_high < 0.85  # dropping "c" would leave (0.6 + 0.6) / 2 = 0.6 with "c" worth 1.0 gone


def _loso(n_subjects=6, per_subject=5):
    """Leave-one-subject-out: one subject per fold, subject k gets k of its answers right."""
    recs = []
    for k in range(n_subjects):
        for j in range(per_subject):
            recs.append(Record(f"p{k}-{j}", f"fold-p{k}", 1, int(j < k), groups={"subject": f"p{k}"}))
    return recs


def test_loso_resampling_subjects_across_folds_gives_a_ci_of_nonzero_width():
    recs = _loso()
    metric = Metric("acc", _acc, per_fold=True)
    across = bootstrap([metric], recs, cluster_key="subject", n_boot=200, seed=2, within_folds=False)["acc"]
    # by hand: one stratum of 6 subjects; a subject drawn twice counts twice in the fold mean
    per_subject = np.array([min(k, 5) / 5 for k in range(6)])
    rng = np.random.default_rng(2)
    reps = [per_subject[rng.integers(0, 6, 6)].mean() for _ in range(200)]
    assert across.value == pytest.approx(per_subject.mean())
    assert (across.ci_low, across.ci_high) == pytest.approx((np.percentile(reps, 2.5), np.percentile(reps, 97.5)))
    assert across.ci_high - across.ci_low > 0.2
    # within folds, each fold's only unit is its subject: every replicate is the original set
    within = bootstrap([metric], recs, cluster_key="subject", n_boot=200, seed=2)["acc"]
    assert within.ci_low == pytest.approx(within.value) and within.ci_high == pytest.approx(within.value)


def test_loso_vectorised_metrics_across_folds_match_the_hand_computation():
    recs = _loso()
    for r in recs:
        r.scores["correct"] = float(r.prediction == r.target)
    out = bootstrap([Metric("acc", mean_of="correct", per_fold=True)], recs, cluster_key="subject", n_boot=200,
                    seed=2, within_folds=False)["acc"]
    per_subject = np.array([k / 5 for k in range(6)])
    rng = np.random.default_rng(2)
    reps = [per_subject[rng.integers(0, 6, 6)].mean() for _ in range(200)]
    assert (out.ci_low, out.ci_high) == pytest.approx((np.percentile(reps, 2.5), np.percentile(reps, 97.5)))


def test_other_splits_stay_fixed_and_metrics_see_only_their_splits():
    recs = _records([1, 1, 0, 0, 1, 1, 0, 1], [1, 0, 0, 1, 1, 1, 0, 0])
    for r in recs[5:]:
        r.split = "dev"  # e.g. for a threshold; never resampled
    test_correct = np.array([r.prediction == r.target for r in recs[:5]])

    def test_acc_plus_dev_count(rs):
        return np.mean([r.prediction == r.target for r in rs if r.split == "test"]) + sum(r.split == "dev" for r in rs)

    metrics = [Metric("both", test_acc_plus_dev_count, splits=("test", "dev")), Metric("acc", _acc),
               Metric("dev_acc", _acc, splits=("dev",)), Metric("set", _acc, resample="none")]
    out = bootstrap(metrics, recs, n_boot=100, seed=9)
    rng = np.random.default_rng(9)
    reps = [test_correct[rng.integers(0, 5, 5)].mean() + 3 for _ in range(100)]  # only the 5 test records drawn
    assert out["both"].value == pytest.approx(test_correct.mean() + 3) and out["both"].n == 8
    assert (out["both"].ci_low, out["both"].ci_high) == pytest.approx((np.percentile(reps, 2.5),
                                                                        np.percentile(reps, 97.5)))
    assert out["acc"].value == pytest.approx(0.6) and out["acc"].n == 5
    assert out["dev_acc"].value == pytest.approx(2 / 3) and out["dev_acc"].ci_low == pytest.approx(2 / 3)
    assert out["set"].value == pytest.approx(0.6) and np.isnan(out["set"].ci_low) and np.isnan(out["set"].ci_high)


def test_paired_bootstrap_vectorised_equals_per_replicate():
    a = _toy(seed=1)
    b = _toy(seed=2)
    fast = paired_bootstrap(Metric("f1", classification=Classification(_codes), per_fold=True), a, b,
                            cluster_key="subj", n_boot=100, seed=4)
    slow = paired_bootstrap(Metric("f1", _macro_f1, per_fold=True), a, b, cluster_key="subj", n_boot=100, seed=4)
    assert (fast.diff, fast.ci_low, fast.ci_high, fast.p_value) == pytest.approx(
        (slow.diff, slow.ci_low, slow.ci_high, slow.p_value), abs=1e-12)


def test_multilabel_f1_under_the_bootstrap_equals_sklearn_per_replicate():
    rng = np.random.default_rng(8)
    n, n_labels = 40, 4
    true = (rng.random((n, n_labels)) < 0.3).astype(int)
    pred = np.where(rng.random((n, n_labels)) < 0.7, true, 1 - true)
    recs = _records([list(t) for t in true], [list(p) for p in pred], [f"f{i % 2}" for i in range(n)])

    def codes(rs):
        return Coded(np.array([r.target for r in rs]), np.array([r.prediction for r in rs]), tuple(range(n_labels)))

    def by_sklearn(rs):
        return f1_score(np.array([r.target for r in rs]), np.array([r.prediction for r in rs]), average="macro",
                        zero_division=0)

    out = bootstrap([Metric("fast", classification=Classification(codes), per_fold=True),
                     Metric("slow", by_sklearn, per_fold=True)], recs, n_boot=80, seed=1)
    assert (out["fast"].value, out["fast"].ci_low, out["fast"].ci_high) == pytest.approx(
        (out["slow"].value, out["slow"].ci_low, out["slow"].ci_high), abs=1e-12)
