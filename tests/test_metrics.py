"""harness.metrics against scikit-learn (`labels=`, `zero_division=0`) on many random cases: every stat
and average, single- and multi-label, invalid answers, classes absent from a sample, and counts of
many replicates evaluated at once."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    recall_score,
)

from harness import metrics as hm
from harness.core import Metric, Record
from harness.metrics import Classification, Coded, counts, score

STATS = ("precision", "recall", "f1")


def _single_label_cases(n_cases: int, seed: int):
    """Random (true, pred, k): k up to 6 classes, some classes never true or never predicted, some
    predictions invalid (-1 or k)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_cases):
        k = int(rng.integers(1, 7))
        n = int(rng.integers(1, 40))
        true = rng.integers(0, max(1, k - int(rng.integers(0, 2))), n)  # the top class is sometimes absent
        pred = rng.integers(-1, k + 1, n)  # -1 and k: invalid answers
        yield true, pred, k


@pytest.mark.parametrize("average", ["macro", "weighted", "micro", None])
def test_single_label_precision_recall_f1_equal_sklearn_with_fixed_labels(average):
    for true, pred, k in _single_label_cases(300, seed=1):
        c = counts(Coded(true, pred, tuple(range(k))))
        ref = precision_recall_fscore_support(true, pred, labels=list(range(k)), average=average, zero_division=0)
        for stat, expected in zip(STATS, ref[:3], strict=True):
            assert score(c, k, False, stat, average) == pytest.approx(expected, abs=1e-12), (stat, true, pred)


def test_binary_average_is_the_positive_class_and_accuracy_counts_invalid_as_wrong():
    for true, pred, k in _single_label_cases(300, seed=2):
        c = counts(Coded(true, pred, tuple(range(k))))
        per_class = precision_recall_fscore_support(true, pred, labels=list(range(k)), average=None, zero_division=0)
        for pos in range(k):
            for stat, ref in zip(STATS, per_class[:3], strict=True):
                assert score(c, k, False, stat, "binary", pos_label=pos) == pytest.approx(ref[pos], abs=1e-12)
        assert score(c, k, False, "accuracy") == pytest.approx(accuracy_score(true, pred))


def test_binary_equals_sklearn_binary_average_on_valid_answers():
    rng = np.random.default_rng(3)
    for _ in range(100):
        true, pred = rng.integers(0, 2, 30), rng.integers(0, 2, 30)
        c = counts(Coded(true, pred, (0, 1)))
        ref = precision_recall_fscore_support(true, pred, average="binary", zero_division=0)
        assert [float(score(c, 2, False, s, "binary")) for s in STATS] == pytest.approx(list(ref[:3]), abs=1e-12)


def test_uar_is_macro_recall_and_war_is_accuracy_over_the_fixed_label_set():
    for true, pred, k in _single_label_cases(200, seed=4):
        labels = list(range(k))
        assert hm.uar(list(true), list(pred), labels) == pytest.approx(
            recall_score(true, pred, labels=labels, average="macro", zero_division=0), abs=1e-12)
        assert hm.war(list(true), list(pred), labels) == pytest.approx(
            recall_score(true, pred, labels=labels, average="weighted", zero_division=0), abs=1e-12)
        assert hm.war(list(true), list(pred), labels) == pytest.approx(accuracy_score(true, pred))
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 5, 200), rng.integers(0, 5, 200)  # every class present: UAR = balanced accuracy
    assert hm.uar(list(t), list(p)) == pytest.approx(balanced_accuracy_score(t, p))


@pytest.mark.parametrize("average", ["macro", "weighted", "micro", None])
def test_multilabel_per_label_binary_scores_equal_sklearn(average):
    rng = np.random.default_rng(5)
    for _ in range(300):
        n_labels, n = int(rng.integers(2, 7)), int(rng.integers(1, 40))  # (n, 1) is a binary vector to sklearn
        true = (rng.random((n, n_labels)) < rng.random(n_labels)).astype(int)  # some labels never true
        pred = rng.integers(0, 2, (n, n_labels))
        c = counts(Coded(true, pred, tuple(range(n_labels))))
        ref = precision_recall_fscore_support(true, pred, average=average, zero_division=0)
        for stat, expected in zip(STATS, ref[:3], strict=True):
            assert score(c, n_labels, True, stat, average) == pytest.approx(expected, abs=1e-12)
        assert score(c, n_labels, True, "accuracy") == pytest.approx(accuracy_score(true, pred))  # exact match
        if average == "macro":
            per_label = [precision_recall_fscore_support(true[:, j], pred[:, j], average="binary",
                                                         zero_division=0)[2] for j in range(n_labels)]
            assert hm.multilabel_f1(true, pred) == pytest.approx(np.mean(per_label), abs=1e-12)


def test_multilabel_invalid_entry_is_wrong_for_that_label():
    true = np.array([[1, 0], [0, 1]])
    pred = np.array([[-1, 0], [0, 7]])  # -1 and 7: no answer for that label
    c = counts(Coded(true, pred, ("au1", "au2")))
    as_wrong = np.array([[0, 0], [0, 0]])
    ref = counts(Coded(true, as_wrong, ("au1", "au2")))
    assert list(c) == list(ref)


def test_an_absent_class_keeps_its_place_in_the_macro_average():
    """Targets a a b, predictions a a b over labels (a, b, c): c was never seen, F1 = 0 -> macro 2/3,
    where sklearn without labels= (labels present only) would say 1."""
    true, pred = ["a", "a", "b"], ["a", "a", "b"]
    assert hm.precision_recall_f1(true, pred, "macro", labels=["a", "b", "c"])[2] == pytest.approx(2 / 3)
    assert hm.precision_recall_f1(true, pred, "macro")[2] == pytest.approx(1.0)


def test_counts_of_many_replicates_at_once_equal_one_by_one():
    """What the bootstrap does: counts of (replicate, fold) blocks from one bincount on offset codes."""
    rng = np.random.default_rng(6)
    k, n, reps = 4, 50, 30
    true, pred = rng.integers(0, k, n), rng.integers(-1, k, n)
    coded = Coded(true, pred, tuple(range(k)))
    idx = rng.integers(0, n, (reps, n))
    s = coded.n_cells
    batched = np.bincount((np.arange(reps)[:, None] * s + coded.cells()[idx, 0]).ravel(),
                          minlength=reps * s).reshape(reps, s)
    values = score(batched, k, False, "f1", "weighted")
    for b in range(reps):
        ref = precision_recall_fscore_support(true[idx[b]], pred[idx[b]], labels=list(range(k)), average="weighted",
                                              zero_division=0)[2]
        assert values[b] == pytest.approx(ref, abs=1e-12)


def test_label_list_api_equals_sklearn():
    rng = np.random.default_rng(7)
    labels = ["a", "b", "c", "d"]
    for _ in range(50):
        t = list(rng.choice(labels[:3], 40))
        p = list(rng.choice([*labels, None], 40))  # "d": never true; None: an unparseable answer
        for average in ("macro", "weighted", "micro"):
            ours = hm.precision_recall_f1(t, p, average, labels=labels)
            p_sk = ["X" if v is None else v for v in p]
            ref = precision_recall_fscore_support(t, p_sk, average=average, labels=labels, zero_division=0)[:3]
            assert ours == pytest.approx(ref, abs=1e-12)
        cm, names = hm.confusion(t, p, labels)
        assert names == labels
        assert cm[:, :4].tolist() == confusion_matrix(t, p_sk, labels=labels).tolist()
        assert cm[:, 4].tolist() == [sum(tt == lab and pp is None for tt, pp in zip(t, p, strict=True))
                                     for lab in labels]
        rows = hm.per_class(t, p, labels)
        ref_pc = precision_recall_fscore_support(t, p_sk, labels=labels, average=None, zero_division=0)
        for i, lab in enumerate(labels):
            assert rows[lab]["f1"] == pytest.approx(ref_pc[2][i]) and rows[lab]["support"] == ref_pc[3][i]
        assert hm.accuracy(t, p) == pytest.approx(accuracy_score(t, p_sk))


def test_empty_sets_are_nan_and_bad_references_are_refused():
    c = counts(Coded(np.zeros(0, int), np.zeros(0, int), ("a", "b")))
    assert np.isnan(score(c, 2, False, "f1", "macro")) and np.isnan(score(c, 2, False, "accuracy"))
    with pytest.raises(ValueError, match="outside the label set"):
        Coded(np.array([0, 2]), np.array([0, 1]), ("a", "b"))
    with pytest.raises(ValueError, match="unknown average"):
        Classification(lambda rs: None, average="samples")


def test_classification_metric_on_records_and_mean_of_several_specs():
    def codes(records):
        return Coded(hm.encode([r.target for r in records], "xyz"), hm.encode([r.prediction for r in records], "xyz"),
                     tuple("xyz"))

    t, p = list("xxyzzy"), list("xyyz?x")
    records = [Record(f"s{i}", "f", a, b) for i, (a, b) in enumerate(zip(t, p, strict=True))]
    f1 = Metric("f1", classification=Classification(codes, "f1", "macro"))
    ref = precision_recall_fscore_support(t, p, labels=list("xyz"), average="macro", zero_division=0)
    assert f1.compute(records) == pytest.approx(ref[2])
    both = Metric("pr", classification=(Classification(codes, "precision"), Classification(codes, "recall")))
    assert both.compute(records) == pytest.approx((ref[0] + ref[1]) / 2)
    with pytest.raises(ValueError, match="exactly one"):
        Metric("bad", fn=len, mean_of="x")
