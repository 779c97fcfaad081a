"""Images and video frames for multimodal models.

Frames are sampled uniformly by seeking (PyAV): frame `i` of `n` is the one at index
`floor((i + 0.5) * total / n)` (the middle of the i-th of n equal segments). Each sample seeks to the
key frame before it and decodes forward only to it, so a long video is never decoded whole. Sampled
frames are cached on disk as JPEG, keyed by the file's path, size and mtime, the frame count and size.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core import DataError

_MAGIC = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}


def image_mime(data: bytes) -> str | None:
    for magic, mime in _MAGIC.items():
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def read_image(path: str | Path, *, mode: str = "RGB", what: str = "image", where: str = "") -> Any:
    """An image file decoded to a uint8 numpy array (HxWx3 for "RGB", HxW for "L"). A missing or
    unreadable file is a DataError naming it; `what` names the kind ("image", "frame") and `where`
    adds the listing that named it, e.g. " (prompts.csv row 3)"."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode))
    except FileNotFoundError:
        raise DataError(f"{path}: {what} file not found{where}") from None
    except (UnidentifiedImageError, OSError) as exc:  # also a directory where a file was expected
        raise DataError(f"{path}: not a readable {what}{where} ({exc})") from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file does not exist") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def image_data_url(src: Path | bytes, mime: str | None = None) -> str:
    """`data:image/...;base64,...` for an image file or encoded bytes (PNG, JPEG, GIF, WebP)."""
    data = src if isinstance(src, bytes) else _read(src)
    detected = image_mime(data)
    if detected is None and mime is None:
        where = "image bytes" if isinstance(src, bytes) else str(src)
        raise DataError(f"{where}: not a PNG, JPEG, GIF or WebP image (corrupt or unsupported)")
    return f"data:{mime or detected};base64,{base64.b64encode(data).decode()}"


def file_data_url(path: Path, mime: str) -> str:
    """Any file (e.g. a video for vLLM's `video_url`) as a data URL."""
    return f"data:{mime};base64,{base64.b64encode(_read(path)).decode()}"


def frame_indices(total: int, n: int) -> list[int]:
    """Uniform sample of `n` frame indices out of `total`: the middle of each of n equal segments."""
    if total <= 0 or n <= 0:
        return []
    n = min(n, total)
    return [int((i + 0.5) * total / n) for i in range(n)]


@dataclass
class DecodeStats:
    """How much work sampling took (tests check that a video is not decoded whole)."""

    seeks: int = 0
    decoded: int = 0
    indices: list[int] = field(default_factory=list)


def _open(path: Path) -> Any:
    import av

    if not path.exists():
        raise DataError(f"{path}: video file does not exist")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise DataError(f"{path}: cannot open video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: no video stream")
    return container


def video_frame_count(path: Path) -> int:
    container = _open(path)
    try:
        return _frame_count(container.streams.video[0], path)
    finally:
        container.close()


def _frame_count(stream: Any, path: Path) -> int:
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration is not None and rate:
        return int(round(float(stream.duration * stream.time_base * rate)))
    container_duration = getattr(getattr(stream, "container", None), "duration", None)  # microseconds
    if container_duration and rate:  # Matroska/WebM give neither a frame count nor a stream duration
        return int(round(container_duration / 1_000_000 * float(rate)))
    raise DataError(f"{path}: cannot tell the number of frames (no frame count or duration)")


_INFO: dict[tuple[str, int, int], tuple[int, float]] = {}


def video_info(path: Path) -> tuple[int, float]:
    """(frame count, frames per second) of a video, remembered by (path, size, mtime)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: video file does not exist") from None
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _INFO:
        container = _open(Path(path))
        try:
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            _INFO[key] = (_frame_count(stream, Path(path)), float(rate) if rate else 0.0)
        finally:
            container.close()
    return _INFO[key]


def frame_times(path: Path, n: int) -> list[float]:
    """Timestamps (seconds from the start) of the `n` frames `sample_frames` picks."""
    total, fps = video_info(path)
    return [i / fps if fps else 0.0 for i in frame_indices(total, n)]


def frames_intro(times: list[float]) -> str:
    """The line put before sampled frames so the model knows they are one video, in order, and when."""
    stamps = ", ".join(f"{t:.1f} s" for t in times)
    return (f"The next {len(times)} images are frames of one video, in time order, sampled at {stamps} "
            "from its start.")


def sample_frames(path: Path, n: int, *, max_side: int | None = None, stats: DecodeStats | None = None) -> list[Any]:
    """`n` uniformly spaced frames of a video as RGB PIL images (fewer if the video is shorter)."""
    import av

    stats = stats if stats is not None else DecodeStats()
    container = _open(path)
    try:
        stream = container.streams.video[0]
        total = _frame_count(stream, path)
        rate = stream.average_rate or stream.guessed_rate
        tb = stream.time_base
        start = stream.start_time or 0
        frames: list[Any] = []
        for index in frame_indices(total, n):
            target = start + int(round(index / (rate * tb)))  # pts of the wanted frame
            half = 0.5 / float(rate * tb)
            container.seek(target, stream=stream, backward=True, any_frame=False)
            stats.seeks += 1
            chosen, reached = None, False
            for frame in container.decode(stream):
                stats.decoded += 1
                chosen = frame
                if frame.pts is None or frame.pts >= target - half:
                    reached = True
                    break
            if chosen is None:
                raise DataError(f"{path}: no frame could be decoded near frame {index}")
            if not reached:  # the stream ended before the wanted frame: never send an earlier one in its place
                last = int(round(float((chosen.pts - start) * tb * rate)))
                if index - last > max(1, total // 100):  # more than a container's rounding
                    raise DataError(f"{path}: truncated or corrupt video: frames decode up to {last}, but the "
                                    f"container declares {total} (frame {index} was wanted)")
            image = chosen.to_image()
            if max_side and max(image.size) > max_side:
                image.thumbnail((max_side, max_side))
            frames.append(image)
            stats.indices.append(index)
        return frames
    except av.error.FFmpegError as exc:
        raise DataError(f"{path}: corrupt video ({exc})") from None
    finally:
        container.close()


def jpeg_bytes(image: Any, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _cache_key(path: Path, n: int, max_side: int | None, quality: int) -> str:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{path}: video file does not exist") from None
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{n}|{max_side}|{quality}"
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def sample_frames_jpeg(
    path: Path,
    n: int,
    *,
    max_side: int | None = 768,
    quality: int = 90,
    cache_dir: Path | None = None,
    stats: DecodeStats | None = None,
) -> list[bytes]:
    """`sample_frames` as JPEG bytes, cached in `cache_dir/<key>/` when a cache folder is given."""
    folder = cache_dir / _cache_key(path, n, max_side, quality) if cache_dir is not None else None
    if folder is not None and (folder / "done").exists():
        return [p.read_bytes() for p in sorted(folder.glob("*.jpg"))]
    frames = [jpeg_bytes(f, quality) for f in sample_frames(path, n, max_side=max_side, stats=stats)]
    if folder is not None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
        for i, data in enumerate(frames):
            (tmp / f"{i:05d}.jpg").write_bytes(data)
        (tmp / "done").touch()
        try:
            tmp.rename(folder)  # atomic: a concurrent sampler either wins or finds the folder
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return frames
