"""Fidelity to rPPG-Toolbox (issue 7 item 9): full-precision BVPs, `impl=toolbox` (POS's window count,
CHROM's length) and `crop=toolbox` (first-frame Haar box x1.5, 72x72 resize, last frame dropped).

The references here are written from the toolbox's documented behaviour, loop by loop, not imported."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest
from scipy import signal

from tasks.rppg import RppgTask
from tasks.rppg.solvers import SOLVERS, fill_missing
from vision_models.rppg.methods import detrend, run_method
from vision_models.rppg.synthetic import write_ubfc_subject
from vision_models.rppg.trace import extract_rgb_trace

FPS = 30.0


def _trace(n: int = 317, seed: int = 2) -> np.ndarray:
    t = np.arange(n) / FPS
    noise = np.random.default_rng(seed).normal(size=(n, 3))
    return 100 + noise + np.outer(np.sin(2 * np.pi * 1.3 * t), [0.3, 0.8, 0.5])


def _pos_toolbox_loop(rgb: np.ndarray, fps: float) -> np.ndarray:
    """The toolbox's POS loop: for every frame n, the window [n - l, n) once n >= l (so the last
    window ends at T - 1, never at T); then detrend (lambda 100) and a 0.75-3 Hz filtfilt."""
    n_frames, l_win = len(rgb), math.ceil(1.6 * fps)
    h_all = np.zeros(n_frames)
    for n in range(n_frames):
        m = n - l_win
        if m >= 0:
            cn = rgb[m:n] / rgb[m:n].mean(axis=0)
            s0 = cn[:, 1] - cn[:, 2]
            s1 = -2 * cn[:, 0] + cn[:, 1] + cn[:, 2]
            h = s0 + s0.std() / s1.std() * s1
            h_all[m:n] += h - h.mean()
    b, a = signal.butter(1, [0.75 / fps * 2, 3.0 / fps * 2], btype="bandpass")
    return signal.filtfilt(b, a, detrend(h_all, 100.0))


def test_pos_toolbox_impl_equals_the_toolbox_loop_and_differs_from_the_default():
    rgb = _trace()
    np.testing.assert_allclose(run_method("pos", rgb, FPS, "toolbox"), _pos_toolbox_loop(rgb, FPS), atol=1e-10)
    assert not np.allclose(run_method("pos", rgb, FPS, "harness"), _pos_toolbox_loop(rgb, FPS), atol=1e-6)


@pytest.mark.parametrize("n", [317, 320, 330])
def test_chrom_toolbox_impl_has_the_toolbox_length_and_the_same_samples(n):
    rgb = _trace(n)
    win = math.ceil(1.6 * FPS) + math.ceil(1.6 * FPS) % 2  # 48: even window, 24-frame hop
    n_win = (n - win // 2) // (win // 2)
    toolbox = run_method("chrom", rgb, FPS, "toolbox")
    harness = run_method("chrom", rgb, FPS, "harness")
    assert len(toolbox) == (win // 2) * (n_win + 1) and len(harness) == n
    np.testing.assert_array_equal(harness[: len(toolbox)], toolbox)
    assert not harness[len(toolbox):].any()  # the default pads the uncovered tail with zeros


def test_other_methods_ignore_impl():
    rgb = _trace()
    for name in ("green", "ica", "pbv", "lgi", "omit"):
        np.testing.assert_array_equal(run_method(name, rgb, FPS, "toolbox"), run_method(name, rgb, FPS))


@pytest.fixture(scope="module")
def ubfc(tmp_path_factory):
    root = tmp_path_factory.mktemp("ubfc")
    write_ubfc_subject(root / "subject1", hr_bpm=78.0, seconds=8.0, fps=FPS, size=(160, 120), seed=4)
    task = RppgTask()
    (sample,) = task.folds(task.resolve_data(root), "ubfc")[0].test
    return task, sample


def test_bvp_is_stored_in_full_precision_and_scores_from_it_equal_the_prediction(ubfc):
    task, sample = ubfc
    solver = SOLVERS["green"](window_s=2)
    out = asyncio.run(solver.solve(sample))
    pred = json.loads(json.dumps(out.prediction))  # what samples.jsonl holds
    trace = extract_rgb_trace(sample.inputs["video"], detect_every=10)
    expected = run_method("green", fill_missing(trace.rgb), trace.fps)
    assert pred["bvp"] == expected.tolist()  # every float64 bit, not 6 significant digits
    scores = task.score(sample, pred)
    assert scores["hr_pred"] == pred["hr_bpm"]  # re-scoring from the stored BVP gives the same HRs


def test_impl_toolbox_chrom_prediction_is_shorter_and_scored_with_toolbox_windows(ubfc):
    task, sample = ubfc
    pred = asyncio.run(SOLVERS["chrom"](impl="toolbox", window_s=3).solve(sample)).prediction
    assert pred["impl"] == "toolbox" and pred["windowing"] == "toolbox"
    assert pred["n_frames"] == 240 and len(pred["bvp"]) == 24 * ((240 - 24) // 24 + 1)  # = 240 here
    pred_short = asyncio.run(SOLVERS["chrom"](impl="toolbox", window_s=3, max_frames=230).solve(sample)).prediction
    assert pred_short["n_frames"] == 230 and len(pred_short["bvp"]) == 24 * ((230 - 24) // 24 + 1) == 216
    assert [w for w in pred_short["windows"]] == [[0, 90], [90, 180], [180, 216]]
    scores = task.score(sample, pred_short)
    assert scores["windows_s"][-1] == [6.0, 7.2] and len(scores["hr_ref"]) == 3


def test_crop_toolbox_is_the_first_frame_box_enlarged_resized_to_72_and_drops_the_last_frame(ubfc):
    import av
    import cv2

    _, sample = ubfc
    with av.open(sample.inputs["video"]) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    faces = cascade.detectMultiScale(frames[0])  # default settings, on the RGB frame, as the toolbox
    x, y, w, h = faces[np.argmax(faces[:, 2])]
    x0, y0 = int(max(0, x - 0.25 * w)), int(max(0, y - 0.25 * h))
    x1, y1 = min(x0 + int(1.5 * w), 160), min(y0 + int(1.5 * h), 120)
    expected = np.array([cv2.resize(f[y0:y1, x0:x1], (72, 72), interpolation=cv2.INTER_AREA)
                         .astype(np.float64).reshape(-1, 3).mean(axis=0) for f in frames[:-1]])
    trace = extract_rgb_trace(sample.inputs["video"], crop="toolbox")
    assert trace.n_frames == len(frames) - 1 and trace.info["box"] == str((x0, y0, x1, y1))
    np.testing.assert_allclose(trace.rgb, expected, atol=1e-9)
    pred = asyncio.run(SOLVERS["pos"](crop="toolbox", impl="toolbox").solve(sample)).prediction
    assert pred["crop"] == "toolbox" and pred["n_frames"] == len(frames) - 1
    np.testing.assert_allclose(pred["bvp"], _pos_toolbox_loop(expected, FPS), atol=1e-9)
