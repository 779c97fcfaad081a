"""fdeid task: pair protocols (LFW pairs.txt, identity folders, pairs CSV) and end-to-end runs on real faces."""

from __future__ import annotations

import csv
import itertools
import os
from pathlib import Path

import pytest

from harness.core import DataError

pytest.importorskip("dlib")
from tasks.fdeid.loader import csv_samples, folder_pairs, folder_samples, lfw_samples, parse_lfw_pairs  # noqa: E402


def _identity_tree(deepface: Path, dest: Path, identities: set[str] | None = None) -> Path:
    """deepface's images as ROOT/<identity>/<image> (symlinks; identities.csv is the mapping)."""
    with (deepface / "identities.csv").open() as f:
        for row in csv.DictReader(f):
            if identities and row["identity_id"] not in identities:
                continue
            d = dest / row["identity_id"]
            d.mkdir(parents=True, exist_ok=True)
            os.symlink(deepface / row["file"], d / Path(row["file"]).name)
    return dest


@pytest.fixture
def deepface(shared_data):
    return shared_data("deepface_verification_pairs")


# ----------------------------------------------------------------------------------------- protocols
def test_lfw_pairs_txt_is_ten_folds_of_300_matched_then_300_mismatched(shared_data):
    pairs = parse_lfw_pairs(shared_data("lfw_pairs_protocol") / "pairs.txt")
    assert len(pairs) == 6000
    assert sorted({p[0] for p in pairs}) == list(range(1, 11))
    for fold in range(1, 11):
        rows = [p for p in pairs if p[0] == fold]
        assert [p[5] for p in rows] == [1] * 300 + [0] * 300
    assert (10, "Anthony_Hopkins", 1, "Anthony_Hopkins", 2, 1) in pairs  # line 5418 of pairs.txt


def test_lfw_header_that_disagrees_with_the_body_names_the_file(tmp_path):
    (tmp_path / "pairs.txt").write_text("2\t1\nA\t1\t2\nA\t1\tB\t1\n")
    with pytest.raises(DataError, match="pairs.txt: header promises 2 x 2 x 1 = 4 pairs, found 2"):
        parse_lfw_pairs(tmp_path / "pairs.txt")


def test_folders_protocol_takes_every_pair_of_a_small_set(deepface, tmp_path):
    root = _identity_tree(deepface, tmp_path / "faces")
    samples = folder_samples(root)
    # 25 images -> 300 pairs (< 5,000: all of them); genuine = the 38 'Yes' pairs of deepface's master.csv.
    assert len(samples) == 300
    assert sum(s.target["same"] for s in samples) == 38
    assert len({s.id for s in samples}) == 300


def test_folders_protocol_draws_as_many_seeded_impostors_as_genuine_pairs(deepface, tmp_path):
    from tasks.fdeid.loader import identity_tree

    tree = identity_tree(_identity_tree(deepface, tmp_path / "faces"))
    pairs = folder_pairs(tree, all_below=10)  # force sampling
    genuine = [p for p in pairs if p[2] == 1]
    impostor = [p for p in pairs if p[2] == 0]
    assert len(genuine) == sum(len(v) * (len(v) - 1) // 2 for v in tree.values()) == 38
    assert len(impostor) == 38 and len(set(impostor)) == 38
    assert all(a.parent.name != b.parent.name for a, b, _ in impostor)
    assert folder_pairs(tree, all_below=10) == pairs  # the same pairs every run


def test_folders_protocol_reads_identities_csv_of_a_flat_copy(deepface):
    # deepface's copy is images/ + identities.csv: its one sub-folder is not an identity (every pair would
    # be "genuine" and every privacy number NaN); the identity file gives the same pairs as the tree.
    samples = folder_samples(deepface)
    assert len(samples) == 300 and sum(s.target["same"] for s in samples) == 38
    assert {s.groups["identity_a"] for s in samples} >= {"id01", "id02"}
    assert all(Path(s.target["a"]).is_file() for s in samples)


def test_pairs_csv_protocol_reads_deepface_master_csv(deepface):
    samples = csv_samples(deepface)
    assert len(samples) == 300 and sum(s.target["same"] for s in samples) == 38
    assert all(Path(s.target["a"]).is_file() and Path(s.target["b"]).is_file() for s in samples)


def test_identity_folders_need_a_genuine_pair(shared_data):
    with pytest.raises(DataError, match="no identity has two images"):
        folder_samples(shared_data("facenet_pytorch_aligned_faces") / "test_images_aligned")


# ----------------------------------------------------------------------------------------- end to end
def _run(data: Path, solver: str, out: Path, protocol: str = "", roles=(), **options):
    from harness.runner import RunConfig, RunSettings, run

    cfg = RunConfig(task="fdeid", protocol=protocol, solver=solver, solver_options=tuple(options.items()), n_boot=50,
                    roles=tuple(roles))
    return run(cfg, RunSettings(data=data, out_dir=out, show_progress=False, concurrency=4))


def _value(result, name):
    return result.metrics[name].value


@pytest.mark.slow
def test_done_when_identity_and_mask_on_identity_folders(deepface, tmp_path):
    root = _identity_tree(deepface, tmp_path / "faces")
    ident = _run(root, "identity", tmp_path / "runs", protocol="folders")
    assert ident.n_errors == 0
    assert _value(ident, "orig_verification_accuracy") >= 0.95
    assert _value(ident, "psr") <= 0.05
    assert _value(ident, "ssim") >= 0.999
    assert _value(ident, "landmark_nme") == 0.0  # untouched pixels, same landmarks
    masked = _run(root, "mask", tmp_path / "runs", protocol="folders")
    assert _value(masked, "psr") >= 0.9
    assert masked.report["protected_images_without_detectable_face"] == 25
    # Protected images are artifacts of the run; the record points at them.
    rec = next(r for r in masked.records if r.ok)
    assert set(rec.artifacts) == {"a", "b"}
    assert (tmp_path / "runs" / "artifacts" / rec.artifacts["a"]).is_file()


def test_missing_lfw_image_is_that_pairs_error_naming_the_file(shared_data, tmp_path):
    lfw = shared_data("lfw_pairs_protocol")
    root = tmp_path / "lfw"
    (root / "Anthony_Hopkins").mkdir(parents=True)
    for n in (1, 2):
        os.symlink(lfw / "images" / "Anthony_Hopkins" / f"Anthony_Hopkins_000{n}.jpg",
                   root / "Anthony_Hopkins" / f"Anthony_Hopkins_000{n}.jpg")
    (root / "pairs.txt").write_text("1\t1\nAnthony_Hopkins\t1\t2\nAnthony_Hopkins\t2\tOrlando_Bloom\t1\n")
    assert [s.target["same"] for s in lfw_samples(root)] == [1, 0]
    result = _run(root, "blur", tmp_path / "runs")
    ok = [r for r in result.records if r.ok]
    bad = [r for r in result.records if not r.ok]
    assert len(ok) == 1 and ok[0].scores["orig_sim"] > 0.9  # the real LFW positive pair
    assert len(bad) == 1 and "Orlando_Bloom_0001.jpg" in bad[0].error


def test_solver_options_are_typed_and_checked():
    from harness.core import HarnessError, RunContext
    from harness.registry import get_task, make_solver

    task = get_task("fdeid")
    assert make_solver(task, "blur", RunContext(), {"kernel": "31"}).options == {"kernel": 31, "sigma": 0.0}
    with pytest.raises(HarnessError, match="unknown option 'kernal'"):
        make_solver(task, "blur", RunContext(), {"kernal": 3})
    assert make_solver(task, "noise", RunContext(seed=7), {}).options["seed"] == 7


def test_every_cpu_protection_runs_on_a_few_pairs(deepface, tmp_path):
    root = _identity_tree(deepface, tmp_path / "faces", identities={"id03", "id05"})  # 4 images, 6 pairs
    for solver in ("blur", "pixelate", "noise", "ksame"):
        res = _run(root, solver, tmp_path / "runs")
        assert res.n_errors == 0, [r.error for r in res.records if r.error]
        assert 0 < _value(res, "ssim") < 1
        assert _value(res, "landmark_nme") > 0
        assert all(itertools.chain.from_iterable(r.artifacts.values() for r in res.records))


# ----------------------------------------------------------------------------------------------- report
def test_pareto_front_by_hand():
    from tasks.fdeid.report import pareto_front

    # (ssim, psr): identity (1, 0) and mask (0.85, 1) are on the front; (0.8, 0.5) is dominated by mask;
    # blur (0.95, 0.6) is on it; (0.95, 0.4) is dominated by blur.
    pts = [(1.0, 0.0), (0.85, 1.0), (0.8, 0.5), (0.95, 0.6), (0.95, 0.4)]
    assert pareto_front(pts) == [0, 1, 3]


def test_pareto_plot_from_leaderboard_rows(tmp_path):
    pytest.importorskip("matplotlib")
    from harness.leaderboard import BoardRow
    from tasks.fdeid.report import pareto_plot, plot_points

    def row(method, ssim, psr):
        return BoardRow("measured", "fdeid", "folders", method,
                        {"ssim": {"value": ssim}, "psr": {"value": psr}})

    rows = [row("identity", 1.0, 0.0), row("mask", 0.85, 1.0),
            BoardRow("reference", "fdeid", "lfw", "dlib", {"orig_verification_accuracy": {"value": 0.99}})]
    assert [p[1] for p in plot_points(rows)] == ["identity", "mask"]  # rows without both numbers are left out
    out = pareto_plot(rows, tmp_path / "pareto.png")
    assert out.stat().st_size > 1000


# ------------------------------------------------------------------------------------------ sd-inpaint
def test_inpaint_face_changes_only_the_box_on_a_tiny_random_pipeline(deepface):
    pytest.importorskip("diffusers")
    import numpy as np

    from vision_models.diffusion import inpaint_face, load_pipeline
    from vision_models.faces.detect import detect_face, load_image

    img = load_image(deepface / "images" / "img25.jpg")  # 400x400
    face = detect_face(img)
    pipe = load_pipeline("inpaint", "tiny-random", "cpu")
    out = inpaint_face(pipe, img, face.box, "a face", seed=1, steps=2, size=64)
    x1, y1, x2, y2 = face.box
    outside = np.ones(img.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    assert out.shape == img.shape
    assert np.array_equal(out[outside], img[outside])
    assert not np.array_equal(out[y1:y2, x1:x2], img[y1:y2, x1:x2])
    again = inpaint_face(pipe, img, face.box, "a face", seed=1, steps=2, size=64)
    assert np.array_equal(out, again)  # seeded


def test_sd_inpaint_solver_end_to_end_on_tiny_random(deepface, tmp_path):
    pytest.importorskip("diffusers")
    root = _identity_tree(deepface, tmp_path / "faces", identities={"id09"})  # img24, img25: one genuine pair
    res = _run(root, "sd-inpaint", tmp_path / "runs", model="tiny-random", steps=2, size=64)
    assert res.n_errors == 0, [r.error for r in res.records if r.error]
    assert 0 < _value(res, "ssim") < 1


def test_sd_inpaint_with_missing_weights_says_so(deepface, tmp_path):
    pytest.importorskip("diffusers")
    root = _identity_tree(deepface, tmp_path / "faces", identities={"id09"})
    res = _run(root, "sd-inpaint", tmp_path / "runs", model=str(tmp_path / "no-such-model"), steps=2)
    assert res.n_errors == 1 and "weights missing: put the diffusers model folder at" in res.records[0].error


@pytest.mark.gpu
def test_sd_inpaint_tiny_random_on_the_gpu(deepface):
    pytest.importorskip("diffusers")
    from vision_models.diffusion import inpaint_face, load_pipeline
    from vision_models.faces.detect import detect_face, load_image

    img = load_image(deepface / "images" / "img25.jpg")
    pipe = load_pipeline("inpaint", "tiny-random", "cuda")
    out = inpaint_face(pipe, img, detect_face(img).box, "a face", seed=1, steps=2, size=64)
    assert out.shape == img.shape


def test_an_original_without_a_detectable_face_is_that_pairs_error_naming_it(deepface, tmp_path):
    import numpy as np
    from PIL import Image

    from tasks.fdeid.scorer import PairScorer
    from vision_models.faces.detect import load_image

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    face = deepface / "images" / "img1.jpg"
    scorer = PairScorer.from_spec("dlib")
    target = {"a": str(face), "b": str(blank), "same": 0}
    with pytest.raises(DataError, match="blank.png: no face detected in the original, so this pair cannot be"):
        scorer.score_pair(target, {"a": str(face), "b": str(blank)}, lambda ref: load_image(ref))
    ok = scorer.score_pair({"a": str(face), "b": str(face), "same": 1}, {"a": str(face), "b": str(face)},
                           lambda ref: load_image(ref))
    assert ok["orig_sim"] == pytest.approx(1.0) and ok["prot_sim"] == pytest.approx(1.0)
    # a protected artifact saved with an alpha channel (RGBA PNG) is scored as its RGB, not refused
    rgba = scorer.score_pair({"a": str(face), "b": str(face), "same": 1}, {"a": "x", "b": "x"},
                             lambda ref: np.dstack([load_image(face), np.full(load_image(face).shape[:2], 255,
                                                                               np.uint8)]))
    assert rgba["prot_sim"] == pytest.approx(1.0) and rgba["ssim_a"] == pytest.approx(1.0)


def test_a_second_recogniser_is_reported_side_by_side(deepface, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8, stride=8), torch.nn.Flatten(), torch.nn.Linear(4 * 20 * 20, 16))
    path = tmp_path / "facenet.pt"
    torch.jit.trace(net.eval(), torch.zeros(1, 3, 160, 160)).save(str(path))
    root = _identity_tree(deepface, tmp_path / "faces", identities={"id03", "id05"})  # 4 images, 6 pairs
    res = _run(root, "mask", tmp_path / "runs", roles=(f"recognizer2=facenet:{path}",))
    assert res.n_errors == 0, [r.error for r in res.records if r.error]
    row = res.report["recognizers"]["recognizer2"]
    assert row["model"] == f"facenet:{path}" and row["n_pairs"] == 6
    # Masked faces are not found by the detector, whatever the recogniser: every protected pair is rejected,
    # so the best protected accuracy is the share of impostor pairs (4 of 6).
    assert all(r.scores["prot_sim@recognizer2"] is None for r in res.records)
    assert row["verification_accuracy"] == pytest.approx(4 / 6)
    assert _value(res, "psr") == 1.0  # the default dlib recogniser's numbers stay the headline


def test_lfw_protocol_reports_the_ten_fold_accuracy(deepface, tmp_path):
    from vision_models.privacy_eval import k_fold_accuracy

    root = tmp_path / "lfw"
    people = {"Person_A": ["img1", "img2"], "Person_B": ["img8", "img9"], "Person_C": ["img3"], "Person_D": ["img13"]}
    for name, imgs in people.items():
        (root / name).mkdir(parents=True)
        for i, img in enumerate(imgs, 1):
            os.symlink(deepface / "images" / f"{img}.jpg", root / name / f"{name}_{i:04d}.jpg")
    (root / "pairs.txt").write_text("2\t1\nPerson_A\t1\t2\nPerson_A\t1\tPerson_C\t1\n"
                                    "Person_B\t1\t2\nPerson_B\t1\tPerson_D\t1\n")
    res = _run(root, "mask", tmp_path / "runs")
    assert res.n_errors == 0, [r.error for r in res.records if r.error]
    recs = res.records
    expect = k_fold_accuracy([r.scores["orig_sim"] for r in recs], [r.scores["same"] for r in recs],
                             [r.groups["fold"] for r in recs])
    assert _value(res, "orig_verification_accuracy_10fold") == pytest.approx(expect)
    assert [r.groups["fold"] for r in recs] == ["1", "1", "2", "2"]
    assert _value(res, "verification_accuracy_10fold") == pytest.approx(0.5)  # masked: every pair rejected


def test_lpips_and_fid_roles_with_tiny_random_nets(deepface, tmp_path):
    root = _identity_tree(deepface, tmp_path / "faces", identities={"id03", "id05"})  # 4 images
    roles = ("lpips=tiny-random:0", "fid=tiny-random:1")
    ident = _run(root, "identity", tmp_path / "runs", roles=roles)
    assert _value(ident, "lpips") == pytest.approx(0.0, abs=1e-9)
    assert _value(ident, "fid") == pytest.approx(0.0, abs=1e-6)
    masked = _run(root, "mask", tmp_path / "runs", roles=roles)
    assert _value(masked, "lpips") > 0 and _value(masked, "fid") > 0
    plain = _run(root, "mask", tmp_path / "runs")
    import math

    assert math.isnan(_value(plain, "lpips")) and math.isnan(_value(plain, "fid"))  # no net, no number


# ---------------------------------------------------------------------------------- utility protocol
def _celeba_style(deepface: Path, root: Path, attr_text: str | None = None, csv_text: str | None = None) -> Path:
    (root / "CelebA-HQ-img").mkdir(parents=True)
    for n in ("img5", "img12", "img25"):
        os.symlink(deepface / "images" / f"{n}.jpg", root / "CelebA-HQ-img" / f"{n}.jpg")
    if attr_text is not None:
        (root / "CelebAMask-HQ-attribute-anno.txt").write_text(attr_text)
    if csv_text is not None:
        (root / "attributes.csv").write_text(csv_text)
    return root


def test_attribute_files_are_read_in_celeba_and_csv_form(tmp_path):
    from tasks.fdeid.loader import read_attributes

    (tmp_path / "a.txt").write_text("2\nMale Smiling\nimg5.jpg 1 -1\nimg12.jpg -1 1\n")
    assert read_attributes(tmp_path / "a.txt") == {"img5.jpg": {"Male": 1.0, "Smiling": 0.0},
                                                   "img12.jpg": {"Male": 0.0, "Smiling": 1.0}}
    (tmp_path / "b.txt").write_text("1\nMale Smiling\nimg5.jpg 1\n")
    with pytest.raises(DataError, match="b.txt: line 3: expected a file name and 2 values"):
        read_attributes(tmp_path / "b.txt")
    (tmp_path / "c.csv").write_text("file,age,Male\nimg5.jpg,31,1\n")
    assert read_attributes(tmp_path / "c.csv") == {"img5.jpg": {"age": 31.0, "Male": 1.0}}


def test_attribute_metrics_by_hand():
    from harness.core import Record
    from tasks.fdeid.utility import age_mae, attr_accuracy, attr_preservation

    def rec(labels, orig, prot):
        return Record("x", "test", {"attributes": labels}, scores={"attr_orig": orig, "attr_prot": prot})

    recs = [rec({"Male": 1, "age": 30}, {"Male": 2.0, "age": 28.0}, {"Male": -1.0, "age": 35.0}),
            rec({"Male": 0, "age": 50}, {"Male": -3.0, "age": 52.0}, {"Male": -0.5, "age": 49.0})]
    assert attr_accuracy("attr_prot")(recs) == 0.5  # first flips to 'not male' (wrong), second stays right
    assert attr_accuracy("attr_orig")(recs) == 1.0
    assert attr_preservation(recs) == 0.5
    assert age_mae(recs) == pytest.approx((5 + 1) / 2)


def test_utility_protocol_end_to_end_with_a_torchscript_classifier(deepface, tmp_path):
    torch = pytest.importorskip("torch")

    class Constant(torch.nn.Module):  # says 'male' (logit 1) and 30 years for every face
        def forward(self, x):
            return torch.tensor([[1.0, 30.0]]).repeat(x.shape[0], 1)

    path = tmp_path / "attrs.pt"
    torch.jit.script(Constant()).save(str(path))
    root = _celeba_style(deepface, tmp_path / "celebahq",
                         csv_text="file,Male,age\nimg5.jpg,1,40\nimg12.jpg,0,30\nimg25.jpg,1,25\n")
    res = _run(root, "blur", tmp_path / "runs", roles=(f"attributes=torchscript:{path}?names=Male,age&size=32",))
    assert res.config.protocol == "attributes"
    assert res.n_errors == 0, [r.error for r in res.records if r.error]
    assert _value(res, "attr_accuracy") == pytest.approx(2 / 3)
    assert _value(res, "attr_preservation") == 1.0
    assert _value(res, "age_mae") == pytest.approx((10 + 0 + 5) / 3)
    assert 0 < _value(res, "ssim") < 1 and _value(res, "landmark_nme") > 0


def test_utility_protocol_without_a_classifier_reports_nan_attributes(deepface, tmp_path):
    import math

    root = _celeba_style(deepface, tmp_path / "celebahq", attr_text="3\nMale\nimg5.jpg 1\nimg12.jpg -1\nimg25.jpg 1\n")
    res = _run(root, "identity", tmp_path / "runs")
    assert math.isnan(_value(res, "attr_accuracy")) and _value(res, "ssim") == 1.0


# ---------------------------------------------------------------------------------------------- NIQE
@pytest.fixture(scope="module")
def niqe_model_file(tmp_path_factory):
    """A pristine NIQE model fitted on scikit-image's sample photos (the authors' .mat is not shipped)."""
    skdata = pytest.importorskip("skimage.data")
    from vision_models.niqe import fit_niqe_model, save_niqe_model

    path = tmp_path_factory.mktemp("niqe") / "pristine.npz"
    photos = [skdata.astronaut(), skdata.camera(), skdata.coffee(), skdata.rocket(), skdata.brick(), skdata.grass(),
              skdata.gravel(), skdata.immunohistochemistry()]  # enough sharp patches for a full-rank covariance
    save_niqe_model(fit_niqe_model(photos), path)
    return path


def test_niqe_role_scores_protected_images_and_their_originals(deepface, tmp_path, niqe_model_file):
    import numpy as np
    from PIL import Image

    from vision_models.faces.detect import load_image
    from vision_models.niqe import load_niqe_model, niqe

    model = load_niqe_model(niqe_model_file)
    root = _identity_tree(deepface, tmp_path / "faces", identities={"id03", "id05"})  # 4 images
    blurred = _run(root, "blur", tmp_path / "runs", roles=(f"niqe={niqe_model_file}",))
    assert blurred.n_errors == 0, [r.error for r in blurred.records if r.error]
    prot, orig = {}, {}  # recomputed here: every distinct protected image and its original, once each
    for r in blurred.records:
        for side in "ab":
            art = tmp_path / "runs" / "artifacts" / r.artifacts[side]
            prot[r.target[side]] = niqe(np.asarray(Image.open(art).convert("RGB")), model)
            orig[r.target[side]] = niqe(load_image(r.target[side]), model)
    assert len(prot) == 4
    assert _value(blurred, "niqe") == pytest.approx(np.mean(list(prot.values())), rel=1e-9)
    assert _value(blurred, "niqe_orig") == pytest.approx(np.mean(list(orig.values())), rel=1e-9)
    assert _value(blurred, "niqe") > _value(blurred, "niqe_orig")  # a blurred face is less natural
    assert "notes" not in blurred.report
    ident = _run(root, "identity", tmp_path / "runs", roles=(f"niqe={niqe_model_file}",))
    assert _value(ident, "niqe") == pytest.approx(_value(ident, "niqe_orig"), rel=1e-12)


def test_without_the_niqe_role_niqe_is_nan_with_a_note_and_a_missing_file_says_so(deepface, tmp_path):
    import math

    root = _identity_tree(deepface, tmp_path / "faces", identities={"id03", "id05"})
    plain = _run(root, "identity", tmp_path / "runs")
    assert math.isnan(_value(plain, "niqe")) and math.isnan(_value(plain, "niqe_orig"))
    assert any("--role niqe=PATH" in note for note in plain.report["notes"])
    missing = _run(root, "identity", tmp_path / "runs", roles=(f"niqe={tmp_path / 'modelparameters.mat'}",))
    assert missing.n_errors == len(missing.records) > 0
    assert all("weights missing: put modelparameters.mat" in r.error and "--role niqe=PATH" in r.error
               for r in missing.records)


def test_utility_protocol_reports_niqe_with_the_role(deepface, tmp_path, niqe_model_file):
    root = _celeba_style(deepface, tmp_path / "celebahq", attr_text="3\nMale\nimg5.jpg 1\nimg12.jpg -1\nimg25.jpg 1\n")
    res = _run(root, "pixelate", tmp_path / "runs", roles=(f"niqe={niqe_model_file}",))
    assert res.n_errors == 0, [r.error for r in res.records if r.error]
    assert len({r.scores["niqe_image"] for r in res.records}) == 3
    assert _value(res, "niqe") > _value(res, "niqe_orig") > 0
