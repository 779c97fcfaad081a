"""micro_au: AU-string parsing, missing-frame rule, CASME II / SAMM layouts, LOSO folds, pooled per-AU F1
against scikit-learn, the all-positive reference 2p/(1+p), subject-clustered CIs of non-zero width."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

pytest.importorskip("openpyxl")
pytest.importorskip("cv2")

from harness.core import DataError, Record, RunContext  # noqa: E402
from harness.registry import make_solver  # noqa: E402
from harness.stats import bootstrap, evaluate  # noqa: E402
from tasks.micro_au import MicroAuTask  # noqa: E402
from tasks.micro_au.aus import parse_aus  # noqa: E402
from tasks.micro_au.loaders import frame_rule  # noqa: E402
from tasks.micro_au.synthetic import write_dataset  # noqa: E402


@pytest.mark.parametrize("text, aus", [
    ("4+L10", [4, 10]), ("R12", [12]), ("AU4+AU7", [4, 7]), ("1+2+R4", [1, 2, 4]), ("12A+L14B", [12, 14]),
    ("4+4", [4]), ("?", []), ("", []), (None, []), (14, [14]), (" 6 + 12 ", [6, 12]),
])
def test_au_strings_are_parsed_with_laterality_dropped(text, aus):
    assert parse_aus(text) == aus


def test_missing_apex_is_the_floor_midpoint_and_missing_onset_is_an_error():
    assert frame_rule(10, 14, 20) == (10, 14, False)
    assert frame_rule(10, None, 21) == (10, 15, True)
    with pytest.raises(ValueError, match="onset"):
        frame_rule(None, 14, 20)
    with pytest.raises(ValueError, match="apex and offset"):
        frame_rule(10, None, None)


def _run_folds(task, folds, solver_name, **opts):
    records = []
    for fold in folds:
        solver = make_solver(task, solver_name, RunContext(), opts)
        solver.fit(fold.train)
        outs = asyncio.run(solver.solve_batch(fold.test))
        for sample, out in zip(fold.test, outs, strict=True):
            assert not isinstance(out, Exception), out
            records.append(Record(sample.id, fold.name, sample.target, out, task.score(sample, out), sample.groups))
    return records


def test_casme2_layout_loso_folds_and_imputed_apex(tmp_path):
    write_dataset(tmp_path, "casme2", n_subjects=3, clips_per_subject=4, missing_apex=1)
    task = MicroAuTask()
    assert task.detect_protocol(tmp_path) == "casme2-loso"
    folds = task.folds(tmp_path, "casme2-loso")
    assert [f.name for f in folds] == ["sub01", "sub02", "sub03"]
    every = {s.id for f in folds for s in f.test}
    assert len(every) == 12 and "sub01/EP01_01f" in every
    for f in folds:  # leave one subject out: the fold's subject never trains
        assert {s.groups["subject"] for s in f.test} == {f.name}
        assert {s.id for s in f.train} == every - {s.id for s in f.test}
    first = folds[0].test[0]
    assert first.inputs["apex_imputed"] and first.groups["apex"] == "imputed"
    assert first.inputs["apex_frame"] == (first.inputs["onset_frame"] + first.inputs["onset_frame"] + 6) // 2
    assert first.inputs["apex"].endswith(f"CASME2_RAW_selected/sub01/EP01_01f/img{first.inputs['apex_frame']}.jpg")
    assert list(first.target["aus"]) == ["AU1", "AU2", "AU4", "AU7", "AU12", "AU14", "AU15", "AU17"]


def test_samm_layout_with_header_in_row_14(tmp_path):
    write_dataset(tmp_path, "samm", n_subjects=2, clips_per_subject=3, missing_apex=0)
    task = MicroAuTask()
    assert task.detect_protocol(tmp_path) == "samm-loso"
    folds = task.folds(tmp_path, "samm-loso")
    assert [f.name for f in folds] == ["001", "002"]
    s = folds[1].test[0]
    assert s.id == "002/002_1_2"
    assert s.inputs["onset"].endswith(f"SAMM/002/002_1_2/002_{s.inputs['onset_frame']:05d}.jpg")
    assert list(s.target["aus"]) == ["AU1", "AU2", "AU4", "AU7", "AU12", "AU14"]


def test_bad_frame_numbers_are_that_samples_error_naming_the_row(tmp_path):
    from openpyxl import load_workbook

    write_dataset(tmp_path, "casme2", n_subjects=2, clips_per_subject=2, missing_apex=0)
    path = tmp_path / "CASME2-coding-20140508.xlsx"
    wb = load_workbook(path)
    wb.active["D3"] = "/"  # onset of the second clip
    wb.save(path)
    task = MicroAuTask()
    folds = task.folds(tmp_path, "casme2-loso")
    bad = folds[0].test[1]
    with pytest.raises(DataError, match="row 3: onset frame is missing"):
        task.score(bad, {"AU1": 0})
    assert sum(len(f.test) for f in folds) == 4


def test_missing_frame_file_errors_only_that_clip(tmp_path):
    write_dataset(tmp_path, "casme2", n_subjects=3, clips_per_subject=3, missing_apex=0)
    task = MicroAuTask()
    folds = task.folds(tmp_path, "casme2-loso")
    victim = folds[2].test[0]
    __import__("os").remove(victim.inputs["apex"])
    solver = make_solver(task, "flow-svm", RunContext(), {})
    solver.fit(folds[2].train)
    outs = asyncio.run(solver.solve_batch(folds[2].test))
    assert isinstance(outs[0], DataError) and victim.inputs["apex"] in str(outs[0])
    assert all(isinstance(o, dict) for o in outs[1:])


def test_pooled_au_f1_matches_sklearn_per_label_and_subject_mean_is_separate(tmp_path):
    from sklearn.metrics import f1_score

    write_dataset(tmp_path, "casme2", n_subjects=4, clips_per_subject=6)
    task = MicroAuTask()
    folds = task.folds(tmp_path, "casme2-loso")
    rng = np.random.default_rng(3)
    records = []
    for f in folds:
        for s in f.test:
            pred = {k: int(rng.random() < 0.4) for k in s.target["aus"]}
            records.append(Record(s.id, f.name, s.target, pred, task.score(s, pred), s.groups))
    keys = list(records[0].target["aus"])
    true = np.array([[r.target["aus"][k] for k in keys] for r in records])
    pred = np.array([[r.prediction[k] for k in keys] for r in records])
    pooled = np.mean([f1_score(true[:, j], pred[:, j], zero_division=0) for j in range(len(keys))])
    metrics = {m.name: m for m in task.metrics("casme2-loso")}
    assert evaluate(metrics["au_f1_mean"], records, "subject", within_folds=False) == pytest.approx(pooled)
    per_subject = []
    for f in folds:
        idx = [i for i, r in enumerate(records) if r.fold == f.name]
        per_subject.append(np.mean([f1_score(true[idx, j], pred[idx, j], zero_division=0)
                                    for j in range(len(keys))]))
    assert evaluate(metrics["au_f1_subject_mean"], records, "subject", within_folds=False) == \
        pytest.approx(np.mean(per_subject))
    assert not np.isclose(np.mean(per_subject), pooled)  # the two definitions differ, hence two names
    report = task.report(records, "casme2-loso", tmp_path)
    for j, k in enumerate(keys):
        assert report["per_au"][k]["f1"] == pytest.approx(f1_score(true[:, j], pred[:, j], zero_division=0))


def test_all_positive_f1_is_2p_over_1_plus_p_and_loso_ci_has_width(tmp_path):
    write_dataset(tmp_path, "casme2", n_subjects=5, clips_per_subject=6)
    task = MicroAuTask()
    folds = task.folds(tmp_path, "casme2-loso")
    records = _run_folds(task, folds, "all-positive")
    report = task.report(records, "casme2-loso", tmp_path)
    n = len(records)
    for row in report["per_au"].values():
        p = row["positives"] / n
        assert row["f1"] == pytest.approx(2 * p / (1 + p))
    values = bootstrap(task.metrics("casme2-loso"), records, cluster_key="subject", n_boot=200, seed=0,
                       within_folds=False)
    f1 = values["au_f1_mean"]
    assert f1.ci_low < f1.value < f1.ci_high and f1.ci_high - f1.ci_low > 0.005


@pytest.mark.parametrize("solver", ["flow-svm", "lbptop-svm"])
def test_cpu_detectors_find_the_synthetic_motion_and_beat_majority(tmp_path, solver):
    write_dataset(tmp_path, "casme2", n_subjects=4, clips_per_subject=8)
    task = MicroAuTask()
    folds = task.folds(tmp_path, "casme2-loso")
    m = {mm.name: mm for mm in task.metrics("casme2-loso")}["au_f1_mean"]
    floor = evaluate(m, _run_folds(task, folds, "majority"), "subject", within_folds=False)
    score = evaluate(m, _run_folds(task, folds, solver), "subject", within_folds=False)
    assert score > floor + 0.2 and score > 0.7


def test_clip_solver_batches_on_a_tiny_random_model(tmp_path):
    pytest.importorskip("open_clip")
    write_dataset(tmp_path, "samm", n_subjects=3, clips_per_subject=4)
    task = MicroAuTask()
    folds = task.folds(tmp_path, "samm-loso")
    records = _run_folds(task, folds, "clip", model="tiny-random-clip", pretrained="none", device="cpu")
    assert len(records) == 12
    assert all(set(r.prediction) == set(r.target["aus"]) for r in records)
    solver = make_solver(task, "clip", RunContext(), {"model": "tiny-random-clip", "pretrained": "none"})
    assert solver.identity()["model"] == "tiny-random-clip"


def test_end_to_end_loso_run_has_pooled_metrics_and_a_subject_ci(tmp_path):
    cli = pytest.importorskip("harness.cli")
    write_dataset(tmp_path / "casme2", "casme2", n_subjects=4, clips_per_subject=5)
    rc = cli.main(["run", "--task", "micro_au", "--solver", "flow-svm", "--data", str(tmp_path / "casme2"),
                   "--out", str(tmp_path / "runs"), "--db", f"sqlite:///{tmp_path / 'lb.db'}", "--no-progress",
                   "--bootstrap", "100"])
    assert rc in (0, None)
    (run_dir,) = (tmp_path / "runs").glob("micro_au-*")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["protocol"] == "casme2-loso" and metrics["n_samples"] == 20 and metrics["n_errors"] == 0
    f1 = metrics["metrics"]["au_f1_mean"]
    assert f1["ci_low"] <= f1["value"] <= f1["ci_high"]
    assert metrics["report"]["n_apex_imputed"] == 1 and set(metrics["report"]["per_au"]) >= {"AU1", "AU17"}


@pytest.mark.gpu
def test_clip_au_features_on_cuda_match_cpu(tmp_path):
    pytest.importorskip("open_clip")
    from tasks.micro_au.solvers import ClipAuSolver

    write_dataset(tmp_path, "samm", n_subjects=2, clips_per_subject=3)
    (fold, _) = MicroAuTask().folds(tmp_path, "samm-loso")
    opts = {"model": "tiny-random-clip", "pretrained": "none"}
    cpu = ClipAuSolver(**opts, device="cpu").features(fold.test)
    gpu = ClipAuSolver(**opts, device="cuda").features(fold.test)
    np.testing.assert_allclose(np.stack(gpu), np.stack(cpu), atol=2e-3)


# -- composite 3-class MER ---------------------------------------------------------------------------------
def test_mer3_maps_emotions_pools_both_datasets_and_uf1_uar_match_sklearn(tmp_path):
    from openpyxl import load_workbook
    from sklearn.metrics import f1_score, recall_score

    write_dataset(tmp_path / "CASME2", "casme2", n_subjects=2, clips_per_subject=4)
    write_dataset(tmp_path / "SAMM", "samm", n_subjects=2, clips_per_subject=4)
    for path, col, emotions in ((tmp_path / "CASME2" / "CASME2-coding-20140508.xlsx", "I",
                                 ["happiness", "repression", "surprise", "others"] * 2),
                                (tmp_path / "SAMM" / "SAMM_Micro_FACS_Codes_v2.xlsx", "K",
                                 ["Anger", "Happiness", "Other", "Contempt"] * 2)):
        wb = load_workbook(path)
        first = 2 if "CASME" in path.name else 15
        for i, emo in enumerate(emotions):
            wb.active[f"{col}{first + i}"] = emo
        wb.save(path)
    task = MicroAuTask()
    assert task.detect_protocol(tmp_path) == "mer3"
    folds = task.folds(tmp_path, "mer3")
    assert [f.name for f in folds] == ["casme2:sub01", "casme2:sub02", "samm:001", "samm:002"]
    labels = {s.id: s.target["emotion3"] for f in folds for s in f.test}
    assert len(labels) == 6 + 6  # 'others'/'Other' clips are not in the composite set
    assert labels["casme2:sub01/EP02_01f"] == "negative" and labels["samm:001/001_4_1"] == "negative"
    assert labels["casme2:sub01/EP01_01f"] == "positive" and labels["casme2:sub01/EP03_01f"] == "surprise"
    rng = np.random.default_rng(0)
    records = []
    for f in folds:
        for s in f.test:
            pred = {"emotion3": ["negative", "positive", "surprise", "??"][rng.integers(0, 4)]}
            records.append(Record(s.id, f.name, s.target, pred, task.score(s, pred), s.groups))
    y = [r.target["emotion3"] for r in records]
    p = [r.scores["pred"] for r in records]
    m = {mm.name: mm for mm in task.metrics("mer3")}
    classes = ["negative", "positive", "surprise"]
    assert evaluate(m["uf1"], records, "subject", within_folds=False) == pytest.approx(
        f1_score(y, p, labels=classes, average="macro", zero_division=0))
    assert evaluate(m["uar"], records, "subject", within_folds=False) == pytest.approx(
        recall_score(y, p, labels=classes, average="macro", zero_division=0))


def test_mer3_solvers_fit_one_multiclass_head(tmp_path):
    write_dataset(tmp_path / "CASME2", "casme2", n_subjects=4, clips_per_subject=8)
    task = MicroAuTask()
    folds = task.folds(tmp_path, "mer3")
    assert sum(len(f.test) for f in folds) == 4 * 6  # 2 of every 8 synthetic clips are 'others'
    m = {mm.name: mm for mm in task.metrics("mer3")}["uf1"]
    floor = evaluate(m, _run_folds(task, folds, "majority"), "subject", within_folds=False)
    flow = _run_folds(task, folds, "flow-svm")
    assert all(set(r.prediction) == {"emotion3"} for r in flow)
    score = evaluate(m, flow, "subject", within_folds=False)
    assert score > floor + 0.15, (score, floor)
    with pytest.raises(Exception, match="no meaning for mer3"):
        _run_folds(task, folds[:1], "all-positive")
