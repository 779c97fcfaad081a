"""Signal post-processing that turns a BVP trace into heart rate, as rPPG-Toolbox does it.

The chain follows rPPG-Toolbox `evaluation/post_process.py::calculate_metric_per_video`, applied to the
predicted BVP and to the reference PPG alike:

1. `diff_flag`: when a signal is a first derivative (the toolbox's "DiffNormalized" labels of its
   supervised models) it is integrated with `cumsum` first. The classical methods here output a BVP
   and the references are raw PPG, so — as the toolbox's `unsupervised_predictor.py` does — the task
   uses `diff_flag=False`.
2. Detrend with smoothness priors (Tarvainen et al. 2002), lambda = 100: `x - (I + lambda^2 D'D)^-1 x`
   with `D` the second-difference operator. The toolbox inverts the dense N x N matrix (O(N^3) time,
   O(N^2) memory, out of memory on long videos); here the same system is solved as the symmetric
   pentadiagonal band it is (O(N)).
3. `use_bandpass`: first-order Butterworth band-pass run forward and backward (`filtfilt`), band from
   a named preset: `toolbox` = 0.6–3.3 Hz (the toolbox's code default) or `recommended` = 0.75–2.5 Hz
   (the band its maintainers recommend to reproduce the NeurIPS 2023 paper's numbers).
4. HR = frequency of the periodogram peak inside the band x 60 (`periodogram`, nfft = next power of
   two of the length, no detrending inside), or 60 / mean peak-to-peak interval (`hr_method="peak"`).
5. SNR (dB) of the *predicted* signal around the *reference* HR, and MACC between the two signals.

Windows are cut from the whole-video BVP first and each window is post-processed on its own (as the
toolbox does). Windows of 9 frames or fewer are skipped: filtfilt pads 3 x max(len(a), len(b)) = 9
samples and needs a longer signal. (The toolbox skips windows under 9 frames and crashes on exactly 9.)

`windowing="toolbox"` cuts windows as `unsupervised_predictor.py` does when the BVP is shorter than
the video (CHROM with `impl=toolbox`): window size from the video's frame count, windows over the
BVP's length, each reference window `ref[start:start + size]` (so the last one may be longer than the
BVP window). The default ("same") compares the same frames of both signals, over the shorter length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vision_models.rppg import dsp
from vision_models.rppg.methods import detrend as _banded_detrend

BANDS: dict[str, tuple[float, float]] = {"toolbox": (0.6, 3.3), "recommended": (0.75, 2.5)}
HR_METHODS = ("fft", "peak")
DETREND_LAMBDA = 100.0
MIN_WINDOW_FRAMES = 10  # > filtfilt's default pad length (9) for the first-order band-pass
WINDOWINGS = ("same", "toolbox")
SNR_HALF_WIDTH_HZ = 6 / 60  # +-6 bpm around each harmonic


def band_hz(band: str | tuple[float, float]) -> tuple[float, float]:
    """Resolve a band preset name (or pass an explicit (low, high) pair through)."""
    if isinstance(band, str):
        if band not in BANDS:
            raise ValueError(f"unknown band {band!r}; choose one of {', '.join(BANDS)}")
        return BANDS[band]
    low, high = band
    return float(low), float(high)


def next_power_of_2(n: int) -> int:
    return 1 if n == 0 else 2 ** (int(n) - 1).bit_length()


def detrend(signal: np.ndarray, lam: float = DETREND_LAMBDA) -> np.ndarray:
    """Smoothness-priors detrending (lambda 100), solved as a banded system (never a dense inverse);
    the same function the methods in vision_models use."""
    return _banded_detrend(np.asarray(signal, dtype=np.float64), lam)


def bandpass(signal: np.ndarray, fs: float, band: str | tuple[float, float] = "toolbox") -> np.ndarray:
    """First-order Butterworth band-pass applied forward-backward (zero phase)."""
    low, high = band_hz(band)
    b, a = dsp.butter1_bandpass(low, high, fs)  # scipy.signal.butter's numbers, without importing scipy.signal
    return dsp.filtfilt(b, a, np.asarray(signal, dtype=np.float64))


def preprocess(
    signal: np.ndarray, fs: float, band: str | tuple[float, float] = "toolbox", *, diff_flag: bool = False,
    use_bandpass: bool = True,
) -> np.ndarray:
    """The toolbox chain before HR estimation: [cumsum] -> detrend(lambda=100) -> [band-pass]."""
    x = np.asarray(signal, dtype=np.float64)
    if diff_flag:
        x = np.cumsum(x)
    x = detrend(x, DETREND_LAMBDA)
    return bandpass(x, fs, band) if use_bandpass else x


def _periodogram(signal: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(signal, dtype=np.float64)
    return dsp.periodogram(x, fs, next_power_of_2(x.shape[0]))


def hr_fft(signal: np.ndarray, fs: float, band: str | tuple[float, float] = "toolbox") -> float:
    """HR (bpm) at the periodogram peak inside the band (inclusive bounds, as the toolbox)."""
    low, high = band_hz(band)
    freqs, power = _periodogram(signal, fs)
    inside = (freqs >= low) & (freqs <= high)
    if not inside.any():
        return float("nan")
    return float(freqs[inside][np.argmax(power[inside])] * 60.0)


def hr_peak(signal: np.ndarray, fs: float) -> float:
    """HR (bpm) from the mean interval between local maxima (`find_peaks` with no constraints)."""
    import scipy.signal

    peaks, _ = scipy.signal.find_peaks(np.asarray(signal, dtype=np.float64))
    if len(peaks) < 2:
        return float("nan")
    return float(60.0 / (np.mean(np.diff(peaks)) / fs))


def estimate_hr(signal: np.ndarray, fs: float, band: str | tuple[float, float] = "toolbox",
                method: str = "fft") -> float:
    if method == "fft":
        return hr_fft(signal, fs, band)
    if method == "peak":
        return hr_peak(signal, fs)
    raise ValueError(f"unknown hr_method {method!r}; choose fft or peak")


def snr_db(signal: np.ndarray, hr_ref_bpm: float, fs: float, band: str | tuple[float, float] = "toolbox") -> float:
    """Toolbox `_calculate_SNR`: 10*log10(power within +-6 bpm of the reference HR's 1st and 2nd
    harmonics / power in the rest of the band), on the next-pow2 periodogram. Since the toolbox's fix
    of Dec 2024 (PR #344) the ratio is of powers (10 log10), no longer 20 log10. 0 when the rest is 0."""
    low, high = band_hz(band)
    freqs, power = _periodogram(signal, fs)
    f1 = hr_ref_bpm / 60.0
    near1 = (freqs >= f1 - SNR_HALF_WIDTH_HZ) & (freqs <= f1 + SNR_HALF_WIDTH_HZ)
    near2 = (freqs >= 2 * f1 - SNR_HALF_WIDTH_HZ) & (freqs <= 2 * f1 + SNR_HALF_WIDTH_HZ)
    rest = (freqs >= low) & (freqs <= high) & ~near1 & ~near2
    signal_power = power[near1].sum() + power[near2].sum()  # a bin in both harmonic bands counts twice
    noise_power = power[rest].sum()
    if noise_power == 0:
        return 0.0
    return float(10.0 * np.log10(signal_power / noise_power))


def macc(pred: np.ndarray, ref: np.ndarray) -> float:
    """Toolbox `_compute_macc`: max over lags 0..n-2 of |corrcoef(pred, roll(ref, lag))|.

    np.roll makes the lags circular, so all of them come from one FFT cross-correlation divided by the
    (roll-invariant) norms of the centred signals."""
    p = np.asarray(pred, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    n = min(p.size, r.size)
    if n < 2:
        return float("nan")
    p = p[:n] - p[:n].mean()
    r = r[:n] - r[:n].mean()
    norm = np.sqrt((p @ p) * (r @ r))
    if norm == 0:
        return float("nan")
    # corr[k] = sum_i p[i] * r[(i - k) mod n] = <p, roll(r, k)>
    corr = np.fft.irfft(np.fft.rfft(p) * np.conj(np.fft.rfft(r)), n=n)
    return float(np.max(np.abs(corr[: n - 1])) / norm)


def window_size(n_frames: int, fs: float, window_s: float = 0.0) -> int:
    """Frames per window: the whole signal (window_s <= 0) or round(window_s * fs), capped at n_frames."""
    return n_frames if window_s <= 0 else min(max(int(round(window_s * fs)), 1), n_frames)


def window_bounds(n_frames: int, fs: float, window_s: float = 0.0, *,
                  video_frames: int | None = None) -> list[tuple[int, int]]:
    """[start, stop) frame ranges over `n_frames`: the whole signal (window_s <= 0) or consecutive
    windows of round(window_s * fs) frames; windows of 9 frames or fewer are skipped. The size is
    taken from `video_frames` when given (toolbox windowing of a BVP shorter than the video)."""
    size = window_size(n_frames if video_frames is None else video_frames, fs, window_s)
    if size <= 0:
        return []
    bounds = [(start, min(start + size, n_frames)) for start in range(0, n_frames, size)]
    return [(a, b) for a, b in bounds if b - a >= MIN_WINDOW_FRAMES]


@dataclass(frozen=True)
class WindowResult:
    start: int
    stop: int
    hr_pred: float
    hr_ref: float
    snr_db: float
    macc: float | None


def evaluate_windows(
    pred_bvp: np.ndarray, fs: float, *, ref_ppg: np.ndarray | None = None, ref_hr_bpm: float | None = None,
    band: str | tuple[float, float] = "toolbox", window_s: float = 0.0, hr_method: str = "fft",
    diff_flag: bool = False, windowing: str = "same",
) -> list[WindowResult]:
    """Per-window predicted HR, reference HR, SNR and MACC.

    The reference is a waveform (`ref_ppg`, one value per frame: it goes through the same chain) or a
    single mean HR (`ref_hr_bpm`: every window gets it, and MACC is undefined). `windowing` is
    "same" or "toolbox" (module docstring)."""
    if windowing not in WINDOWINGS:
        raise ValueError(f"unknown windowing {windowing!r}; choose one of {', '.join(WINDOWINGS)}")
    pred_bvp = np.asarray(pred_bvp, dtype=np.float64)
    n = pred_bvp.shape[0]
    video_frames = None
    if ref_ppg is not None:
        ref_ppg = np.asarray(ref_ppg, dtype=np.float64)
        if windowing == "toolbox":
            video_frames = ref_ppg.shape[0]
        else:
            n = min(n, ref_ppg.shape[0])
    elif ref_hr_bpm is None:
        raise ValueError("give ref_ppg or ref_hr_bpm")
    size = window_size(n if video_frames is None else video_frames, fs, window_s)
    out = []
    for start, stop in window_bounds(n, fs, window_s, video_frames=video_frames):
        pred = preprocess(pred_bvp[start:stop], fs, band, diff_flag=diff_flag)
        hr_pred = estimate_hr(pred, fs, band, hr_method)
        if ref_ppg is not None:
            ref_window = ref_ppg[start : start + size] if windowing == "toolbox" else ref_ppg[start:stop]
            if len(ref_window) < MIN_WINDOW_FRAMES:  # a reference that ends before the BVP (toolbox windowing)
                continue
            ref = preprocess(ref_window, fs, band, diff_flag=False)
            hr_ref = estimate_hr(ref, fs, band, hr_method)
            corr: float | None = macc(pred, ref)
        else:
            hr_ref, corr = float(ref_hr_bpm), None  # type: ignore[arg-type]
        out.append(WindowResult(start, stop, hr_pred, hr_ref, snr_db(pred, hr_ref, fs, band), corr))
    return out
