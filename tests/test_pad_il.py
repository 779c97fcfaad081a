"""pad_il: HTER/ACER/APCER/BPCER by hand, AUC vs scikit-learn, OULU-NPU protocol files, cross-dataset folds,
the incremental accuracy matrix and BWT by hand, and end-to-end runs on synthetic videos."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("av")

from harness.core import DataError, Record, RunContext  # noqa: E402
from harness.registry import make_solver  # noqa: E402
from tasks.pad_il import PadIlTask, bwt_hter, hter_of  # noqa: E402
from tasks.pad_il import padmetrics as pm  # noqa: E402
from tasks.pad_il.protocols import IL_ORDER  # noqa: E402
from tasks.pad_il.synthetic import write_all, write_casia, write_msu, write_oulu  # noqa: E402

# live 0.9 0.8 0.4 | print 0.7 0.2 | replay 0.6 0.85
SCORES = [0.9, 0.8, 0.4, 0.7, 0.2, 0.6, 0.85]
LABELS = [1, 1, 1, 0, 0, 0, 0]
TYPES = ["live", "live", "live", "print", "print", "replay", "replay"]


def test_eer_threshold_and_hter_by_hand():
    # candidates: t=0.7 -> FAR 2/4, FRR 1/3 (|diff| 1/6); t=0.8 -> FAR 1/4, FRR 1/3 (|diff| 1/12, the least)
    assert pm.eer_threshold(SCORES, LABELS) == 0.8
    assert pm.far_frr(SCORES, LABELS, 0.8) == pytest.approx((0.25, 1 / 3))
    assert pm.hter(SCORES, LABELS) == pytest.approx((0.25 + 1 / 3) / 2)
    # t=0.5: attacks 0.7, 0.6, 0.85 accepted (3/4), live 0.4 rejected (1/3)
    assert pm.hter(SCORES, LABELS, threshold=0.5) == pytest.approx((3 / 4 + 1 / 3) / 2)


def test_apcer_is_the_worst_attack_type_and_acer_the_mean_with_bpcer():
    apcer, bpcer, acer = pm.apcer_bpcer_acer(SCORES, LABELS, TYPES, threshold=0.8)
    # print: 0.7, 0.2 both rejected (0/2); replay: 0.85 accepted (1/2); live 0.4 rejected (1/3)
    assert (apcer, bpcer, acer) == pytest.approx((0.5, 1 / 3, (0.5 + 1 / 3) / 2))


def test_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(y * 0.7, 1.0), 1)  # rounding makes ties
    assert pm.auc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert math.isnan(pm.auc([0.1, 0.2], [1, 1]))


def _rec(fold, domain, score, label, i):
    return Record(f"{domain}{i}", fold, {"label": label, "attack": "live" if label else "print"},
                  {"score": score}, {"score": score, "live": float(label)}, {"domain": domain, "subject": f"s{i}"})


def test_incremental_accuracy_matrix_and_bwt_by_hand():
    task = PadIlTask()
    good = [(0.9, 1), (0.8, 1), (0.1, 0), (0.2, 0)]  # HTER 0
    flat = [(0.5, 1), (0.5, 1), (0.5, 0), (0.5, 0)]  # HTER 0.5 (all scores equal)
    inverted = [(0.1, 1), (0.2, 1), (0.9, 0), (0.8, 0)]  # EER point t=0.8: FAR 1, FRR 1 -> HTER 1
    records = ([_rec("1:M", "M", s, y, i) for i, (s, y) in enumerate(good)]
               + [_rec("2:C", "M", s, y, i) for i, (s, y) in enumerate(flat)]
               + [_rec("2:C", "C", s, y, i) for i, (s, y) in enumerate(good)]
               + [_rec("3:I", "M", s, y, i) for i, (s, y) in enumerate(good)]
               + [_rec("3:I", "C", s, y, i) for i, (s, y) in enumerate(inverted)]
               + [_rec("3:I", "I", s, y, i) for i, (s, y) in enumerate(good)])
    report = task.report(records, "il", None)
    assert report["hter"]["domains"] == ["M", "C", "I"]
    assert report["hter"]["matrix"] == [[0.0, None, None], [0.5, 0.0, None], [0.0, 1.0, 0.0]]
    # BWT: M (learnt at step 1) 0.0 -> 0.0, C (step 2) 0.0 -> 1.0: mean of (0.0, 1.0)
    assert bwt_hter(records) == pytest.approx(0.5) == report["hter"]["bwt"]
    assert report["hter"]["seen_mean"] == pytest.approx([0.0, 0.25, 1 / 3])
    final = {m.name: m for m in task.metrics("il")}["hter"]
    assert final.compute(records) == pytest.approx(1 / 3)


def test_unseen_domain_hter_by_hand():
    import dataclasses

    task = PadIlTask()
    good = [(0.9, 1), (0.8, 1), (0.1, 0), (0.2, 0)]  # HTER 0
    flat = [(0.5, 1), (0.5, 1), (0.5, 0), (0.5, 0)]  # HTER 0.5
    inverted = [(0.1, 1), (0.2, 1), (0.9, 0), (0.8, 0)]  # HTER 1

    def unseen(fold, domain, pairs):
        return [dataclasses.replace(_rec(fold, domain, s, y, i), split="unseen") for i, (s, y) in enumerate(pairs)]

    seen = ([_rec("1:M", "M", s, y, i) for i, (s, y) in enumerate(good)]
            + [_rec("2:C", d, s, y, i) for d in "MC" for i, (s, y) in enumerate(good)]
            + [_rec("3:I", d, s, y, i) for d in "MCI" for i, (s, y) in enumerate(good)])
    # step 1: C 0.0, I 0.5 -> 0.25; step 2: I 1.0 -> 1.0; step 3: nothing unseen
    records = seen + unseen("1:M", "C", good) + unseen("1:M", "I", flat) + unseen("2:C", "I", inverted)
    report = task.report(records, "il", None)
    assert report["hter_unseen"]["steps"] == ["1:M", "2:C"]
    assert report["hter_unseen"]["domains"] == ["C", "I"]
    assert report["hter_unseen"]["matrix"] == [[0.0, 0.5], [None, 1.0]]
    assert report["hter_unseen"]["mean"] == pytest.approx([0.25, 1.0])
    metrics = {m.name: m for m in task.metrics("il")}
    unseen_metric = metrics["hter_unseen"]
    assert unseen_metric.splits == ("unseen",)
    assert unseen_metric.compute([r for r in records if r.split == "unseen"]) == pytest.approx((0.25 + 1.0) / 2)
    # the seen-domain matrix and BWT ignore the unseen records
    assert report["hter"]["matrix"] == [[0.0, None, None], [0.0, 0.0, None], [0.0, 0.0, 0.0]]
    assert metrics["hter"].splits == ("test",) and metrics["bwt_hter"].splits == ("test",)


def test_incremental_folds_solve_the_unseen_domains_test_videos(tmp_path):
    write_all(tmp_path)
    folds = PadIlTask().folds(tmp_path, "il")
    assert [f.name for f in folds] == ["1:M", "2:C", "3:I", "4:O"]
    by_domain = {d: {s.id for f in folds for s in f.test if s.groups["domain"] == d} for d in "MCIO"}
    for t, fold in enumerate(folds):
        unseen = list(fold.splits.get("unseen", []))
        assert {s.groups["domain"] for s in unseen} == set("MCIO"[t + 1:])
        assert {s.id for s in unseen} == set().union(*(by_domain[d] for d in "MCIO"[t + 1:]))
        assert not {s.id for s in unseen} & {s.id for s in fold.test}
    assert "unseen" not in folds[-1].splits


def test_oulu_protocol_files_folds_and_dev_split(tmp_path):
    write_oulu(tmp_path, phones=(1, 2, 3))
    task = PadIlTask()
    assert task.detect_protocol(tmp_path) == "oulu-p1"
    (fold,) = task.folds(tmp_path, "oulu-p1")
    assert len(fold.train) == 30 and len(fold.splits["dev"]) == 15 and len(fold.test) == 30
    assert fold.test[0].id == "O/1_1_36_1" and fold.test[0].target == {"label": 1, "attack": "live"}
    assert {s.target["attack"] for s in fold.test} == {"live", "print", "replay"}
    p3 = task.folds(tmp_path, "oulu-p3")
    assert [f.name for f in p3] == ["split1", "split2", "split3"]  # phones 4-6 absent: no test videos
    assert all(s.id.startswith("O/2_") for s in p3[1].test)
    assert not any(s.id.startswith("O/2_") for s in p3[1].train)
    bad = tmp_path / "Protocols" / "Protocol_1" / "Test.txt"
    bad.write_text("+1,1_1_36_2\n")
    with pytest.raises(DataError, match="Test.txt: line 1: label"):
        task.folds(tmp_path, "oulu-p1")


def test_protocol_and_subject_lists_that_are_not_utf8_are_data_errors_naming_the_file(tmp_path):
    write_oulu(tmp_path / "O", phones=(1,))
    dev = tmp_path / "O" / "Protocols" / "Protocol_1" / "Dev.txt"
    dev.write_bytes(dev.read_bytes() + b"\xff\xfe+1,1_1_01_1\n")
    with pytest.raises(DataError, match="Dev.txt: not utf-8 text"):
        PadIlTask().folds(tmp_path / "O", "oulu-p1")
    write_msu(tmp_path / "M")
    write_casia(tmp_path / "C")
    subjects = tmp_path / "M" / "test_sub_list.txt"
    subjects.write_bytes(b"\xe9" + subjects.read_bytes())
    with pytest.raises(DataError, match="test_sub_list.txt: not utf-8 text"):
        PadIlTask().folds(tmp_path, "il")


def test_cross_dataset_folds_hold_out_one_domain(tmp_path):
    write_casia(tmp_path / "CASIA-FASD")
    write_msu(tmp_path / "MSU-MFSD")
    task = PadIlTask()
    folds = task.folds(tmp_path, "cross")
    assert [f.name for f in folds] == ["C->M", "M->C"]
    for f in folds:
        target = f.name[-1]
        assert {s.groups["domain"] for s in f.test} == {target}
        assert target not in {s.groups["domain"] for s in f.train}


def test_missing_video_is_that_samples_error(tmp_path):
    write_casia(tmp_path / "C")
    write_msu(tmp_path / "M")
    task = PadIlTask()
    folds = task.folds(tmp_path, "il")
    solver = make_solver(task, "ncm", RunContext(), {})
    solver.fit(folds[0].train)
    victim = folds[0].test[0]
    __import__("os").remove(victim.inputs["video"])
    outs = asyncio.run(solver.solve_batch(folds[0].test))
    assert isinstance(outs[0], DataError) and victim.inputs["video"] in str(outs[0])
    assert all(isinstance(o, dict) and math.isfinite(o["score"]) for o in outs[1:])


@pytest.mark.parametrize("solver", ["lbp-svm", "joint", "ncm", "majority"])
def test_incremental_run_end_to_end(tmp_path, solver):
    cli = pytest.importorskip("harness.cli")
    write_all(tmp_path / "pad")
    rc = cli.main(["run", "--task", "pad_il", "--protocol", "il", "--solver", solver, "--data", str(tmp_path / "pad"),
                   "--out", str(tmp_path / "runs"), "--db", f"sqlite:///{tmp_path / 'lb.db'}", "--no-progress",
                   "--bootstrap", "50"])
    assert rc in (0, None)
    (run_dir,) = (tmp_path / "runs").glob("pad_il-*")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_errors"] == 0 and metrics["n_samples"] == 8 + 20 + 28 + 48 + (40 + 28 + 20)
    matrix = metrics["report"]["hter"]["matrix"]
    unseen = metrics["report"]["hter_unseen"]
    assert unseen["steps"] == ["1:M", "2:C", "3:I"] and unseen["domains"] == ["C", "I", "O"]
    assert [sum(v is not None for v in row) for row in unseen["matrix"]] == [3, 2, 1]
    expected = np.mean([np.nanmean([v for v in row if v is not None]) for row in unseen["matrix"]])
    assert metrics["metrics"]["hter_unseen"]["value"] == pytest.approx(expected)
    assert metrics["report"]["hter"]["domains"] == ["M", "C", "I", "O"]
    assert [sum(v is not None for v in row) for row in matrix] == [1, 2, 3, 4]
    if solver == "majority":
        assert metrics["metrics"]["hter"]["value"] == pytest.approx(0.5)
    else:
        assert metrics["metrics"]["hter"]["value"] < 0.2


def test_oulu_p1_run_reports_acer_at_the_dev_threshold(tmp_path):
    cli = pytest.importorskip("harness.cli")
    write_oulu(tmp_path / "oulu")
    rc = cli.main(["run", "--task", "pad_il", "--solver", "lbp-svm", "--data", str(tmp_path / "oulu"),
                   "--out", str(tmp_path / "runs"), "--db", f"sqlite:///{tmp_path / 'lb.db'}", "--no-progress",
                   "--bootstrap", "50"])
    assert rc in (0, None)
    (run_dir,) = (tmp_path / "runs").glob("pad_il-*")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["protocol"] == "oulu-p1"
    assert set(metrics["metrics"]) >= {"acer", "apcer", "bpcer", "hter", "auc"}
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert {x.get("split") for x in lines} == {"dev", "test"}
    # recompute ACER from the written scores: dev EER threshold, then test APCER/BPCER
    dev = [x for x in lines if x["split"] == "dev"]
    test = [x for x in lines if x["split"] == "test"]
    t = pm.eer_threshold([x["prediction"]["score"] for x in dev], [x["target"]["label"] for x in dev])
    acer = pm.apcer_bpcer_acer([x["prediction"]["score"] for x in test], [x["target"]["label"] for x in test],
                               [x["target"]["attack"] for x in test], t)[2]
    assert metrics["metrics"]["acer"]["value"] == pytest.approx(acer)
    assert hter_of  # imported for the incremental test


@pytest.mark.parametrize("head", ["zeroshot", "ncm"])
def test_clip_solver_scores_videos_incrementally_on_a_tiny_model(tmp_path, head):
    pytest.importorskip("open_clip")
    write_casia(tmp_path / "C")
    write_msu(tmp_path / "M")
    task = PadIlTask()
    solver = make_solver(task, "clip", RunContext(), {"model": "tiny-random-clip", "pretrained": "none",
                                                      "device": "cpu", "head": head, "n_frames": 4})
    for fold in task.folds(tmp_path, "il"):
        solver.fit(fold.train)
        outs = asyncio.run(solver.solve_batch(fold.test))
        assert all(isinstance(o, dict) and math.isfinite(o["score"]) and len(o["frame_scores"]) == 4 for o in outs)
    if head == "ncm":
        assert solver.counts[0] > 0 and solver.counts[1] > 0  # means accumulated over both steps
    test = task.folds(tmp_path, "il")[-1].test
    __import__("os").remove(test[1].inputs["video"])
    outs = asyncio.run(solver.solve_batch(test))  # one batched forward pass; the missing video errors alone
    assert isinstance(outs[1], DataError) and test[1].inputs["video"] in str(outs[1])
    assert all(isinstance(o, dict) for i, o in enumerate(outs) if i != 1)
    assert solver.identity()["prompts"] is not None


def test_protocol_option_sets_the_incremental_order_and_is_part_of_the_identity(tmp_path, capsys):
    cli = pytest.importorskip("harness.cli")
    write_casia(tmp_path / "pad" / "C")
    write_msu(tmp_path / "pad" / "M")
    common = ["run", "--task", "pad_il", "--protocol", "il", "--solver", "ncm", "--data", str(tmp_path / "pad"),
              "--out", str(tmp_path / "runs"), "--db", f"sqlite:///{tmp_path / 'lb.db'}", "--no-progress",
              "--bootstrap", "20"]
    assert cli.main(common) == 0
    assert cli.main([*common, "-P", "order=C,M"]) == 0
    first, second = sorted((tmp_path / "runs").glob("pad_il-*"), key=lambda p: p.stat().st_mtime)
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (first, second))
    assert m1["report"]["hter"]["domains"] == ["M", "C"] and m2["report"]["hter"]["domains"] == ["C", "M"]
    assert m2["n_cached"] == 0  # another order is another protocol identity
    assert json.loads((second / "manifest.json").read_text())["protocol_options"] == {"order": "C,M"}
    assert json.loads((first / "manifest.json").read_text())["protocol_options"] == {}  # the default order
    # `harness score` re-scores the run in its own order (its data is still there)
    assert cli.main(["score", str(second), "--into", str(tmp_path / "rescored")]) == 0
    again = json.loads((tmp_path / "rescored" / "metrics.json").read_text())
    assert again["report"]["hter"]["domains"] == ["C", "M"] and again["metrics"] == m2["metrics"]
    capsys.readouterr()
    # the default order spelled out is the default protocol: same cache scope, same board protocol
    assert cli.main([*common, "-P", f"order={','.join(IL_ORDER)}"]) == 0
    assert "computed: 0" in capsys.readouterr().out
    assert cli.main(["leaderboard", "--task", "pad_il", "--format", "json", "--db", f"sqlite:///{tmp_path / 'lb.db'}",
                     "--out", str(tmp_path / "runs")]) == 0
    measured = [r["protocol"] for r in json.loads(capsys.readouterr().out) if r["kind"] == "measured"]
    assert sorted(measured) == ["il", "il", "il[order=C,M]"]
    assert cli.main([*common, "-P", "order=C,X"]) == 2
    assert "order" in capsys.readouterr().err
    assert cli.main([*common, "-P", "steps=3"]) == 2
    assert cli.main(["run", "--task", "pad_il", "--protocol", "cross", "--solver", "ncm", "--data",
                     str(tmp_path / "pad"), "--out", str(tmp_path / "runs"), "--no-progress", "-P", "order=C,M"]) == 2
