"""Classical face protections (FDeID-Toolbox's naive and k-Same methods), as pure functions.

Each takes an RGB uint8 image and the face box (left, top, right, bottom) and returns a new image;
only the box changes. Conventions follow FDeID-Toolbox (`core/fdeid/naive/*.py`, `core/fdeid/ksame`):
blur is OpenCV's Gaussian blur of the box with an even kernel bumped to the next odd size and sigma 0
(OpenCV derives it from the kernel); pixelate shrinks the box by `block` with linear interpolation and
enlarges it back with nearest neighbour; mask paints the box one colour (black). Gaussian noise adds
N(0, sigma²) in 0–255 units, drawn from a generator seeded by the caller (the image's own key, so one
image gets the same noise in every pair it appears in). k-Same replaces the face with the mean of the
k nearest reference faces (pixel L2 after resizing to the box; `average`) or with one of them drawn
at random (`select`), blended in through a soft elliptical mask as the toolbox does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Box = tuple[int, int, int, int]


def clip_box(box: Sequence[float], shape: Sequence[int]) -> Box:
    h, w = int(shape[0]), int(shape[1])
    x1, y1, x2, y2 = (int(v) for v in box)
    return max(0, min(x1, w)), max(0, min(y1, h)), max(0, min(x2, w)), max(0, min(y2, h))


def _region(image: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, Box]:
    out = np.array(image, dtype=np.uint8, copy=True)
    return out, clip_box(box, out.shape)


def blur(image: np.ndarray, box: Sequence[float], kernel: int = 60, sigma: float = 0.0) -> np.ndarray:
    """Gaussian blur of the face box (FDeID: kernel 60 -> 61, sigma 0 = OpenCV's default for the size)."""
    import cv2

    out, (x1, y1, x2, y2) = _region(image, box)
    k = int(kernel) + (1 - int(kernel) % 2)
    if x2 > x1 and y2 > y1:
        out[y1:y2, x1:x2] = cv2.GaussianBlur(np.ascontiguousarray(out[y1:y2, x1:x2]), (k, k), float(sigma))
    return out


def pixelate(image: np.ndarray, box: Sequence[float], block: int = 8) -> np.ndarray:
    """Mosaic of the face box: down by `block` (linear), back up (nearest)."""
    import cv2

    out, (x1, y1, x2, y2) = _region(image, box)
    if x2 > x1 and y2 > y1:
        face = np.ascontiguousarray(out[y1:y2, x1:x2])
        h, w = face.shape[:2]
        small = cv2.resize(face, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_LINEAR)
        out[y1:y2, x1:x2] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
    return out


def mask(image: np.ndarray, box: Sequence[float], color: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """A solid box over the face (black by default)."""
    out, (x1, y1, x2, y2) = _region(image, box)
    out[y1:y2, x1:x2] = np.asarray(color, dtype=np.uint8)
    return out


def gaussian_noise(image: np.ndarray, box: Sequence[float], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add N(0, sigma²) (0–255 units) inside the face box, rounded and clipped to uint8."""
    out, (x1, y1, x2, y2) = _region(image, box)
    face = out[y1:y2, x1:x2].astype(np.float64)
    out[y1:y2, x1:x2] = np.clip(np.rint(face + rng.normal(0.0, sigma, face.shape)), 0, 255).astype(np.uint8)
    return out


def soft_ellipse(h: int, w: int) -> np.ndarray:
    """FDeID's blending mask: a filled ellipse (axes 0.45 w, 0.55 h), Gaussian-softened, peak 1."""
    import cv2

    m = np.zeros((h, w), dtype=np.float32)
    cv2.ellipse(m, (w // 2, h // 2), (int(w * 0.45), int(h * 0.55)), 0, 0, 360, 1.0, -1)
    k = max(3, min(w, h) // 4)
    k += 1 - k % 2
    m = cv2.GaussianBlur(m, (k, k), 0)
    return m / m.max() if m.max() > 0 else m


def blend(image: np.ndarray, face: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """Paste `face` (already box-sized) into the box through the soft elliptical mask."""
    out, (x1, y1, x2, y2) = _region(image, box)
    h, w = y2 - y1, x2 - x1
    if h <= 0 or w <= 0:
        return out
    m = soft_ellipse(h, w)[:, :, None]
    mixed = face.astype(np.float32) * m + out[y1:y2, x1:x2].astype(np.float32) * (1 - m)
    out[y1:y2, x1:x2] = mixed.astype(np.uint8)
    return out


def _resize(face: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    return cv2.resize(np.ascontiguousarray(face), (w, h))


def k_nearest(face: np.ndarray, references: Sequence[np.ndarray], k: int) -> list[int]:
    """Indices of the k reference faces closest to `face` in pixel L2 (resized to its size), nearest first."""
    h, w = face.shape[:2]
    f = face.astype(np.float32) / 255.0
    dist = [float(np.linalg.norm(f - _resize(r, w, h).astype(np.float32) / 255.0)) for r in references]
    return [int(i) for i in np.argsort(dist, kind="stable")[: min(k, len(references))]]


def ksame(
    image: np.ndarray,
    box: Sequence[float],
    references: Sequence[np.ndarray],
    k: int = 10,
    variant: str = "average",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """k-Same: the mean of the k nearest reference faces (`average`) or one of them at random (`select`)."""
    x1, y1, x2, y2 = clip_box(box, np.shape(image))
    h, w = y2 - y1, x2 - x1
    if not references:
        raise ValueError("k-Same needs reference faces")
    if h <= 0 or w <= 0:
        return np.array(image, dtype=np.uint8, copy=True)
    face = np.asarray(image)[y1:y2, x1:x2]
    nearest = k_nearest(face, references, k)
    if variant == "average":
        new = np.mean([_resize(references[i], w, h).astype(np.float64) for i in nearest], axis=0).astype(np.uint8)
    elif variant == "select":
        pick = nearest[int((rng or np.random.default_rng(0)).integers(len(nearest)))]
        new = _resize(references[pick], w, h)
    else:
        raise ValueError(f"unknown k-Same variant {variant!r}; use average or select")
    return blend(image, new, (x1, y1, x2, y2))


def face_crop(image: np.ndarray, box: Sequence[float], pad: float = 0.1) -> np.ndarray:
    """The box enlarged by `pad` of its size on each side (FDeID's reference-face crop)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    pw, ph = int((x2 - x1) * pad), int((y2 - y1) * pad)
    X1, Y1, X2, Y2 = clip_box((x1 - pw, y1 - ph, x2 + pw, y2 + ph), np.shape(image))
    return np.asarray(image)[Y1:Y2, X1:X2]
