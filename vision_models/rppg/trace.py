"""Mean-RGB traces from videos, streamed frame by frame (memory does not grow with video length).

Decoding runs in its own thread (`video.prefetch`) in OpenCV's BGR order where the file stores it
(UBFC's AVIs: no colour conversion at all); the ROI mean is taken on a view of the frame (no copy)
and returned as R, G, B. Two crops:
- "tracked" (default): a face box tracked over the video (`roi.FaceTracker`), mean over the box;
- "toolbox": rPPG-Toolbox's unsupervised preprocessing — Haar on the first frame only (its default
  detectMultiScale settings, on the RGB frame as the toolbox passes it), the widest box enlarged 1.5x
  from its corner as the toolbox does, each frame cropped to it and resized to 72 x 72 (INTER_AREA),
  mean of the resized crop; the last frame is dropped, as its "Raw" data type does. Where the
  toolbox silently uses the whole frame when the first frame has no face, every frame is missing.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .roi import FaceTracker, load_cv2, roi_mean
from .video import check_decode, open_frames, prefetch

__all__ = ["CROPS", "RGBTrace", "extract_rgb_trace", "toolbox_face_box"]

CROPS = ("tracked", "toolbox")
TOOLBOX_SIZE = 72
TOOLBOX_BOX_COEF = 1.5


@dataclass
class RGBTrace:
    """Per-frame mean RGB of the ROI.

    `rgb` [T, 3] float64 (missing-face frames linearly interpolated from found frames; all NaN when
    no face was ever found), `fps`, `timestamps` [T] seconds from the first frame, `face_found` [T]
    bool (False = no valid ROI, the value in `rgb` is interpolated)."""

    rgb: np.ndarray
    fps: float
    timestamps: np.ndarray
    face_found: np.ndarray
    source: str = ""
    info: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def face_missing_fraction(self) -> float:
        return float(1.0 - self.face_found.mean()) if self.n_frames else 1.0


def _interpolate_missing(rgb: np.ndarray, found: np.ndarray) -> np.ndarray:
    if found.all():
        return rgb
    if not found.any():
        return np.full_like(rgb, np.nan)
    idx = np.arange(len(rgb))
    out = rgb.copy()
    for c in range(3):  # np.interp holds the end values before the first / after the last found frame
        out[~found, c] = np.interp(idx[~found], idx[found], rgb[found, c])
    return out


def toolbox_face_box(frame_rgb: np.ndarray, coef: float = TOOLBOX_BOX_COEF) -> tuple[int, int, int, int] | None:
    """rPPG-Toolbox's face box on one RGB frame as (x0, y0, x1, y1), or None without a face: Haar
    with detectMultiScale's defaults, the widest detection, x/y moved back by (coef - 1) / 2 of the
    size (clipped at 0) and the size scaled by coef, truncated to integers as its int array does."""
    from .roi import _check_haar, _thread_cascade

    _check_haar(load_cv2())
    faces = _thread_cascade("haar").detectMultiScale(frame_rgb)
    if len(faces) == 0:
        return None
    x, y, w, h = (int(v) for v in faces[int(np.argmax(np.asarray(faces)[:, 2]))])
    x0 = int(max(0.0, x - (coef - 1.0) / 2 * w))
    y0 = int(max(0.0, y - (coef - 1.0) / 2 * h))
    w1, h1 = int(coef * w), int(coef * h)
    return x0, y0, min(x0 + w1, frame_rgb.shape[1]), min(y0 + h1, frame_rgb.shape[0])


def extract_rgb_trace(
    source: str | Path | Iterable[np.ndarray],
    roi: str = "face",
    detector: str = "haar",
    detect_every: int = 10,
    max_frames: int | None = None,
    *,
    fps: float | None = None,
    skin: bool = False,
    detect_width: int = 320,
    max_stale_s: float = 2.0,
    box_scale: float = 1.0,
    crop: str = "tracked",
) -> RGBTrace:
    """Stream `source` (video file, folder of frames, or iterable of RGB frames with `fps`) and
    return its mean-RGB trace.

    roi="face", crop="tracked": a face box from `detector` ("haar" or "lbp"), detected every
    `detect_every` frames (on a frame downscaled to `detect_width`, then around the tracked face),
    smoothed, reused between detections and for at most `max_stale_s` seconds without a detection;
    `skin` keeps only YCrCb skin pixels inside it. crop="toolbox": the toolbox's preprocessing
    (module docstring). roi="full": the whole frame (explicitly asked for, never a fallback).
    A missing or unreadable video raises `harness.core.DataError` naming the file, and so does a
    video that decodes far fewer frames than its container announces (`video.check_decode`); a
    slightly short one is reported in `info["decode_warning"]`.
    """
    if roi not in ("face", "full"):
        raise ValueError(f"roi must be 'face' or 'full', got {roi!r}")
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    cv2 = load_cv2()
    stream = open_frames(source, fps, bgr=True)
    bgr = stream.bgr
    toolbox = roi == "face" and crop == "toolbox"
    tracker = None
    if roi == "face" and not toolbox:
        tracker = FaceTracker(detector, detect_every=detect_every, detect_width=detect_width,
                              max_stale=max(1, math.ceil(max_stale_s * stream.fps)), box_scale=box_scale, bgr=bgr)
    values = array("d")  # compact growing buffers: 8 bytes a value instead of a Python object
    stamps = array("d")
    found = array("b")
    nan3 = (math.nan, math.nan, math.nan)
    n = 0
    box: tuple[int, int, int, int] | None = None
    size = (TOOLBOX_SIZE, TOOLBOX_SIZE)
    frames = prefetch(stream.frames) if isinstance(source, (str, Path)) else stream.frames
    try:
        for t, frame in frames:
            if max_frames is not None and n >= max_frames:
                break
            if toolbox:
                if n == 0:
                    box = toolbox_face_box(frame[:, :, ::-1] if bgr else frame)
                mean = None
                if box is not None:
                    small = cv2.resize(frame[box[1] : box[3], box[0] : box[2]], size, interpolation=cv2.INTER_AREA)
                    mean = roi_mean(small, None, skin, bgr)
            elif tracker is None:
                mean = roi_mean(frame, None, skin, bgr)
            else:
                box = tracker.update(frame)
                mean = None if box is None else roi_mean(frame, box, skin, bgr)
            values.extend(nan3 if mean is None else mean)
            found.append(mean is not None)
            stamps.append(t)
            n += 1
    finally:
        close = getattr(frames, "close", None)
        if close is not None:  # stop the decoder thread and release the decoder (early stop at max_frames)
            close()
    info: dict[str, float | int | str] = {"roi": roi, "skin": int(skin)}
    stopped_early = max_frames is not None and n >= max_frames
    warning = None if stopped_early else check_decode(stream, n)
    if warning:
        info["decode_warning"] = warning
    if stream.expected_frames:
        info["expected_frames"] = stream.expected_frames
    rgb = np.frombuffer(values, dtype=np.float64).reshape(-1, 3).copy()
    face_found = np.frombuffer(found, dtype=np.int8).astype(bool)
    timestamps = np.frombuffer(stamps, dtype=np.float64).copy()
    if toolbox:
        info.update(crop="toolbox", box=str(box), size=TOOLBOX_SIZE)
        rgb, face_found, timestamps = rgb[:-1], face_found[:-1], timestamps[:-1]  # the toolbox's "Raw" drops it
    if tracker is not None:
        info.update(detector=detector, detect_every=detect_every, n_detections=tracker.n_detections)
    return RGBTrace(
        rgb=_interpolate_missing(rgb, face_found),
        fps=stream.fps,
        timestamps=timestamps,
        face_found=face_found,
        source=stream.name,
        info=info,
    )
