"""Mean-RGB traces from videos, streamed frame by frame (memory does not grow with video length)."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .roi import FaceTracker, roi_mean
from .video import open_frames

__all__ = ["RGBTrace", "extract_rgb_trace"]


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
) -> RGBTrace:
    """Stream `source` (video file, folder of frames, or iterable of RGB frames with `fps`) and
    return its mean-RGB trace.

    roi="face": a face box from `detector` ("haar" or "lbp"), detected every `detect_every` frames
    on a frame downscaled to `detect_width`, smoothed, reused between detections and for at most
    `max_stale_s` seconds without a detection; `skin` keeps only YCrCb skin pixels inside it.
    roi="full": the whole frame (explicitly asked for, never a fallback).
    A missing or unreadable video raises `harness.core.DataError` naming the file.
    """
    if roi not in ("face", "full"):
        raise ValueError(f"roi must be 'face' or 'full', got {roi!r}")
    stream = open_frames(source, fps)
    tracker = None
    if roi == "face":
        tracker = FaceTracker(detector, detect_every=detect_every, detect_width=detect_width,
                              max_stale=max(1, math.ceil(max_stale_s * stream.fps)), box_scale=box_scale)
    values = array("d")  # compact growing buffers: 8 bytes a value instead of a Python object
    stamps = array("d")
    found = array("b")
    nan3 = (math.nan, math.nan, math.nan)
    n = 0
    for t, frame in stream.frames:
        if max_frames is not None and n >= max_frames:
            break
        if tracker is None:
            mean = roi_mean(frame, None, skin)
        else:
            box = tracker.update(frame)
            mean = None if box is None else roi_mean(frame, box, skin)
        values.extend(nan3 if mean is None else mean)
        found.append(mean is not None)
        stamps.append(t)
        n += 1
    close = getattr(stream.frames, "close", None)
    if close is not None:  # release the decoder when we stopped early at max_frames
        close()
    rgb = np.frombuffer(values, dtype=np.float64).reshape(-1, 3).copy()
    face_found = np.frombuffer(found, dtype=np.int8).astype(bool)
    info: dict[str, float | int | str] = {"roi": roi, "skin": int(skin)}
    if tracker is not None:
        info.update(detector=detector, detect_every=detect_every, n_detections=tracker.n_detections)
    return RGBTrace(
        rgb=_interpolate_missing(rgb, face_found),
        fps=stream.fps,
        timestamps=np.frombuffer(stamps, dtype=np.float64).copy(),
        face_found=face_found,
        source=stream.name,
        info=info,
    )
