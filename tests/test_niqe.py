"""NIQE (vision_models/niqe.py): estimators, image steps and the distance, each against an independent
computation; the score's behaviour on natural images (scikit-image's sample pictures) under blur and noise;
model files (.mat as MATLAB's modelparameters.mat, .npz) and the "weights missing" error."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import gamma

from harness.core import HarnessError
from vision_models import niqe as N

skimage_data = pytest.importorskip("skimage.data")


def _aggd_sample(alpha: float, beta_l: float, beta_r: float, n: int, seed: int) -> np.ndarray:
    """An AGGD sample built by hand: density alpha / ((bl + br) Gamma(1/alpha)) exp(-(|x| / b_side)^alpha),
    so P(x < 0) = bl / (bl + br) and |x| / b_side is |gennorm(alpha)|."""
    rng = np.random.default_rng(seed)
    mag = np.abs(stats.gennorm.rvs(alpha, size=n, random_state=rng))
    left = rng.random(n) < beta_l / (beta_l + beta_r)
    return np.where(left, -beta_l * mag, beta_r * mag)


# ------------------------------------------------------------------------------------ estimators
@pytest.mark.parametrize("beta,scale", [(0.6, 1.0), (1.0, 0.3), (2.0, 2.0), (3.5, 0.7)])
def test_ggd_recovers_gennorm_shape_and_variance(beta, scale):
    x = stats.gennorm.rvs(beta, scale=scale, size=400_000, random_state=np.random.default_rng(1))
    alpha, var = N.ggd_params(x)
    assert alpha == pytest.approx(beta, rel=0.04)
    assert var == pytest.approx(scale**2 * gamma(3 / beta) / gamma(1 / beta), rel=0.02)


@pytest.mark.parametrize("beta,scale", [(0.8, 1.0), (2.0, 0.5), (3.0, 1.5)])
def test_aggd_of_a_symmetric_gennorm_sample_gives_equal_scales(beta, scale):
    x = stats.gennorm.rvs(beta, scale=scale, size=400_000, random_state=np.random.default_rng(2))
    alpha, bl, br = N.aggd_params(x)
    assert alpha == pytest.approx(beta, rel=0.04)
    assert bl == pytest.approx(scale, rel=0.03) and br == pytest.approx(scale, rel=0.03)


@pytest.mark.parametrize("alpha,bl,br", [(1.5, 0.5, 1.5), (0.7, 2.0, 0.4), (2.5, 1.0, 3.0)])
def test_aggd_recovers_an_asymmetric_hand_built_distribution(alpha, bl, br):
    x = _aggd_sample(alpha, bl, br, 400_000, seed=3)
    a, l_hat, r_hat = N.aggd_params(x)
    assert a == pytest.approx(alpha, rel=0.05)
    assert l_hat == pytest.approx(bl, rel=0.04) and r_hat == pytest.approx(br, rel=0.04)


def test_aggd_rows_match_one_at_a_time_and_degenerate_rows_are_nan():
    rows = np.stack([_aggd_sample(1.2, 0.5, 1.0, 5000, s) for s in range(4)] + [np.zeros(5000)])
    a, bl, br = N.aggd_params_rows(rows)
    for i in range(4):
        assert (a[i], bl[i], br[i]) == pytest.approx(N.aggd_params(rows[i]))
    assert np.isnan([a[4], bl[4], br[4]]).all()


# ----------------------------------------------------------------------------------- image steps
def test_mscn_matches_a_replicate_padded_correlation_with_matlabs_gaussian():
    from scipy.signal import correlate2d
    from scipy.signal.windows import gaussian as gauss1d

    img = N.to_gray(skimage_data.astronaut())[100:180, 200:290]
    w = np.outer(gauss1d(7, 7 / 6), gauss1d(7, 7 / 6))
    w /= w.sum()
    padded = np.pad(img, 3, mode="edge")  # imfilter(..., 'replicate')
    mu = correlate2d(padded, w, mode="valid")
    sigma = np.sqrt(np.abs(correlate2d(padded**2, w, mode="valid") - mu**2))
    got, got_sigma = N.mscn(img)
    np.testing.assert_allclose(got_sigma, sigma, atol=1e-8)
    np.testing.assert_allclose(got, (img - mu) / (sigma + 1), atol=1e-10)


def test_half_size_bicubic_matches_pillow_inside_and_keeps_constants():
    from PIL import Image

    img = N.to_gray(skimage_data.camera())
    ours = N.imresize_bicubic(img, 0.5)
    assert ours.shape == (256, 256)
    # Pillow's bicubic (a = -0.5, support widened by the factor) agrees away from the borders, where MATLAB
    # mirrors the image and Pillow renormalises the clipped kernel.
    pil = np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((256, 256), Image.BICUBIC))
    np.testing.assert_allclose(ours[3:-3, 3:-3], pil[3:-3, 3:-3], atol=1e-3)
    np.testing.assert_allclose(N.imresize_bicubic(np.full((50, 38), 7.0), 0.5), 7.0, atol=1e-12)


def test_rgb_to_grey_uses_matlabs_rgb2gray_rounded():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 200, 30]]], np.uint8)
    expect = np.round(np.array([76.2287, 149.6960, 29.0753, 0.298936 * 10 + 0.587043 * 200 + 0.114021 * 30]))
    np.testing.assert_array_equal(N.to_gray(rgb)[0], expect)


def test_block_features_by_hand_for_one_block():
    img = N.to_gray(skimage_data.coffee())[:96, :192]
    structdis, _ = N.mscn(img)
    feats = N.block_features(structdis, 96)
    assert feats.shape == (2, 18)
    block = structdis[:, 96:]  # the second block, its neighbours by explicit circular slicing
    a, bl, br = N.aggd_params(block)
    expect = [a, (bl + br) / 2]
    right = np.concatenate([block[:, -1:], block[:, :-1]], axis=1)  # x(i, j - 1)
    down = np.concatenate([block[-1:], block[:-1]], axis=0)  # x(i - 1, j)
    diag = np.concatenate([down[:, -1:], down[:, :-1]], axis=1)  # x(i - 1, j - 1)
    anti = np.concatenate([down[:, 1:], down[:, :1]], axis=1)  # x(i - 1, j + 1): circshift [1 -1]
    for nb in (right, down, diag, anti):
        a, bl, br = N.aggd_params(block * nb)
        expect += [a, (br - bl) * gamma(2 / a) / gamma(1 / a), bl, br]
    np.testing.assert_allclose(feats[1], expect, rtol=1e-12)


def test_patch_features_shape_and_too_small_images():
    feats, sharp = N.patch_features(skimage_data.chelsea())  # 300 x 451 -> 3 x 4 patches
    assert feats.shape == (12, 36) and sharp.shape == (12,)
    with pytest.raises(ValueError, match="smaller than one 96x96 patch"):
        N.patch_features(np.zeros((95, 400), np.uint8))


# ----------------------------------------------------------------------------------------- score
def test_distance_is_the_pinv_mahalanobis_form():
    from scipy.spatial.distance import mahalanobis

    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(50, 5)), rng.normal(size=(60, 5)) + 0.3
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    m1, m2 = a.mean(0), b.mean(0)
    expect = mahalanobis(m1, m2, np.linalg.inv((s1 + s2) / 2))
    assert N.niqe_distance(m1, s1, m2, s2) == pytest.approx(expect, rel=1e-10)
    # singular covariances: the Moore-Penrose inverse (a rank-1 sum: only the component along it counts)
    v = np.array([1.0, 2.0, 0.0])
    s = np.outer(v, v)
    d = np.array([0.5, 1.0, 3.0])
    expect = np.sqrt(d @ np.linalg.pinv(s) @ d)
    assert N.niqe_distance(d, s, np.zeros(3), s) == pytest.approx(expect, rel=1e-10)


def test_an_image_scored_against_its_own_patch_gaussian_is_zero():
    img = skimage_data.astronaut()
    feats, _ = N.patch_features(img)
    assert np.isfinite(feats).all()
    own = N.NiqeModel(feats.mean(0), np.cov(feats, rowvar=False))
    assert N.niqe(img, own) == pytest.approx(0.0, abs=1e-6)
    shifted = N.NiqeModel(feats.mean(0) + 0.1 * feats.std(0), np.cov(feats, rowvar=False))
    assert N.niqe(img, shifted) > 0.1


@pytest.fixture(scope="module")
def pristine():
    images = [skimage_data.astronaut(), skimage_data.camera(), skimage_data.coffee(), skimage_data.rocket(),
              skimage_data.brick(), skimage_data.grass(), skimage_data.gravel(), skimage_data.immunohistochemistry()]
    return N.fit_niqe_model(images)


@pytest.mark.parametrize("name", ["coins", "chelsea"])
def test_niqe_rises_with_blur_and_noise(pristine, name):
    from scipy.ndimage import gaussian_filter

    img = getattr(skimage_data, name)().astype(np.float64)
    sig = (1.5, 1.5, 0)[: img.ndim]
    rng = np.random.default_rng(5)
    clean = N.niqe(img, pristine)
    assert N.niqe(gaussian_filter(img, sig), pristine) > clean + 1
    assert N.niqe(gaussian_filter(img, tuple(2 * s for s in sig)), pristine) > N.niqe(gaussian_filter(img, sig),
                                                                                        pristine)
    assert N.niqe(np.clip(img + rng.normal(0, 25, img.shape), 0, 255), pristine) > clean + 1


def test_the_pristine_fit_keeps_the_sharp_patches(pristine):
    img = skimage_data.astronaut()
    feats, sharp = N.patch_features(img)
    keep = sharp > 0.75 * sharp.max()
    assert 0 < keep.sum() < len(keep)
    copies = N.fit_niqe_model([img] * 8)  # the same sharp patches eight times: 8 x keep.sum() > 36 rows
    np.testing.assert_allclose(copies.mu, feats[keep].mean(0), rtol=1e-12)
    np.testing.assert_allclose(copies.cov, np.cov(np.concatenate([feats[keep]] * 8), rowvar=False), rtol=1e-10)
    with pytest.raises(ValueError, match="sharp patches from 1 images; a full-rank covariance"):
        N.fit_niqe_model([img])  # too few patches for 36 features


def test_flat_patches_are_left_out_not_counted():
    img = skimage_data.astronaut().copy()
    img[:192, :192] = 0  # four flat patches (a black mask)
    feats, _ = N.patch_features(img)
    assert np.isnan(feats[:, :18]).any(axis=1).sum() >= 4
    complete = feats[np.isfinite(feats).all(axis=1)]
    mu, cov = N.nan_gaussian(feats)
    np.testing.assert_allclose(cov, np.cov(complete, rowvar=False))
    assert np.isfinite(N.niqe(img, N.NiqeModel(mu, cov)))


# ----------------------------------------------------------------------------------------- files
def test_model_files_mat_and_npz_round_trip(pristine, tmp_path):
    from scipy.io import savemat

    savemat(tmp_path / "modelparameters.mat", {"mu_prisparam": pristine.mu[None, :], "cov_prisparam": pristine.cov})
    N.save_niqe_model(pristine, tmp_path / "model.npz")
    img = skimage_data.coins()
    expect = N.niqe(img, pristine)
    for name in ("modelparameters.mat", "model.npz"):
        model = N.load_niqe_model(tmp_path / name)
        np.testing.assert_array_equal(model.mu, pristine.mu)
        assert N.niqe(img, model) == pytest.approx(expect, rel=1e-12)


def test_missing_or_bad_model_files_are_clear_errors(tmp_path):
    with pytest.raises(HarnessError, match=r"weights missing: put modelparameters\.mat .* at .*nope\.mat or pass "
                                           r"--role niqe=PATH"):
        N.load_niqe_model(tmp_path / "nope.mat")
    with pytest.raises(HarnessError, match="weights missing"):
        N.niqe(skimage_data.coins(), None)
    np.savez(tmp_path / "short.npz", mu=np.zeros(18), cov=np.eye(18))
    with pytest.raises(HarnessError, match=r"short\.npz: NIQE model needs .* mu of 36"):
        N.load_niqe_model(tmp_path / "short.npz")
    np.savez(tmp_path / "keys.npz", mean=np.zeros(36))
    with pytest.raises(HarnessError, match=r"keys\.npz: NIQE model lacks 'mu'"):
        N.load_niqe_model(tmp_path / "keys.npz")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file")
    with pytest.raises(HarnessError, match=r"junk\.mat: cannot read the NIQE model"):
        N.load_niqe_model(tmp_path / "junk.mat")


def test_command_line_fit_then_score(tmp_path, capsys):
    from PIL import Image

    paths = []
    for name in ("astronaut", "coffee", "rocket"):
        paths.append(str(tmp_path / f"{name}.png"))
        Image.fromarray(getattr(skimage_data, name)()).save(paths[-1])
    assert N.main(["fit", str(tmp_path / "m.npz"), *paths, "--sharpness", "0"]) == 0  # all 73 patches
    assert N.main(["score", str(tmp_path / "m.npz"), paths[0]]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    model = N.load_niqe_model(tmp_path / "m.npz")
    assert float(out.split("\t")[0]) == pytest.approx(N.niqe(np.asarray(Image.open(paths[0]).convert("RGB")), model),
                                                      abs=1e-4)
