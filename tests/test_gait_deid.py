"""gait_deid: OpenGait's view-exclusion rule on a hand-built 3-subject case, OpenGait pretreatment, CASIA-B
layouts and protocol, the seeded target rule, protections, and end-to-end runs on synthetic silhouettes."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

pytest.importorskip("cv2")

from harness.core import Record  # noqa: E402
from tasks.gait_deid import GaitDeidTask, condition_rank1  # noqa: E402
from tasks.gait_deid.evaluation import exclude_identical_views, rank1_matrix  # noqa: E402
from tasks.gait_deid.protections import choose_target  # noqa: E402
from tasks.gait_deid.synthetic import write_casia_b  # noqa: E402
from vision_models.gait import cut_to_44, pretreat_frame  # noqa: E402

VIEWS3 = ["000", "090", "180"]
# 1-D embeddings: gallery of view v sits at 100 * index(v) + {A: 0, B: 10, C: 20}
GALLERY = {(s, v): 100 * i + o for i, v in enumerate(VIEWS3) for s, o in (("A", 0), ("B", 10), ("C", 20))}
PROBES = {("A", "000"): 1, ("B", "000"): 9, ("C", "000"): 21, ("A", "090"): 101, ("B", "090"): 111,
          ("C", "090"): 119, ("A", "180"): 201, ("B", "180"): 211, ("C", "180"): 221}
# Worked by hand: each probe finds its subject in its own view (diagonal = 1); across views only one of
# the three subjects is right (the nearest gallery item is always the edge one), so every off-diagonal
# cell is 1/3, which OpenGait stores rounded as 33.33 %. OpenGait's Rank-1 (identical views excluded) =
# 33.33 %; with them it would be 5/9.
T = 0.3333  # round(100 / 3, 2) / 100
HAND = np.array([[1, T, T], [T, 1, T], [T, T, 1]])


def test_view_exclusion_rule_on_three_hand_built_subjects():
    gal = sorted(GALLERY)
    probes = sorted(PROBES)
    acc = rank1_matrix(np.array([[PROBES[p]] for p in probes]), [v for _, v in probes], [s for s, _ in probes],
                       np.array([[GALLERY[g]] for g in gal]), [s for s, _ in gal], [v for _, v in gal], VIEWS3)
    np.testing.assert_allclose(acc, HAND)
    per_view, mean = exclude_identical_views(acc)
    np.testing.assert_allclose(per_view, [T, T, T])
    assert mean == pytest.approx(T) and not np.isclose(mean, HAND.mean())


def test_condition_rank1_from_records_matches_the_hand_case():
    records = [Record(f"{s}/nm-01/{v}", "casia-b", {}, {}, {"embedding": [e]},
                      {"subject": s, "role": "gallery", "view": v, "condition": "gallery"}, split="gallery")
               for (s, v), e in GALLERY.items()]
    records += [Record(f"{s}/nm-05/{v}", "casia-b", {}, {}, {"embedding": [e], "target_subject": "A"},
                       {"subject": s, "role": "probe", "view": v, "condition": "nm"}) for (s, v), e in PROBES.items()]
    per_view, mean = condition_rank1(records, "nm")
    assert mean == pytest.approx(T)
    assert np.isnan(condition_rank1(records, "bg")[1])  # no BG probes: nan, never 0
    # impersonation of target A (every probe): a hit when the nearest gallery item is A. Off-diagonal, by
    # hand: probes of 000 reach A in 090 and 180 (1, 1); of 090 reach C in 000, A in 180 (0, 1); of 180
    # reach C in 000 and 090 (0, 0): per view 1, 1/2, 0, mean 1/2.
    per_view, imp = condition_rank1(records, "nm", impersonation=True)
    np.testing.assert_allclose(per_view[[0, 5, 10]], [1, 0.5, 0])  # views 000, 090, 180 of the eleven
    assert imp == pytest.approx(0.5)


def test_pretreatment_crops_centres_and_drops_empty_frames():
    img = np.zeros((240, 320), np.uint8)
    img[50:150, 100:140] = 255  # a 100 x 40 block
    out = pretreat_frame(img)
    assert out.shape == (64, 64)
    cols = np.nonzero(out.sum(axis=0))[0]
    # resized to height 64 and width 64*40/100 = 25.6 -> the block spans ~25 columns around the centre
    assert 22 <= len(cols) <= 28 and abs((cols[0] + cols[-1]) / 2 - 32) <= 1.5
    assert (out.sum(axis=1) > 0).all()  # rows cropped to the person: every row is occupied
    tiny = np.zeros((240, 320), np.uint8)
    tiny.flat[:39] = 255  # 39 * 255 = 9945 <= 10000: no person
    assert pretreat_frame(tiny) is None
    seq = cut_to_44(np.stack([out, out]))
    assert seq.shape == (2, 64, 44) and seq.max() <= 1.0


def test_png_and_pkl_layouts_give_the_same_sequences(tmp_path):
    from tasks.gait_deid.loaders import load_sequence, scan

    kw = {"views": ("000", "090"), "condseqs": ("nm-01", "nm-05"), "n_frames": 4}
    write_casia_b(tmp_path / "png", [75], **kw)
    write_casia_b(tmp_path / "pkl", [75], layout="pkl", **kw)
    a, b = scan(tmp_path / "png"), scan(tmp_path / "pkl")
    assert [s.id for s in a] == [s.id for s in b] == ["075/nm-01/000", "075/nm-01/090", "075/nm-05/000",
                                                      "075/nm-05/090"]
    np.testing.assert_array_equal(load_sequence(a[0].source, "png"), load_sequence(b[0].source, "pkl"))
    with open(b[0].source, "rb") as fh:
        assert pickle.load(fh).shape == (4, 64, 64)


def test_protocol_splits_gallery_and_probes_and_reports_missing(tmp_path):
    write_casia_b(tmp_path, [1, 2, 75, 76, 77], views=("000", "090"), n_frames=4)
    task = GaitDeidTask()
    assert task.detect_protocol(tmp_path) == "casia-b"
    (fold,) = task.folds(tmp_path, "casia-b")
    gallery = fold.splits["gallery"]
    assert {s.groups["subject"] for s in gallery} == {s.groups["subject"] for s in fold.test} == {"075", "076", "077"}
    assert {s.target["condseq"] for s in gallery} == {"nm-01", "nm-02", "nm-03", "nm-04"}
    assert {s.groups["condition"] for s in fold.test} == {"nm", "bg", "cl"}
    assert len(gallery) == 3 * 4 * 2 and len(fold.test) == 3 * 6 * 2
    records = [Record(s.id, "casia-b", s.target, {}, {}, s.groups) for s in [*gallery, *fold.test]]
    report = task.report(records, "casia-b", tmp_path)
    assert "078" in report["missing_test_subjects"] and "075" not in report["missing_test_subjects"]
    assert report["missing_sequences"]["075"] == 10 * 9  # 9 of the 11 views absent for all 10 sequences


def test_target_rule_is_seeded_never_the_probe_and_spreads():
    subjects = [f"{i:03d}" for i in range(75, 85)]
    picks = [choose_target("075", f"075/nm-05/{v:03d}", subjects, seed=0) for v in range(0, 181, 18)]
    assert "075" not in picks and len(set(picks)) > 3
    assert picks == [choose_target("075", f"075/nm-05/{v:03d}", subjects, seed=0) for v in range(0, 181, 18)]
    assert picks != [choose_target("075", f"075/nm-05/{v:03d}", subjects, seed=1) for v in range(0, 181, 18)]


def _run(tmp_path, solver, *extra):
    cli = pytest.importorskip("harness.cli")
    rc = cli.main(["run", "--task", "gait_deid", "--solver", solver, "--data", str(tmp_path / "casia"),
                   "--out", str(tmp_path / "runs"), "--db", f"sqlite:///{tmp_path / 'lb.db'}", "--no-progress",
                   "--bootstrap", "20", *extra])
    assert rc in (0, None)
    (run_dir,) = (tmp_path / "runs").glob(f"gait_deid-{solver}-*")
    return json.loads((run_dir / "metrics.json").read_text()), run_dir


@pytest.fixture(scope="module")
def casia(tmp_path_factory):
    root = tmp_path_factory.mktemp("gait")
    write_casia_b(root / "casia", [1, 2, 3, 4, 5, 6, 75, 76, 77], views=("054", "072", "090", "108"), n_frames=6)
    return root


def test_unprotected_probes_are_recognised_and_target_swap_impersonates(casia, tmp_path):
    (tmp_path / "casia").symlink_to(casia / "casia")
    base, _ = _run(tmp_path, "none")
    m = base["metrics"]
    assert base["n_errors"] == 0 and base["n_samples"] == 3 * 10 * 4
    assert m["rank1_mean"]["value"] > 0.8 and m["ssim"]["value"] == pytest.approx(1.0)
    assert base["report"]["recognizer_fit"].startswith("training subjects 001-074 present (6)")
    swap, run_dir = _run(tmp_path, "target-swap")
    assert swap["metrics"]["impersonation_success"]["value"] > 0.8
    assert swap["metrics"]["rank1_mean"]["value"] < 0.2
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    probe = next(x for x in lines if x.get("split", "test") == "test")
    assert (tmp_path / "runs" / "artifacts" / probe["prediction"]["sequence"]).exists()


@pytest.mark.parametrize("solver, check", [
    ("frame-drop", lambda orig, prot: len(prot) == len(orig) - round(0.5 * len(orig))),
    ("shuffle", lambda orig, prot: sorted(map(bytes, prot)) == sorted(map(bytes, orig))),
    ("blur", lambda orig, prot: set(np.unique(prot)) <= {0, 255}),
    ("morph", lambda orig, prot: (prot >= orig).all()),  # dilation only adds pixels
])
def test_protections_change_probes_as_documented(casia, tmp_path, solver, check):
    from tasks.gait_deid.loaders import load_sequence

    (tmp_path / "casia").symlink_to(casia / "casia")
    _, run_dir = _run(tmp_path, solver)
    lines = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    probes = [x for x in lines if x.get("split", "test") == "test"]
    gallery = [x for x in lines if x.get("split") == "gallery"]
    assert gallery and all(x["prediction"] == {"protected": False} for x in gallery)
    for x in probes[:5]:
        prot = np.load(tmp_path / "runs" / "artifacts" / x["prediction"]["sequence"])
        orig = load_sequence(x["target"]["source"], x["target"]["layout"])
        assert check(orig, prot)
        if solver in ("frame-drop", "shuffle"):  # the source frame of each protected frame is recorded
            np.testing.assert_array_equal(orig[x["prediction"]["frame_index"]], prot)
            assert x["scores"]["ssim"] == pytest.approx(1.0)


def _pretreat_by_the_steps(img: np.ndarray) -> np.ndarray | None:
    """OpenGait's pretreatment written step by step from its description (loops, float padding), as an
    independent check of vision_models.gait.pretreat_frame."""
    import cv2

    if img.sum() <= 10000:
        return None
    occupied = [i for i in range(img.shape[0]) if img[i].sum() != 0]
    img = img[occupied[0]:occupied[-1] + 1]
    width = int(64 * img.shape[1] / img.shape[0])
    img = cv2.resize(img, (width, 64), interpolation=cv2.INTER_CUBIC)
    total, running, centre = img.sum(), 0, None
    for x in range(img.shape[1]):
        running += img[:, x].sum()
        if running > total / 2:
            centre = x
            break
    if not centre:
        return None
    left, right = centre - 32, centre + 32
    if left <= 0 or right >= img.shape[1]:
        img = np.hstack([np.zeros((64, 32)), img, np.zeros((64, 32))])
        left, right = left + 32, right + 32
    return img[:, left:right].astype("uint8")


@pytest.mark.parametrize("cx, cy, ax, ay", [(160, 120, 20, 80), (8, 120, 15, 90), (310, 100, 12, 60),
                                            (150, 200, 60, 30), (40, 60, 30, 50)])
def test_pretreatment_matches_the_step_by_step_algorithm(cx, cy, ax, ay):
    import cv2

    img = np.zeros((240, 320), np.uint8)
    cv2.ellipse(img, (cx, cy), (ax, ay), 15, 0, 360, 255, -1)
    cv2.rectangle(img, (cx - 3, cy), (cx + ax // 2, min(239, cy + ay)), 255, -1)  # asymmetric: a leg
    expected = _pretreat_by_the_steps(img)
    got = pretreat_frame(img)
    if expected is None:
        assert got is None
    else:
        assert got is not None and got.shape == (64, 64)
        np.testing.assert_array_equal(got, expected)
