"""Data layouts of the rPPG protocols: find the videos, validate the references, read them back.

- `ubfc`: UBFC-rPPG. DATASET_2: `<subject>/vid.avi` + `<subject>/ground_truth.txt` (3 lines: PPG,
  HR, timestamps in s; one value per frame). DATASET_1: `<subject>/vid.avi` + `gtdump.xmp` (CSV rows
  timestep_ms, HR, SpO2, PPG; the PPG is interpolated at the frame times i/fps).
- `pure`: PURE. `<pp>-<ss>/Image<ns>.png` + `<pp>-<ss>.json` next to the folder, or the rPPG-Toolbox
  re-nesting `<pp>-<ss>/<pp>-<ss>/Image<ns>.png` + `<pp>-<ss>/<pp>-<ss>.json`. The 60 Hz
  `/FullPackage[].Value.waveform` is linearly interpolated at the frame timestamps taken from the PNG
  names (the toolbox instead stretches it to the frame count by index).
- `mvrd`: MVRD (not released; this layout is ours): `<subject>/<scenario>/view1.mp4, view2.mp4,
  view3.mp4` (any of mp4/avi/mkv/mov) + `<subject>/<scenario>/ppg.csv` with header `time_s,ppg`
  (seconds from the first video frame). Scenarios: stationary, speaking, head-movement.
- `roi`: bias-eval-rppg skin-ROI set: `Data/<Region>/video<N>_<roi>.avi` (each frame already skin, so
  the ROI is the whole frame) + `Ground_Truth/<Region>_GT.csv` (rows `video<N>,<mean HR bpm>`).

References are validated; a bad one is an error of the samples that use it (recorded, counted, never
scored), never a silently wrong number and never the end of the run. At load time (the sample's
`target["reference_error"]`, raised when it is solved): unreadable files, non-finite or flat PPG,
non-increasing timestamps, and in roi CSVs HR values that are not numbers, not finite, outside
30-240 bpm, or given on two rows for one video. When scored (`read_reference`, once the video's
frame count is known): a PPG that ends before the video (UBFC-2: fewer values than frames; timed
formats: more than one frame period short) or that is flat over the frames used.
"""

from __future__ import annotations

import csv
import functools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from harness.core import DataError, Sample

LAYOUTS = ("ubfc", "pure", "mvrd", "roi")
HR_RANGE_BPM = (30.0, 240.0)  # a mean heart rate outside this is not physiological: a bad reference
VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov")
PURE_SETUPS = {"01": "steady", "02": "talking", "03": "slow-translation", "04": "fast-translation",
               "05": "small-rotation", "06": "medium-rotation"}
_PURE_NAME = re.compile(r"^(\d{2})-(\d{2})\.json$")
_ROI_VIDEO = re.compile(r"^(video\d+)_(.+)$")
_VIEW = re.compile(r"^view\d+$", re.IGNORECASE)


def _walk(root: Path, max_depth: int = 3) -> list[Path]:
    """Every path under root down to max_depth levels, sorted (hidden entries skipped)."""
    found, level = [], [root]
    for _ in range(max_depth):
        nxt = []
        for d in level:
            try:
                children = sorted(p for p in d.iterdir() if not p.name.startswith("."))
            except OSError:
                continue
            found += children
            nxt += [c for c in children if c.is_dir()]
        level = nxt
    return found


def _read_only(value: Any) -> Any:
    """Arrays of a memoised result made read-only: every caller shares them, so an in-place edit by one
    would silently change the reference every later score uses (a board scores many runs per process)."""
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    elif isinstance(value, tuple):
        for v in value:
            _read_only(v)
    return value


def _cached_by_file(read: Any) -> Any:
    """Memoise a reader on (path, size, mtime): a file edited between two runs of one process is re-read."""
    cached = functools.lru_cache(maxsize=64)(lambda path, _size, _mtime: _read_only(read(path)))

    @functools.wraps(read)
    def wrapper(path: Path) -> Any:
        try:
            st = Path(path).stat()
            return cached(Path(path), st.st_size, st.st_mtime_ns)
        except OSError:
            return read(path)  # its own error message names the file

    return wrapper


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# ---------------------------------------------------------------- layout detection
def detect_layout(data_dir: Path) -> str | None:
    """The layout a folder holds, or None."""
    if (data_dir / "Ground_Truth").is_dir() and (data_dir / "Data").is_dir():
        return "roi"
    paths = _walk(data_dir)
    if any(p.is_file() and p.name == "ppg.csv" and any(_VIEW.match(v.stem) for v in p.parent.iterdir())
           for p in paths):
        return "mvrd"
    if any(p.is_file() and _PURE_NAME.match(p.name) for p in paths):
        return "pure"
    if any(p.is_file() and p.name == "vid.avi" for p in paths):
        return "ubfc"
    return None


EXPECTED = {
    "ubfc": "<subject>/vid.avi with <subject>/ground_truth.txt (DATASET_2) or gtdump.xmp (DATASET_1)",
    "pure": "<pp>-<ss>.json next to (or inside) a <pp>-<ss>/ folder of Image<ns>.png frames",
    "mvrd": "<subject>/<scenario>/view1.mp4 ... + ppg.csv",
    "roi": "Data/<Region>/video<N>_<roi>.avi + Ground_Truth/<Region>_GT.csv",
}


def load_samples(data_dir: Path, layout: str) -> list[Sample]:
    loaders = {"ubfc": _load_ubfc, "pure": _load_pure, "mvrd": _load_mvrd, "roi": _load_roi}
    if layout not in loaders:
        raise DataError(f"unknown rPPG layout {layout!r}; known: {', '.join(LAYOUTS)}")
    samples = loaders[layout](data_dir)
    if not samples:
        found = detect_layout(data_dir)
        hint = f"; the folder looks like the {found!r} layout (use --protocol {found})" if found else ""
        raise DataError(f"{data_dir}: no {layout} recordings found (expected {EXPECTED[layout]}){hint}")
    return samples


# ---------------------------------------------------------------- UBFC-rPPG
def _read_floats(path: Path, text: str) -> np.ndarray:
    try:
        values = np.array([float(v) for v in text.split()], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{path}: not a list of numbers ({exc})") from None
    return values


@_cached_by_file
def read_ubfc2_ground_truth(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ppg, hr, timestamps_s) of a DATASET_2 ground_truth.txt, validated."""
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(lines) != 3:
        raise DataError(f"{path}: expected 3 lines (PPG, HR, timestamps), found {len(lines)}")
    ppg, hr, ts = (_read_floats(path, ln) for ln in lines)
    if not (len(ppg) == len(hr) == len(ts)) or len(ppg) < 2:
        raise DataError(f"{path}: the 3 lines differ in length ({len(ppg)}, {len(hr)}, {len(ts)}) or are empty")
    _check_ppg(path, ppg)
    return ppg, hr, ts


def _check_ppg(path: Path, ppg: np.ndarray, what: str = "PPG") -> None:
    bad = ~np.isfinite(ppg)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(f"{path}: {what} holds {int(bad.sum())} non-finite values (first at index {first})")
    if ppg.size and np.ptp(ppg) == 0:
        raise DataError(f"{path}: {what} is flat (every value is {ppg[0]!r}): no pulse to compare with")


def _reference_error(read: Any, path: Path) -> dict[str, str]:
    """{} when `read(path)` validates, else {"reference_error": message naming the file}."""
    try:
        read(path)
    except DataError as exc:
        return {"reference_error": str(exc)}
    return {}


@_cached_by_file
def read_ubfc1_gtdump(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(time_s from the first row, ppg) of a DATASET_1 gtdump.xmp (CSV: ms, HR, SpO2, PPG)."""
    try:
        rows = np.loadtxt(path, delimiter=",", ndmin=2)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a CSV of timestep_ms,HR,SpO2,PPG ({exc})") from None
    if rows.shape[1] < 4 or rows.shape[0] < 2:
        raise DataError(f"{path}: expected >= 2 rows of 4 columns (timestep_ms,HR,SpO2,PPG), got {rows.shape}")
    t = (rows[:, 0] - rows[0, 0]) / 1000.0
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise DataError(f"{path}: timesteps are not increasing (duplicate or out-of-order rows)")
    _check_ppg(path, rows[:, 3])
    return t, rows[:, 3]


def _load_ubfc(root: Path) -> list[Sample]:
    samples = []
    for video in (p for p in _walk(root) if p.name == "vid.avi" and p.is_file()):
        folder = video.parent
        gt2, gt1 = folder / "ground_truth.txt", folder / "gtdump.xmp"
        if gt2.exists():
            target = {"ppg_path": str(gt2), "ppg_format": "ubfc2", **_reference_error(read_ubfc2_ground_truth, gt2)}
            dataset = "dataset_2"
        elif gt1.exists():
            target = {"ppg_path": str(gt1), "ppg_format": "ubfc1", **_reference_error(read_ubfc1_gtdump, gt1)}
            dataset = "dataset_1"
        else:
            raise DataError(f"{gt2}: missing (UBFC needs ground_truth.txt or gtdump.xmp next to {video})")
        subject = folder.name if folder != root else root.name
        samples.append(Sample(
            id=_rel(folder, root) if folder != root else subject,
            inputs={"video": str(video), "subject": subject, "scenario": dataset},
            target=target, groups={"subject": subject, "scenario": dataset}))
    return samples


# ---------------------------------------------------------------- PURE
def _pure_frames(folder: Path) -> tuple[list[Path], np.ndarray]:
    frames = sorted(folder.glob("Image*.png"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    ts_ns = np.array([int(re.sub(r"\D", "", p.stem) or 0) for p in frames], dtype=np.int64)
    return frames, ts_ns


@_cached_by_file
def read_pure_json(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(time_ns, waveform) of the 60 Hz pulse-oximeter stream in a PURE json (integer ns: epoch seconds
    as float64 would lose ~1e-7 s)."""
    try:
        data = json.loads(path.read_text())
        stream = data["/FullPackage"]
        t = np.array([int(e["Timestamp"]) for e in stream], dtype=np.int64)
        wave = np.array([float(e["Value"]["waveform"]) for e in stream])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a PURE json with /FullPackage[].Timestamp/Value.waveform ({exc!r})") from None
    if len(t) < 2 or np.any(np.diff(t) <= 0):
        raise DataError(f"{path}: /FullPackage needs >= 2 entries with increasing timestamps")
    _check_ppg(path, wave, "waveform")
    return t, wave


def _load_pure(root: Path) -> list[Sample]:
    samples = []
    for js in (p for p in _walk(root) if p.is_file() and _PURE_NAME.match(p.name)):
        person, setup = _PURE_NAME.match(js.name).groups()  # type: ignore[union-attr]
        frames_dir = js.parent / js.stem
        frames, ts_ns = _pure_frames(frames_dir) if frames_dir.is_dir() else ([], np.empty(0, np.int64))
        if not frames:
            raise DataError(f"{frames_dir}: missing Image<timestamp>.png frames for {js}")
        problem = _reference_error(read_pure_json, js)
        scenario = PURE_SETUPS.get(setup, f"setup-{setup}")
        span_s = (ts_ns[-1] - ts_ns[0]) / 1e9 if len(ts_ns) > 1 else 0.0
        fps = float((len(ts_ns) - 1) / span_s) if span_s > 0 else None
        samples.append(Sample(
            id=js.stem, inputs={"video": str(frames_dir), "fps": fps, "subject": person, "scenario": scenario},
            target={"ppg_path": str(js), "ppg_format": "pure", "frames_dir": str(frames_dir), **problem},
            groups={"subject": person, "scenario": scenario}))
    return samples


# ---------------------------------------------------------------- MVRD
@_cached_by_file
def read_time_ppg_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        t = np.array([float(r["time_s"]) for r in rows])
        ppg = np.array([float(r["ppg"]) for r in rows])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: expected a CSV with columns time_s,ppg ({exc!r})") from None
    if len(t) < 2 or not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise DataError(f"{path}: needs >= 2 rows with increasing time_s (no duplicate or out-of-order rows)")
    _check_ppg(path, ppg)
    return t, ppg


def _load_mvrd(root: Path) -> list[Sample]:
    samples = []
    for scenario_dir in (p for p in _walk(root, 2) if p.is_dir() and p.parent != root):
        views = {p.stem.lower(): str(p) for p in sorted(scenario_dir.iterdir())
                 if p.is_file() and p.suffix.lower() in VIDEO_EXTS and _VIEW.match(p.stem)}
        if not views:
            continue
        ppg = scenario_dir / "ppg.csv"
        if not ppg.exists():
            raise DataError(f"{ppg}: missing (MVRD needs ppg.csv with time_s,ppg next to the views)")
        problem = _reference_error(read_time_ppg_csv, ppg)
        subject, scenario = scenario_dir.parent.name, scenario_dir.name
        samples.append(Sample(
            id=_rel(scenario_dir, root), inputs={"views": views, "subject": subject, "scenario": scenario},
            target={"ppg_path": str(ppg), "ppg_format": "time_csv", **problem},
            groups={"subject": subject, "scenario": scenario}))
    return samples


# ---------------------------------------------------------------- bias-eval-rppg skin ROIs
def read_roi_ground_truth(path: Path) -> tuple[dict[str, float], dict[str, str]]:
    """(`video<N>` -> mean HR in bpm, `video<N>` -> what is wrong with its rows) from a
    `<Region>_GT.csv` (BOM and padded header tolerated). A value that is not a finite number inside
    30-240 bpm, or a video on two rows, is a problem of that video only; a file without the header
    raises DataError."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if not rows or not rows[0] or "subject" not in rows[0][0].strip().lower():
        raise DataError(f"{path}: expected a header 'Subject,Heart_Rate(BPM)'")
    values: dict[str, float] = {}
    problems: dict[str, str] = {}
    lines: dict[str, list[int]] = {}
    low, high = HR_RANGE_BPM
    for i, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        video = row[0].strip()
        lines.setdefault(video, []).append(i)
        try:
            value = float(row[1])
        except (IndexError, ValueError):
            problems.setdefault(video, f"{path}: line {i}: expected 'video<N>,<bpm>', got {row!r}")
            continue
        if not np.isfinite(value) or not low <= value <= high:
            problems.setdefault(video, f"{path}: line {i}: heart rate {row[1].strip()!r} of {video} is not a "
                                       f"finite value within {low:g}-{high:g} bpm")
        values[video] = value
    for video, at in lines.items():
        if len(at) > 1:
            problems[video] = f"{path}: {video} is on {len(at)} rows (lines {', '.join(map(str, at))}): ambiguous"
    return {k: v for k, v in values.items() if k not in problems}, problems


def _load_roi(root: Path) -> list[Sample]:
    gt_dir, data_dir = root / "Ground_Truth", root / "Data"
    if not gt_dir.is_dir() or not data_dir.is_dir():
        missing = gt_dir if not gt_dir.is_dir() else data_dir
        raise DataError(f"{missing}: missing (roi layout needs Data/ and Ground_Truth/)")
    samples = []
    for region_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        videos = sorted(p for p in region_dir.iterdir() if p.suffix.lower() in VIDEO_EXTS)
        if not videos:
            continue
        gt_path = gt_dir / f"{region_dir.name}_GT.csv"
        if not gt_path.exists():
            raise DataError(f"{gt_path}: missing (ground truth for {region_dir})")
        gt, problems = read_roi_ground_truth(gt_path)
        for video in videos:
            m = _ROI_VIDEO.match(video.stem)
            if not m:
                raise DataError(f"{video}: name is not video<N>_<roi>")
            rec, roi = m.groups()
            subject = f"{region_dir.name}/{rec}"
            if rec in gt:
                target: dict[str, Any] = {"hr_bpm": gt[rec]}
            else:
                target = {"reference_error": problems.get(rec, f"{gt_path}: no row for {rec} (needed by {video})")}
            samples.append(Sample(
                id=f"{subject}/{roi}",
                inputs={"video": str(video), "skin_roi": True, "subject": subject, "scenario": roi},
                target=target, groups={"subject": subject, "scenario": roi}))
    return samples


# ---------------------------------------------------------------- references at frame rate
def check_target(target: Any) -> None:
    """Raise the DataError recorded at load time for a sample whose reference is invalid."""
    if isinstance(target, dict) and target.get("reference_error"):
        raise DataError(str(target["reference_error"]))


def read_reference(target: dict[str, Any], n_frames: int, fps: float) -> np.ndarray:
    """The reference PPG with one value per video frame (n_frames values), validated: a DataError
    when it ends before the video or is flat over those frames."""
    check_target(target)
    fmt, path = target.get("ppg_format"), Path(target.get("ppg_path", ""))
    if fmt == "ubfc2":
        ppg = read_ubfc2_ground_truth(path)[0]
        if len(ppg) < n_frames:
            raise DataError(f"{path}: the PPG has {len(ppg)} values, the video {n_frames} frames: it ends early")
        ref = ppg[:n_frames]
    else:
        frame_t = np.arange(n_frames) / fps
        if fmt == "ubfc1":
            t, ppg = read_ubfc1_gtdump(path)
        elif fmt == "time_csv":
            t, ppg = read_time_ppg_csv(path)
        elif fmt == "pure":
            t_ns, ppg = read_pure_json(path)
            _, frame_ns = _pure_frames(Path(target["frames_dir"]))
            frame_t, t = (frame_ns[:n_frames] - frame_ns[0]) / 1e9, (t_ns - frame_ns[0]) / 1e9
        else:
            raise DataError(f"unknown reference format {fmt!r} for {path}")
        if len(frame_t) and frame_t[-1] > t[-1] + 1.0 / fps:
            raise DataError(f"{path}: the reference ends at {t[-1]:.3f} s, the video at {frame_t[-1]:.3f} s")
        ref = np.interp(frame_t, t, ppg)
    if ref.size and np.ptp(ref) == 0:
        raise DataError(f"{path}: the reference is flat over the video's {n_frames} frames: no pulse to compare with")
    return ref
