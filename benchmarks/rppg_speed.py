"""rPPG speed and memory: streamed face-ROI trace + vectorised POS vs a straightforward per-frame
baseline, on synthetic 640x480 30 fps videos (generated once, cached under /tmp).

    python benchmarks/rppg_speed.py [--cache /tmp/rppg_speed] [--codec rawvideo] [--skip-baseline-60]

The default codec is uncompressed (UBFC-rPPG's format: decoding is nearly free, so the numbers
measure ROI + POS); `--codec mjpeg` (fast decode) and `--codec ffv1` (lossless, compressed; its
decoder alone runs at ~55 frames/s on one core at 640x480) show how much the codec matters.

Every measurement runs in a fresh subprocess pinned to one core (OMP/OpenCV threads = 1), so the
frames/s are single-core numbers and ru_maxrss is that run's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HR_BPM = 72.0


def _pin_one_core() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    import cv2

    cv2.setNumThreads(1)


def _hr(bvp, fps: float) -> float:
    import numpy as np

    n = len(bvp)
    nfft = 8 * (1 << (n - 1).bit_length())
    freqs = np.fft.rfftfreq(nfft, 1 / fps)
    power = np.abs(np.fft.rfft((bvp - bvp.mean()) * np.hanning(n), nfft)) ** 2
    band = (freqs >= 0.7) & (freqs <= 3.0)
    return float(60 * freqs[band][np.argmax(power[band])])


def run_ours(video: str) -> dict:
    from vision_models.rppg.methods import pos
    from vision_models.rppg.trace import extract_rgb_trace

    t0 = time.perf_counter()
    trace = extract_rgb_trace(video, roi="face", detector="haar", detect_every=10)
    bvp = pos(trace.rgb, trace.fps)
    dt = time.perf_counter() - t0
    return {"frames": trace.n_frames, "seconds": dt, "hr": _hr(bvp, trace.fps), "missing": trace.face_missing_fraction}


def run_baseline(video: str) -> dict:
    """The usual script: decode everything into a list, detect a face in every full-size frame,
    average the ROI per frame, POS with a Python loop over windows."""
    import av
    import cv2
    import numpy as np

    t0 = time.perf_counter()
    with av.open(video) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    rgb, box = [], None
    for frame in frames:
        faces = cascade.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 1.1, 5, minSize=(48, 48))
        if len(faces):
            box = max(faces, key=lambda b: b[2] * b[3])
        x, y, w, h = box if box is not None else (0, 0, frame.shape[1], frame.shape[0])
        rgb.append(frame[y : y + h, x : x + w].reshape(-1, 3).mean(axis=0))
    rgb = np.array(rgb)
    n, win = len(rgb), math.ceil(1.6 * fps)
    acc = np.zeros(n)
    for start in range(n - win + 1):
        cn = (rgb[start : start + win] / rgb[start : start + win].mean(axis=0)).T
        s = np.array([[0, 1, -1], [-2, 1, 1]]) @ cn
        h = s[0] + s[0].std() / s[1].std() * s[1]
        acc[start : start + win] += h - h.mean()
    from scipy import signal

    from vision_models.rppg.methods import detrend

    b, a = signal.butter(1, [0.75 / fps * 2, 3 / fps * 2], btype="bandpass")
    bvp = signal.filtfilt(b, a, detrend(acc, 100.0))
    dt = time.perf_counter() - t0
    return {"frames": n, "seconds": dt, "hr": _hr(bvp, fps), "missing": 0.0}


def worker(mode: str, video: str) -> None:
    _pin_one_core()
    result = run_ours(video) if mode == "ours" else run_baseline(video)
    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def ensure_video(cache: Path, seconds: int, codec: str) -> Path:
    path = cache / f"pulse_640x480_30fps_{seconds}s_{codec}.avi"
    if not path.exists():
        from vision_models.rppg.synthetic import make_pulse_video

        cache.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        tmp = path.with_suffix(".part.avi")
        make_pulse_video(tmp, HR_BPM, seconds, 30.0, (640, 480), motion_px=10, noise_std=2.0, codec=codec)
        tmp.rename(path)
        print(f"generated {path.name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return path


def measure(mode: str, video: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", mode, str(video)], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rppg_speed"))
    parser.add_argument("--codec", default="rawvideo", choices=("rawvideo", "mjpeg", "ffv1"))
    parser.add_argument("--skip-baseline-60", action="store_true", help="the baseline needs ~1.7 GB and minutes")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "VIDEO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    rows = []
    for seconds in (20, 60):
        video = ensure_video(args.cache, seconds, args.codec)
        for mode in ("ours", "baseline"):
            if mode == "baseline" and seconds == 60 and args.skip_baseline_60:
                continue
            r = measure(mode, video)
            rows.append((mode, seconds, r))
    print(f"{'pipeline':<10}{'video':>7}{'frames':>8}{'fps':>9}{'x real time':>13}{'peak RSS MB':>13}{'HR':>7}")
    for mode, seconds, r in rows:
        fps = r["frames"] / r["seconds"]
        print(f"{mode:<10}{seconds:>6}s{r['frames']:>8}{fps:>9.1f}{fps / 30:>13.2f}"
              f"{r['maxrss_mb']:>13.0f}{r['hr']:>7.1f}")
    by = {(m, s): r["frames"] / r["seconds"] for m, s, r in rows}
    for s in (20, 60):
        if ("baseline", s) in by:
            ratio = by["ours", s] / by["baseline", s]
            print(f"speed-up at {s} s: {ratio:.1f}x (single core, {args.codec}, true HR {HR_BPM:.0f} bpm)")


if __name__ == "__main__":
    main()
