"""Uniform frame sampling by seeking, frame caching, data URLs and clear errors for bad files."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from harness.core import DataError
from harness.media import DecodeStats, image_data_url, read_image, sample_frames, sample_frames_jpeg

TOTAL, FPS, GOP = 60, 10, 6


def draw(index: int) -> np.ndarray:
    """Frame i shows i in binary: 8 stripes of 8 px, white where the bit is set (survives lossy coding)."""
    bits = [(index >> b) & 1 for b in range(8)]
    row = np.repeat(np.array(bits, np.uint8) * 255, 8)
    return np.repeat(np.repeat(row[None, :, None], 48, axis=0), 3, axis=2)


def read(image) -> int:
    stripes = np.asarray(image.convert("L"), float).reshape(48, 8, 8).mean(axis=(0, 2))
    return sum(1 << b for b, v in enumerate(stripes) if v > 127)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    import av

    path = tmp_path_factory.mktemp("video") / "counter.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.gop_size = GOP
        stream.options = {"qscale": "2"}
        for i in range(TOTAL):
            frame = av.VideoFrame.from_ndarray(draw(i), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("n", [1, 4, 7, 16])
def test_frames_are_the_middles_of_n_equal_segments(video, n):
    expected = [int((i + 0.5) * TOTAL / n) for i in range(n)]  # e.g. n=4: 7, 22, 37, 52
    stats = DecodeStats()
    frames = sample_frames(video, n, stats=stats)
    assert stats.indices == expected
    got = [read(f) for f in frames]
    assert got == expected


def test_sampling_seeks_instead_of_decoding_the_whole_video(video):
    stats = DecodeStats()
    sample_frames(video, 4, stats=stats)
    assert stats.seeks == 4
    assert stats.decoded <= 4 * GOP < TOTAL  # at most one GOP per sample


def test_sampled_frames_are_cached_on_disk(video, tmp_path):
    first = DecodeStats()
    a = sample_frames_jpeg(video, 3, cache_dir=tmp_path, stats=first)
    again = DecodeStats()
    b = sample_frames_jpeg(video, 3, cache_dir=tmp_path, stats=again)
    assert a == b and len(a) == 3 and a[0][:3] == b"\xff\xd8\xff"
    assert first.seeks == 3 and again.seeks == 0
    assert len(list(tmp_path.iterdir())) == 1
    sample_frames_jpeg(video, 5, cache_dir=tmp_path)  # another frame count is another entry
    assert len(list(tmp_path.iterdir())) == 2


def test_missing_and_corrupt_videos_are_data_errors_naming_the_file(tmp_path):
    with pytest.raises(DataError, match="nope.mp4: video file does not exist"):
        sample_frames(tmp_path / "nope.mp4", 4)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(DataError, match="bad.mp4"):
        sample_frames(bad, 4)


def test_image_data_url_round_trips_and_rejects_non_images(tmp_path):
    png = b"\x89PNG\r\n\x1a\n" + b"rest"
    url = image_data_url(png)
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",")[1]) == png
    jpg = tmp_path / "x.jpg"
    jpg.write_bytes(b"\xff\xd8\xff\xe0junk")
    assert image_data_url(jpg).startswith("data:image/jpeg;base64,")
    txt = tmp_path / "notes.jpg"
    txt.write_text("hello")
    with pytest.raises(DataError, match="notes.jpg: not a PNG, JPEG, GIF or WebP image"):
        image_data_url(txt)
    with pytest.raises(DataError, match="missing.png: file does not exist"):
        image_data_url(tmp_path / "missing.png")


def test_read_image_decodes_and_names_the_missing_or_unreadable_file(tmp_path):
    from PIL import Image

    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), pixels)  # lossless PNG round trip
    grey = read_image(tmp_path / "a.png", mode="L")
    assert grey.shape == (4, 5) and grey.dtype == np.uint8
    with pytest.raises(DataError, match=r"gone\.png: frame file not found \(list\.csv row 2\)"):
        read_image(tmp_path / "gone.png", what="frame", where=" (list.csv row 2)")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"bad\.png: not a readable image \("):
        read_image(tmp_path / "bad.png")
    with pytest.raises(DataError, match="not a readable image"):  # a folder where a file was expected
        read_image(tmp_path)
