"""Dynamic (video) FER sets in the annotation-list layout Exp-CLIP's `test.py` reads (DFER-CLIP preprocessing).

A folder holds the lists: `DFEW_set_<k>_{train,test}.txt` and `MAFW_set_<k>_{train,test}.txt` (k = 1..5, one
fold each), `FERV39k_{train,test}.txt`, `AFEW_{train,validation}.txt` (validation is AFEW's test). Each line
is `<frames folder> <number of frames> <label>`, the label a 0-based index into Exp-CLIP's class order
(happiness, sadness, neutral, anger, surprise, disgust, fear[, contempt, anxiety, helplessness,
disappointment] — MAFW uses all 11). A relative folder is resolved against the list's folder.
Frames: the folder's files in sorted order; 16 per clip at the middles of 16 equal segments
(Exp-CLIP `_get_test_indices`, duration 1: index int(tick/2 + tick*x), tick = n/16; a clip of 16 frames or
fewer repeats its first frame 16 times, as there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.core import DataError, Sample
from harness.datafiles import read_text
from harness.media import read_image
from tasks.emocap.labels import PROTOCOL_CLASSES

N_SEGMENTS = 16
LISTS = {
    "dfew": [(f"DFEW_set_{k}_train.txt", f"DFEW_set_{k}_test.txt", f"set{k}") for k in range(1, 6)],
    "mafw": [(f"MAFW_set_{k}_train.txt", f"MAFW_set_{k}_test.txt", f"set{k}") for k in range(1, 6)],
    "ferv39k": [("FERV39k_train.txt", "FERV39k_test.txt", "test")],
    "afew": [("AFEW_train.txt", "AFEW_validation.txt", "validation")],
}


def detect(path: Path) -> str | None:
    for protocol, folds in LISTS.items():
        if (path / folds[0][1]).is_file():
            return protocol
    return None


def test_indices(num_frames: int, n: int = N_SEGMENTS) -> list[int]:
    """Exp-CLIP's test-time frame indices for a clip of `num_frames` frames."""
    if num_frames > n:
        tick = num_frames / float(n)
        return [int(tick / 2.0 + tick * x) for x in range(n)]
    return [0] * n


def read_list(file: Path, protocol: str) -> list[Sample]:
    classes = list(PROTOCOL_CLASSES[protocol])
    out = []
    for n, line in enumerate(read_text(file).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < 3:
            raise DataError(f"{file}: line {n}: expected '<frames folder> <frames> <label>', got {line!r}")
        folder, count, label = " ".join(parts[:-2]), parts[-2], parts[-1]
        try:
            num_frames = int(count)
        except ValueError:
            raise DataError(f"{file}: line {n}: frame count {count!r} is not an integer") from None
        path = Path(folder)
        if not path.is_absolute():
            path = file.parent / path
        try:
            target: object = classes[int(label)]
        except (ValueError, IndexError):
            target = {"error": f"{file}:{n}: label {label!r} is not an index 0..{len(classes) - 1}"}
        out.append(Sample(folder, {"frames": str(path), "num_frames": num_frames}, target, {"split": file.stem}))
    return out


def fold_lists(path: Path, protocol: str) -> list[tuple[str, list[Sample], list[Sample]]]:
    """(fold name, test samples, train samples) per fold whose test list exists (train may be absent)."""
    out = []
    for train_name, test_name, fold in LISTS[protocol]:
        test_file = path / test_name
        if not test_file.is_file():
            continue
        train_file = path / train_name
        train = read_list(train_file, protocol) if train_file.is_file() else []
        out.append((fold, read_list(test_file, protocol), train))
    if not out:
        raise DataError(f"{path}: no {protocol} annotation list ({LISTS[protocol][0][1]} ...)")
    return out


def load_clip(sample: Sample) -> list[np.ndarray]:
    """The 16 test frames of a clip as RGB arrays; DataError naming the folder or file."""
    folder = Path(sample.inputs["frames"])
    if not folder.is_dir():
        raise DataError(f"{folder}: frames folder is missing")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    idx = test_indices(int(sample.inputs["num_frames"]))
    if not files or max(idx) >= len(files):
        raise DataError(f"{folder}: has {len(files)} frames, the list says {sample.inputs['num_frames']}")
    return [read_image(files[i], what="frame") for i in idx]
