"""rPPG reliability (issue 9 items 3, 5, 6): the face detector is safe across threads, bad ground
truth is a named error of that sample (counted, never scored), truncated videos are reported."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from harness.core import DataError
from tasks.rppg import RppgTask
from tasks.rppg.loaders import load_samples, read_reference, read_roi_ground_truth
from tasks.rppg.solvers import SOLVERS
from vision_models.rppg.synthetic import make_pulse_video, pulse_frames, write_ubfc_subject
from vision_models.rppg.trace import extract_rgb_trace

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ item 3: detectors across threads
RACE = textwrap.dedent("""
    import sys, threading
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the import race shows up
    import numpy as np
    frames = list(np.load(sys.argv[1]))  # OpenCV is not imported before the threads start
    from vision_models.rppg.roi import FaceTracker
    results, errors = [], []
    def run():
        try:
            tracker = FaceTracker("haar", detect_every=3)
            results.append([tracker.update(f) for f in frames])
        except Exception as exc:
            errors.append(repr(exc))
    threads = [threading.Thread(target=run) for _ in range(32)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(len(results), len(errors), errors[:1], all(r == results[0] for r in results), results[0][-1])
""")


@pytest.fixture(scope="module")
def race_frames(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("race") / "frames.npy"
    np.save(path, np.stack(list(pulse_frames(72, 0.4, 30.0, (160, 120), seed=1)[1])))
    return path


@pytest.mark.parametrize("attempt", range(6))
def test_face_detection_in_many_threads_of_a_fresh_process_never_errors_and_agrees(race_frames, attempt):
    """32 threads of a fresh interpreter build their trackers at once: before the fix, 1-2 of them
    often failed with "OpenCV ... ships no Haar cascades" (cv2's import raced)."""
    out = subprocess.run([sys.executable, "-c", RACE, str(race_frames)], capture_output=True, text=True, cwd=REPO,
                         timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    n_ok, n_err, errors, same, last_box = out.stdout.strip().split(" ", 4)
    assert (n_ok, n_err) == ("32", "0"), errors
    assert same == "True" and last_box != "None"


def test_traces_extracted_in_parallel_threads_are_identical(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    video = make_pulse_video(tmp_path / "v.mkv", 80, 3.0, size=(160, 120), motion_px=4, seed=2).path
    with ThreadPoolExecutor(8) as pool:
        traces = list(pool.map(lambda _: extract_rgb_trace(video, detect_every=5), range(8)))
    for t in traces[1:]:
        np.testing.assert_array_equal(t.rgb, traces[0].rgb)
    assert traces[0].face_missing_fraction == 0.0


def _cli(args: list[str], tmp_path: Path) -> tuple[dict, list[dict]]:
    from harness.cli import main

    out = tmp_path / "runs"
    assert main([*args, "--out", str(out), "--db", f"sqlite:///{tmp_path / 'lb.db'}", "--no-progress",
                 "--bootstrap", "20", "--no-cache"]) == 0
    (run_dir,) = out.glob("rppg-*")
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    return json.loads((run_dir / "manifest.json").read_text()), rows


def test_cli_at_the_default_concurrency_runs_every_subject_without_errors(tmp_path):
    data = tmp_path / "ubfc"
    for i, hr in enumerate((66.0, 84.0, 96.0), start=1):
        write_ubfc_subject(data / f"subject{i}", hr_bpm=hr, seconds=10.0, size=(160, 120), seed=i)
    manifest, rows = _cli(["run", "--task", "rppg", "--protocol", "ubfc", "--solver", "pos", "--data", str(data)],
                          tmp_path)
    assert manifest["concurrency"] == 8 and manifest["n_errors"] == 0, manifest.get("errors")
    for row in rows:  # within one periodogram bin (300 frames -> nfft 512 -> 3.5 bpm)
        assert abs(row["scores"]["hr_pred"][0] - row["scores"]["hr_ref"][0]) <= 60 * 30 / 512 + 1e-9


# ------------------------------------------------------------------ item 5: ground truth validation
def _skin_video(path: Path, hr: float) -> None:
    make_pulse_video(path, hr, 4.0, fps=30.0, size=(64, 48), face=False, amplitude=0.02, seed=int(hr))


def test_roi_ground_truth_rows_are_validated_one_video_at_a_time(tmp_path):
    gt = tmp_path / "India_GT.csv"
    gt.write_text("Subject,Heart_Rate(BPM)\nvideo1,80.5\nvideo2,nan\nvideo3,inf\nvideo4,0\nvideo5,-70\n"
                  "video6,300\nvideo7,75\nvideo7,76\nvideo8,abc\nvideo9,72\n")
    values, problems = read_roi_ground_truth(gt)
    assert values == {"video1": 80.5, "video9": 72.0}
    assert set(problems) == {f"video{i}" for i in range(2, 9)}
    assert "line 3" in problems["video2"] and "30-240 bpm" in problems["video4"]
    assert "on 2 rows (lines 8, 9)" in problems["video7"]
    assert all(p.startswith(str(gt)) for p in problems.values())


def test_bad_roi_references_are_errored_samples_and_metrics_count_only_the_valid(tmp_path):
    data = tmp_path / "roi"
    (data / "Ground_Truth").mkdir(parents=True)
    rows = {"video1": "80", "video2": "nan", "video3": "-72", "video4": "260"}
    for name in rows:
        _skin_video(data / "Data" / "India" / f"{name}_forehead.avi", 80.0)
    (data / "Data" / "India" / "video5_forehead.avi").write_bytes(
        (data / "Data" / "India" / "video1_forehead.avi").read_bytes())  # no row for video5
    (data / "Ground_Truth" / "India_GT.csv").write_text(
        "Subject,Heart_Rate(BPM)\n" + "".join(f"{k},{v}\n" for k, v in rows.items()) + "video1,80\n")
    manifest, records = _cli(["run", "--task", "rppg", "--protocol", "roi", "--solver", "green",
                              "--data", str(data)], tmp_path)
    by_id = {r["sample_id"]: r for r in records}
    assert manifest["n_samples"] == 5 and manifest["n_errors"] == 5  # video1 is on two rows: ambiguous too
    assert "on 2 rows" in by_id["India/video1/forehead"]["error"]
    assert "India_GT.csv" in by_id["India/video2/forehead"]["error"]
    assert "no row for video5" in by_id["India/video5/forehead"]["error"]
    (data / "Ground_Truth" / "India_GT.csv").write_text(
        "Subject,Heart_Rate(BPM)\n" + "".join(f"{k},{v}\n" for k, v in rows.items()))
    manifest, records = _cli(["run", "--task", "rppg", "--protocol", "roi", "--solver", "green",
                              "--data", str(data)], tmp_path / "again")
    metrics = json.loads(next((tmp_path / "again" / "runs").glob("rppg-*/metrics.json")).read_text())
    assert manifest["n_errors"] == 4 and metrics["metrics"]["mae"]["n"] == 1  # only video1 is scored


def _ubfc_sample(tmp_path: Path, ppg_values: np.ndarray, n_frames: int = 60):
    folder = tmp_path / "subject1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vid.avi").write_bytes(b"")
    t = np.arange(len(ppg_values)) / 30.0
    lines = [ppg_values, np.full(len(ppg_values), 72.0), t]
    (folder / "ground_truth.txt").write_text("\n".join(" ".join(f"{v:.7e}" for v in ln) for ln in lines) + "\n")
    (sample,) = load_samples(tmp_path, "ubfc")
    return sample


def test_ubfc_ppg_shorter_than_the_video_is_an_error_naming_the_file(tmp_path):
    sample = _ubfc_sample(tmp_path, np.sin(np.arange(50) / 3))
    with pytest.raises(DataError, match=r"ground_truth.txt: the PPG has 50 values, the video 60 frames"):
        read_reference(sample.target, 60, 30.0)
    assert len(read_reference(sample.target, 50, 30.0)) == 50
    pred = {"bvp": list(np.sin(np.arange(60) / 3)), "fps": 30.0, "n_frames": 60, "band_hz": [0.6, 3.3],
            "window_s": 0, "hr_method": "fft"}
    with pytest.raises(DataError, match="ends early"):
        RppgTask().score(sample, pred)


def test_a_memoised_reference_cannot_be_changed_by_its_reader(tmp_path):
    """References are parsed once per process (a board scores many runs in one): what one caller gets
    is read-only, so an in-place edit raises instead of changing every later score."""
    sample = _ubfc_sample(tmp_path, np.sin(np.arange(60) / 3))
    ref = read_reference(sample.target, 60, 30.0)
    with pytest.raises(ValueError, match="read-only"):
        ref -= ref.mean()
    pred = {"bvp": list(np.sin(np.arange(60) / 3.1)), "fps": 30.0, "n_frames": 60, "band_hz": [0.6, 3.3],
            "window_s": 0, "hr_method": "fft"}
    assert RppgTask().score(sample, pred) == RppgTask().score(sample, pred)
    np.testing.assert_allclose(read_reference(sample.target, 60, 30.0), np.sin(np.arange(60) / 3), atol=1e-6)


@pytest.mark.parametrize(("values", "message"), [(np.full(60, 0.5), "flat"), (np.r_[np.sin(np.arange(59)), np.nan],
                                                                           "non-finite"),
                                                 (np.r_[np.sin(np.arange(59)), np.inf], "non-finite")])
def test_flat_or_non_finite_ubfc_ppg_is_an_error_of_that_sample(tmp_path, values, message):
    sample = _ubfc_sample(tmp_path, values)
    assert message in sample.target["reference_error"] and "ground_truth.txt" in sample.target["reference_error"]
    with pytest.raises(DataError, match=message):
        asyncio.run(SOLVERS["pos"]().solve(sample))  # refused before the video is opened


def test_time_based_reference_ending_before_the_video_is_an_error(tmp_path):
    d = tmp_path / "s1" / "stationary"
    d.mkdir(parents=True)
    (d / "view1.mp4").write_bytes(b"")
    (d / "ppg.csv").write_text("time_s,ppg\n" + "".join(f"{i / 30},{np.sin(i / 4)}\n" for i in range(45)))
    (sample,) = load_samples(tmp_path, "mvrd")
    assert len(read_reference(sample.target, 45, 30.0)) == 45
    with pytest.raises(DataError, match=r"ppg.csv: the reference ends at 1.467 s, the video at 1.967 s"):
        read_reference(sample.target, 60, 30.0)
    (d / "ppg.csv").write_text("time_s,ppg\n0,1\n0.1,2\n0.1,3\n0.2,4\n")  # duplicate timestamp
    (sample,) = load_samples(tmp_path, "mvrd")
    assert "increasing time_s" in sample.target["reference_error"]


# ------------------------------------------------------------------ item 6: truncated videos
def _truncate(src: Path, dst: Path, share: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * share)])
    return dst


def test_video_cut_to_a_third_is_an_error_naming_the_file_and_the_frame_counts(tmp_path):
    video = make_pulse_video(tmp_path / "v.mkv", 72, 3.0, size=(64, 48), face=False).path
    cut = _truncate(video, tmp_path / "cut.mkv", 1 / 3)
    with pytest.raises(DataError, match=r"cut.mkv: decoded \d+ of 90 frames \(\d+%\).*truncated"):
        extract_rgb_trace(cut, roi="full")
    raw = make_pulse_video(tmp_path / "raw.avi", 72, 3.0, size=(64, 48), face=False, codec="rawvideo").path
    with pytest.raises(DataError, match=r"raw_cut.avi: decoded \d+ of 90 frames"):
        extract_rgb_trace(_truncate(raw, tmp_path / "raw_cut.avi", 1 / 3), roi="full")


def test_slightly_short_video_decodes_with_a_warning_in_the_sample_info(tmp_path):
    raw = make_pulse_video(tmp_path / "raw.avi", 72, 4.0, size=(64, 48), face=False, codec="rawvideo").path
    cut = _truncate(raw, tmp_path / "video1_forehead.avi", 0.95)  # 113 or 114 of 120 frames
    trace = extract_rgb_trace(cut, roi="full")
    assert 110 <= trace.n_frames < 120 and "of 120 frames" in trace.info["decode_warning"]
    from harness.core import Sample

    sample = Sample("s", {"video": str(cut), "skin_roi": True}, {"hr_bpm": 72.0})
    out = asyncio.run(SOLVERS["green"]().solve(sample))
    assert "short decode" in out.info["decode_warning"] and out.prediction["n_frames"] == trace.n_frames
    assert "decode_warning" not in extract_rgb_trace(raw, roi="full").info  # a whole video: no warning


def test_frames_given_as_an_iterable_are_not_checked(tmp_path):
    _, frames = pulse_frames(72, 1.0, 30.0, (64, 48), face=False)
    assert "decode_warning" not in extract_rgb_trace(frames, roi="full", fps=30.0).info
