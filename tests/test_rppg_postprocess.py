"""rPPG post-processing rules (TASKS.md `rppg`), each checked against numbers worked out here."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.signal

from tasks.rppg.postprocess import (
    BANDS,
    bandpass,
    detrend,
    evaluate_windows,
    hr_fft,
    hr_peak,
    macc,
    next_power_of_2,
    preprocess,
    snr_db,
    window_bounds,
)


@pytest.mark.parametrize("n", [3, 4, 5, 37, 256, 301])
def test_detrend_sparse_solve_equals_dense_smoothness_prior_formula(n):
    rng = np.random.default_rng(n)
    x = np.cumsum(rng.normal(size=n)) + np.linspace(0, 5, n)
    eye = np.eye(n)
    d = np.diff(eye, 2, axis=0)  # (n-2) x n second differences
    dense = (eye - np.linalg.inv(eye + 100.0**2 * d.T @ d)) @ x
    np.testing.assert_allclose(detrend(x, 100), dense, atol=1e-8, rtol=0)


def test_detrend_never_builds_the_dense_matrix():
    # 200,000 samples (~1.9 h at 30 fps): a dense N x N float64 matrix would need 320 GB.
    x = np.sin(np.arange(200_000) / 7.0) + np.arange(200_000) * 1e-3
    start = time.perf_counter()
    y = detrend(x)
    assert time.perf_counter() - start < 5
    assert np.all(np.isfinite(y)) and abs(y.mean()) < 1e-3


@pytest.mark.parametrize("band", ["toolbox", "recommended"])
def test_bandpass_is_first_order_butterworth_applied_forward_backward(band):
    fs = 30.0
    x = np.random.default_rng(0).normal(size=600)
    low, high = BANDS[band]
    b, a = scipy.signal.butter(1, [low / (fs / 2), high / (fs / 2)], btype="bandpass")
    assert len(a) == 3  # a first-order band-pass has a second-order denominator
    np.testing.assert_allclose(bandpass(x, fs, band), scipy.signal.filtfilt(b, a, x), atol=1e-12)


def test_band_presets_are_the_toolbox_default_and_its_recommendation():
    assert BANDS == {"toolbox": (0.6, 3.3), "recommended": (0.75, 2.5)}


def test_preprocess_is_detrend_then_bandpass_and_cumsum_for_derivative_signals():
    x = np.random.default_rng(1).normal(size=300)
    np.testing.assert_allclose(preprocess(x, 30, "toolbox"), bandpass(detrend(x), 30, "toolbox"))
    np.testing.assert_allclose(preprocess(x, 30, "toolbox", diff_flag=True),
                               bandpass(detrend(np.cumsum(x)), 30, "toolbox"))


def test_periodogram_hr_uses_next_power_of_two_fft_length():
    fs, n = 30.0, 300
    assert next_power_of_2(n) == 512
    k = 20  # a sinusoid exactly on bin 20 of a 512-point FFT: 20 * 30 / 512 Hz = 70.3125 bpm
    f = k * fs / 512
    t = np.arange(n) / fs
    assert hr_fft(np.sin(2 * np.pi * f * t), fs, "toolbox") == pytest.approx(k * fs / 512 * 60, abs=1e-9)
    # A stronger component below the band (0.3 Hz) is ignored: the peak is searched inside the band only.
    mixed = np.sin(2 * np.pi * f * t) + 3 * np.sin(2 * np.pi * 0.3 * t)
    assert hr_fft(mixed, fs, "toolbox") == pytest.approx(70.3125, abs=1e-9)


def test_peak_hr_is_sixty_over_mean_peak_interval():
    fs = 30.0
    t = np.arange(300) / fs
    assert hr_peak(np.sin(2 * np.pi * 1.5 * t), fs) == pytest.approx(90.0)  # a peak every 20 frames


def test_snr_worked_example_power_near_harmonics_over_rest_of_band():
    fs, n = 32.0, 512  # bins every 1/16 Hz; n is a power of two so nfft == n (no zero padding)
    t = np.arange(n) / fs
    a1, a2, b = 2.0, 1.0, 1.0
    # HR 75 bpm = 1.25 Hz (bin 20), 2nd harmonic 2.5 Hz (bin 40), "noise" at 1.75 Hz (bin 28):
    # on-bin sinusoids leak nothing, so each tone's periodogram power is proportional to amplitude^2.
    x = (a1 * np.sin(2 * np.pi * 1.25 * t) + a2 * np.sin(2 * np.pi * 2.5 * t)
         + b * np.sin(2 * np.pi * 1.75 * t))
    expected = 10 * np.log10((a1**2 + a2**2) / b**2)  # 6.9897 dB
    assert snr_db(x, 75.0, fs, "toolbox") == pytest.approx(expected, abs=1e-6)
    # Noise outside the band does not count; noise within +-6 bpm of a harmonic counts as signal.
    assert snr_db(x + 5 * np.sin(2 * np.pi * 4.0 * t), 75.0, fs, "toolbox") == pytest.approx(expected, abs=1e-6)
    near = x + np.sin(2 * np.pi * (1.25 + 1 / 16) * t)  # 78.75 bpm, inside 75 +- 6
    assert snr_db(near, 75.0, fs, "toolbox") == pytest.approx(10 * np.log10((a1**2 + a2**2 + 1) / b**2), abs=1e-6)


def test_macc_is_max_abs_correlation_over_circular_lags():
    rng = np.random.default_rng(3)
    pred, ref = rng.normal(size=64), rng.normal(size=70)
    n = 64
    loop = max(abs(np.corrcoef(pred[:n], np.roll(ref[:n], lag))[0, 1]) for lag in range(n - 1))
    assert macc(pred, ref) == pytest.approx(loop, abs=1e-12)
    assert macc(ref[:50], np.roll(ref[:50], 7)) == pytest.approx(1.0)


def test_windows_split_by_window_seconds_and_skip_windows_of_nine_frames_or_fewer():
    assert window_bounds(100, 10, 0) == [(0, 100)]
    assert window_bounds(100, 10, 3) == [(0, 30), (30, 60), (60, 90), (90, 100)]  # 10-frame tail kept
    assert window_bounds(95, 10, 3) == [(0, 30), (30, 60), (60, 90)]  # 5-frame tail skipped
    assert window_bounds(99, 10, 3) == [(0, 30), (30, 60), (60, 90)]  # 9-frame tail skipped (filtfilt pads 9)
    assert window_bounds(50, 10, 30) == [(0, 50)]  # a window longer than the video is the video
    assert window_bounds(8, 10, 0) == []
    assert window_bounds(9, 10, 0) == []


def test_a_final_window_of_exactly_nine_frames_does_not_crash_the_chain():
    fs = 30.0
    t = np.arange(309) / fs  # 10 s windows of 300 frames: the last one has exactly 9 frames
    ppg = np.sin(2 * np.pi * 1.2 * t)
    res = evaluate_windows(ppg, fs, ref_ppg=ppg, window_s=10)
    assert [(w.start, w.stop) for w in res] == [(0, 300)]
    assert res[0].hr_pred == pytest.approx(hr_fft(preprocess(ppg[:300], fs), fs))


def test_toolbox_windowing_of_a_bvp_shorter_than_the_video():
    """The toolbox sizes windows from the video's frames, cuts them over the BVP's length and takes
    each reference window as ref[start:start + size] (CHROM's toolbox output is shorter than T)."""
    fs = 30.0
    t = np.arange(640) / fs
    ref = np.sin(2 * np.pi * 1.2 * t) + 0.1 * np.sin(2 * np.pi * 2.9 * t)
    bvp = np.sin(2 * np.pi * 1.3 * t[:624])  # 624 of 640 samples, like a toolbox CHROM output
    res = evaluate_windows(bvp, fs, ref_ppg=ref, window_s=10, windowing="toolbox")
    assert [(w.start, w.stop) for w in res] == [(0, 300), (300, 600), (600, 624)]
    last = res[-1]  # BVP window 600..624, reference window 600..640 (clipped 600..900)
    assert last.hr_pred == pytest.approx(hr_fft(preprocess(bvp[600:624], fs), fs))
    assert last.hr_ref == pytest.approx(hr_fft(preprocess(ref[600:640], fs), fs))
    whole = evaluate_windows(bvp, fs, ref_ppg=ref, windowing="toolbox")  # whole video: all of both signals
    assert [(w.start, w.stop) for w in whole] == [(0, 624)]
    assert whole[0].hr_ref == pytest.approx(hr_fft(preprocess(ref, fs), fs))
    same = evaluate_windows(bvp, fs, ref_ppg=ref, window_s=10)  # default: the same frames of both
    assert [(w.start, w.stop) for w in same] == [(0, 300), (300, 600), (600, 624)]
    assert same[-1].hr_ref == pytest.approx(hr_fft(preprocess(ref[600:624], fs), fs))


def test_reference_waveform_goes_through_the_same_chain():
    fs = 30.0
    t = np.arange(900) / fs
    ppg = np.sin(2 * np.pi * 1.2 * t) + 0.3 * t  # 72 bpm with a drift
    res = evaluate_windows(ppg, fs, ref_ppg=ppg, window_s=10)
    assert len(res) == 3
    for w in res:
        assert w.hr_pred == w.hr_ref == pytest.approx(hr_fft(preprocess(ppg[w.start:w.stop], fs), fs), abs=1e-9)
        assert w.macc == pytest.approx(1.0)
        assert abs(w.hr_ref - 72) < 2


def test_mean_hr_reference_is_used_for_every_window_without_macc():
    fs = 15.0
    t = np.arange(450) / fs
    res = evaluate_windows(np.sin(2 * np.pi * 1.4 * t), fs, ref_hr_bpm=85.4, window_s=10)
    assert [w.hr_ref for w in res] == [85.4, 85.4, 85.4]
    assert all(w.macc is None for w in res)
