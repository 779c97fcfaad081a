"""face_anon: re-ID rate (preset / FAR 1 % threshold), SSIM/PSNR paired by file name, FID, end to end."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.core import DataError, Record

pytest.importorskip("dlib")
from tasks.face_anon.loader import image_samples  # noqa: E402
from tasks.face_anon.scorer import far_threshold, reid_rate, reid_threshold  # noqa: E402
from tasks.face_anon.solvers import match_by_name  # noqa: E402


@pytest.fixture
def deepface(shared_data):
    return shared_data("deepface_verification_pairs")


def _rec(i, sim, ident, emb, preset=None):
    return Record(f"s{i}", "test", None, scores={"sim": sim, "orig_embedding": emb, "preset_threshold": preset},
                  groups={"identity": ident})


def test_reid_rate_uses_facenets_preset_threshold_strictly():
    recs = [_rec(0, 0.5, "a", [1, 0]), _rec(1, 0.409131, "b", [0, 1]), _rec(2, 0.2, "c", [1, 1]),
            _rec(3, None, "d", [1, 2])]
    for r in recs:
        r.scores["preset_threshold"] = 0.409131
    assert reid_threshold(recs) == 0.409131
    assert reid_rate(recs) == pytest.approx(1 / 4)  # only 0.5 > t (0.409131 itself is not above it)


def test_far_threshold_lets_at_most_one_percent_of_impostors_through():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(300, 16))
    ids = [str(i // 3) for i in range(300)]  # 100 identities of 3 images
    t = far_threshold(emb, ids)
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = e @ e.T
    imp = [sims[i, j] for i in range(300) for j in range(i + 1, 300) if ids[i] != ids[j]]
    far = np.mean(np.array(imp) > t)
    assert far <= 0.01 and np.mean(np.array(imp) >= t) > 0.0099  # the tightest such threshold
    assert len(imp) == 300 * 299 // 2 - 100 * 3  # genuine pairs are excluded


def test_loader_reads_identities_csv_and_names(deepface):
    samples = image_samples(deepface)
    assert len(samples) == 25
    s1 = next(s for s in samples if s.target["name"] == "img1.jpg")
    assert s1.groups["identity"] == "id01"


def test_match_by_name_ignores_listing_order_and_extension(tmp_path):
    d = tmp_path / "anon"
    d.mkdir()
    names = [f"{i}.png" for i in range(20)]
    random.Random(0).shuffle(names)
    for n in names:  # created in shuffled order
        (d / n).write_bytes(b"x")
    assert match_by_name(d, "7.jpg") == d / "7.png"
    with pytest.raises(DataError, match="no anonymised image named 99"):
        match_by_name(d, "99.jpg")


def _run(data: Path, solver: str, out: Path, roles=(), **options):
    from harness.runner import RunConfig, RunSettings, run

    cfg = RunConfig(task="face_anon", solver=solver, solver_options=tuple(options.items()), roles=tuple(roles),
                    n_boot=20)
    return run(cfg, RunSettings(data=data, out_dir=out, show_progress=False, concurrency=4))


def _small_set(deepface: Path, dest: Path, names=("img12.jpg", "img16.jpg", "img25.jpg", "img5.jpg")) -> Path:
    (dest / "images").mkdir(parents=True)
    for n in names:
        os.symlink(deepface / "images" / n, dest / "images" / n)
    return dest


def test_precomputed_pairs_by_file_name_with_shuffled_listing(deepface, tmp_path):
    from vision_models.faces import quality
    from vision_models.faces.detect import detect_face, load_image
    from vision_models.faces.protect import mask

    root = _small_set(deepface, tmp_path / "data")
    anon = tmp_path / "anon"
    anon.mkdir()
    names = sorted(p.name for p in (root / "images").iterdir())
    # img5 keeps its face; the others are masked: a name-paired scorer re-identifies exactly one image.
    order = names[:]
    random.Random(3).shuffle(order)
    for n in order:
        img = load_image(root / "images" / n)
        out = img if n == "img5.jpg" else mask(img, detect_face(img).box)
        from PIL import Image

        Image.fromarray(out).save(anon / (Path(n).stem + ".png"))
    res = _run(root, "precomputed", tmp_path / "runs", dir=str(anon))
    assert res.n_errors == 0, [r.error for r in res.records if r.error]
    by_name = {Path(r.sample_id).name: r for r in res.records}
    assert by_name["img5.jpg"].scores["sim"] == pytest.approx(1.0, abs=1e-6)
    assert by_name["img5.jpg"].scores["ssim"] == pytest.approx(1.0)
    assert res.metrics["re_id_rate"].value == pytest.approx(1 / 4)
    # Independent SSIM of one masked pair, computed here from the two files.
    orig = load_image(root / "images" / "img12.jpg")
    prot = load_image(anon / "img12.png")
    from PIL import Image as I

    def r512(a):
        return np.asarray(I.fromarray(a).resize((512, 512), I.BILINEAR)) / 255.0

    assert by_name["img12.jpg"].scores["ssim"] == pytest.approx(
        quality.ssim(r512(orig), r512(prot), data_range=1.0, padding="zero"), abs=1e-9)
    assert by_name["img12.jpg"].scores["psnr"] == pytest.approx(quality.psnr(orig, prot), abs=1e-9)
    assert np.isnan(res.metrics["fid"].value)  # no fid role: not computed, not faked


def test_blur_with_tiny_random_fid_end_to_end(deepface, tmp_path):
    root = _small_set(deepface, tmp_path / "data")
    res = _run(root, "blur", tmp_path / "runs", roles=("fid=tiny-random:0",))
    assert res.n_errors == 0, [r.error for r in res.records if r.error]
    assert np.isfinite(res.metrics["fid"].value) and res.metrics["fid"].value > 0
    assert 0 < res.metrics["ssim"].value < 1


def test_identity_copy_gives_zero_fid_and_full_reid(deepface, tmp_path):
    root = _small_set(deepface, tmp_path / "data")
    anon = tmp_path / "anon"
    shutil.copytree(root / "images", anon, symlinks=False)
    res = _run(root, "precomputed", tmp_path / "runs", roles=("fid=tiny-random:0",), dir=str(anon))
    assert res.metrics["re_id_rate"].value == 1.0
    assert res.metrics["fid"].value == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------------- sd-inpaint-guided
def test_region_mask_keeps_the_chosen_parts(deepface):
    from vision_models.faces.anonymize import region_mask
    from vision_models.faces.detect import detect_face, load_image

    img = load_image(deepface / "images" / "img25.jpg")
    lm = detect_face(img, points=68).landmarks
    full = region_mask(img.shape, lm)
    kept = region_mask(img.shape, lm, keep=("eyes", "mouth"))
    for i in (*range(36, 48), *range(48, 60)):
        x, y = np.round(lm[i]).astype(int)
        assert full[y, x] and not kept[y, x]
    x, y = np.round(lm[30]).astype(int)  # the nose tip is regenerated either way
    assert full[y, x] and kept[y, x]
    assert kept.sum() < full.sum() and not (kept & ~full).any()
    with pytest.raises(ValueError, match="unknown face part"):
        region_mask(img.shape, lm, keep=("ears",))


def test_guided_inpainting_keeps_parts_and_guidance_moves_the_result(deepface):
    pytest.importorskip("diffusers")
    from vision_models.diffusion import load_pipeline
    from vision_models.faces import quality
    from vision_models.faces.anonymize import attribute_loss, inpaint_guided, region_mask
    from vision_models.faces.detect import detect_face, load_image

    img = load_image(deepface / "images" / "img25.jpg")
    lm = detect_face(img, points=68).landmarks
    mask = region_mask(img.shape, lm, keep=("eyes",))
    pipe = load_pipeline("inpaint", "tiny-random", "cpu")
    plain = inpaint_guided(pipe, img, mask, "a face", seed=3, steps=2, size=64)
    assert np.array_equal(plain[~mask], img[~mask])  # kept eyes and everything outside the face: untouched
    assert not np.array_equal(plain[mask], img[mask])
    loss = attribute_loss(quality.feature_net("tiny-random:0"), img, 64)
    guided = inpaint_guided(pipe, img, mask, "a face", loss=loss, scale=0.5, seed=3, steps=2, size=64)
    assert np.array_equal(guided[~mask], img[~mask])
    assert not np.array_equal(guided, plain)  # the gradient correction changed the latents


def test_sd_inpaint_guided_end_to_end_on_tiny_random(deepface, tmp_path):
    pytest.importorskip("diffusers")
    root = _small_set(deepface, tmp_path / "data", names=("img25.jpg", "img5.jpg"))
    res = _run(root, "sd-inpaint-guided", tmp_path / "runs", model="tiny-random", steps=2, size=64,
               keep="eyes,mouth", attr_net="tiny-random", attr_scale=0.2)
    assert res.n_errors == 0, [r.error for r in res.records if r.error]
    assert 0 < res.metrics["ssim"].value < 1
    assert all(r.info["faces"]["image"]["kept"] == ["eyes", "mouth"] for r in res.records)


@pytest.mark.gpu
def test_guided_inpainting_on_the_gpu(deepface):
    pytest.importorskip("diffusers")
    from vision_models.diffusion import load_pipeline
    from vision_models.faces import quality
    from vision_models.faces.anonymize import attribute_loss, inpaint_guided, region_mask
    from vision_models.faces.detect import detect_face, load_image

    img = load_image(deepface / "images" / "img25.jpg")
    mask = region_mask(img.shape, detect_face(img, points=68).landmarks, keep=("mouth",))
    net = quality.feature_net("tiny-random:0")
    net.module = net.module.cuda()
    out = inpaint_guided(load_pipeline("inpaint", "tiny-random", "cuda"), img, mask, "a face",
                         loss=attribute_loss(net, img, 64), scale=0.2, seed=0, steps=2, size=64)
    assert np.array_equal(out[~mask], img[~mask])


def test_precomputed_in_an_identity_tree_matches_within_the_identity_folder(shared_data, tmp_path):
    from PIL import Image

    from vision_models.faces.detect import load_image

    src = shared_data("facenet_pytorch_aligned_faces") / "test_images_aligned"  # every file is 1.png
    anon = tmp_path / "anon"
    for d in sorted(src.iterdir()):
        (anon / d.name).mkdir(parents=True)
        Image.fromarray(load_image(d / "1.png")).save(anon / d.name / "1.png")
    res = _run(src, "precomputed", tmp_path / "runs", dir=str(anon))
    assert res.n_errors == 0, [r.error for r in res.records if r.error]
    assert all(r.scores["sim"] == pytest.approx(1.0, abs=1e-6) for r in res.records)  # each to its own original


def test_an_original_without_a_detectable_face_is_that_images_error_naming_it(deepface, tmp_path):
    from PIL import Image

    from tasks.face_anon.scorer import ImageScorer
    from vision_models.faces.detect import load_image

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    scorer = ImageScorer.build("dlib", "none")
    with pytest.raises(DataError, match="blank.png: no face detected in the original, so re-identification"):
        scorer.score({"image": str(blank)}, {"image": str(blank)}, load_image)
    face = str(deepface / "images" / "img1.jpg")
    assert scorer.score({"image": face}, {"image": face}, load_image)["sim"] == pytest.approx(1.0)


def test_a_latin1_or_truncated_identities_file_is_a_data_error(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    (tmp_path / "identities.csv").write_bytes("file,identity_id\na.jpg,Jos\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="identities.csv: not utf-8"):
        image_samples(tmp_path)
    (tmp_path / "identities.csv").write_text("file,identity_id\na.jpg\n")
    with pytest.raises(DataError, match="identities.csv: row 2 has fewer fields"):
        image_samples(tmp_path)
