"""Frame streaming for rPPG: video files (PyAV, OpenCV fallback), folders of image frames (PURE's
`Image<timestamp_ns>.png`) or any iterable of RGB frames. Frames are yielded one at a time so that
memory does not grow with the length of the video; `prefetch` decodes in its own thread.

`bgr=True` asks for frames in OpenCV's BGR order: UBFC's uncompressed AVIs are stored as bgr24, so
they decode without any colour conversion (`FrameStream.bgr` says which order a source gave).

Short decodes (truncated or corrupt files): the container's frame count (or its duration x rate) is
compared with the frames decoded (`check_decode`). A decoder error after some frames ends the
stream instead of failing it, so the comparison can judge it:
- at least 99 % of the expected frames (or all but one): fine;
- 90-99 %: a warning (the solver puts it in the sample's info, the prediction is kept);
- under 90 %, or a decoder error with no frame count to compare with: a `DataError` for that sample.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.core import DataError

__all__ = ["FrameStream", "check_decode", "open_frames", "prefetch"]

_IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
_NUMBER = re.compile(r"(\d+)")
SHORT_WARN = 0.99  # decoded / expected below this: a warning
SHORT_ERROR = 0.90  # below this: an error for the sample


@dataclass
class FrameStream:
    """An opened source: its frame rate, a name for messages, and an iterator of
    (timestamp in seconds from the first frame, uint8 frame [H, W, 3], RGB or BGR as `bgr` says).
    `expected_frames` is the container's count (None when unknown); `status` is filled while
    iterating: frames decoded and the decoder error that ended the stream early, if any."""

    fps: float
    name: str
    frames: Iterator[tuple[float, np.ndarray]]
    bgr: bool = False
    expected_frames: int | None = None
    status: dict[str, Any] = field(default_factory=lambda: {"decoded": 0, "error": None})


def check_decode(stream: FrameStream, decoded: int) -> str | None:
    """Compare `decoded` frames with what the container announced (module docstring's rule):
    None when fine, a warning text when slightly short; raises DataError when far too short."""
    expected, error = stream.expected_frames, stream.status.get("error")
    if not expected:
        if error:
            raise DataError(f"{stream.name}: decoding failed after {decoded} frames: {error}")
        return None
    if decoded >= min(expected * SHORT_WARN, expected - 1):
        return None
    share = decoded / expected
    what = f"{stream.name}: decoded {decoded} of {expected} frames ({share:.0%})" + (f"; {error}" if error else "")
    if share < SHORT_ERROR:
        raise DataError(f"{what}: truncated or corrupt video (under {SHORT_ERROR:.0%} of its frames)")
    return f"{what}: short decode"


def open_frames(source: str | Path | Iterable[np.ndarray], fps: float | None = None, *,
                bgr: bool = False) -> FrameStream:
    """Open `source` for streaming. Opening errors raise `DataError` naming the file at once;
    decoding errors raise it while iterating. `fps` overrides the container's rate (required for
    iterables of frames and for folders whose file names carry no timestamps). `bgr`: prefer
    OpenCV's channel order (iterables are always taken as RGB; check `FrameStream.bgr`)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return _open_folder(path, fps, bgr)
        if not path.is_file():
            raise DataError(f"{path}: no such video file")
        return _open_video(path, fps, bgr)
    if fps is None or fps <= 0:
        raise ValueError("a positive fps is required when frames are given as an iterable")
    return FrameStream(float(fps), "<frames>", _iter_array_frames(source, float(fps)))


def prefetch(frames: Iterator[Any], depth: int = 8) -> Iterator[Any]:
    """Run `frames` (a decoder) in its own thread, `depth` items ahead; exceptions are re-raised
    here. Closing this generator stops the thread and closes the decoder."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce() -> None:
        item: Any = end
        try:
            for x in frames:
                while not stop.is_set():
                    try:
                        q.put(x, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            item = exc
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=produce, name="rppg-decode", daemon=True)
    thread.start()
    try:
        while True:
            x = q.get()
            if x is end:
                return
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        thread.join()


def _iter_array_frames(frames: Iterable[np.ndarray], fps: float) -> Iterator[tuple[float, np.ndarray]]:
    for i, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame {i}: expected an RGB frame [H, W, 3], got {frame.shape}")
        yield i / fps, np.ascontiguousarray(frame, dtype=np.uint8)


def _expected_frames(container: Any, stream: Any, rate: float) -> int | None:
    if stream.frames:
        return int(stream.frames)
    if stream.duration is not None and stream.time_base is not None:
        return int(round(float(stream.duration * stream.time_base) * rate))
    if container.duration:  # microseconds
        return int(round(container.duration / 1e6 * rate))
    return None


def _open_video(path: Path, fps: float | None, bgr: bool) -> FrameStream:
    errors: list[str] = []
    try:
        import av

        container = av.open(str(path))
        if not container.streams.video:
            container.close()
            raise DataError(f"{path}: no video stream")
        stream = container.streams.video[0]
        if stream.codec_context.name != "rawvideo":
            stream.thread_type = "AUTO"  # frame/slice threads inside the decoder (rawvideo has none)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        rate_f = float(fps or (float(rate) if rate else 0.0))
        if rate_f <= 0:
            container.close()
            raise DataError(f"{path}: the video has no frame rate; pass fps")
        expected = _expected_frames(container, stream, float(rate) if rate else rate_f)
        out = FrameStream(rate_f, str(path), iter(()), bgr, expected)
        out.frames = _iter_pyav(container, stream, path, rate_f, "bgr24" if bgr else "rgb24", out.status)
        return out
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - try OpenCV before giving up
        errors.append(f"PyAV: {exc}")
    return _open_opencv(path, fps, errors, bgr)


def _iter_pyav(container, stream, path: Path, fps: float, fmt: str,
               status: dict[str, Any]) -> Iterator[tuple[float, np.ndarray]]:
    import av

    t0 = None
    i = -1
    try:
        for i, frame in enumerate(container.decode(stream)):  # noqa: B007 - i is used after the loop
            t = frame.time if frame.time is not None else i / fps
            t0 = t if t0 is None else t0
            status["decoded"] = i + 1
            yield t - t0, frame.to_ndarray(format=fmt)
    except av.error.FFmpegError as exc:
        if i < 0:
            raise DataError(f"{path}: decoding failed: {exc}") from exc
        status["error"] = f"decoder error after {i + 1} frames ({exc})"  # judged by check_decode
    finally:
        container.close()
    if i < 0:
        raise DataError(f"{path}: the video has no decodable frames")


def _open_opencv(path: Path, fps: float | None, errors: list[str], bgr: bool) -> FrameStream:
    from .roi import load_cv2

    cv2 = load_cv2()

    cap = cv2.VideoCapture(str(path))
    ok = cap.isOpened()
    rate = float(fps or (cap.get(cv2.CAP_PROP_FPS) if ok else 0.0) or 0.0)
    if not ok or rate <= 0:
        cap.release()
        errors.append("OpenCV: cannot open it" if not ok else "OpenCV: no frame rate")
        raise DataError(f"{path}: not a readable video ({'; '.join(errors)})")
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    out = FrameStream(rate, str(path), iter(()), bgr, count if count > 0 else None)
    out.frames = _iter_opencv(cap, path, rate, bgr, out.status)
    return out


def _iter_opencv(cap, path: Path, fps: float, bgr: bool, status: dict[str, Any]) -> Iterator[tuple[float, np.ndarray]]:
    from .roi import load_cv2

    cv2 = load_cv2()

    i = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            status["decoded"] = i + 1
            yield i / fps, frame if bgr else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()
    if i == 0:
        raise DataError(f"{path}: the video has no decodable frames")


def _open_folder(folder: Path, fps: float | None, bgr: bool = False) -> FrameStream:
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
    return FrameStream(rate, str(folder), _iter_folder(files, times, bgr), bgr)


def _iter_folder(files: list[Path], times: np.ndarray, bgr: bool) -> Iterator[tuple[float, np.ndarray]]:
    from .roi import load_cv2

    cv2 = load_cv2()

    for path, t in zip(files, times, strict=True):
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise DataError(f"{path}: unreadable image frame")
        yield float(t), frame if bgr else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
