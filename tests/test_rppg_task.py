"""rPPG task: data layouts, references, scoring, report, and runs end to end."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest

from harness.core import DataError, Record
from tasks.rppg import RppgTask
from tasks.rppg.loaders import detect_layout, load_samples, read_reference
from tasks.rppg.postprocess import hr_fft, preprocess
from tasks.rppg.solvers import SOLVERS
from tests.conftest import shared_data_path


def _ubfc2(folder: Path, n: int = 60, fps: float = 30.0) -> np.ndarray:
    folder.mkdir(parents=True)
    (folder / "vid.avi").write_bytes(b"")
    t = np.arange(n) / fps
    ppg = np.sin(2 * np.pi * 1.2 * t)
    lines = [ppg, np.full(n, 72.0), t]
    (folder / "ground_truth.txt").write_text("\n".join(" ".join(f"{v:.7e}" for v in ln) for ln in lines) + "\n")
    return ppg


def test_ubfc_dataset2_layout(tmp_path):
    ppg = _ubfc2(tmp_path / "DATASET_2" / "subject1")
    _ubfc2(tmp_path / "DATASET_2" / "subject3")
    assert detect_layout(tmp_path) == "ubfc"
    samples = load_samples(tmp_path, "ubfc")
    assert [s.id for s in samples] == ["DATASET_2/subject1", "DATASET_2/subject3"]
    s = samples[0]
    assert s.inputs["video"].endswith("subject1/vid.avi")
    assert s.groups == {"subject": "subject1", "scenario": "dataset_2"}
    np.testing.assert_allclose(read_reference(s.target, 60, 30.0), ppg, atol=1e-6)


def test_ubfc_dataset1_layout_interpolates_ppg_at_frame_times(tmp_path):
    folder = tmp_path / "10-gt"
    folder.mkdir()
    (folder / "vid.avi").write_bytes(b"")
    ms = np.arange(0, 2000, 1000 / 60)  # 60 Hz oximeter, PPG = 10 * time in s (linear: exact interpolation)
    rows = [f"{m:.3f},72,98,{10 * m / 1000:.6f}" for m in ms]
    (folder / "gtdump.xmp").write_text("\n".join(rows) + "\n")
    (s,) = load_samples(tmp_path, "ubfc")
    assert s.target["ppg_format"] == "ubfc1" and s.groups["scenario"] == "dataset_1"
    np.testing.assert_allclose(read_reference(s.target, 30, 30.0), 10 * np.arange(30) / 30, atol=1e-5)


def test_malformed_ground_truth_is_an_error_of_that_sample_naming_the_file(tmp_path):
    folder = tmp_path / "subject5"
    folder.mkdir()
    (folder / "vid.avi").write_bytes(b"")
    _ubfc2(tmp_path / "subject6")
    (folder / "ground_truth.txt").write_text("0.1 0.2 0.3\n72 72\n")
    bad, good = load_samples(tmp_path, "ubfc")  # the run goes on: only subject5 is affected
    assert "reference_error" not in good.target
    with pytest.raises(DataError, match=r"subject5/ground_truth.txt: expected 3 lines"):
        RppgTask().score(bad, {"bvp": [0.0] * 3, "fps": 30.0, "band_hz": [0.6, 3.3], "window_s": 0, "hr_method": "fft"})
    (folder / "ground_truth.txt").write_text("0.1 abc 0.3\n72 72 72\n0 1 2\n")
    bad, _ = load_samples(tmp_path, "ubfc")
    assert "subject5/ground_truth.txt: not a list of numbers" in bad.target["reference_error"]
    with pytest.raises(DataError, match=r"subject5/ground_truth.txt: not a list of numbers"):
        asyncio.run(SOLVERS["pos"]().solve(bad))  # failed before its (empty) video is opened


def _pure(root: Path, name: str, nested: bool, n: int = 30) -> Path:
    base = root / name if nested else root
    frames = base / name
    frames.mkdir(parents=True)
    t0 = 1_392_643_993_642_815_000
    image_ts = [t0 + i * 33_333_333 for i in range(n)]
    for ts in image_ts:
        (frames / f"Image{ts}.png").write_bytes(b"")
    full = [{"Timestamp": t0 - 10_000_000 + k * 16_666_667, "Value": {"waveform": k, "pulseRate": 70}}
            for k in range(70)]
    doc = {"/FullPackage": full, "/Image": [{"Timestamp": t} for t in image_ts]}
    (base / f"{name}.json").write_text(json.dumps(doc))
    return frames


@pytest.mark.parametrize("nested", [False, True])
def test_pure_layout_both_nestings_resamples_waveform_to_frame_timestamps(tmp_path, nested):
    frames = _pure(tmp_path, "01-02", nested)
    assert detect_layout(tmp_path) == "pure"
    (s,) = load_samples(tmp_path, "pure")
    assert s.id == "01-02" and s.inputs["video"] == str(frames)
    assert s.groups == {"subject": "01", "scenario": "talking"} and s.inputs["fps"] == pytest.approx(30.0, rel=1e-6)
    # waveform k at t0 - 10 ms + k * 16.666667 ms, so at frame i (t0 + i * 33.333333 ms) it is (10 + 33.33 i) / 16.67
    expected = (10_000_000 + np.arange(30) * 33_333_333) / 16_666_667
    np.testing.assert_allclose(read_reference(s.target, 30, 30.0), expected, atol=1e-6)


def test_pure_json_without_full_package_is_a_data_error_of_that_sample(tmp_path):
    _pure(tmp_path, "03-01", nested=False)
    (tmp_path / "03-01.json").write_text(json.dumps({"/Image": []}))
    (s,) = load_samples(tmp_path, "pure")
    with pytest.raises(DataError, match="03-01.json: not a PURE json"):
        read_reference(s.target, 30, 30.0)


def test_mvrd_layout_three_views_and_ppg_csv(tmp_path):
    for scenario in ("stationary", "head-movement"):
        d = tmp_path / "s07" / scenario
        d.mkdir(parents=True)
        for v in (1, 2, 3):
            (d / f"view{v}.mp4").write_bytes(b"")
        (d / "ppg.csv").write_text("time_s,ppg\n" + "".join(f"{t / 100},{t}\n" for t in range(300)))
    assert detect_layout(tmp_path) == "mvrd"
    samples = load_samples(tmp_path, "mvrd")
    assert [s.id for s in samples] == ["s07/head-movement", "s07/stationary"]
    assert list(samples[0].inputs["views"]) == ["view1", "view2", "view3"]
    np.testing.assert_allclose(read_reference(samples[0].target, 60, 30.0), np.arange(60) * 100 / 30, atol=1e-9)
    (tmp_path / "s07" / "stationary" / "ppg.csv").unlink()
    with pytest.raises(DataError, match=r"stationary/ppg.csv: missing"):
        load_samples(tmp_path, "mvrd")


def test_layout_that_does_not_match_the_protocol_is_a_data_error(tmp_path):
    _ubfc2(tmp_path / "subject1")
    with pytest.raises(DataError, match=r"no pure recordings.*\.json.*looks like the 'ubfc' layout"):
        RppgTask().folds(tmp_path, "pure")
    with pytest.raises(DataError, match="Ground_Truth"):
        RppgTask().folds(tmp_path, "roi")


def test_roi_loader_on_the_real_skin_roi_set():
    root = shared_data_path("rppg_bias_eval_roi")
    task = RppgTask()
    assert task.resolve_data(root) == root and task.detected_protocol == "roi"
    samples = task.folds(root, "roi")[0].test
    assert len(samples) == 9
    by_id = {s.id: s for s in samples}
    assert by_id["India/video1/forehead"].target == {"hr_bpm": 85.413}
    assert by_id["India/video10/leftcheek"].target == {"hr_bpm": 80.657}
    assert by_id["India/video28/rightcheek"].target == {"hr_bpm": 78.443}
    assert {s.groups["scenario"] for s in samples} == {"forehead", "leftcheek", "rightcheek"}
    assert len({s.groups["subject"] for s in samples}) == 3 and all(s.inputs["skin_roi"] for s in samples)


def test_pos_on_a_real_skin_roi_video_scores_against_the_mean_hr():
    root = shared_data_path("rppg_bias_eval_roi")
    task = RppgTask()
    sample = next(s for s in task.folds(root, "roi")[0].test if s.id == "India/video10/forehead")
    solver = SOLVERS["pos"](window_s=10)
    pred = asyncio.run(solver.solve(sample)).prediction
    assert pred["roi"] == "full" and pred["fps"] == pytest.approx(15.0) and pred["n_frames"] == 412
    assert pred["band"] == "toolbox" and pred["band_hz"] == [0.6, 3.3] and pred["face_missing_fraction"] == 0.0
    assert pred["windows"] == [[0, 150], [150, 300], [300, 412]]
    scores = task.score(sample, json.loads(json.dumps(pred)))
    assert scores["hr_pred"] == pred["hr_bpm"] and scores["hr_ref"] == [80.657] * 3
    assert scores["abs_err"] == pytest.approx([abs(p - 80.657) for p in pred["hr_bpm"]])
    assert "macc" not in scores and len(scores["snr_db"]) == 3


def test_score_runs_the_reference_waveform_through_the_same_chain(tmp_path):
    ppg = _ubfc2(tmp_path / "subject1", n=300)
    (sample,) = load_samples(tmp_path, "ubfc")
    noisy = ppg + 0.2 * np.random.default_rng(0).normal(size=300)
    pred = {"bvp": noisy.tolist(), "fps": 30.0, "band": "recommended", "band_hz": [0.75, 2.5],
            "window_s": 0, "hr_method": "fft", "face_missing_fraction": 0.25}
    s = RppgTask().score(sample, pred)
    ref = np.loadtxt(tmp_path / "subject1" / "ground_truth.txt")[0]
    assert s["hr_ref"] == [pytest.approx(hr_fft(preprocess(ref, 30, "recommended"), 30, "recommended"))]
    assert s["hr_pred"] == [pytest.approx(hr_fft(preprocess(noisy, 30, "recommended"), 30, "recommended"))]
    assert 0.5 < s["macc"][0] <= 1 and s["face_missing_fraction"] == 0.25


def test_report_writes_plots_and_breakdowns(tmp_path):
    recs = [Record(sample_id=f"v{i}", fold="test", target=None, groups={"subject": f"s{i % 2}", "scenario": "x"},
                   prediction={"band": "toolbox", "window_s": 0.0, "hr_method": "fft"},
                   scores={"hr_pred": [70.0 + i, 80.0], "hr_ref": [71.0, 80.0 + i], "snr_db": [1.0, 2.0],
                           "face_missing_fraction": 0.1 * i}) for i in range(4)]
    rep = RppgTask().report(recs, "ubfc", tmp_path)
    assert sorted(Path(p).name for p in rep["plots"]) == ["hr_bland_altman.svg", "hr_scatter.svg"]
    for path in rep["plots"]:  # well-formed SVG with one marker per window (4 records x 2 windows)
        root = ElementTree.parse(path).getroot()
        assert root.tag.endswith("svg") and len(root.findall("{http://www.w3.org/2000/svg}circle")) == 8
    assert set(rep["per_subject"]) == {"s0", "s1"} and rep["per_subject"]["s0"]["n"] == 4
    assert rep["face_detection"]["videos_with_missing_frames"] == 3
    assert "standard error" in rep["pearson_r_text"] and rep["chain"]["band"] == "toolbox"


def test_solver_options_are_validated_and_recorded():
    s = SOLVERS["chrom"](band="recommended", window_s="10", hr_method="peak")
    assert s.options == {"band": "recommended", "window_s": 10.0, "hr_method": "peak", "roi": "face",
                         "crop": "tracked", "detector": "haar", "detect_every": 10, "impl": "harness",
                         "fusion": "mean", "max_frames": None}
    explicit = SOLVERS["chrom"](band="recommended", window_s=10, hr_method="peak", impl="harness")
    assert explicit.identity() == s.identity()  # an explicit default is the same identity
    with pytest.raises(Exception, match="band='wide'"):
        SOLVERS["pos"](band="wide")
    with pytest.raises(Exception, match="unknown option 'crop_face'"):
        SOLVERS["pos"](crop_face="toolbox")


def test_end_to_end_cli_on_the_real_roi_set(tmp_path):
    cli = pytest.importorskip("harness.cli")
    root = shared_data_path("rppg_bias_eval_roi")
    rc = cli.main(["run", "--task", "rppg", "--protocol", "roi", "--solver", "pos", "--data", str(root),
                   "--out", str(tmp_path / "runs"), "--db", f"sqlite:///{tmp_path / 'lb.db'}",
                   "--no-progress", "--bootstrap", "50"])
    assert rc in (0, None)
    (run_dir,) = (tmp_path / "runs").glob("rppg-pos-*")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    text = json.dumps(metrics)
    assert '"mae"' in text and "hr_bland_altman.svg" in text
    assert (run_dir / "hr_bland_altman.svg").exists()


def test_end_to_end_synthetic_ubfc_subject_with_face_detection(tmp_path):
    synthetic = pytest.importorskip("vision_models.rppg.synthetic")
    synthetic.write_ubfc_subject(tmp_path / "subject1", hr_bpm=84.0, seconds=12.0, fps=30.0)
    task = RppgTask()
    (sample,) = task.folds(task.resolve_data(tmp_path), "ubfc")[0].test
    pred = asyncio.run(SOLVERS["pos"](detect_every=15).solve(sample)).prediction
    assert pred["roi"] == "face" and pred["face_missing_fraction"] < 0.1
    scores = task.score(sample, pred)
    assert abs(scores["hr_ref"][0] - 84.0) < 3
    assert scores["abs_err"][0] < 3 and scores["macc"][0] > 0.5


def test_multi_view_recording_is_fused_and_scored_per_view(tmp_path):
    synthetic = pytest.importorskip("vision_models.rppg.synthetic")
    d = tmp_path / "s01" / "head-movement"
    d.mkdir(parents=True)
    noise = {1: 0.5, 2: 20.0, 3: 0.5}  # view2 is the noisy one
    for v, std in noise.items():
        video = synthetic.make_pulse_video(d / f"view{v}.avi", 90.0, 10.0, fps=30.0, size=(128, 96),
                                           noise_std=std, seed=v, amplitude=0.02)
    (d / "ppg.csv").write_text("time_s,ppg\n" + "".join(f"{i / 30},{p}\n" for i, p in enumerate(video.ppg)))
    task = RppgTask()
    (sample,) = task.folds(tmp_path, "mvrd")[0].test
    assert sample.groups == {"subject": "s01", "scenario": "head-movement"}
    for fusion in ("mean", "best-snr"):
        pred = asyncio.run(SOLVERS["pos"](roi="full", fusion=fusion).solve(sample)).prediction
        assert set(pred["views"]) == {"view1", "view2", "view3"} and pred["fusion"] == fusion
        assert (pred["selected_view"] in ("view1", "view3")) if fusion == "best-snr" else pred["selected_view"] is None
        scores = task.score(sample, pred)
        assert abs(scores["hr_pred"][0] - 90.0) < 3 and abs(scores["hr_ref"][0] - 90.0) < 3
        assert {k for k in scores if k.startswith("hr_pred_")} == {"hr_pred_view1", "hr_pred_view2", "hr_pred_view3"}
