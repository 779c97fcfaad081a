"""Gait silhouettes: OpenGait's pretreatment, the gait energy image (GEI) and a GEI + PCA/LDA recogniser.

Pretreatment follows OpenGait `datasets/pretreatment.py` (re-implemented, behaviour as read there):
a frame whose pixel sum is <= 10000 is dropped (no person); rows are cropped to the first..last non-empty
row; the crop is resized to height 64 keeping its aspect ratio (cubic); the x-centre is the first column
where the cumulative column sum exceeds half the total (a frame without one, or centred at column 0, is
dropped); a 64-wide window around it is cut, padding 32 zero columns on both sides when it would leave the
image. OpenGait then cuts 10 columns off each side at load time (64x64 -> 64x44) and scales to [0, 1].

The recogniser (the CPU "black box" of gait_deid): GEI = mean of the 64x44 frames, PCA to `pca_dim`
components, LDA to at most (subjects - 1) dimensions, L2-normalised; distances are Euclidean (1-NN).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["GeiRecognizer", "cut_to_44", "gei", "load_pkl", "load_png_dir", "pretreat_frame", "pretreat_sequence"]

IMG_SIZE = 64


def pretreat_frame(img: np.ndarray, img_size: int = IMG_SIZE) -> np.ndarray | None:
    """One raw silhouette (HxW uint8, 0/255) -> img_size x img_size uint8, or None when dropped."""
    import cv2

    img = np.asarray(img)
    if img.ndim == 3:
        img = img[..., 0]
    img = img.astype(np.uint8)
    if int(img.sum(dtype=np.int64)) <= 10000:
        return None
    rows = img.sum(axis=1) != 0
    top, bottom = int(rows.argmax()), int(len(rows) - 1 - rows[::-1].argmax())
    img = img[top:bottom + 1, :]
    ratio = img.shape[1] / img.shape[0]
    if int(img_size * ratio) < 1:
        return None  # thinner than one output column (OpenGait's cv2.resize would fail on it)
    img = cv2.resize(img, (int(img_size * ratio), img_size), interpolation=cv2.INTER_CUBIC)
    csum = img.sum(axis=0, dtype=np.int64).cumsum()
    over = np.nonzero(csum > img.sum(dtype=np.int64) / 2)[0]
    if not over.size or over[0] == 0:
        return None
    half = img_size // 2
    left, right = int(over[0]) - half, int(over[0]) + half
    if left <= 0 or right >= img.shape[1]:
        pad = np.zeros((img.shape[0], half), dtype=img.dtype)
        img = np.concatenate([pad, img, pad], axis=1)
        left, right = left + half, right + half
    return img[:, left:right].astype(np.uint8)


def pretreat_sequence(frames: Sequence[np.ndarray]) -> np.ndarray:
    """[n, 64, 64] uint8 of the frames that survive pretreatment (may be empty)."""
    kept = [f for f in (pretreat_frame(x) for x in frames) if f is not None and f.shape == (IMG_SIZE, IMG_SIZE)]
    return np.stack(kept) if kept else np.zeros((0, IMG_SIZE, IMG_SIZE), np.uint8)


def cut_to_44(seq: np.ndarray) -> np.ndarray:
    """OpenGait's load-time cut: drop w // 64 * 10 columns on each side and scale to [0, 1] float32."""
    seq = np.asarray(seq)
    cut = seq.shape[-1] // 64 * 10
    return (seq[..., cut:seq.shape[-1] - cut] / 255.0).astype(np.float32)


def load_png_dir(folder: Path) -> np.ndarray:
    """A CASIA-B silhouette folder of PNG frames (sorted by name) -> pretreated [n, 64, 64] uint8."""
    from PIL import Image

    files = sorted(Path(folder).glob("*.png"))
    frames = []
    for f in files:
        with Image.open(f) as im:
            frames.append(np.asarray(im.convert("L")))
    return pretreat_sequence(frames)


_PKL_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays (and plain lists/tuples of them) only: any other global is refused, so a
    crafted .pkl cannot run code."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _PKL_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return super().find_class(module, name)


def load_pkl(path: Path) -> np.ndarray:
    """An OpenGait .pkl sequence (pickled uint8 [n, 64, 64]) read with a restricted unpickler that only
    builds numpy arrays; anything else raises ValueError naming the file."""
    try:
        with open(path, "rb") as fh:
            obj = _ArrayUnpickler(fh).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, KeyError) as exc:
        raise ValueError(f"{path}: not a pickled numpy array ({exc})") from None
    arr = np.asarray(obj)
    if arr.ndim != 3 or arr.dtype == object:
        raise ValueError(f"{path}: expected a [frames, height, width] array, got shape {arr.shape}")
    return arr.astype(np.uint8)


def gei(seq44: np.ndarray) -> np.ndarray:
    """Gait energy image: the mean frame of a [n, 64, 44] float sequence, flattened."""
    if len(seq44) == 0:
        raise ValueError("empty silhouette sequence: no GEI")
    return np.asarray(seq44, dtype=np.float64).mean(axis=0).ravel()


class GeiRecognizer:
    """PCA + LDA on GEIs, fitted on training subjects; `embed` gives L2-normalised vectors."""

    def __init__(self, pca_dim: int = 150) -> None:
        self.pca_dim = pca_dim
        self.pca, self.lda = None, None

    def fit(self, geis: np.ndarray, labels: Sequence[str]) -> GeiRecognizer:
        from sklearn.decomposition import PCA
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        geis = np.asarray(geis)
        if len(set(labels)) < 2:
            raise ValueError("the recogniser needs at least two training subjects")
        dim = max(1, min(self.pca_dim, len(geis) - 1, geis.shape[1]))
        self.pca = PCA(n_components=dim, random_state=0).fit(geis)
        self.lda = LinearDiscriminantAnalysis().fit(self.pca.transform(geis), list(labels))
        return self

    def predict(self, geis: np.ndarray) -> np.ndarray:
        """The LDA's class for each GEI (used as a classifier, e.g. the Scoliosis1K screener)."""
        if self.pca is None:
            raise RuntimeError("recogniser not fitted")
        return self.lda.predict(self.pca.transform(np.atleast_2d(geis)))

    def embed(self, geis: np.ndarray) -> np.ndarray:
        if self.pca is None:
            raise RuntimeError("recogniser not fitted")
        z = self.lda.transform(self.pca.transform(np.atleast_2d(geis)))
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
