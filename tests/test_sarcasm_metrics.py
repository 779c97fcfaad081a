"""MUStARD metrics and CPU solvers: sklearn's weighted averages per fold, invalid predictions,
and the baselines' expected scores on the official folds."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from statistics import mean

import pytest
from sklearn.metrics import classification_report, f1_score, precision_recall_fscore_support

from harness.core import HarnessError, Record, RunContext, Sample
from harness.registry import make_solver
from tasks.sarcasm import SarcasmTask
from tests.conftest import shared_data_path


def records_of(targets: list[bool], predictions: list[object]) -> list[Record]:
    return [Record(f"id{i}", "fold1", t, p) for i, (t, p) in enumerate(zip(targets, predictions, strict=True))]


def metric_values(records: list[Record]) -> dict[str, float]:
    return {m.name: m.compute(records) for m in SarcasmTask().metrics("speaker-dependent")}


def fold_scores(protocol: str, solver_name: str, **options: object) -> dict[str, float]:
    task = SarcasmTask()
    solver = make_solver(task, solver_name, RunContext(seed=0), dict(options))
    per_fold: dict[str, list[float]] = {}
    for fold in task.folds(shared_data_path("mustard"), protocol):
        solver.fit(fold.train)
        predictions = asyncio.run(solver.solve_batch(fold.test))
        records = [Record(s.id, fold.name, s.target, p) for s, p in zip(fold.test, predictions, strict=True)]
        for name, value in metric_values(records).items():
            per_fold.setdefault(name, []).append(value)
    return {name: mean(values) for name, values in per_fold.items()}


def test_metrics_equal_sklearn_weighted_and_macro_averages() -> None:
    rng = random.Random(7)
    targets = [rng.random() < 0.4 for _ in range(120)]
    predictions = [rng.random() < 0.55 for _ in range(120)]
    values = metric_values(records_of(targets, predictions))
    precision, recall, f1, _ = precision_recall_fscore_support(targets, predictions, average="weighted")
    assert values["weighted_precision"] == pytest.approx(precision)
    assert values["weighted_recall"] == pytest.approx(recall)
    assert values["weighted_f1"] == pytest.approx(f1)
    assert values["macro_f1"] == pytest.approx(f1_score(targets, predictions, average="macro"))
    assert values["accuracy"] == pytest.approx(sum(t == p for t, p in zip(targets, predictions, strict=True)) / 120)
    assert values["weighted_f1"] != pytest.approx(values["macro_f1"])  # unbalanced: the two averages differ


def test_weighted_scores_equal_the_classification_report_the_paper_averaged() -> None:
    targets = [True] * 69 + [False] * 69
    predictions = [True] * 50 + [False] * 19 + [True] * 30 + [False] * 39
    values = metric_values(records_of(targets, predictions))
    weighted = classification_report(targets, predictions, output_dict=True)["weighted avg"]
    assert values["weighted_precision"] == pytest.approx(weighted["precision"])
    assert values["weighted_recall"] == pytest.approx(weighted["recall"])
    assert values["weighted_f1"] == pytest.approx(weighted["f1-score"])


def test_invalid_predictions_match_sklearn_with_a_never_matching_label() -> None:
    rng = random.Random(3)
    targets = [rng.random() < 0.5 for _ in range(90)]
    predictions = [rng.choice([True, False, None]) for _ in range(90)]
    y_true = [int(t) for t in targets]
    y_pred = [-1 if p is None else int(p) for p in predictions]
    values = metric_values(records_of(targets, predictions))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1], average="weighted", zero_division=0)
    assert (values["weighted_precision"], values["weighted_recall"], values["weighted_f1"]) == pytest.approx(
        (precision, recall, f1))
    assert values["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=[0, 1], average="macro"))
    assert values["accuracy"] < 0.7  # a third of the answers are invalid and count as wrong


def test_bootstrap_of_the_vectorised_metrics_equals_sklearn_called_per_replicate() -> None:
    """The runner's CIs: the five count-based metrics, all replicates at once, give the numbers of sklearn
    called on each replicate's records (same seed, same draws), per fold and averaged over folds."""
    from harness.core import Metric
    from harness.stats import bootstrap

    rng = random.Random(11)
    records = records_of([rng.random() < 0.45 for _ in range(150)],
                         [rng.choice([True, False, None, "maybe"]) for _ in range(150)])
    for i, r in enumerate(records):
        r.fold = f"fold{i % 3}"

    def by_sklearn(name: str):
        def fn(rs: list[Record]) -> float:
            y_true = [int(bool(r.target)) for r in rs]
            y_pred = [-1 if r.prediction not in (True, False) else int(r.prediction) for r in rs]
            if name == "accuracy":
                return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(rs)
            average, stat = ("macro", 2) if name == "macro_f1" else ("weighted", ["precision", "recall", "f1"].index(
                name.split("_")[1]))
            return precision_recall_fscore_support(y_true, y_pred, labels=[0, 1], average=average,
                                                   zero_division=0)[stat]
        return fn

    metrics = SarcasmTask().metrics("speaker-dependent")
    fast = bootstrap(metrics, records, n_boot=60, seed=1)
    slow = bootstrap([Metric(m.name, by_sklearn(m.name), per_fold=True) for m in metrics], records, n_boot=60, seed=1)
    for m in metrics:
        a, b = fast[m.name], slow[m.name]
        assert (a.value, a.ci_low, a.ci_high) == pytest.approx((b.value, b.ci_low, b.ci_high), abs=1e-12), m.name


def test_metrics_are_per_fold_in_percent_with_weighted_f1_first() -> None:
    metrics = SarcasmTask().metrics("speaker-independent")
    assert [m.name for m in metrics] == ["weighted_f1", "weighted_precision", "weighted_recall", "macro_f1", "accuracy"]
    assert all(m.per_fold and m.scale == 100 and m.higher_is_better for m in metrics)


def test_missing_prediction_counts_as_wrong_not_as_a_class() -> None:
    targets = [False, False, True, True]
    with_none = metric_values(records_of(targets, [False, None, True, True]))
    as_false = metric_values(records_of(targets, [False, False, True, True]))
    assert with_none["accuracy"] == 0.75 and as_false["accuracy"] == 1.0
    # class 0 recall 1/2, class 1 recall 1: weighted recall 3/4; precisions are both 1.
    assert with_none["weighted_recall"] == pytest.approx(0.75)
    assert with_none["weighted_precision"] == pytest.approx(1.0)
    assert SarcasmTask().score(Sample("x", {}, False), None) == {"correct": 0.0}
    assert SarcasmTask().score(Sample("x", {}, False), "maybe") == {"correct": 0.0}
    assert SarcasmTask().score(Sample("x", {}, True), True) == {"correct": 1.0}


def test_majority_solver_gives_weighted_f1_one_third_on_69_69_folds() -> None:
    scores = fold_scores("speaker-dependent", "majority")
    # All one class on 69/69: that class has P 1/2, R 1, F1 2/3; the other F1 0 -> weighted (2/3)/2 = 1/3.
    assert scores["weighted_f1"] == pytest.approx(1 / 3)
    assert scores["weighted_precision"] == pytest.approx(0.25)
    assert scores["accuracy"] == pytest.approx(0.5)


def test_majority_tie_goes_to_not_sarcastic() -> None:
    solver = make_solver(SarcasmTask(), "majority", RunContext(), {})
    solver.fit([Sample("a", {}, True), Sample("b", {}, False)])
    assert asyncio.run(solver.solve(Sample("c", {}, True))) is False
    solver.fit([Sample("a", {}, True), Sample("b", {}, True), Sample("c", {}, False)])
    assert asyncio.run(solver.solve(Sample("d", {}, True))) is True


def test_random_solver_is_seeded_and_fair() -> None:
    task = SarcasmTask()
    samples = [Sample(f"s{i}", {}, False) for i in range(2000)]

    def predictions(seed: int) -> list[bool]:
        solver = make_solver(task, "random", RunContext(seed=seed), {})
        return asyncio.run(solver.solve_batch(samples))

    assert predictions(1) == predictions(1) and predictions(1) != predictions(2)
    assert 900 < sum(predictions(1)) < 1100  # 2000 fair coins: mean 1000, sd ~22


def test_tfidf_weighted_f1_over_official_folds_is_between_55_and_72() -> None:
    scores = fold_scores("speaker-dependent", "tfidf")
    assert 0.55 <= scores["weighted_f1"] <= 0.72
    assert scores["weighted_f1"] > 1 / 3 + 0.15  # far above the majority baseline


def test_tfidf_options_are_checked_and_recorded() -> None:
    task = SarcasmTask()
    options = {"features": "utterance+speaker", "classifier": "logreg", "C": 10}
    solver = make_solver(task, "tfidf", RunContext(), options)
    assert solver.options == {"features": "utterance+speaker", "classifier": "logreg", "C": 10.0, "scale": False}
    assert solver.identity() == {"solver": "tfidf", "version": "1", "options": solver.options, "prompts": None}
    for bad in ({"features": "audio"}, {"classifier": "rbf"}, {"C": 0}, {"kernel": "linear"}):
        with pytest.raises(HarnessError):
            make_solver(task, "tfidf", RunContext(), bad)


def test_report_has_per_fold_and_pooled_confusion_matrices(tmp_path: Path) -> None:
    records = records_of([True, True, False, False], [True, None, True, False])
    records[3].fold = "fold2"
    report = SarcasmTask().report(records, "speaker-dependent", tmp_path)
    json.dumps(report)
    pooled = report["pooled"]["confusion_matrix"]["counts"]
    assert pooled == [[1, 1, 0], [0, 1, 1]]  # rows: true not/sarcastic; columns: predicted not/sarcastic/invalid
    assert report["pooled"]["invalid_predictions"] == 1
    assert report["per_fold"]["fold2"]["confusion_matrix"]["counts"] == [[1, 0, 0], [0, 0, 0]]
    assert report["pooled"]["per_class"]["sarcastic"]["precision"] == pytest.approx(0.5)


def test_reference_rows_use_this_tasks_protocols_and_metric_names() -> None:
    from harness.leaderboard import reference_rows

    rows = reference_rows("sarcasm", Path(__file__).resolve().parents[1] / "leaderboards" / "references")
    task = SarcasmTask()
    metric_names = {m.name for m in task.metrics("speaker-dependent")}
    assert {r.protocol for r in rows} == {"speaker-dependent", "speaker-independent"}
    for row in rows:
        assert row.protocol in task.protocols and set(row.metrics) <= metric_names
        assert all(1 < v["value"] < 100 for v in row.metrics.values())  # percent, not fractions
    majority = next(r for r in rows if r.protocol == "speaker-independent" and r.method == "Majority class")
    # Always "not sarcastic" on FRIENDS (204 not / 152 sarcastic of 356): P = (204/356)^2, R = 204/356.
    share = 204 / 356
    assert majority.metrics["weighted_recall"]["value"] == pytest.approx(100 * share, abs=0.05)
    assert majority.metrics["weighted_precision"]["value"] == pytest.approx(100 * share**2, abs=0.05)
    assert majority.metrics["weighted_f1"]["value"] == pytest.approx(100 * share * 2 * share / (share + 1), abs=0.05)
