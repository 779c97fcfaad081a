"""Classical (unsupervised) rPPG methods: mean RGB trace [T, 3] -> BVP [T].

Each method follows the behaviour of rPPG-Toolbox's `unsupervised_methods/methods/` (same windows,
filters and projections), re-written vectorised over frames. Where the toolbox does something odd,
the docstring says so and what is done here:

- POS: the toolbox's window loop stops one window early, so the last frame is never inside a
  window; here every full window is used (the last frame is covered).
- CHROM: the toolbox returns `(WinL/2) * (NWin + 1)` samples, fewer than T when T is not a multiple
  of the half window; here the uncovered tail is zero so the output always has T samples.
  `impl="toolbox"` (POS and CHROM; `run_method`) reproduces both toolbox behaviours exactly.
- ICA: the toolbox picks the source with the highest normalised spectral peak over the *whole*
  spectrum (not the pulse band); kept, since that is what its numbers are based on.
- PBV, LGI, OMIT and GREEN return unfiltered signals (with a DC offset for PBV/LGI/OMIT/GREEN),
  as in the toolbox; the evaluation's post-processing detrends and band-passes them.
- PBV: the "blood volume signature" is estimated from the data (normalised channel stds), not the
  fixed physiological signature of de Haan & van Leest; kept.
- OMIT: the projection is built from the first column of a QR decomposition of the 3 x T matrix,
  i.e. the colour direction of the *first frame* only; kept.
- detrend: the toolbox inverts a dense T x T matrix (O(T^2) memory); here the same smoothness-prior
  detrend is a banded solve (`detrend`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import dsp

__all__ = ["IMPLS", "METHODS", "chrom", "detrend", "green", "ica", "lgi", "omit", "pbv", "pos", "run_method"]

IMPLS = ("harness", "toolbox")  # see the module docstring: where the two differ, and why


def detrend(x: np.ndarray, lam: float = 100.0) -> np.ndarray:
    """Smoothness-prior detrend (Tarvainen et al. 2002) along axis 0: x - (I + lam^2 D'D)^-1 x.

    Same result as the toolbox's dense formula, solved as the symmetric pentadiagonal system it is
    (banded Cholesky, O(T) time and memory; numpy only, so scipy.linalg is never imported for it).
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    if n < 3:
        return np.zeros_like(x)
    # D'D of the (n - 2) x n second-difference operator D (rows 1, -2, 1), diagonal by diagonal:
    # column i meets rows r = i, i - 1, i - 2 of D (those in 0..n-3) with coefficients 1, -2, 1.
    i = np.arange(n)
    rows = lambda r: ((r >= 0) & (r <= n - 3)).astype(np.float64)  # noqa: E731 - valid row indicator
    d0 = (1.0 + lam**2 * (rows(i) + 4 * rows(i - 1) + rows(i - 2))).tolist()
    d1 = (lam**2 * -2 * (rows(i[:-1]) + rows(i[:-1] - 1))).tolist()
    d2 = (lam**2 * rows(i[:-2])).tolist()
    return x - _solve_pentadiagonal(d0, d1, d2, x)


def _solve_pentadiagonal(d0: list[float], d1: list[float], d2: list[float], rhs: np.ndarray) -> np.ndarray:
    """Solve A y = rhs for a symmetric positive-definite A with diagonals d0 (main), d1, d2 (banded
    Cholesky A = L L', then forward and back substitution; rhs [n] or [n, k])."""
    n = len(d0)
    diag, sub1, sub2 = [0.0] * n, [0.0] * n, [0.0] * n  # L[i, i], L[i, i - 1], L[i, i - 2]
    for i in range(n):
        l2 = d2[i - 2] / diag[i - 2] if i >= 2 else 0.0
        l1 = (d1[i - 1] - (sub1[i - 1] * l2 if i >= 2 else 0.0)) / diag[i - 1] if i >= 1 else 0.0
        diag[i] = math.sqrt(d0[i] - l1 * l1 - l2 * l2)
        sub1[i], sub2[i] = l1, l2
    rhs = np.asarray(rhs, dtype=np.float64)
    if rhs.ndim == 2:
        return np.stack([_solve_pentadiagonal(d0, d1, d2, rhs[:, k]) for k in range(rhs.shape[1])], axis=1)
    y = rhs.tolist()  # Python floats: scalar loops over a list are ~10x faster than over an array
    for i in range(n):  # L z = rhs
        v = y[i]
        if i >= 2:
            v -= sub2[i] * y[i - 2]
        if i >= 1:
            v -= sub1[i] * y[i - 1]
        y[i] = v / diag[i]
    for i in range(n - 1, -1, -1):  # L' y = z
        v = y[i]
        if i + 2 < n:
            v -= sub2[i + 2] * y[i + 2]
        if i + 1 < n:
            v -= sub1[i + 1] * y[i + 1]
        y[i] = v / diag[i]
    return np.array(y)


def _check(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.ndim != 2 or rgb.shape[1] != 3:
        raise ValueError(f"expected an RGB trace of shape [T, 3], got {rgb.shape}")
    return rgb


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def green(rgb: np.ndarray, fps: float) -> np.ndarray:
    """GREEN (Verkruysse et al. 2008): the raw green channel."""
    return _check(rgb)[:, 1].copy()


def pos(rgb: np.ndarray, fps: float, impl: str = "harness") -> np.ndarray:
    """POS (Wang et al. 2017): 1.6 s sliding windows (hop 1 frame), overlap-add, detrend (lambda 100),
    first-order Butterworth 0.75-3 Hz forward-backward. `impl="toolbox"` drops the last window, as
    the toolbox's loop does (its windows end at frames win..T-1, never at T)."""
    rgb = _check(rgb)
    n = rgb.shape[0]
    win = math.ceil(1.6 * fps)
    h_sum = np.zeros(n)
    n_windows = n - win + (1 if impl != "toolbox" else 0)
    if n_windows > 0:
        w = sliding_window_view(rgb, win, axis=0)[:n_windows]  # [n_windows, 3, win]
        cn = w / w.mean(axis=2, keepdims=True)
        s0 = cn[:, 1] - cn[:, 2]
        s1 = -2 * cn[:, 0] + cn[:, 1] + cn[:, 2]
        alpha = _safe_ratio(s0.std(axis=1), s1.std(axis=1))[:, None]
        h = s0 + alpha * s1
        h -= h.mean(axis=1, keepdims=True)
        n_win = h.shape[0]
        for k in range(win):  # overlap-add: loop over the window length, vectorised over windows
            h_sum[k : k + n_win] += h[:, k]
    bvp = detrend(h_sum, 100.0)
    b, a = dsp.butter1_bandpass(0.75, 3.0, fps)  # = signal.butter(1, [0.75 / fps * 2, 3 / fps * 2], "bandpass")
    padlen = min(3 * max(len(a), len(b)), bvp.shape[0] - 1)
    return dsp.filtfilt(b, a, bvp, padlen) if padlen >= 0 else np.zeros_like(bvp)


def _filtfilt(b: np.ndarray, a: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    from scipy import signal

    padlen = min(3 * max(len(a), len(b)), x.shape[axis] - 1)
    if padlen < 0:
        return np.zeros_like(x)
    return signal.filtfilt(b, a, x, axis=axis, padlen=padlen)


def chrom(rgb: np.ndarray, fps: float, impl: str = "harness") -> np.ndarray:
    """CHROM (de Haan & Jeanne 2013): 1.6 s windows with 50 % overlap; per window normalise by the
    mean, chrominance signals X = 3R - 2G, Y = 1.5R + G - 1.5B band-passed (3rd-order Butterworth
    0.7-2.5 Hz, forward-backward), S = X - (std X / std Y) Y, Hann window, overlap-add.
    `impl="toolbox"` returns the toolbox's `(win/2) * (n_windows + 1)` samples instead of T."""
    rgb = _check(rgb)
    n = rgb.shape[0]
    win = math.ceil(1.6 * fps)
    win += win % 2
    half = win // 2
    n_win = (n - half) // half
    total = half * (n_win + 1)
    out = np.zeros(n if impl != "toolbox" else max(total, 0))
    if n_win <= 0:
        return out
    from scipy import signal

    b, a = signal.butter(3, [0.7 / (fps / 2), 2.5 / (fps / 2)], btype="bandpass")
    w = sliding_window_view(rgb, win, axis=0)[::half][:n_win]  # [n_win, 3, win]
    cn = w / w.mean(axis=2, keepdims=True)
    xs = 3 * cn[:, 0] - 2 * cn[:, 1]
    ys = 1.5 * cn[:, 0] + cn[:, 1] - 1.5 * cn[:, 2]
    xf = _filtfilt(b, a, xs, axis=1)
    yf = _filtfilt(b, a, ys, axis=1)
    alpha = _safe_ratio(xf.std(axis=1), yf.std(axis=1))[:, None]
    s = (xf - alpha * yf) * signal.windows.hann(win)
    out[:total] += np.concatenate([s[:, :half].reshape(-1), np.zeros(half)])
    out[half:total] += s[:, half:].reshape(-1)
    return out


def _jade_real(x: np.ndarray, max_sweeps: int = 100) -> np.ndarray:
    """Sources [n, T] of real JADE (Cardoso) with as many sources as channels."""
    from scipy import linalg

    n, t = x.shape
    iw = linalg.sqrtm(x @ x.T / t).real
    y = np.linalg.solve(iw, x)  # whitened
    r = y @ y.T / t
    e4 = np.einsum("it,jt,kt,lt->ijkl", y, y, y, y, optimize=True) / t
    q = (
        e4
        - np.einsum("ij,kl->ijkl", r, r)
        - np.einsum("ik,jl->ijkl", r, r)
        - np.einsum("il,jk->ijkl", r, r)
    )
    vals, vecs = np.linalg.eigh(q.reshape(n * n, n * n))
    order = np.argsort(np.abs(vals))[::-1][:n]
    m = np.concatenate([vals[h] * vecs[:, h].reshape(n, n) for h in order], axis=1)  # [n, n*n]
    v = np.eye(n)
    thresh = 1.0 / math.sqrt(t) / 100
    for _ in range(max_sweeps):
        rotated = False
        for p in range(n - 1):
            for qi in range(p + 1, n):
                ip, iq = np.arange(p, n * n, n), np.arange(qi, n * n, n)
                g = np.stack([m[p, ip] - m[qi, iq], m[p, iq] + m[qi, ip]])
                gg = g @ g.T
                ton, toff = gg[0, 0] - gg[1, 1], gg[0, 1] + gg[1, 0]
                theta = 0.5 * math.atan2(toff, ton + math.sqrt(ton * ton + toff * toff))
                if abs(theta) > thresh:
                    rotated = True
                    c, s = math.cos(theta), math.sin(theta)
                    rot = np.array([[c, -s], [s, c]])
                    v[:, [p, qi]] = v[:, [p, qi]] @ rot
                    m[[p, qi], :] = rot.T @ m[[p, qi], :]
                    mp, mq = m[:, ip].copy(), m[:, iq].copy()
                    m[:, ip], m[:, iq] = c * mp + s * mq, -s * mp + c * mq
        if not rotated:
            break
    return v.T @ y


def ica(rgb: np.ndarray, fps: float) -> np.ndarray:
    """ICA (Poh et al. 2010): detrend each channel (lambda 100), z-score, JADE with three sources,
    keep the source with the highest normalised spectral peak, band-pass (3rd-order Butterworth
    0.7-2.5 Hz, forward-backward)."""
    rgb = _check(rgb)
    d = detrend(rgb, 100.0)
    sd = d.std(axis=0)
    z = _safe_ratio(d - d.mean(axis=0), np.broadcast_to(sd, d.shape).copy())
    src = _jade_real(z.T)
    spec = np.abs(np.fft.fft(src, axis=1)[:, 1:]) ** 2
    spec = spec[:, : spec.shape[1] // 2]
    peak = (spec / spec.sum(axis=1, keepdims=True)).max(axis=1)
    best = src[int(np.argmax(peak))]
    from scipy import signal

    b, a = signal.butter(3, [0.7 / (fps / 2), 2.5 / (fps / 2)], btype="bandpass")
    return _filtfilt(b, a, best)


def pbv(rgb: np.ndarray, fps: float) -> np.ndarray:
    """PBV (de Haan & van Leest 2014), toolbox variant: channels normalised by their means, signature
    = normalised channel stds / their norm, weights W = (C C')^-1 pbv, BVP = C' W / (pbv . W)."""
    c = (_check(rgb) / rgb.mean(axis=0)).T  # [3, T]
    sig = c.std(axis=1) / np.sqrt(c.var(axis=1).sum())
    w = np.linalg.lstsq(c @ c.T, sig, rcond=None)[0]
    return c.T @ w / (sig @ w)


def lgi(rgb: np.ndarray, fps: float) -> np.ndarray:
    """LGI (Pilz et al. 2018): project out the dominant colour direction (first left singular vector
    of the 3 x T trace) and keep the green row of the projection."""
    x = _check(rgb).T
    u = np.linalg.svd(x, full_matrices=False)[0][:, :1]
    return ((np.eye(3) - u @ u.T) @ x)[1]


def omit(rgb: np.ndarray, fps: float) -> np.ndarray:
    """OMIT (Alvarez Casado & Bordallo Lopez 2023): as LGI, with the direction taken from the first
    column of a QR decomposition of the 3 x T trace (the first frame's colour direction)."""
    x = _check(rgb).T
    q = np.linalg.qr(x)[0][:, :1]
    return ((np.eye(3) - q @ q.T) @ x)[1]


METHODS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "green": green,
    "ica": ica,
    "chrom": chrom,
    "pos": pos,
    "pbv": pbv,
    "lgi": lgi,
    "omit": omit,
}


def run_method(name: str, rgb: np.ndarray, fps: float, impl: str = "harness") -> np.ndarray:
    """BVP of method `name`; `impl` ("harness" or "toolbox") matters for POS and CHROM only."""
    if impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r}; choose one of {', '.join(IMPLS)}")
    if name in ("pos", "chrom"):
        return METHODS[name](rgb, fps, impl)  # type: ignore[call-arg]
    return METHODS[name](rgb, fps)
