"""The numpy band-pass, filtfilt and periodogram of the default rPPG chain give scipy.signal's numbers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from vision_models.rppg import dsp


@pytest.mark.parametrize(("low", "high", "fs"), [(0.6, 3.3, 30.0), (0.75, 2.5, 30.0), (0.75, 3.0, 15.0),
                                                 (0.7, 4.0, 29.97), (0.6, 3.3, 60.0)])
def test_first_order_bandpass_design_equals_scipy_butter(low, high, fs):
    b, a = dsp.butter1_bandpass(low, high, fs)
    b_ref, a_ref = signal.butter(1, [low / (fs / 2), high / (fs / 2)], btype="bandpass")
    np.testing.assert_allclose(b, b_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a, a_ref, rtol=1e-12, atol=1e-15)


def test_band_above_nyquist_is_refused():
    with pytest.raises(ValueError, match="Nyquist"):
        dsp.butter1_bandpass(0.6, 3.3, 6.0)


@pytest.mark.parametrize("n", [10, 11, 57, 300, 1001])
def test_filtfilt_equals_scipy_filtfilt(n):
    x = np.random.default_rng(n).normal(size=n).cumsum() + np.sin(np.arange(n) / 3)
    b, a = signal.butter(1, [0.6 / 15, 3.3 / 15], btype="bandpass")
    np.testing.assert_allclose(dsp.filtfilt(b, a, x), signal.filtfilt(b, a, x), rtol=1e-10, atol=1e-12)
    b3, a3 = signal.butter(3, [0.7 / 15, 2.5 / 15], btype="bandpass")  # any order, explicit pad length
    np.testing.assert_allclose(dsp.filtfilt(b3, a3, x, padlen=min(21, n - 1)),
                               signal.filtfilt(b3, a3, x, padlen=min(21, n - 1)), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dsp.lfilter_zi(b3, a3), signal.lfilter_zi(b3, a3), rtol=1e-12)


def test_filtfilt_of_nine_samples_is_refused_like_scipy():
    b, a = dsp.butter1_bandpass(0.6, 3.3, 30.0)
    with pytest.raises(ValueError, match="padlen, which is 9"):
        dsp.filtfilt(b, a, np.arange(9.0))
    with pytest.raises(ValueError, match="padlen, which is 9"):
        signal.filtfilt(b, a, np.arange(9.0))


@pytest.mark.parametrize(("n", "nfft"), [(300, 512), (256, 256), (301, 512), (5, 7)])
def test_periodogram_equals_scipy(n, nfft):
    x = np.random.default_rng(n).normal(size=n)
    f, p = dsp.periodogram(x, 30.0, nfft)
    f_ref, p_ref = signal.periodogram(x, fs=30.0, nfft=nfft, detrend=False)
    np.testing.assert_allclose(f, f_ref, rtol=1e-12)
    np.testing.assert_allclose(p, p_ref, rtol=1e-10, atol=1e-14)
