"""Face ROI for rPPG: detection every k frames on a downscaled grey frame, a smoothed box, and an
optional YCrCb skin mask. Detectors use weights that ship inside installed packages (OpenCV's Haar
cascade, scikit-image's LBP cascade). A frame without any valid box is *missing*: there is never
a silent whole-frame fallback."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["DETECTORS", "FaceTracker", "make_detector", "roi_mean", "skin_mask"]

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) in frame pixels
Detector = Callable[[np.ndarray], np.ndarray]  # grey uint8 [h, w] -> boxes [k, 4] as x, y, w, h

DETECTORS = ("haar", "lbp")


def make_detector(name: str = "haar", min_face_frac: float = 0.1) -> Detector:
    """A face detector on grey uint8 images; `min_face_frac` is the smallest face side as a share
    of the image's shorter side."""
    if name == "haar":
        import cv2

        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            from harness.core import HarnessError

            raise HarnessError(
                f"OpenCV {cv2.__version__} ships no Haar cascades (5.x dropped them): install "
                "'opencv-python-headless<5', or use the scikit-image detector (-S detector=lbp)")
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if cascade.empty():
            raise RuntimeError("OpenCV's Haar face cascade could not be loaded")

        def haar(grey: np.ndarray) -> np.ndarray:
            side = max(int(min(grey.shape) * min_face_frac), 20)
            boxes = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
            return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)

        return haar
    if name == "lbp":
        from skimage.data import lbp_frontal_face_cascade_filename
        from skimage.feature import Cascade

        lbp_cascade = Cascade(lbp_frontal_face_cascade_filename())

        def lbp(grey: np.ndarray) -> np.ndarray:
            side = max(int(min(grey.shape) * min_face_frac), 24)
            found = lbp_cascade.detect_multi_scale(
                img=grey.astype(np.float64) / 255.0, scale_factor=1.2, step_ratio=1,
                min_size=(side, side), max_size=grey.shape, min_neighbor_number=4,
            )
            return np.array([[d["c"], d["r"], d["width"], d["height"]] for d in found], dtype=np.float64).reshape(-1, 4)

        return lbp
    raise ValueError(f"unknown face detector {name!r}; choose one of {DETECTORS}")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Runs the detector every `detect_every` frames and keeps a smoothed face box.

    The largest detection wins. A detection within `deadband` (a share of the box width) of the
    current box on every side leaves the box unchanged, so detector jitter of a pixel or two does
    not step the ROI mean; a larger move updates the box as an exponential moving average (weight
    `smoothing` for the new detection), and a jump (IoU < 0.2) replaces it. Frames
    between detections reuse the box. After `max_stale` frames without a successful detection, or
    before the first one, `update` returns None (missing). `box_scale` scales the box about its
    centre (rPPG-Toolbox enlarges it 1.5x for deep models).
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
    ) -> None:
        if detect_every < 1:
            raise ValueError("detect_every must be at least 1")
        self.detect = make_detector(detector) if isinstance(detector, str) else detector
        self.detect_every = detect_every
        self.detect_width = detect_width
        self.smoothing = smoothing
        self.deadband = deadband
        self.max_stale = max_stale
        self.box_scale = box_scale
        self._box: np.ndarray | None = None  # float x0, y0, x1, y1
        self._since_found = 0
        self._index = 0
        self.n_detections = 0

    def _detect(self, frame: np.ndarray) -> np.ndarray | None:
        import cv2

        h, w = frame.shape[:2]
        scale = min(1.0, self.detect_width / w)
        small = frame if scale == 1.0 else cv2.resize(frame, (round(w * scale), round(h * scale)),
                                                      interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        boxes = self.detect(grey)
        self.n_detections += 1
        if len(boxes) == 0:
            return None
        x, y, bw, bh = boxes[np.argmax(boxes[:, 2] * boxes[:, 3])] / scale
        return np.array([x, y, x + bw, y + bh])

    def update(self, frame: np.ndarray) -> Box | None:
        """Feed the next RGB frame; return its ROI box or None when the face is missing."""
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


def skin_mask(roi_rgb: np.ndarray) -> np.ndarray:
    """uint8 mask (255 = skin) from fixed YCrCb thresholds (Cr 133-173, Cb 77-127; Chai & Ngan 1999)."""
    import cv2

    ycrcb = cv2.cvtColor(roi_rgb, cv2.COLOR_RGB2YCrCb)
    return cv2.inRange(ycrcb, (0, 133, 77), (255, 173, 127))


def roi_mean(frame: np.ndarray, box: Box | None = None, skin: bool = False) -> np.ndarray | None:
    """Mean RGB over `box` (whole frame when None), optionally over its skin pixels only;
    None when the skin mask is empty."""
    import cv2

    roi = frame if box is None else frame[box[1] : box[3], box[0] : box[2]]
    if not skin:
        return np.array(cv2.mean(roi)[:3])
    mask = skin_mask(roi)
    if not mask.any():
        return None
    return np.array(cv2.mean(roi, mask=mask)[:3])
