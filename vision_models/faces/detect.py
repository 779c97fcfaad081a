"""Face detection and landmarks with dlib's models, read by path from `face-recognition-models`.

Why by path: `face_recognition_models` imports `pkg_resources` (gone from new setuptools), and the
`face_recognition` package pulls a source build of dlib. The four `.dat` files ship inside the wheel,
so we locate its folder with `importlib.util.find_spec` (no import) and load them with dlib directly.

Large photos are shrunk to `max_side` pixels before HOG detection (HOG cost grows with the pixel
count; faces in web photos stay far above the detector's 80 px minimum); boxes are mapped back.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.core import HarnessError

MODEL_FILES = {
    "recognizer": "dlib_face_recognition_resnet_model_v1.dat",
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "cnn_detector": "mmod_human_face_detector.dat",
}


def model_path(kind: str) -> Path:
    """Path of one of dlib's model files shipped by the `face-recognition-models` wheel."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError("dlib face models missing: pip install 'harness-eval[faces]' (face-recognition-models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / MODEL_FILES[kind]
    if not path.is_file():
        raise HarnessError(f"weights missing: {path} (reinstall face-recognition-models)")
    return path


def _dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise HarnessError("dlib missing: pip install 'harness-eval[faces]' (dlib-bin)") from exc
    return dlib


# dlib's detector and shape predictors keep scratch buffers: sharing one between threads crashes the
# process (seen: a segfault with solver and scorer threads both detecting). One copy per thread.
_local = threading.local()


def hog_detector() -> Any:
    if not hasattr(_local, "hog"):
        _local.hog = _dlib().get_frontal_face_detector()
    return _local.hog


def shape_predictor(points: int = 5) -> Any:
    cache = _local.__dict__.setdefault("predictors", {})
    if points not in cache:
        cache[points] = _predictor_file(points)
    return cache[points]


def _predictor_file(points: int) -> Any:
    return _dlib().shape_predictor(str(model_path("landmarks68" if points == 68 else "landmarks5")))


@dataclass(frozen=True)
class Face:
    """One detected face: box (left, top, right, bottom) in image pixels, detector score, landmarks [n, 2]."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray

    def to_json(self) -> dict[str, Any]:
        return {"box": list(self.box), "score": self.score, "landmarks": self.landmarks.round(2).tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Face:
        return cls(tuple(int(v) for v in data["box"]), float(data["score"]), np.asarray(data["landmarks"], float))


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """HxWx3 uint8, C-contiguous (what dlib accepts); grey images are repeated over three channels."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise HarnessError(f"expected an HxWx3 image, got shape {img.shape}")
    img = img[:, :, :3]
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def _shrink(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    scale = max(img.shape[:2]) / max_side
    if scale <= 1:
        return img, 1.0
    from PIL import Image

    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((max(1, round(w / scale)), max(1, round(h / scale))), Image.BILINEAR)
    return np.asarray(small), scale


def detect_faces(image: np.ndarray, *, upsample: int = 1, max_side: int = 640, points: int = 5) -> list[Face]:
    """All faces dlib's HOG detector finds, largest first, with `points` (5 or 68) landmarks each."""
    dlib = _dlib()
    img = as_rgb_uint8(image)
    small, scale = _shrink(img, max_side)
    rects, scores, _ = hog_detector().run(small, upsample, 0.0)
    predictor = shape_predictor(points)
    h, w = img.shape[:2]
    faces = []
    for rect, score in zip(rects, scores, strict=True):
        box = (
            max(0, round(rect.left() * scale)),
            max(0, round(rect.top() * scale)),
            min(w, round(rect.right() * scale)),
            min(h, round(rect.bottom() * scale)),
        )
        shape = predictor(img, dlib.rectangle(*box))
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        faces.append(Face(box, float(score), pts))
    faces.sort(key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)
    return faces


def detect_face(image: np.ndarray, **kwargs: Any) -> Face | None:
    """The largest face, or None when the detector finds none."""
    faces = detect_faces(image, **kwargs)
    return faces[0] if faces else None


def load_image(path: str | Path) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB; a DataError naming the file when it cannot be read."""
    from harness.media import read_image

    return read_image(path)


def landmarks_at(image: np.ndarray, box: tuple[int, int, int, int], points: int = 68) -> np.ndarray:
    """dlib's `points` landmarks [n, 2] predicted inside a given box (no detection)."""
    shape = shape_predictor(points)(as_rgb_uint8(image), _dlib().rectangle(*(int(v) for v in box)))
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def landmark_nme(reference: np.ndarray, predicted: np.ndarray) -> float:
    """Mean point-to-point distance over the inter-ocular distance (outer eye corners 36 and 45 of the
    68-point reference), the 300-W normalisation."""
    ref = np.asarray(reference, dtype=np.float64)
    pred = np.asarray(predicted, dtype=np.float64)
    iod = float(np.linalg.norm(ref[36] - ref[45]))
    if iod <= 0:
        raise ValueError("landmark NME: zero inter-ocular distance")
    return float(np.linalg.norm(ref - pred, axis=1).mean() / iod)
