"""Face ROI for rPPG: detection on a downscaled grey frame, a smoothed box tracked between
detections, and an optional YCrCb skin mask. Detectors use weights that ship inside installed
packages (OpenCV's Haar cascade, scikit-image's LBP cascade). A frame without any valid box is
*missing*: there is never a silent whole-frame fallback.

Threads: OpenCV's `import cv2` re-imports itself (its bootstrap pops `cv2` from `sys.modules`), so a
second thread importing it at the same moment can get a half-built module without
`CascadeClassifier` or `cv2.data` — that was the "OpenCV ... ships no Haar cascades" error at
--concurrency > 1. `load_cv2()` imports it once under a lock (the solvers call it from the main
thread before any worker starts), and each thread builds its own cascade once (`threading.local`):
a cascade object is never shared between threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["DETECTORS", "FaceTracker", "load_cv2", "make_detector", "roi_mean", "skin_mask"]

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in frame pixels
# grey uint8 [h, w], smallest and largest face side in pixels (None: the detector's default)
# -> boxes [k, 4] as x, y, w, h
Detector = Callable[..., np.ndarray]

DETECTORS = ("haar", "lbp")
_CV2_LOCK = threading.Lock()
_cv2: ModuleType | None = None
_local = threading.local()


def load_cv2() -> ModuleType:
    """OpenCV, imported once under a lock; a HarnessError when it ships no Haar cascades (5.x)."""
    global _cv2
    if _cv2 is None:
        with _CV2_LOCK:
            if _cv2 is None:
                import cv2

                _cv2 = cv2
    return _cv2


def _check_haar(cv2: ModuleType) -> None:
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
        from harness.core import HarnessError

        raise HarnessError(
            f"OpenCV {getattr(cv2, '__version__', '?')} ships no Haar cascades (5.x dropped them): install "
            "'opencv-python-headless<5', or use the scikit-image detector (-S detector=lbp)")


def _thread_cascade(name: str) -> Any:
    """This thread's cascade `name`, built on first use in the thread."""
    cache = getattr(_local, "cascades", None)
    if cache is None:
        cache = _local.cascades = {}
    if name not in cache:
        if name == "haar":
            cv2 = load_cv2()
            _check_haar(cv2)
            cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
            if cascade.empty():
                raise RuntimeError("OpenCV's Haar face cascade could not be loaded")
        else:
            from skimage.data import lbp_frontal_face_cascade_filename
            from skimage.feature import Cascade

            cascade = Cascade(lbp_frontal_face_cascade_filename())
        cache[name] = cascade
    return cache[name]


def make_detector(name: str = "haar", min_face_frac: float = 0.1) -> Detector:
    """A face detector on grey uint8 images: `detect(grey, min_side=None, max_side=None)`.
    `min_face_frac` is the default smallest face side as a share of the image's shorter side. The
    cascade is loaded (and checked) here, in the calling thread, and once per thread after that."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; choose one of {DETECTORS}")
    _thread_cascade(name)  # fail early (no cascades in OpenCV 5) in the thread that builds the tracker
    if name == "haar":

        def haar(grey: np.ndarray, min_side: int | None = None, max_side: int | None = None) -> np.ndarray:
            side = min_side or max(int(min(grey.shape) * min_face_frac), 20)
            kwargs = {"maxSize": (max_side, max_side)} if max_side else {}
            boxes = _thread_cascade("haar").detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                                             minSize=(side, side), **kwargs)
            return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)

        return haar

    def lbp(grey: np.ndarray, min_side: int | None = None, max_side: int | None = None) -> np.ndarray:
        side = min_side or max(int(min(grey.shape) * min_face_frac), 24)
        found = _thread_cascade("lbp").detect_multi_scale(
            img=grey.astype(np.float64) / 255.0, scale_factor=1.2, step_ratio=1,
            min_size=(side, side), max_size=(max_side, max_side) if max_side else grey.shape,
            min_neighbor_number=4,
        )
        return np.array([[d["c"], d["r"], d["width"], d["height"]] for d in found], dtype=np.float64).reshape(-1, 4)

    return lbp


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Runs the detector every `detect_every` frames and keeps a smoothed face box.

    The first detection (and any after the face was lost) searches the whole frame downscaled to
    `detect_width`. Once a face is tracked, the next detections look for a face of about the
    tracked size only (0.7x to 1.45x) in the region around it (half a face width on each side),
    downscaled so that the face is ~`track_face_px` wide: a few cascade scales on a ~100 x 100 image
    instead of the full pyramid (~2 ms instead of ~22 ms at 640 x 480; the full search runs again
    when that finds nothing). The largest detection wins. A detection within
    `deadband` (a share of the box width) of the current box on every side leaves the box
    unchanged, so detector jitter of a pixel or two does not step the ROI mean; a larger move
    updates the box as an exponential moving average (weight `smoothing` for the new detection),
    and a jump (IoU < 0.2) replaces it. Frames between detections reuse the box. After `max_stale`
    frames without a successful detection, or before the first one, `update` returns None
    (missing). `box_scale` scales the box about its centre (rPPG-Toolbox enlarges it 1.5x for deep
    models). `bgr=True`: frames come in OpenCV's BGR order (no conversion on decode).
    """

    def __init__(
        self,
        detector: str | Detector = "haar",
        detect_every: int = 10,
        detect_width: int = 320,
        smoothing: float = 0.5,
        deadband: float = 0.1,
        max_stale: int = 60,
        box_scale: float = 1.0,
        track_face_px: int = 48,
        bgr: bool = False,
    ) -> None:
        if detect_every < 1:
            raise ValueError("detect_every must be at least 1")
        self.detect = make_detector(detector) if isinstance(detector, str) else detector
        self._sized = isinstance(detector, str)  # our detectors take min/max face sizes
        self.detect_every = detect_every
        self.detect_width = detect_width
        self.smoothing = smoothing
        self.deadband = deadband
        self.max_stale = max_stale
        self.box_scale = box_scale
        self.track_face_px = track_face_px
        self.bgr = bgr
        self._box: np.ndarray | None = None  # float x0, y0, x1, y1
        self._since_found = 0
        self._index = 0
        self.n_detections = 0

    def _search(self, frame: np.ndarray, scale: float, sizes: tuple[int, int] | None,
                region: tuple[int, int, int, int] | None = None) -> np.ndarray | None:
        cv2 = load_cv2()
        x0, y0 = (region[0], region[1]) if region is not None else (0, 0)
        part = frame if region is None else frame[region[1] : region[3], region[0] : region[2]]
        h, w = part.shape[:2]
        small = part if scale == 1.0 else cv2.resize(part, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                     interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY if self.bgr else cv2.COLOR_RGB2GRAY)
        boxes = self.detect(grey, *sizes) if sizes is not None else self.detect(grey)
        if len(boxes) == 0:
            return None
        x, y, bw, bh = boxes[np.argmax(boxes[:, 2] * boxes[:, 3])] / scale
        return np.array([x + x0, y + y0, x + x0 + bw, y + y0 + bh])

    def _detect(self, frame: np.ndarray) -> np.ndarray | None:
        self.n_detections += 1
        found = None
        if self._box is not None and self._sized:  # look for the tracked face near where it was
            bx0, by0, bx1, by1 = self._box
            face, face_h = float(bx1 - bx0), float(by1 - by0)
            h, w = frame.shape[:2]
            region = (max(0, int(bx0 - face / 2)), max(0, int(by0 - face_h / 2)),
                      min(w, int(bx1 + face / 2) + 1), min(h, int(by1 + face_h / 2) + 1))
            scale = min(1.0, self.track_face_px / max(face, 1.0))
            side = face * scale
            found = self._search(frame, scale, (max(int(0.7 * side), 20), int(1.45 * side) + 1), region)
        if found is None:
            found = self._search(frame, min(1.0, self.detect_width / frame.shape[1]), None)
        return found

    def update(self, frame: np.ndarray) -> Box | None:
        """Feed the next frame; return its ROI box or None when the face is missing."""
        if self._index % self.detect_every == 0:
            new = self._detect(frame)
            if new is not None:
                if self._box is None or _iou(new, self._box) < 0.2:
                    self._box = new
                elif np.abs(new - self._box).max() > self.deadband * (self._box[2] - self._box[0]):
                    self._box = self.smoothing * new + (1 - self.smoothing) * self._box
                self._since_found = 0
        self._index += 1
        if self._box is None:
            return None
        self._since_found += 1
        if self._since_found > self.max_stale:
            return None
        return self._frame_box(frame.shape)

    def _frame_box(self, shape: tuple[int, ...]) -> Box | None:
        assert self._box is not None
        cx, cy = (self._box[0] + self._box[2]) / 2, (self._box[1] + self._box[3]) / 2
        hw, hh = (self._box[2] - self._box[0]) * self.box_scale / 2, (self._box[3] - self._box[1]) * self.box_scale / 2
        x0, y0 = max(0, round(cx - hw)), max(0, round(cy - hh))
        x1, y1 = min(shape[1], round(cx + hw)), min(shape[0], round(cy + hh))
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def skin_mask(roi: np.ndarray, bgr: bool = False) -> np.ndarray:
    """uint8 mask (255 = skin) from fixed YCrCb thresholds (Cr 133-173, Cb 77-127; Chai & Ngan 1999)."""
    cv2 = load_cv2()
    ycrcb = cv2.cvtColor(roi, cv2.COLOR_BGR2YCrCb if bgr else cv2.COLOR_RGB2YCrCb)
    return cv2.inRange(ycrcb, (0, 133, 77), (255, 173, 127))


def roi_mean(frame: np.ndarray, box: Box | None = None, skin: bool = False, bgr: bool = False) -> np.ndarray | None:
    """Mean RGB over `box` (whole frame when None), optionally over its skin pixels only; None when
    the skin mask is empty. The box is a view of the frame (no copy); `bgr`: the frame is BGR, the
    mean is still returned as R, G, B."""
    cv2 = load_cv2()
    roi = frame if box is None else frame[box[1] : box[3], box[0] : box[2]]
    if skin:
        mask = skin_mask(roi, bgr)
        if not mask.any():
            return None
        mean = cv2.mean(roi, mask=mask)
    else:
        mean = cv2.mean(roi)
    return np.array(mean[2::-1] if bgr else mean[:3])
