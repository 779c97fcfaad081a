"""NIQE, the Natural Image Quality Evaluator (Mittal, Soundararajan, Bovik 2013, "Making a completely
blind image quality analyzer"): a no-reference score, lower = closer to natural, undistorted images.

Why its own module: NIQE needs no reference image (unlike SSIM/PSNR/LPIPS in `faces/quality.py`), only a
"pristine" multivariate Gaussian (mu, cov) of patch features fitted once on natural images. That model is
not shipped here (the authors' `modelparameters.mat` from `niqe_release.zip`, which pyiqa downloads), so
`load_niqe_model(PATH)` reads the user's copy (`.mat` with `mu_prisparam`/`cov_prisparam`, or `.npz` with
`mu`/`cov`) and refuses a missing file with "weights missing"; `fit_niqe_model(images)` builds one from
the user's own pristine images (`python -m vision_models.niqe fit OUT.npz IMG...`).

The computation follows the authors' MATLAB release (`computequality.m`, `computefeature.m`,
`estimateaggdparam.m`), which produced the shipped model parameters:
- grey image (MATLAB `rgb2gray` weights, rounded for uint8 input), cropped to whole 96x96 patches;
- MSCN coefficients (x - mu) / (sigma + 1), mu and sigma from a 7x7 Gaussian window (sigma 7/6,
  normalised), filtered with replicated borders as `imfilter(im, window, 'replicate')` (BRISQUE's code
  uses zero-padded `filter2`; NIQE's does not);
- per patch 18 features: AGGD fit of the MSCN coefficients (shape, mean of the left/right scales), and for
  the products with the horizontal, vertical and both diagonal neighbours (circular shifts within the
  patch) the AGGD shape, mean (beta_r - beta_l) Gamma(2/a)/Gamma(1/a), beta_l and beta_r; AGGD/GGD
  parameters by moment matching against a lookup of the shape on 0.2:0.001:10;
- the same 18 at a second scale: the image resized by 0.5 (MATLAB `imresize`: bicubic a = -0.5,
  antialiased, mirrored borders), patches 48x48, so 36 features per patch;
- at test time every patch is used (the sharpness selection, patches with mean sigma > 0.75 x the image's
  largest, only builds the pristine model); the test image's patch features get a Gaussian fit (NaN
  ignored per column for the mean, rows with a NaN dropped for the covariance, MATLAB's nanmean/nancov),
  and NIQE = sqrt((mu1 - mu2)^T ((S1 + S2) / 2)^+ (mu1 - mu2)).
Departure: a flat patch (all MSCN coefficients zero, e.g. inside a black mask) has no AGGD fit; here all
its features are NaN, so it leaves the mean and the covariance alike (MATLAB's `min` over NaN would put
shape 0.2 into the mean of the shape columns while dropping the patch from the covariance).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import gamma as _gamma

from harness.core import HarnessError

PATCH = 96
N_FEATURES = 36
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # computefeature.m's circshifts: horizontal, vertical, two diagonals
_GAM = np.round(0.2 + 0.001 * np.arange(9801), 3)  # 0.2:0.001:10
_R_AGGD = _gamma(2 / _GAM) ** 2 / (_gamma(1 / _GAM) * _gamma(3 / _GAM))
_R_GGD = _gamma(1 / _GAM) * _gamma(3 / _GAM) / _gamma(2 / _GAM) ** 2
RGB2GRAY = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])  # MATLAB rgb2gray
MODEL_HELP = ("NIQE's pristine model: modelparameters.mat from the authors' niqe_release.zip (mu_prisparam, "
              "cov_prisparam), or an .npz with mu (36) and cov (36x36), e.g. from `python -m vision_models.niqe fit`")


# ------------------------------------------------------------------------------------ distributions
def ggd_params(x: np.ndarray) -> tuple[float, float]:
    """Generalised Gaussian (zero mean) fit by moment matching: (shape alpha, variance sigma^2).

    rho = E[x^2] / E[|x|]^2 is matched to Gamma(1/a) Gamma(3/a) / Gamma(2/a)^2 on the lookup grid (BRISQUE's
    `estimateggdparam`). scipy's gennorm(beta, scale) has alpha = beta, sigma^2 = scale^2 Gamma(3/b)/Gamma(1/b).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    var = float(np.mean(x**2))
    mean_abs = float(np.mean(np.abs(x)))
    if not (var > 0 and np.isfinite(var)):
        return float("nan"), float("nan")
    rho = var / mean_abs**2
    return float(_GAM[np.argmin(np.abs(rho - _R_GGD))]), var


def aggd_params(x: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (shape alpha, left scale beta_l, right beta_r).

    As `estimateaggdparam.m`: left/right standard deviations from the negative/positive values, gamma_hat =
    sigma_l / sigma_r, r_hat = E|x|^2 / E[x^2] normalised by (g^3 + 1)(g + 1) / (g^2 + 1)^2, the shape whose
    Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) is nearest, beta = sigma sqrt(Gamma(1/a) / Gamma(3/a)). A sample
    without negative or without positive values gives NaN."""
    a, bl, br = aggd_params_rows(np.asarray(x, dtype=np.float64).reshape(1, -1))
    return float(a[0]), float(bl[0]), float(br[0])


def aggd_params_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`aggd_params` of every row of an [n, m] array at once."""
    neg, pos = x < 0, x > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt((x**2 * neg).sum(1) / neg.sum(1))
        right = np.sqrt((x**2 * pos).sum(1) / pos.sum(1))
        g = left / right
        rhat = np.mean(np.abs(x), 1) ** 2 / np.mean(x**2, 1)
        rnorm = rhat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    ok = np.isfinite(rnorm)
    alpha = np.full(len(x), np.nan)
    if ok.any():
        alpha[ok] = _GAM[np.argmin((_R_AGGD[None, :] - rnorm[ok, None]) ** 2, axis=1)]
    with np.errstate(invalid="ignore"):
        k = np.sqrt(_gamma(1 / alpha) / _gamma(3 / alpha))
    return alpha, left * k, right * k


# ------------------------------------------------------------------------------------- image steps
def to_gray(image: np.ndarray) -> np.ndarray:
    """float64 grey image: RGB(A) by MATLAB's rgb2gray weights (rounded for uint8, as rgb2gray returns uint8)."""
    im = np.asarray(image)
    if im.ndim == 3 and im.shape[2] == 1:
        im = im[:, :, 0]
    if im.ndim == 3:
        if im.shape[2] not in (3, 4):
            raise ValueError(f"NIQE: expected a grey or RGB image, got shape {im.shape}")
        grey = im[:, :, :3].astype(np.float64) @ RGB2GRAY
        return np.round(grey) if im.dtype == np.uint8 else grey
    if im.ndim != 2:
        raise ValueError(f"NIQE: expected a grey or RGB image, got shape {im.shape}")
    return im.astype(np.float64)


def gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    """MATLAB `fspecial('gaussian', size, sigma)`, normalised to sum 1."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def mscn(image: np.ndarray, c: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(MSCN coefficients, local sigma) of a grey float image; borders replicated (MATLAB imfilter 'replicate')."""
    from scipy.ndimage import correlate

    w = gaussian_window()
    mu = correlate(image, w, mode="nearest")
    sigma = np.sqrt(np.abs(correlate(image * image, w, mode="nearest") - mu * mu))
    return (image - mu) / (sigma + c), sigma


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return ((1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
            + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _resize_matrix(n_in: int, scale: float) -> np.ndarray:
    """The [n_out, n_in] weights of MATLAB imresize's bicubic kernel along one axis (antialiased, mirrored)."""
    n_out = int(np.ceil(n_in * scale))
    width = 4.0 / scale if scale < 1 else 4.0
    u = np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    idx = left[:, None] + np.arange(int(np.ceil(width)) + 2)[None, :]
    dist = u[:, None] - idx
    w = scale * _cubic(scale * dist) if scale < 1 else _cubic(dist)
    w = w / w.sum(1, keepdims=True)
    mirror = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])  # 1..n, n..1 (0-based)
    cols = mirror[(idx.astype(np.int64) - 1) % (2 * n_in)]
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.repeat(np.arange(n_out), idx.shape[1]), cols.ravel()), w.ravel())
    return out


def imresize_bicubic(image: np.ndarray, scale: float = 0.5) -> np.ndarray:
    """MATLAB `imresize(image, scale)` of a 2-D float image (bicubic, antialiasing on), no rounding."""
    rows, cols = _resize_matrix(image.shape[0], scale), _resize_matrix(image.shape[1], scale)
    return rows @ image @ cols.T


def _blocks(x: np.ndarray, size: int) -> np.ndarray:
    """[n_blocks, size, size] non-overlapping blocks, row-major over the block grid."""
    h, w = x.shape[0] // size, x.shape[1] // size
    return x[: h * size, : w * size].reshape(h, size, w, size).transpose(0, 2, 1, 3).reshape(h * w, size, size)


def block_features(structdis: np.ndarray, size: int) -> np.ndarray:
    """[n_blocks, 18] features of the MSCN map's size x size blocks (computefeature.m)."""
    blocks = _blocks(structdis, size)
    flat = blocks.reshape(len(blocks), -1)
    a, bl, br = aggd_params_rows(flat)
    feats = [a, (bl + br) / 2]
    for dy, dx in SHIFTS:
        pair = (blocks * np.roll(blocks, (dy, dx), axis=(1, 2))).reshape(len(blocks), -1)
        a, bl, br = aggd_params_rows(pair)
        with np.errstate(invalid="ignore"):
            mean = (br - bl) * (_gamma(2 / a) / _gamma(1 / a))
        feats += [a, mean, bl, br]
    return np.stack(feats, axis=1)


def patch_features(image: np.ndarray, patch: int = PATCH) -> tuple[np.ndarray, np.ndarray]:
    """([n_patches, 36] features at two scales, [n_patches] mean local sigma at scale 1: the sharpness)."""
    grey = to_gray(image)
    h, w = (grey.shape[0] // patch) * patch, (grey.shape[1] // patch) * patch
    if h == 0 or w == 0:
        raise ValueError(f"NIQE: image {grey.shape[0]}x{grey.shape[1]} is smaller than one {patch}x{patch} patch")
    grey = grey[:h, :w]
    feats, sharpness = [], None
    for scale in (1, 2):
        structdis, sigma = mscn(grey)
        feats.append(block_features(structdis, patch // scale))
        if scale == 1:
            sharpness = _blocks(sigma, patch).mean(axis=(1, 2))
            grey = imresize_bicubic(grey, 0.5)
    assert sharpness is not None
    return np.concatenate(feats, axis=1), sharpness


# -------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class NiqeModel:
    mu: np.ndarray  # [36]
    cov: np.ndarray  # [36, 36]
    source: str = ""


def nan_gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB nanmean (per column) and nancov (rows with any NaN dropped, n - 1 normalisation)."""
    complete = features[np.isfinite(features).all(axis=1)]
    if len(complete) < 2:
        raise ValueError(f"NIQE: {len(complete)} patch(es) with a complete feature vector; a covariance needs 2")
    with np.errstate(invalid="ignore"):
        mu = np.nanmean(np.where(np.isfinite(features), features, np.nan), axis=0)
    return mu, np.cov(complete, rowvar=False)


def niqe_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """sqrt((mu1 - mu2)^T ((S1 + S2) / 2)^+ (mu1 - mu2)), the pseudo-inverse as MATLAB's pinv."""
    d = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    inv = np.linalg.pinv((np.asarray(cov1, np.float64) + np.asarray(cov2, np.float64)) / 2)
    return float(np.sqrt(max(float(d @ inv @ d), 0.0)))


def niqe(image: np.ndarray, model: NiqeModel | None) -> float:
    """NIQE of one image (HxW or HxWx3, 0-255) against a pristine model. Lower = more natural."""
    if model is None:
        raise HarnessError(f"weights missing: NIQE needs {MODEL_HELP}; put modelparameters.mat at PATH and pass "
                           "--role niqe=PATH")
    feats, _ = patch_features(image)
    mu, cov = nan_gaussian(feats)
    return niqe_distance(model.mu, model.cov, mu, cov)


def fit_niqe_model(images: list[np.ndarray], sharpness_threshold: float = 0.75, patch: int = PATCH) -> NiqeModel:
    """A pristine model from natural images (estimatemodelparam.m): per image, the patches whose mean local
    sigma exceeds `sharpness_threshold` x that image's sharpest patch; NaN-aware mean and covariance."""
    rows = []
    for im in images:
        feats, sharp = patch_features(im, patch)
        rows.append(feats[sharp > sharpness_threshold * sharp.max()])
    selected = np.concatenate(rows)
    complete = int(np.isfinite(selected).all(axis=1).sum())
    if complete <= N_FEATURES:  # a rank-deficient covariance: NIQE would hinge on a pseudo-inverse's noise
        raise ValueError(f"NIQE model: {complete} sharp patches from {len(images)} images; a full-rank covariance "
                         f"of {N_FEATURES} features needs more than {N_FEATURES} (give more or larger images)")
    mu, cov = nan_gaussian(selected)
    return NiqeModel(mu, cov, f"fitted on {len(images)} images")


def load_niqe_model(path: str | Path) -> NiqeModel:
    """The pristine model from a `.mat` (mu_prisparam, cov_prisparam) or `.npz` (mu, cov) file."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise HarnessError(f"weights missing: put modelparameters.mat ({MODEL_HELP}) at {p} or pass --role niqe=PATH")
    try:
        if p.suffix.lower() == ".mat":
            from scipy.io import loadmat

            data, keys = loadmat(p), ("mu_prisparam", "cov_prisparam")
        elif p.suffix.lower() == ".npz":
            data, keys = dict(np.load(p, allow_pickle=False)), ("mu", "cov")
        else:
            raise HarnessError(f"{p}: NIQE model must be a .mat or .npz file ({MODEL_HELP})")
    except HarnessError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's file's problem, named
        raise HarnessError(f"{p}: cannot read the NIQE model ({type(exc).__name__}: {exc})") from None
    missing = [k for k in keys if k not in data]
    if missing:
        raise HarnessError(f"{p}: NIQE model lacks {', '.join(map(repr, missing))} ({MODEL_HELP})")
    mu, cov = data[keys[0]], data[keys[1]]
    mu = np.asarray(mu, dtype=np.float64).ravel()
    cov = np.asarray(cov, dtype=np.float64)
    if mu.shape != (N_FEATURES,) or cov.shape != (N_FEATURES, N_FEATURES) or not (
            np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise HarnessError(f"{p}: NIQE model needs a finite mu of {N_FEATURES} and cov of {N_FEATURES}x{N_FEATURES}, "
                           f"got {mu.shape} and {cov.shape}")
    return NiqeModel(mu, cov, str(p))


def save_niqe_model(model: NiqeModel, path: str | Path) -> None:
    np.savez(Path(path), mu=model.mu, cov=model.cov)


def main(argv: list[str] | None = None) -> int:
    """`python -m vision_models.niqe fit OUT.npz IMAGE...`: a pristine model from the user's own images;
    `python -m vision_models.niqe score MODEL IMAGE...`: NIQE of each image."""
    import argparse

    from PIL import Image

    parser = argparse.ArgumentParser(prog="python -m vision_models.niqe", description=main.__doc__)
    parser.add_argument("command", choices=("fit", "score"))
    parser.add_argument("model", help="OUT.npz for fit; the .mat/.npz model for score")
    parser.add_argument("images", nargs="+")
    parser.add_argument("--sharpness", type=float, default=0.75,
                        help="fit: keep patches sharper than this x each image's sharpest (0 keeps all)")
    args = parser.parse_args(argv)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in args.images]
    if args.command == "fit":
        save_niqe_model(fit_niqe_model(images, args.sharpness), args.model)
        print(f"wrote {args.model} ({len(images)} images)")
    else:
        model = load_niqe_model(args.model)
        for path, im in zip(args.images, images, strict=True):
            print(f"{niqe(im, model):.4f}\t{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
