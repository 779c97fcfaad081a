"""Classical rPPG methods: toolbox behaviour (windows, filters, detrend) and heart rate recovered on
synthetic face videos with known pulses, through the real face-ROI trace extraction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from vision_models.rppg import METHODS, detrend
from vision_models.rppg.synthetic import pulse_frames
from vision_models.rppg.trace import extract_rgb_trace

FPS = 30.0
RATES = (60, 75, 96)
# condition -> synthetic-video options; levels chosen as moderate, realistic stresses
CONDITIONS = {
    "static": {},
    "motion": {"motion_px": 12.0},  # the face box is ~36 px wide at 160x120
    "illumination_drift": {"illumination_drift": 0.3},
    "noise": {"noise_std": 8.0},
}
# which methods are expected to handle which condition (see README: GREEN is not motion-robust)
EXPECTED = {
    "static": tuple(METHODS),
    "motion": ("ica", "chrom", "pos", "pbv", "lgi", "omit"),
    "illumination_drift": tuple(METHODS),
    "noise": tuple(METHODS),
}


def periodogram_hr(bvp: np.ndarray, fps: float, band: tuple[float, float] = (0.7, 3.0)) -> float:
    """Heart rate (bpm) at the periodogram peak in `band`: linear detrend, Hann window, 8x zero-padding."""
    n = len(bvp)
    x = bvp - np.polyval(np.polyfit(np.arange(n), bvp, 1), np.arange(n))
    nfft = 8 * (1 << (n - 1).bit_length())
    freqs = np.fft.rfftfreq(nfft, 1.0 / fps)
    power = np.abs(np.fft.rfft(x * np.hanning(n), nfft)) ** 2
    inband = (freqs >= band[0]) & (freqs <= band[1])
    return float(60.0 * freqs[inband][np.argmax(power[inband])])


@pytest.fixture(scope="module")
def traces() -> dict[tuple[str, int], np.ndarray]:
    out = {}
    for cond, opts in CONDITIONS.items():
        for bpm in RATES:
            _, frames = pulse_frames(bpm, 20.0, FPS, (160, 120), seed=bpm, **opts)
            trace = extract_rgb_trace(frames, fps=FPS)
            assert trace.face_missing_fraction == 0.0
            out[cond, bpm] = trace.rgb
    return out


@pytest.mark.parametrize("cond", list(CONDITIONS))
@pytest.mark.parametrize("bpm", RATES)
def test_each_method_recovers_heart_rate_within_2_bpm(traces, cond: str, bpm: int) -> None:
    errors = {name: periodogram_hr(METHODS[name](traces[cond, bpm], FPS), FPS) - bpm for name in EXPECTED[cond]}
    assert all(abs(e) <= 2.0 for e in errors.values()), errors


def test_methods_registry_names_and_shapes() -> None:
    assert set(METHODS) == {"green", "ica", "chrom", "pos", "pbv", "lgi", "omit"}
    rng = np.random.default_rng(0)
    rgb = 120 + rng.normal(size=(301, 3))
    for name, method in METHODS.items():
        bvp = method(rgb, FPS)
        assert bvp.shape == (301,), name
        assert np.isfinite(bvp).all(), name


def test_detrend_matches_the_dense_smoothness_prior_formula() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=150).cumsum()
    n, lam = len(x), 100.0
    d2 = np.zeros((n - 2, n))
    for i in range(n - 2):
        d2[i, i : i + 3] = (1, -2, 1)
    dense = (np.eye(n) - np.linalg.inv(np.eye(n) + lam**2 * d2.T @ d2)) @ x
    np.testing.assert_allclose(detrend(x, lam), dense, atol=1e-8)


def _pos_loop(rgb: np.ndarray, fps: float) -> np.ndarray:
    """POS written per window from Wang et al. 2017, every full 1.6 s window, hop of one frame."""
    n, win = len(rgb), math.ceil(1.6 * fps)
    acc = np.zeros(n)
    for start in range(n - win + 1):
        cn = rgb[start : start + win] / rgb[start : start + win].mean(axis=0)
        s1, s2 = cn[:, 1] - cn[:, 2], -2 * cn[:, 0] + cn[:, 1] + cn[:, 2]
        h = s1 + s1.std() / s2.std() * s2
        acc[start : start + win] += h - h.mean()
    b, a = signal.butter(1, [0.75 / fps * 2, 3.0 / fps * 2], btype="bandpass")
    return signal.filtfilt(b, a, detrend(acc, 100.0))


def _chrom_loop(rgb: np.ndarray, fps: float) -> np.ndarray:
    """CHROM written per window from de Haan & Jeanne 2013: half-overlapping Hann windows."""
    win = math.ceil(1.6 * fps)
    win += win % 2
    half = win // 2
    b, a = signal.butter(3, [0.7 / (fps / 2), 2.5 / (fps / 2)], btype="bandpass")
    out = np.zeros(len(rgb))
    for k in range((len(rgb) - half) // half):
        seg = rgb[k * half : k * half + win]
        cn = seg / seg.mean(axis=0)
        xf = signal.filtfilt(b, a, 3 * cn[:, 0] - 2 * cn[:, 1])
        yf = signal.filtfilt(b, a, 1.5 * cn[:, 0] + cn[:, 1] - 1.5 * cn[:, 2])
        out[k * half : k * half + win] += (xf - xf.std() / yf.std() * yf) * signal.windows.hann(win)
    return out


@pytest.mark.parametrize(("name", "loop"), [("pos", _pos_loop), ("chrom", _chrom_loop)])
def test_vectorised_windows_equal_a_per_window_loop(name: str, loop) -> None:
    t = np.arange(317) / FPS
    rgb = 100 + np.random.default_rng(2).normal(size=(317, 3)) + np.outer(np.sin(2 * np.pi * 1.3 * t), [0.3, 0.8, 0.5])
    np.testing.assert_allclose(METHODS[name](rgb, FPS), loop(rgb, FPS), atol=1e-10)


def test_linear_projection_methods_cancel_a_pure_intensity_change() -> None:
    """LGI/OMIT project out the skin-colour direction: a brightness ramp alone leaves (almost) nothing."""
    gain = np.linspace(1.0, 1.5, 300)[:, None]
    rgb = gain * np.array([[170.0, 140.0, 115.0]])
    for name in ("lgi", "omit"):
        assert np.abs(METHODS[name](rgb, FPS)).max() < 1e-9
