"""rPPG speed and memory, two parts (`--part extract|e2e|all`, default e2e).

e2e (issue 13): the CLI end to end, as users run it — `harness run --task rppg --protocol ubfc
--solver pos` at the default concurrency, timed as a subprocess from start to exit — beside a
toolbox-equivalent script in one process (cv2 reads every frame into memory, Haar on the first frame,
1.5x box, 72x72 resize, mean RGB, POS as rPPG-Toolbox's loop, detrend + band-pass + periodogram HR
for the prediction and the ground truth). Both run on the same synthetic UBFC-layout sets (3 subjects
of 20 s and of 60 s, 640x480, 30 fps, uncompressed bgr24 AVI as UBFC-rPPG; generated once by
vision_models/rppg/synthetic.py under --cache). Prints wall time, the ratio, the peak memory of each
(sum of RSS over the process tree, sampled every 50 ms) and the MAE of each against the ground truth.

    python benchmarks/rppg_speed.py [--part e2e] [--cache /tmp/rppg_e2e] [--seconds 20 60] [--repeats 1]

extract: streamed face-ROI trace + vectorised POS vs a straightforward per-frame baseline on one
video, each in a fresh subprocess pinned to one core (single-core frames/s and ru_maxrss):

    python benchmarks/rppg_speed.py --part extract [--codec rawvideo|mjpeg|ffv1] [--skip-baseline-60]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
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


# ------------------------------------------------------------------ end to end (issue 13)
SUBJECT_HR = (66.0, 78.0, 90.0)


def ensure_ubfc_set(cache: Path, seconds: int, subjects: int = 3) -> Path:
    """`cache/ubfc_<seconds>s/subject<i>/vid.avi + ground_truth.txt` (UBFC-rPPG DATASET_2 layout)."""
    from vision_models.rppg.synthetic import write_ubfc_subject

    root = cache / f"ubfc_{seconds}s"
    for i in range(1, subjects + 1):
        folder = root / f"subject{i}"
        if (folder / "ground_truth.txt").exists():
            continue
        t0 = time.perf_counter()
        write_ubfc_subject(folder, hr_bpm=SUBJECT_HR[(i - 1) % 3], seconds=seconds, fps=30.0, size=(640, 480),
                           motion_px=10, noise_std=2.0, seed=i, codec="rawvideo")
        print(f"generated {folder} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return root


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall s, peak summed RSS of the process tree in MB, stdout) of a subprocess."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        try:
            for p in [ps, *ps.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        peak = max(peak, total)
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, peak / 2**20, out


def run_cli(data: Path) -> dict:
    harness = Path(sys.executable).parent / "harness"
    with tempfile.TemporaryDirectory(prefix="rppg-e2e-") as tmp:
        cmd = [str(harness) if harness.exists() else "harness", "run", "--task", "rppg", "--protocol", "ubfc",
               "--solver", "pos", "--data", str(data), "--no-cache", "--no-progress", "--out", f"{tmp}/runs",
               "--db", f"sqlite:///{tmp}/board.db"]
        wall, peak, _ = _timed(cmd)
        (run_dir,) = Path(tmp, "runs").glob("rppg-pos-*")
        manifest = json.loads((run_dir / "manifest.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    mae = metrics.get("metrics", metrics).get("mae")
    mae = mae.get("value") if isinstance(mae, dict) else mae
    return {"wall": wall, "peak_mb": peak, "errored": manifest.get("n_errors"),
            "samples": manifest.get("n_samples"), "mae": mae, "concurrency": manifest.get("concurrency")}


def toolbox_equivalent(data: Path) -> dict:
    """The plain script: everything in memory, the toolbox's steps in order, one video after another."""
    import cv2
    import numpy as np
    from scipy import signal, sparse
    from scipy.sparse.linalg import spsolve

    def detrend(x: np.ndarray, lam: float = 100.0) -> np.ndarray:
        n = len(x)
        d = sparse.diags([np.ones(n - 2), -2 * np.ones(n - 2), np.ones(n - 2)], [0, 1, 2], shape=(n - 2, n))
        return x - spsolve((sparse.identity(n) + lam**2 * d.T @ d).tocsc(), x)

    def hr(x: np.ndarray, fs: float) -> float:
        b, a = signal.butter(1, [0.6 / fs * 2, 3.3 / fs * 2], btype="bandpass")
        y = signal.filtfilt(b, a, detrend(x))
        f, pxx = signal.periodogram(y, fs=fs, nfft=1 << (len(y) - 1).bit_length(), detrend=False)
        band = (f >= 0.6) & (f <= 3.3)
        return float(f[band][np.argmax(pxx[band])] * 60)

    errors = []
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    for folder in sorted(p for p in data.iterdir() if (p / "vid.avi").exists()):
        cap = cv2.VideoCapture(str(folder / "vid.avi"))
        fs = cap.get(cv2.CAP_PROP_FPS)
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        cap.release()
        frames = np.asarray(frames)
        faces = cascade.detectMultiScale(frames[0])
        x, y, w, h = faces[np.argmax(faces[:, 2])] if len(faces) else (0, 0, frames.shape[2], frames.shape[1])
        x, y = max(0, int(x - 0.25 * w)), max(0, int(y - 0.25 * h))
        w, h = int(1.5 * w), int(1.5 * h)
        crops = np.zeros((len(frames), 72, 72, 3))
        for i, frame in enumerate(frames):
            crops[i] = cv2.resize(frame[y : y + h, x : x + w], (72, 72), interpolation=cv2.INTER_AREA)
        rgb = crops.sum(axis=(1, 2)) / (72 * 72)
        n, win = len(rgb), math.ceil(1.6 * fs)
        hsum = np.zeros(n)
        for end in range(win, n):  # POS as the toolbox's loop
            cn = (rgb[end - win : end] / rgb[end - win : end].mean(axis=0)).T
            s = np.array([[0, 1, -1], [-2, 1, 1]]) @ cn
            p = s[0] + s[0].std() / s[1].std() * s[1]
            hsum[end - win : end] += p - p.mean()
        b, a = signal.butter(1, [0.75 / fs * 2, 3 / fs * 2], btype="bandpass")
        bvp = signal.filtfilt(b, a, detrend(hsum))
        ppg = np.array((folder / "ground_truth.txt").read_text().splitlines()[0].split(), dtype=float)[:n]
        errors.append(abs(hr(bvp, fs) - hr(ppg, fs)))
    return {"mae": float(np.mean(errors)), "videos": len(errors)}


def run_toolbox(data: Path) -> dict:
    wall, peak, out = _timed([sys.executable, __file__, "--worker", "toolbox", str(data)],
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    return {"wall": wall, "peak_mb": peak, **json.loads(out.strip().splitlines()[-1])}


def main_e2e(args: argparse.Namespace) -> None:
    rows: list[tuple[str, int, dict]] = []
    for seconds in args.seconds:
        data = ensure_ubfc_set(args.cache, seconds, args.subjects)
        for _ in range(args.repeats):
            rows.append(("harness CLI", seconds, run_cli(data)))
            rows.append(("toolbox-equivalent", seconds, run_toolbox(data)))
    print(f"{'pipeline':<20}{'set':>10}{'wall s':>9}{'peak MB':>9}{'MAE bpm':>9}  notes")
    for name, seconds, r in rows:
        note = f"errored {r['errored']}/{r['samples']}, concurrency {r['concurrency']}" if "errored" in r else ""
        label = f"{args.subjects}x{seconds}s"
        print(f"{name:<20}{label:>10}{r['wall']:>9.2f}{r['peak_mb']:>9.0f}{r['mae']:>9.2f}  {note}")
    med = {(n, s): statistics.median(r["wall"] for m, t, r in rows if (m, t) == (n, s)) for n, s, _ in rows}
    mem = {(n, s): max(r["peak_mb"] for m, t, r in rows if (m, t) == (n, s)) for n, s, _ in rows}
    for seconds in args.seconds:
        ratio = med["toolbox-equivalent", seconds] / med["harness CLI", seconds]
        errored = sum(r.get("errored") or 0 for n, t, r in rows if (n, t) == ("harness CLI", seconds))
        # an errored video costs the CLI almost nothing: a ratio with errors is not a speed
        flag = f" — NOT comparable: {errored} errored CLI samples" if errored else ""
        print(f"{args.subjects}x{seconds}s: CLI {ratio:.2f}x the toolbox-equivalent script's speed "
              f"(median walls){flag}")
    if 20 in args.seconds and 60 in args.seconds:
        for name in ("harness CLI", "toolbox-equivalent"):
            print(f"{name}: peak memory 60 s / 20 s = {mem[name, 60] / mem[name, 20]:.2f}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")


def main_extract(args: argparse.Namespace) -> None:
    rows = []
    for seconds in (20, 60):
        video = ensure_video(args.extract_cache, seconds, args.codec)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="e2e", choices=("e2e", "extract", "all"))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/rppg_e2e"), help="UBFC-layout sets (e2e)")
    parser.add_argument("--seconds", type=int, nargs="+", default=[20, 60], help="video lengths (e2e)")
    parser.add_argument("--subjects", type=int, default=3, help="videos per set (e2e)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each pipeline per set (e2e; median wall)")
    parser.add_argument("--extract-cache", type=Path, default=Path("/tmp/rppg_speed"))
    parser.add_argument("--codec", default="rawvideo", choices=("rawvideo", "mjpeg", "ffv1"))
    parser.add_argument("--skip-baseline-60", action="store_true", help="the baseline needs ~1.7 GB and minutes")
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.worker[0] == "toolbox":
            print(json.dumps(toolbox_equivalent(Path(args.worker[1]))))
        else:
            worker(*args.worker)
        return
    if args.part in ("e2e", "all"):
        main_e2e(args)
    if args.part in ("extract", "all"):
        main_extract(args)


if __name__ == "__main__":
    main()
