"""emocap: official layouts, FER+ majority rule, Exp-CLIP zero-shot scoring, UAR/WAR vs scikit-learn."""

from __future__ import annotations

import asyncio
import csv
import json

import numpy as np
import pytest

pytest.importorskip("open_clip")

from harness.core import (  # noqa: E402
    DataError,
    Record,
    RunContext,  # noqa: E402
)
from harness.registry import get_task, make_solver  # noqa: E402
from tasks.emocap import EmocapTask  # noqa: E402
from tasks.emocap.ferplus import majority_label, read_ferplus  # noqa: E402
from tasks.emocap.labels import CLASSES_7  # noqa: E402
from tasks.emocap.loaders import load_face  # noqa: E402
from tasks.emocap.synthetic import write_affectnet, write_ferplus, write_rafdb  # noqa: E402
from tests.conftest import shared_data_path  # noqa: E402

TINY = {"model": "tiny-random-clip", "pretrained": "none", "device": "cpu"}


def solve_all(solver, samples):
    if solver.batch_size > 1:
        return asyncio.run(solver.solve_batch(samples))
    return [asyncio.run(solver.solve(s)) for s in samples]


# -- FER+ majority rule (FERPlus src/ferplus.py, mode "majority") -------------------------------------
@pytest.mark.parametrize("votes, label", [
    ((6, 0, 1, 1, 0, 0, 0, 0, 2, 0), "neutral"),  # single votes dropped: 6 of 8 remaining
    ((4, 0, 0, 1, 3, 2, 0, 0, 0, 0), None),  # 4 of 9 is not more than half
    ((4, 0, 0, 4, 1, 0, 0, 0, 1, 0), None),  # 4 of 8 is exactly half: unknown
    ((0, 0, 0, 0, 0, 0, 0, 6, 2, 2), "contempt"),  # 6 of 10
    ((0, 0, 0, 0, 0, 0, 0, 0, 8, 2), None),  # unknown wins: not evaluated
    ((2, 0, 0, 0, 0, 0, 0, 0, 0, 8), None),  # not a face
    ((1, 1, 1, 1, 1, 1, 1, 1, 1, 1), None),  # every vote single: nothing left
    ((0, 0, 3, 1, 1, 0, 0, 0, 0, 0), "surprise"),  # 3 of 3 after outlier removal
])
def test_ferplus_majority_rule_by_hand(votes, label):
    assert majority_label(votes) == label


def test_ferplus_labels_on_the_real_vote_file_match_a_vectorised_count():
    path = shared_data_path("ferplus_labels") / "fer2013new.csv"
    rows = read_ferplus(path)
    assert len(rows) == 35887
    with path.open() as fh:
        reader = csv.reader(fh)
        next(reader)
        raw = list(reader)
    votes = np.array([[float(v) for v in r[2:]] for r in raw])
    named = np.array([bool(r[1].strip()) for r in raw])
    kept = np.where(votes > 1, votes, 0)
    top = kept.argmax(axis=1)
    valid = named & (kept.max(axis=1) > 0.5 * kept.sum(axis=1)) & (top < 8)
    for split, usage in (("train", "Training"), ("valid", "PublicTest"), ("test", "PrivateTest")):
        mine = sum(1 for r in rows if r.split == split and r.label is not None)
        theirs = int((valid & np.array([r[0] == usage for r in raw])).sum())
        assert mine == theirs
    names = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
    expected = [names[t] if v else None for t, v in zip(top, valid, strict=True)]
    assert [r.label for r in rows] == expected


def test_ferplus_layout_reads_pixels_by_row_and_keeps_only_majority_images(tmp_path):
    write_ferplus(tmp_path, [("Training", (8, 0, 0, 0, 0, 0, 0, 0, 2, 0)),
                             ("PrivateTest", (0, 7, 0, 0, 0, 0, 0, 0, 3, 0)),
                             ("PrivateTest", (4, 0, 0, 4, 1, 0, 0, 0, 1, 0)),
                             ("PrivateTest", (0, 0, 0, 0, 0, 0, 0, 9, 1, 0))])
    task = EmocapTask()
    assert task.detect_protocol(tmp_path) == "ferplus"
    (fold,) = task.folds(tmp_path, "ferplus")
    assert [s.id for s in fold.test] == ["fer0000001", "fer0000003"]
    assert [s.target for s in fold.test] == ["happiness", "contempt"]
    assert [s.target for s in fold.train] == ["neutral"]
    face = load_face(fold.test[1])
    assert face.shape == (48, 48, 3) and face.dtype == np.uint8
    with open(tmp_path / "fer2013.csv") as fh:
        pixels = list(csv.DictReader(fh))[3]["pixels"]
    assert np.array_equal(face[:, :, 0].ravel(), np.array(pixels.split(), dtype=np.uint8))


@pytest.mark.parametrize("name", ["fer2013new.csv", "fer2013.csv"])
def test_ferplus_files_that_are_not_utf8_or_truncated_are_data_errors_naming_them(tmp_path, name):
    votes = [("Training", (8, 0, 0, 0, 0, 0, 0, 0, 2, 0)), ("PrivateTest", (0, 9, 0, 0, 0, 0, 0, 0, 1, 0))]
    write_ferplus(tmp_path, votes)
    path = tmp_path / name
    good = path.read_bytes()
    path.write_bytes(good[:-5] + b"\xff" + good[-4:])
    task = EmocapTask()
    with pytest.raises(DataError, match=f"{name}: not utf-8 text"):
        (fold,) = task.folds(tmp_path, "ferplus")
        load_face(fold.test[0])  # fer2013.csv (pixels) is read when a face is loaded
    if name == "fer2013.csv":  # a last row cut before its pixels cell
        from tasks.emocap.ferplus import _pixel_rows

        _pixel_rows.cache_clear()
        path.write_bytes(good.rsplit(b"\n", 2)[0] + b"\n3\n")
        (fold,) = task.folds(tmp_path, "ferplus")
        with pytest.raises(DataError, match="fer2013.csv: row 1: pixels are not integers"):
            load_face(fold.test[0])


# -- RAF-DB -----------------------------------------------------------------------------------------
def test_rafdb_root_or_basic_folder_ids_and_label_codes(tmp_path):
    write_rafdb(tmp_path, n_train=7, n_test=7)
    task = EmocapTask()
    for data in (tmp_path, tmp_path / "basic"):
        assert task.detect_protocol(data) == "rafdb"
        (fold,) = task.folds(data, "rafdb")
        assert [s.id for s in fold.test] == [f"test_{i:05d}.jpg" for i in range(1, 8)]
        # official codes 1..7 = Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral
        assert [s.target for s in fold.test] == ["surprise", "fear", "disgust", "happiness", "sadness", "anger",
                                                 "neutral"]
        assert len(fold.train) == 7
        assert load_face(fold.test[0]).shape == (100, 100, 3)


def test_rafdb_bad_label_is_that_samples_error_and_bad_line_names_the_file(tmp_path):
    basic = write_rafdb(tmp_path, n_train=2, n_test=2)
    label_file = basic / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text(label_file.read_text().replace("test_00002.jpg 2", "test_00002.jpg 9"))
    task = EmocapTask()
    (fold,) = task.folds(tmp_path, "rafdb")
    assert len(fold.test) == 2
    with pytest.raises(DataError, match="list_patition_label.txt:4: label '9'"):
        task.score(fold.test[1], {"label": "fear"})
    label_file.write_text("train_00001.jpg\n")
    with pytest.raises(DataError, match="list_patition_label.txt: line 1"):
        task.folds(tmp_path, "rafdb")


def test_missing_image_in_a_batch_errors_only_that_sample(tmp_path):
    basic = write_rafdb(tmp_path, n_train=7, n_test=4)
    (basic / "Image" / "aligned" / "test_00002_aligned.jpg").unlink()
    task = EmocapTask()
    (fold,) = task.folds(tmp_path, "rafdb")
    solver = make_solver(task, "clip-zeroshot", RunContext(), TINY)
    outs = solve_all(solver, fold.test)
    assert isinstance(outs[1], DataError) and "test_00002_aligned.jpg" in str(outs[1])
    assert all(isinstance(o, dict) and o["label"] in CLASSES_7 for i, o in enumerate(outs) if i != 1)


# -- AffectNet ----------------------------------------------------------------------------------------
def test_affectnet_7_and_8_class_sets_skip_non_emotion_codes_and_crop_the_box(tmp_path):
    write_affectnet(tmp_path, n_per_class=2)
    task = EmocapTask()
    assert task.detect_protocol(tmp_path) == "affectnet7"
    (f7,) = task.folds(tmp_path, "affectnet7")
    (f8,) = task.folds(tmp_path, "affectnet8")
    assert len(f7.test) == 14 and len(f8.test) == 16  # codes 8-10 never; contempt only in 8
    assert "contempt" not in {s.target for s in f7.test}
    assert {s.target for s in f8.test} == set(CLASSES_7) | {"contempt"}
    assert load_face(f7.test[0]).shape == (100, 100, 3)


# -- metrics ------------------------------------------------------------------------------------------
def test_uar_and_war_match_scikit_learn():
    from sklearn.metrics import accuracy_score, recall_score

    rng = np.random.default_rng(1)
    classes = list(CLASSES_7)
    y = [classes[i] for i in rng.integers(0, 7, 300)]
    p = [classes[i] if rng.random() > 0.1 else "__invalid__" for i in rng.integers(0, 7, 300)]
    task = EmocapTask()
    records = [Record(str(i), "rafdb", t, {"label": q}, task.score(_sample(t), {"label": q}))
               for i, (t, q) in enumerate(zip(y, p, strict=True))]
    metrics = {m.name: m for m in task.metrics("rafdb")}
    assert metrics["uar"].compute(records) == pytest.approx(recall_score(y, p, labels=classes, average="macro"))
    assert metrics["war"].compute(records) == pytest.approx(accuracy_score(y, p))


def _sample(target):
    from harness.core import Sample

    return Sample("x", {"classes": list(CLASSES_7)}, target)


# -- CLIP solvers ---------------------------------------------------------------------------------------
# Exp-CLIP models/Text.py `expression_ensemble_five`, written out here independently of tasks/emocap/prompts.py
ENSEMBLE_FIVE = ("an expression of {}.", "a photo of a face with an expression of {}.",
                 "a photo radiating {} in a person.", "a photo showing someone immersed in {}.",
                 "a photo capturing {} within an individual.")
SADNESS_FIVE = ("an expression of sadness.", "a cropped photo emphasizing a face expressing sadness.",
                "a photo exuding sadness in a person.", "a photo showing someone immersed in sadness.",
                "a photo capturing sadness within an individual.")


def test_exp_clip_prompt_sets_are_its_texts():
    from tasks.emocap.prompts import class_prompts, prompts_for

    assert prompts_for("sadness", "ensemble") == list(SADNESS_FIVE)
    assert prompts_for("fear", "ensemble") == [t.format("fear") for t in ENSEMBLE_FIVE]
    assert prompts_for("neutral", "name") == ["neutral."]
    assert prompts_for("anger", "expression") == ["an expression of anger."]
    assert prompts_for("anger", "single") == ["a photo of a face with an expression of anger."]
    ten = class_prompts(("happiness", "sadness", "neutral", "anger", "anxiety"), "ensemble10")
    assert [len(p) for p in ten] == [10] * 5
    assert ten[0][5] == "a photo of a face exuding happiness."
    assert ten[0][9] == "a clean photo showcasing a person's happiness."
    assert ten[1][:5] == list(SADNESS_FIVE) and ten[1][8] == "a photo of a face with an expression of sadness."
    assert ten[2][7] == "a good photo capturing someone's neutral state."
    assert ten[3][5:] == ["a photo of a face displaying anger.", "a photo of a person embodying anger.",
                          "a good photo capturing someone's anger.",
                          "a cropped photo emphasizing a face expressing anger.",
                          "a clean photo showcasing a person's angry expression."]
    assert ten[4][9] == "a clean photo showcasing a person's anxious expression."


def test_zero_shot_logits_are_scale_times_image_text_averaged_over_prompts(tmp_path):
    import open_clip
    import torch

    write_rafdb(tmp_path, n_train=0, n_test=5)
    task = EmocapTask()
    (fold,) = task.folds(tmp_path, "rafdb")
    solver = make_solver(task, "clip-zeroshot", RunContext(), TINY)
    outs = solve_all(solver, fold.test)
    # independent computation straight from the open_clip model, as Exp-CLIP test.py does it: all prompts
    # class-major, each text feature normalised, logits [N, C*P] viewed as [N, C, P] and averaged over P
    model, tok = solver.clip.model, open_clip.get_tokenizer("tiny-random-clip")
    texts = [t for name in CLASSES_7
             for t in (SADNESS_FIVE if name == "sadness" else [x.format(name) for x in ENSEMBLE_FIVE])]
    with torch.no_grad():
        img = torch.stack([solver.clip.preprocess(__import__("PIL.Image").Image.fromarray(load_face(s)))
                           for s in fold.test])
        fi = model.encode_image(img)
        fi = fi / fi.norm(dim=-1, keepdim=True)
        ft = model.encode_text(tok(texts))
        ft = ft / ft.norm(dim=-1, keepdim=True)
        output = model.logit_scale.exp() * fi @ ft.t()
        logits = output.view(len(fold.test), -1, 5).mean(dim=-1)
        # the alternative Exp-CLIP does NOT use: class embeddings averaged then re-normalised
        emb = ft.view(7, 5, -1).mean(dim=1)
        emb = emb / emb.norm(dim=-1, keepdim=True)
        emb_logits = model.logit_scale.exp() * fi @ emb.t()
    got = np.array([o["logits"] for o in outs])
    np.testing.assert_allclose(got, logits.numpy(), atol=1e-4)
    assert np.abs(got - emb_logits.numpy()).max() > 1e-3  # the test can tell the two averagings apart
    assert [o["label"] for o in outs] == [CLASSES_7[i] for i in logits.argmax(dim=1)]
    # batching does not change an answer
    one_by_one = [asyncio.run(solver.solve(s)) for s in fold.test]
    assert [o["label"] for o in one_by_one] == [o["label"] for o in outs]


@pytest.mark.parametrize("prompts", ["ensemble10", "expression", "name"])
def test_other_exp_clip_prompt_sets_run(tmp_path, prompts):
    write_rafdb(tmp_path, n_train=0, n_test=3)
    task = EmocapTask()
    (fold,) = task.folds(tmp_path, "rafdb")
    solver = make_solver(task, "clip-zeroshot", RunContext(), {**TINY, "prompts": prompts})
    outs = solve_all(solver, fold.test)
    assert all(o["label"] in CLASSES_7 and len(o["logits"]) == 7 for o in outs)


def test_prompt_set_and_weights_file_enter_the_solver_identity(tmp_path):
    import torch

    task = EmocapTask()
    a = make_solver(task, "clip-zeroshot", RunContext(), TINY)
    b = make_solver(task, "clip-zeroshot", RunContext(), {**TINY, "prompts": "single"})
    assert a.identity()["prompts"] != b.identity()["prompts"]
    ckpt = tmp_path / "tiny.pt"
    torch.save(a.clip.model.state_dict(), ckpt)
    c = make_solver(task, "clip-zeroshot", RunContext(), {**TINY, "pretrained": str(ckpt)})
    assert c.identity()["weights"].startswith("file:tiny.pt:")
    x = np.random.default_rng(0).integers(0, 255, (2, 40, 40, 3), dtype=np.uint8)
    np.testing.assert_allclose(c.clip.encode_images(list(x)), a.clip.encode_images(list(x)), atol=1e-6)
    with pytest.raises(Exception, match="prompt"):
        make_solver(task, "clip-zeroshot", RunContext(), {**TINY, "prompt": "single"})


def test_linear_probe_learns_the_synthetic_classes_and_majority_is_the_floor(tmp_path):
    write_rafdb(tmp_path, n_train=42, n_test=14)
    task = get_task("emocap")
    (fold,) = task.folds(tmp_path, "rafdb")
    acc = {}
    for name, opts in (("majority", {}), ("linear-probe", TINY)):
        solver = make_solver(task, name, RunContext(), opts)
        solver.fit(fold.train)
        outs = solve_all(solver, fold.test)
        acc[name] = np.mean([task.score(s, o)["correct"] for s, o in zip(fold.test, outs, strict=True)])
    assert acc["majority"] == pytest.approx(2 / 14)  # happiness wins the 6-6-... tie by class order
    assert acc["linear-probe"] > 0.8


def test_end_to_end_run_on_synthetic_rafdb(tmp_path):
    cli = pytest.importorskip("harness.cli")
    write_rafdb(tmp_path / "raf", n_train=14, n_test=14)
    rc = cli.main(["run", "--task", "emocap", "--solver", "clip-zeroshot", "--data", str(tmp_path / "raf"),
                   "-S", "model=tiny-random-clip", "-S", "pretrained=none", "--out", str(tmp_path / "runs"),
                   "--db", f"sqlite:///{tmp_path / 'lb.db'}", "--no-progress", "--bootstrap", "50"])
    assert rc in (0, None)
    (run_dir,) = (tmp_path / "runs").glob("emocap-*")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["protocol"] == "rafdb" and metrics["n_samples"] == 14 and metrics["n_errors"] == 0
    assert set(metrics["metrics"]) >= {"uar", "war"}
    assert sum(map(sum, metrics["report"]["confusion"])) == 14


@pytest.mark.gpu
def test_clip_zeroshot_on_cuda_matches_cpu_in_batches(tmp_path):
    write_rafdb(tmp_path, n_train=0, n_test=70)
    task = EmocapTask()
    (fold,) = task.folds(tmp_path, "rafdb")
    cpu = solve_all(make_solver(task, "clip-zeroshot", RunContext(), TINY), fold.test)
    gpu_solver = make_solver(task, "clip-zeroshot", RunContext(), {**TINY, "device": "cuda"})
    gpu = solve_all(gpu_solver, fold.test)  # 70 faces: one full batch of 64 and one of 6
    assert gpu_solver.clip.device == "cuda"
    np.testing.assert_allclose([o["logits"] for o in gpu], [o["logits"] for o in cpu], atol=2e-3)


# -- dynamic sets (annotation lists) -------------------------------------------------------------------
def test_exp_clip_test_frame_indices():
    from tasks.emocap.dynamic import test_indices

    # 40 frames: tick 2.5 -> int(1.25 + 2.5 x)
    assert test_indices(40) == [int(1.25 + 2.5 * x) for x in range(16)] == [1, 3, 6, 8, 11, 13, 16, 18, 21, 23,
                                                                             26, 28, 31, 33, 36, 38]
    assert test_indices(16) == [0] * 16  # not more frames than segments: the first frame, 16 times


def test_dfew_lists_give_five_folds_and_fold_averaged_metrics(tmp_path):
    from tasks.emocap.synthetic import write_dynamic

    write_dynamic(tmp_path, "dfew", n_clips=7, n_frames=20)
    task = EmocapTask()
    assert task.detect_protocol(tmp_path) == "dfew"
    folds = task.folds(tmp_path, "dfew")
    assert [f.name for f in folds] == ["set1", "set2", "set3", "set4", "set5"]
    assert [s.target for s in folds[0].test] == list(CLASSES_7)  # 0-based labels in Exp-CLIP's order
    assert {m.name: m.per_fold for m in task.metrics("dfew")}["uar"] is True
    bad = tmp_path / "DFEW_set_2_test.txt"
    bad.write_text(bad.read_text().replace(" 20 3\n", " 20 9\n"))
    with pytest.raises(DataError, match="label '9' is not an index 0..6"):
        task.score(task.folds(tmp_path, "dfew")[1].test[3], {"label": "anger"})


def test_an_annotation_list_that_is_not_utf8_is_a_data_error_naming_it(tmp_path):
    from tasks.emocap.synthetic import write_dynamic

    write_dynamic(tmp_path, "mafw", n_clips=3, n_frames=20)
    bad = tmp_path / "MAFW_set_1_test.txt"
    bad.write_bytes(bad.read_bytes() + b"clip\xff 20 3\n")
    with pytest.raises(DataError, match="MAFW_set_1_test.txt: not utf-8 text"):
        EmocapTask().folds(tmp_path, "mafw")


def test_clip_features_of_a_clip_are_the_normalised_mean_of_raw_frame_features(tmp_path):
    from tasks.emocap.dynamic import load_clip
    from tasks.emocap.synthetic import write_dynamic

    write_dynamic(tmp_path, "afew", n_clips=3, n_frames=24)
    task = EmocapTask()
    (fold,) = task.folds(tmp_path, "afew")
    solver = make_solver(task, "clip-zeroshot", RunContext(), TINY)
    feats, errors = solver.encode(fold.test)
    assert errors == [None, None, None]
    raw = solver.clip.encode_images(load_clip(fold.test[1]), normalize=False).mean(axis=0)
    np.testing.assert_allclose(feats[1], raw / np.linalg.norm(raw), atol=1e-5)
    outs = solve_all(solver, fold.test)
    assert all(o["label"] in CLASSES_7 for o in outs)
