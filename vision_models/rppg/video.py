"""Frame streaming for rPPG: video files (PyAV, OpenCV fallback), folders of image frames (PURE's
`Image<timestamp_ns>.png`) or any iterable of RGB frames. Frames are yielded one at a time so that
memory does not grow with the length of the video."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core import DataError

__all__ = ["FrameStream", "open_frames"]

_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
_NUMBER = re.compile(r"(\d+)")


@dataclass
class FrameStream:
    """An opened source: its frame rate, a name for messages, and an iterator of
    (timestamp in seconds from the first frame, RGB uint8 frame [H, W, 3])."""

    fps: float
    name: str
    frames: Iterator[tuple[float, np.ndarray]]


def open_frames(source: str | Path | Iterable[np.ndarray], fps: float | None = None) -> FrameStream:
    """Open `source` for streaming. Opening errors raise `DataError` naming the file at once;
    decoding errors raise it while iterating. `fps` overrides the container's rate (required for
    iterables of frames and for folders whose file names carry no timestamps)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return _open_folder(path, fps)
        if not path.is_file():
            raise DataError(f"{path}: no such video file")
        return _open_video(path, fps)
    if fps is None or fps <= 0:
        raise ValueError("a positive fps is required when frames are given as an iterable")
    return FrameStream(float(fps), "<frames>", _iter_array_frames(source, float(fps)))


def _iter_array_frames(frames: Iterable[np.ndarray], fps: float) -> Iterator[tuple[float, np.ndarray]]:
    for i, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {i}: expected an RGB frame [H, W, 3], got {frame.shape}")
        yield i / fps, np.ascontiguousarray(frame, dtype=np.uint8)


def _open_video(path: Path, fps: float | None) -> FrameStream:
    errors: list[str] = []
    try:
        import av

        container = av.open(str(path))
        if not container.streams.video:
            container.close()
            raise DataError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame/slice threads inside the decoder
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        rate_f = float(fps or (float(rate) if rate else 0.0))
        if rate_f <= 0:
            container.close()
            raise DataError(f"{path}: the video has no frame rate; pass fps")
        return FrameStream(rate_f, str(path), _iter_pyav(container, stream, path, rate_f))
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - try OpenCV before giving up
        errors.append(f"PyAV: {exc}")
    return _open_opencv(path, fps, errors)


def _iter_pyav(container, stream, path: Path, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    import av

    t0 = None
    i = -1
    try:
        for i, frame in enumerate(container.decode(stream)):  # noqa: B007 - i is used after the loop
            t = frame.time if frame.time is not None else i / fps
            t0 = t if t0 is None else t0
            yield t - t0, frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:
        raise DataError(f"{path}: decoding failed after {i + 1} frames: {exc}") from exc
    finally:
        container.close()
    if i < 0:
        raise DataError(f"{path}: the video has no decodable frames")


def _open_opencv(path: Path, fps: float | None, errors: list[str]) -> FrameStream:
    import cv2

    cap = cv2.VideoCapture(str(path))
    ok = cap.isOpened()
    rate = float(fps or (cap.get(cv2.CAP_PROP_FPS) if ok else 0.0) or 0.0)
    if not ok or rate <= 0:
        cap.release()
        errors.append("OpenCV: cannot open it" if not ok else "OpenCV: no frame rate")
        raise DataError(f"{path}: not a readable video ({'; '.join(errors)})")
    return FrameStream(rate, str(path), _iter_opencv(cap, path, rate))


def _iter_opencv(cap, path: Path, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    import cv2

    i = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            yield i / fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()
    if i == 0:
        raise DataError(f"{path}: the video has no decodable frames")


def _open_folder(folder: Path, fps: float | None) -> FrameStream:
    files = [p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_EXT]
    if not files:
        raise DataError(f"{folder}: no image frames (png/jpg/bmp/tif) in the folder")
    numbers = [_NUMBER.findall(p.stem) for p in files]
    if all(numbers):
        keyed = sorted(zip((int(n[-1]) for n in numbers), files, strict=True), key=lambda kv: kv[0])
        stamps = np.array([k for k, _ in keyed], dtype=np.float64)
        files = [p for _, p in keyed]
    else:
        files.sort()
        stamps = np.array([], dtype=np.float64)
    # PURE names frames Image<timestamp in ns>.png: large numbers are timestamps, small ones indices.
    if len(stamps) > 1 and np.median(np.diff(stamps)) > 1e6:
        times = (stamps - stamps[0]) * 1e-9
        rate = float(fps or 1.0 / np.median(np.diff(times)))
    else:
        if fps is None:
            raise DataError(f"{folder}: frame file names carry no timestamps; pass fps")
        rate = float(fps)
        times = np.arange(len(files)) / rate
    return FrameStream(rate, str(folder), _iter_folder(files, times))


def _iter_folder(files: list[Path], times: np.ndarray) -> Iterator[tuple[float, np.ndarray]]:
    import cv2

    for path, t in zip(files, times, strict=True):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"{path}: unreadable image frame")
        yield float(t), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
