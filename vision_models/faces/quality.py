"""Image-quality metrics for protected faces: SSIM (RGB), PSNR, LPIPS and FID with pluggable nets.

SSIM is the Gaussian-window SSIM of Wang et al. (11x11, sigma 1.5, K1 0.01, K2 0.03, sample statistics
without Bessel's correction, mean over the valid region of each channel, then over channels): what
pyiqa's `ssim` (FDeID's quality module, `test_y_channel=False`) and face_anon's evaluation compute.
PSNR is over all channels; identical images have an infinite PSNR, reported as `PSNR_CAP_DB`.

LPIPS and FID need feature networks whose published weights cannot be downloaded here. The formulas
take any net: LPIPS a callable returning a list of feature maps (plus optional per-channel linear
weights), FID an [n, d] feature matrix. `feature_net(spec)` builds `tiny-random[:SEED]` nets for tests
and refuses the weight-needing ones with a "weights missing" message naming the file to supply.
NIQE, the no-reference score, is `vision_models/niqe.py` (it needs a pristine model file, not a net).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.core import HarnessError

PSNR_CAP_DB = 100.0


def _gaussian_kernel(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation of an [H, W] array with g (x) g, 'valid' region only (OpenCV's float64
    filter when installed, ~10x faster on multi-megapixel photos; the border mode never reaches the
    valid region)."""
    k = len(g)
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv is in the faces extra
        from numpy.lib.stride_tricks import sliding_window_view

        rows = sliding_window_view(x, k, axis=0) @ g  # [H-k+1, W]
        return sliding_window_view(rows, k, axis=1) @ g  # [H-k+1, W-k+1]
    full = cv2.sepFilter2D(np.ascontiguousarray(x, dtype=np.float64), cv2.CV_64F, g, g,
                           borderType=cv2.BORDER_REFLECT)
    h = k // 2
    return full[h : x.shape[0] - (k - 1 - h), h : x.shape[1] - (k - 1 - h)]


def _filter_zero_padded(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Same-size correlation with zero padding (what `F.conv2d(..., padding=k // 2)` computes)."""
    k = len(g)
    return _filter_valid(np.pad(x, k // 2), g)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, win: int = 11, sigma: float = 1.5,
         padding: str = "valid") -> float:
    """Mean Gaussian SSIM over channels (RGB: each channel on its own, then averaged).

    `padding="valid"`: statistics only where the window fits (scikit-image, pyiqa); `"zero"`: a same-size
    map over a zero-padded image, borders included (the common PyTorch `ssim` that face_anon's reference
    evaluation uses)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"SSIM needs images of the same shape, got {a.shape} and {b.shape}")
    if a.ndim == 2:
        a, b = a[:, :, None], b[:, :, None]
    if min(a.shape[:2]) < win:
        raise ValueError(f"SSIM: image {a.shape[:2]} smaller than the {win}x{win} window")
    g = _gaussian_kernel(win, sigma)
    if padding not in ("valid", "zero"):
        raise ValueError(f"SSIM padding must be 'valid' or 'zero', not {padding!r}")
    filt = _filter_valid if padding == "valid" else _filter_zero_padded
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for c in range(a.shape[2]):
        x, y = a[:, :, c], b[:, :, c]
        mx, my = filt(x, g), filt(y, g)
        sxx = filt(x * x, g) - mx * mx
        syy = filt(y * y, g) - my * my
        sxy = filt(x * y, g) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        values.append(float(s.mean()))
    return float(np.mean(values))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """10 log10(range² / MSE) over all pixels and channels; identical images give PSNR_CAP_DB."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"PSNR needs images of the same shape, got {a.shape} and {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return PSNR_CAP_DB
    return float(min(PSNR_CAP_DB, 10 * np.log10(data_range**2 / mse)))


# ---------------------------------------------------------------------------------------------- FID
def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^½), the trace of the root from the eigenvalues of S1 S2
    (torchmetrics' way: real parts of sqrt(eig), no complex sqrtm)."""
    diff = mu1 - mu2
    eig = np.linalg.eigvals(sigma1 @ sigma2)
    tr_covmean = float(np.sqrt(eig.astype(np.complex128)).real.sum())
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between two [n, d] feature sets (mean and unbiased covariance of each)."""
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    if len(real) < 2 or len(fake) < 2:
        raise ValueError("FID needs at least two images on each side")
    return frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))


# -------------------------------------------------------------------------------------------- LPIPS
def lpips_distance(
    feats_a: Sequence[Any], feats_b: Sequence[Any], lin: Sequence[Any] | None = None, eps: float = 1e-10
) -> np.ndarray:
    """LPIPS (Zhang et al. 2018) from per-layer feature maps [n, c, h, w]: unit-normalise each position
    over channels, square the difference, weight channels by `lin` (all ones when None), sum channels,
    average space, sum layers. Returns one distance per image."""
    total = None
    for i, (fa, fb) in enumerate(zip(feats_a, feats_b, strict=True)):
        fa = np.asarray(fa, dtype=np.float64)
        fb = np.asarray(fb, dtype=np.float64)
        na = fa / (np.sqrt((fa**2).sum(axis=1, keepdims=True)) + eps)
        nb = fb / (np.sqrt((fb**2).sum(axis=1, keepdims=True)) + eps)
        d = (na - nb) ** 2
        w = np.ones(d.shape[1]) if lin is None else np.asarray(lin[i], dtype=np.float64).reshape(-1)
        layer = (d * w[None, :, None, None]).sum(axis=1).mean(axis=(1, 2))
        total = layer if total is None else total + layer
    assert total is not None, "LPIPS needs at least one feature layer"
    return total


class FeatureNet:
    """A feature extractor over RGB uint8 images: `layers(images)` -> list of [n, c, h, w] maps (LPIPS),
    `features(images)` -> [n, d] (FID: global average of the last map)."""

    def __init__(self, module: Any, size: int = 64, name: str = "custom", lin: Sequence[Any] | None = None) -> None:
        self.module = module
        self.size = size
        self.name = name
        self.lin = lin

    def _batch(self, images: Sequence[np.ndarray]) -> Any:
        import torch
        from PIL import Image

        arr = np.stack([np.asarray(Image.fromarray(np.asarray(im, np.uint8)).resize((self.size, self.size)))
                        for im in images]).astype(np.float32)
        return torch.from_numpy(arr.transpose(0, 3, 1, 2) / 127.5 - 1.0)

    def layers(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            return [t.detach().cpu().numpy() for t in self.module(self._batch(images))]

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.layers(images)[-1].mean(axis=(2, 3))

    def lpips(self, a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> np.ndarray:
        return lpips_distance(self.layers(a), self.layers(b), self.lin)


def tiny_random_net(seed: int = 0, channels: Sequence[int] = (8, 16, 32)) -> Any:
    """A seeded random conv net returning each stage's map (for tests; its numbers mean nothing)."""
    import torch

    class Stages(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            chans = [3, *channels]
            self.stages = torch.nn.ModuleList(
                torch.nn.Sequential(torch.nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1), torch.nn.ReLU())
                for i in range(len(channels))
            )

        def forward(self, x: Any) -> list[Any]:
            out = []
            for stage in self.stages:
                x = stage(x)
                out.append(x)
            return out

    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    net = Stages().eval()
    torch.random.set_rng_state(gen_state)
    return net


WEIGHT_FILES = {
    "vgg": "vgg16 features as a TorchScript file (e.g. exported from torchvision vgg16 + LPIPS lin weights)",
    "alex": "alexnet features as a TorchScript file",
    "inception": "pt_inception-2015-12-05 feature extractor as a TorchScript file",
}


def feature_net(spec: str) -> FeatureNet:
    """`tiny-random[:SEED]`, or `KIND:PATH` (vgg|alex|inception) of a TorchScript module returning a list
    of feature maps. A KIND without an existing PATH raises 'weights missing'."""
    kind, _, arg = spec.partition(":")
    if kind == "tiny-random":
        return FeatureNet(tiny_random_net(int(arg or 0)), name=spec)
    if kind in WEIGHT_FILES:
        if not arg or not Path(arg).is_file():
            raise HarnessError(
                f"weights missing: put {WEIGHT_FILES[kind]} at {arg or 'PATH'} and pass {kind}:PATH "
                f"(e.g. -S lpips_net={kind}:/models/{kind}.pt)"
            )
        import torch

        return FeatureNet(torch.jit.load(arg).eval(), size=299 if kind == "inception" else 224, name=spec)
    raise HarnessError(f"unknown feature net {spec!r}; use tiny-random[:SEED] or vgg|alex|inception:PATH")


FeatureFn = Callable[[Sequence[np.ndarray]], np.ndarray]
