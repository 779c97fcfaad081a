"""The few signal-processing steps of the default rPPG chain in plain numpy.

Why not scipy.signal: importing it costs ~0.4 s of CPU (it pulls scipy.stats, interpolate and
optimize), more than decoding and tracking a whole 20 s video, in every process that scores or runs
POS. The default chain needs only a first-order Butterworth band-pass applied forward-backward and a
periodogram; both are written here to give scipy's numbers (tests compare them with
`scipy.signal.butter`, `filtfilt` and `periodogram` to 1e-12). Higher-order filters (CHROM, ICA)
and `find_peaks` still use scipy, imported when those are asked for.

- `butter1_bandpass`: scipy's design (bilinear transform at fs = 2 of the pre-warped analog
  band-pass s * bw / (s^2 + bw s + w0^2)), in closed form.
- `filtfilt`: scipy's default method: odd extension by 3 * max(len(a), len(b)) samples, the filter
  run forward from the steady state `lfilter_zi` scaled by the first sample, then backward likewise.
- `periodogram`: boxcar window, `nfft` zero padding, density scaling, one-sided (x2 except DC and
  Nyquist), no detrending — as `scipy.signal.periodogram(x, fs, nfft=nfft, detrend=False)`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["butter1_bandpass", "filtfilt", "lfilter", "lfilter_zi", "periodogram"]


def butter1_bandpass(low_hz: float, high_hz: float, fs: float) -> tuple[np.ndarray, np.ndarray]:
    """(b, a) of `scipy.signal.butter(1, [low_hz / (fs / 2), high_hz / (fs / 2)], btype="bandpass")`."""
    nyquist = fs / 2
    w1, w2 = low_hz / nyquist, high_hz / nyquist
    if not 0 < w1 < w2 < 1:
        raise ValueError(f"band {low_hz}-{high_hz} Hz does not fit under the Nyquist frequency {nyquist} Hz")
    k = 4.0  # 2 * fs of the normalised design (fs = 2)
    u1, u2 = k * math.tan(math.pi * w1 / 2), k * math.tan(math.pi * w2 / 2)  # pre-warped edges
    bw, w0sq = u2 - u1, u1 * u2
    a0 = k * k + bw * k + w0sq
    b = np.array([bw * k / a0, 0.0, -bw * k / a0])
    a = np.array([1.0, (2 * w0sq - 2 * k * k) / a0, (k * k - bw * k + w0sq) / a0])
    return b, a


def lfilter_zi(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Steady-state initial conditions of a step response (scipy.signal.lfilter_zi)."""
    b = np.asarray(b, dtype=np.float64) / a[0]
    a = np.asarray(a, dtype=np.float64) / a[0]
    n = max(len(a), len(b))
    a = np.pad(a, (0, n - len(a)))
    b = np.pad(b, (0, n - len(b)))
    companion_t = np.zeros((n - 1, n - 1))
    companion_t[:, 0] = -a[1:]
    companion_t[np.arange(n - 2), np.arange(1, n - 1)] = 1.0
    return np.linalg.solve(np.eye(n - 1) - companion_t, b[1:] - a[1:] * b[0])


def lfilter(b: np.ndarray, a: np.ndarray, x: np.ndarray, zi: np.ndarray) -> np.ndarray:
    """IIR filter of a 1-D signal (direct form II transposed, as scipy), from the state `zi`."""
    b = [float(v) / a[0] for v in b]
    a = [float(v) / a[0] for v in a]
    n = max(len(a), len(b))
    b += [0.0] * (n - len(b))
    a += [0.0] * (n - len(a))
    z = [float(v) for v in zi] + [0.0]
    out = np.empty(len(x))
    for i, xi in enumerate(np.asarray(x, dtype=np.float64).tolist()):
        yi = b[0] * xi + z[0]
        for j in range(1, n):
            z[j - 1] = b[j] * xi - a[j] * yi + z[j]
        out[i] = yi
    return out


def filtfilt(b: np.ndarray, a: np.ndarray, x: np.ndarray, padlen: int | None = None) -> np.ndarray:
    """Zero-phase filtering of a 1-D signal, as `scipy.signal.filtfilt(b, a, x, padlen=padlen)`
    (default pad length 3 * max(len(a), len(b)); the signal must be longer than it)."""
    x = np.asarray(x, dtype=np.float64)
    edge = 3 * max(len(a), len(b)) if padlen is None else int(padlen)
    if x.shape[0] <= edge:
        raise ValueError(f"The length of the input vector x must be greater than padlen, which is {edge}.")
    if edge > 0:
        ext = np.concatenate([2 * x[0] - x[edge:0:-1], x, 2 * x[-1] - x[-2 : -edge - 2 : -1]])
    else:
        ext = x
    zi = lfilter_zi(b, a)
    y = lfilter(b, a, ext, zi * ext[0])
    y = lfilter(b, a, y[::-1], zi * y[-1])[::-1]
    return y[edge : len(y) - edge]


def periodogram(x: np.ndarray, fs: float, nfft: int) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, power density) as `scipy.signal.periodogram(x, fs, nfft=nfft, detrend=False)`."""
    x = np.asarray(x, dtype=np.float64)
    power = np.abs(np.fft.rfft(x, nfft)) ** 2 / (fs * x.shape[0])
    if nfft % 2:
        power[1:] *= 2
    else:
        power[1:-1] *= 2
    return np.fft.rfftfreq(nfft, 1.0 / fs), power
