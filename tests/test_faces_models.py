"""Face detector/recognisers, protections and quality metrics (vision_models.faces)."""

from __future__ import annotations

import numpy as np
import pytest

from harness.core import HarnessError

pytest.importorskip("dlib")
from vision_models.faces import protect, quality  # noqa: E402
from vision_models.faces.detect import detect_face, load_image, model_path  # noqa: E402
from vision_models.faces.recognizers import cosine, load_recognizer  # noqa: E402


@pytest.fixture(scope="module")
def dlib_rec():
    return load_recognizer("dlib")


@pytest.fixture
def deepface(shared_data):
    return shared_data("deepface_verification_pairs") / "images"


def test_model_files_are_read_by_path_without_pkg_resources():
    assert model_path("recognizer").name == "dlib_face_recognition_resnet_model_v1.dat"
    assert model_path("recognizer").is_file()


def test_dlib_same_person_is_closer_than_different_people(dlib_rec, deepface):
    # img1/img2 are one identity (id01 in identities.csv); img3 is another (id02).
    a, b, c = (load_image(deepface / f"img{i}.jpg") for i in (1, 2, 3))
    emb = dlib_rec.embed([a, b, c])
    assert emb.shape == (3, 128)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.05
    assert cosine(emb[0], emb[1]) == pytest.approx(float(emb[0] @ emb[1]), abs=1e-6)


def test_batched_and_one_at_a_time_embeddings_agree(dlib_rec, deepface):
    imgs = [load_image(deepface / f"img{i}.jpg") for i in (5, 12, 25)]
    batched = dlib_rec.embed(imgs)
    single = np.concatenate([dlib_rec.embed([im]) for im in imgs])
    assert np.allclose(batched, single, atol=1e-6)


def test_missing_face_is_reported_not_dropped(dlib_rec, deepface):
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    face = load_image(deepface / "img1.jpg")
    results = dlib_rec.embed_faces([noise, face])
    assert len(results) == 2
    assert results[0].vector is None and results[0].reason == "no face detected"
    assert results[1].vector is not None
    emb = dlib_rec.embed([noise, face])
    assert np.isnan(emb[0]).all() and np.isfinite(emb[1]).all()


def test_protected_image_is_embedded_with_the_originals_landmarks(dlib_rec, deepface):
    img = load_image(deepface / "img1.jpg")
    face = dlib_rec.detect(img)
    masked = protect.mask(img, face.box)
    assert detect_face(masked) is None  # the mask hides the face from the detector...
    res = dlib_rec.embed_faces([masked], faces=[face])[0]
    assert res.vector is not None  # ...but FDeID embeds the protected image at the original's face


@pytest.mark.parametrize("spec", ["facenet:/nonexistent/facenet.pt", "adaface:/nope/ada.pt", "arcface:/no/r100.onnx"])
def test_weight_needing_recognisers_say_which_file_is_missing(spec):
    with pytest.raises(HarnessError, match="weights missing: put .* at /n"):
        load_recognizer(spec)


def test_unknown_recogniser_and_missing_path():
    with pytest.raises(HarnessError, match="unknown recognizer"):
        load_recognizer("vggface")
    with pytest.raises(HarnessError, match="weights missing"):
        load_recognizer("facenet")


def test_torchscript_facenet_recogniser_runs(tmp_path, deepface):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8, stride=8), torch.nn.Flatten(), torch.nn.Linear(4 * 20 * 20, 16))
    path = tmp_path / "facenet.pt"
    torch.jit.trace(net.eval(), torch.zeros(1, 3, 160, 160)).save(str(path))
    rec = load_recognizer(f"facenet:{path}")
    emb = rec.embed([load_image(deepface / "img1.jpg"), load_image(deepface / "img2.jpg")])
    assert emb.shape == (2, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_onnx_arcface_recogniser_runs(tmp_path, deepface):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(3 * 112 * 112, 8)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 112, 112])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])], [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "arc.onnx"
    onnx.save(model, str(path))
    rec = load_recognizer(f"arcface:{path}")
    img = load_image(deepface / "img1.jpg")
    emb = rec.embed([img])
    assert emb.shape == (1, 8)
    # Independent check of the input convention: the aligned crop, (x - 127.5) / 127.5, NCHW, times w.
    from vision_models.faces.recognizers import align_112

    x = ((align_112(img, rec.detect(img)).astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1).reshape(1, -1)
    expect = x @ w
    assert np.allclose(emb[0], expect[0] / np.linalg.norm(expect), atol=1e-4)


# ------------------------------------------------------------------------------------------ protections
BOX = (10, 20, 50, 70)


def _img(seed: int = 0, shape=(96, 80, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _outside_unchanged(a: np.ndarray, b: np.ndarray, box=BOX) -> bool:
    x1, y1, x2, y2 = box
    m = np.ones(a.shape[:2], bool)
    m[y1:y2, x1:x2] = False
    return bool(np.array_equal(a[m], b[m]))


def test_mask_blacks_out_exactly_the_box():
    img = _img()
    out = protect.mask(img, BOX)
    assert (out[20:70, 10:50] == 0).all() and _outside_unchanged(img, out)


def test_blur_matches_opencv_with_the_even_kernel_made_odd():
    cv2 = pytest.importorskip("cv2")
    img = _img(1)
    out = protect.blur(img, BOX, kernel=60)
    expect = cv2.GaussianBlur(np.ascontiguousarray(img[20:70, 10:50]), (61, 61), 0)
    assert np.array_equal(out[20:70, 10:50], expect) and _outside_unchanged(img, out)


def test_pixelate_makes_constant_blocks():
    img = _img(2)
    out = protect.pixelate(img, BOX, block=8)  # 40x50 box -> 5x6 cells, nearest upsampling
    face = out[20:70, 10:50].astype(int)
    assert len(np.unique(face[:, :, 0])) <= 30 and _outside_unchanged(img, out)
    assert (face[0:8, 0:8] == face[0, 0]).all()


def test_noise_has_the_requested_sigma_and_is_seeded():
    img = np.full((200, 200, 3), 128, np.uint8)
    box = (0, 0, 200, 200)
    a = protect.gaussian_noise(img, box, 10.0, np.random.default_rng(5))
    b = protect.gaussian_noise(img, box, 10.0, np.random.default_rng(5))
    assert np.array_equal(a, b)
    assert (a.astype(float) - 128).std() == pytest.approx(10.0, rel=0.03)


def test_ksame_average_is_the_mean_of_the_k_nearest():
    img = np.zeros((40, 40, 3), np.uint8)
    refs = [np.full((40, 40, 3), v, np.uint8) for v in (10, 20, 200, 250)]
    # The face region is all 0: the nearest two references are 10 and 20 -> mean 15 at the ellipse centre.
    out = protect.ksame(img, (0, 0, 40, 40), refs, k=2, variant="average")
    assert out[20, 20, 0] == 15
    sel = protect.ksame(img, (0, 0, 40, 40), refs, k=2, variant="select", rng=np.random.default_rng(0))
    assert sel[20, 20, 0] in (10, 20)


# --------------------------------------------------------------------------------------------- quality
def test_ssim_rgb_matches_scikit_image():
    from skimage.metrics import structural_similarity

    a = _img(3, (64, 72, 3))
    b = np.clip(a.astype(int) + np.random.default_rng(4).normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    expect = structural_similarity(a, b, channel_axis=2, data_range=255, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False)
    assert quality.ssim(a, b) == pytest.approx(expect, abs=1e-9)
    assert quality.ssim(a, a) == pytest.approx(1.0)


def test_psnr_matches_scikit_image_and_caps_identical_images():
    from skimage.metrics import peak_signal_noise_ratio

    a, b = _img(5), _img(6)
    assert quality.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-9)
    assert quality.psnr(a, a) == quality.PSNR_CAP_DB


def test_fid_matches_the_sqrtm_formula():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(200, 16)), rng.normal(0.3, 1.2, size=(150, 16))
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    expect = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real))
    assert quality.fid_from_features(x, y) == pytest.approx(expect, rel=1e-6)
    assert quality.fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)


def test_lpips_by_hand():
    # One layer, one position, two channels: (3,4)/5 vs (4,3)/5 -> squared difference 0.04 + 0.04.
    fa = np.array([3.0, 4.0]).reshape(1, 2, 1, 1)
    fb = np.array([4.0, 3.0]).reshape(1, 2, 1, 1)
    assert quality.lpips_distance([fa], [fb])[0] == pytest.approx(0.08)
    assert quality.lpips_distance([fa], [fb], lin=[np.array([1.0, 0.0])])[0] == pytest.approx(0.04)


def test_tiny_random_feature_net_and_weights_missing():
    net = quality.feature_net("tiny-random:1")
    a, b = _img(8, (64, 64, 3)), _img(9, (64, 64, 3))
    d = net.lpips([a, a], [a, b])
    assert d[0] == pytest.approx(0.0, abs=1e-9) and d[1] > 0
    assert net.features([a, b, a]).shape == (3, 32)
    with pytest.raises(HarnessError, match="weights missing: put .* at /no/vgg.pt"):
        quality.feature_net("vgg:/no/vgg.pt")


def test_zero_padded_ssim_matches_a_same_size_convolution_by_scipy():
    from scipy.signal import correlate2d

    a = _img(10, (40, 36, 3)).astype(float) / 255
    b = np.clip(a + np.random.default_rng(11).normal(0, 0.1, a.shape), 0, 1)
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g / g.sum(), g / g.sum())

    def conv(z):
        return correlate2d(z, w, mode="same", boundary="fill", fillvalue=0)

    vals = []
    for c in range(3):
        p, q = a[:, :, c], b[:, :, c]
        m1, m2 = conv(p), conv(q)
        s11, s22, s12 = conv(p * p) - m1**2, conv(q * q) - m2**2, conv(p * q) - m1 * m2
        c1, c2 = 0.01**2, 0.03**2
        vals.append((((2 * m1 * m2 + c1) * (2 * s12 + c2)) / ((m1**2 + m2**2 + c1) * (s11 + s22 + c2))).mean())
    assert quality.ssim(a, b, data_range=1.0, padding="zero") == pytest.approx(np.mean(vals), abs=1e-9)


def test_landmark_nme_by_hand():
    from vision_models.faces.detect import landmark_nme

    ref = np.zeros((68, 2))
    ref[36], ref[45] = (0, 0), (10, 0)  # inter-ocular distance 10
    pred = ref.copy()
    pred[:, 1] += 2  # every point 2 px off: NME 0.2
    assert landmark_nme(ref, pred) == pytest.approx(0.2)


def test_landmarks_of_an_unchanged_image_agree(deepface):
    from vision_models.faces.detect import landmark_nme, landmarks_at

    img = load_image(deepface / "img25.jpg")
    box = detect_face(img).box
    assert landmark_nme(landmarks_at(img, box), landmarks_at(img.copy(), box)) == 0.0


def test_attribute_classifier_specs(deepface):
    from vision_models.faces.attributes import load_attribute_classifier

    with pytest.raises(HarnessError, match=r"weights missing: put the attribute network .* at /no/attrs.pt"):
        load_attribute_classifier("torchscript:/no/attrs.pt?names=Male")
    with pytest.raises(HarnessError, match="give the outputs' names"):
        load_attribute_classifier("torchscript:/no/attrs.pt")
    clf = load_attribute_classifier("tiny-random:3")
    img = load_image(deepface / "img25.jpg")
    preds = clf.predict([img, img], [detect_face(img)] * 2)
    assert list(preds[0]) == ["attr0", "attr1", "attr2"] and preds[0] == preds[1]
