"""Streamed RGB-trace extraction: face ROI found or reported missing (never a whole-frame
fallback), exact whole-frame means, DataError on bad files, PURE/UBFC layouts from the writers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.core import DataError
from vision_models.rppg.synthetic import make_pulse_video, pulse_frames, write_pure_subject, write_ubfc_subject
from vision_models.rppg.trace import extract_rgb_trace

SIZE = (160, 120)


@pytest.fixture(scope="module")
def face_video(tmp_path_factory) -> Path:
    return make_pulse_video(tmp_path_factory.mktemp("v") / "face.mkv", 72, 4.0, size=SIZE, seed=3).path


def test_face_is_found_in_every_frame_of_the_synthetic_video(face_video: Path) -> None:
    trace = extract_rgb_trace(face_video, roi="face", detect_every=5)
    assert trace.n_frames == 120
    assert trace.fps == pytest.approx(30.0)
    assert trace.face_missing_fraction == 0.0
    np.testing.assert_allclose(trace.timestamps, np.arange(120) / 30.0, atol=1e-3)  # mkv: 1 ms time base
    assert trace.info["n_detections"] == 24


def test_full_roi_equals_the_whole_frame_mean_of_the_lossless_video(face_video: Path) -> None:
    _, frames = pulse_frames(72, 4.0, 30.0, SIZE, seed=3)
    expected = np.array([f.reshape(-1, 3).astype(np.float64).mean(axis=0) for f in frames])
    trace = extract_rgb_trace(face_video, roi="full")
    np.testing.assert_allclose(trace.rgb, expected, atol=1e-9)
    assert trace.face_missing_fraction == 0.0


def test_video_without_a_face_is_all_missing_and_never_falls_back_to_the_whole_frame(tmp_path: Path) -> None:
    video = make_pulse_video(tmp_path / "noface.mkv", 72, 2.0, size=SIZE, face=False)
    trace = extract_rgb_trace(video.path, roi="face", detect_every=3)
    assert trace.face_missing_fraction == 1.0
    assert not trace.face_found.any()
    assert np.isnan(trace.rgb).all()


def test_frames_before_the_first_detection_are_missing_and_interpolated() -> None:
    _, empty = pulse_frames(72, 1.0, 30.0, SIZE, face=False)
    _, faces = pulse_frames(72, 2.0, 30.0, SIZE)
    frames = [*empty, *faces]  # 30 frames without a face, then 60 with one
    trace = extract_rgb_trace(frames, fps=30.0, detect_every=10)
    assert trace.face_found.tolist() == [False] * 30 + [True] * 60
    assert trace.face_missing_fraction == pytest.approx(1 / 3)
    np.testing.assert_allclose(trace.rgb[:30], np.repeat(trace.rgb[30:31], 30, axis=0))


def test_lbp_detector_and_skin_mask_also_find_the_face(face_video: Path) -> None:
    lbp = extract_rgb_trace(face_video, detector="lbp", detect_every=30)
    assert lbp.face_missing_fraction == 0.0
    skin = extract_rgb_trace(face_video, skin=True, detect_every=30)
    plain = extract_rgb_trace(face_video, detect_every=30)
    assert skin.face_missing_fraction == 0.0
    assert not np.allclose(skin.rgb, plain.rgb)


def test_max_frames_stops_early(face_video: Path) -> None:
    assert extract_rgb_trace(face_video, roi="full", max_frames=17).n_frames == 17


def test_missing_video_raises_data_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.avi"
    with pytest.raises(DataError, match="absent.avi"):
        extract_rgb_trace(path)


def test_corrupt_video_raises_data_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.avi"
    path.write_bytes(b"RIFF\x00\x00garbage" * 200)
    with pytest.raises(DataError, match="corrupt.avi"):
        extract_rgb_trace(path)


def test_pure_frame_folder_is_read_in_timestamp_order(tmp_path: Path) -> None:
    video = write_pure_subject(tmp_path, "01-01", hr_bpm=80, seconds=1.0, size=SIZE)
    names = sorted(p.name for p in video.path.iterdir())
    assert len(names) == 30 and names[0].startswith("Image1392643993")
    doc = json.loads((tmp_path / "01-01.json").read_text())
    assert len(doc["/Image"]) == 30 and len(doc["/FullPackage"]) == 60
    assert doc["/FullPackage"][0]["Value"]["pulseRate"] == 80
    trace = extract_rgb_trace(video.path, roi="full")
    assert trace.n_frames == 30
    assert trace.fps == pytest.approx(30.0, rel=1e-4)
    _, frames = pulse_frames(80, 1.0, 30.0, SIZE)
    np.testing.assert_allclose(trace.rgb, [f.reshape(-1, 3).mean(axis=0) for f in frames], atol=1e-9)
    assert extract_rgb_trace(video.path, detect_every=10).face_missing_fraction == 0.0


def test_ubfc_subject_layout(tmp_path: Path) -> None:
    video = write_ubfc_subject(tmp_path / "subject1", hr_bpm=66, seconds=1.0, size=SIZE)
    lines = (tmp_path / "subject1" / "ground_truth.txt").read_text().splitlines()
    ppg, hr, ts = (np.array(line.split(), dtype=float) for line in lines)
    assert len(lines) == 3 and len(ppg) == len(hr) == len(ts) == 30
    np.testing.assert_allclose(ppg, video.ppg, rtol=1e-6, atol=1e-7)
    assert (hr == 66).all() and ts[1] == pytest.approx(1 / 30)
    assert extract_rgb_trace(tmp_path / "subject1" / "vid.avi", roi="full").n_frames == 30
