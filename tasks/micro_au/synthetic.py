"""Small synthetic CASME II / SAMM copies in the official layouts (coding spreadsheet + frame folders).

The datasets' licences forbid redistribution, so tests and the README quick start run on these. Each
subject has its own smooth random "face"; each AU of the dataset's set owns one cell of a 3x3 grid, and a
clip with that AU moves the cell's content by a few pixels from onset to apex and back by offset, so
onset->apex optical flow can find it. AU strings are written in the releases' styles (`4+L10`, `R12`,
`AU4+AU7`) with an AU outside the set now and then; `missing_apex` rows get `/` as their apex.
`python -m tasks.micro_au.synthetic OUT [casme2|samm]` writes a copy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tasks.micro_au.aus import AU_SETS

CASME2_HEADER = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units",
                 "Estimated Emotion"]
SAMM_HEADER = ["Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame", "Duration",
               "Type", "Action Units", "Notes", "Estimated Emotion", "Objective Classes"]
SIZE = 96
EMOTIONS = {"casme2": ("happiness", "disgust", "surprise", "others"),
            "samm": ("Happiness", "Anger", "Surprise", "Other")}


def _face(rng: np.random.Generator) -> np.ndarray:
    import cv2

    noise = rng.random((SIZE // 4, SIZE // 4)).astype(np.float32)
    return cv2.resize(noise, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC) * 160 + 48


def _frame(face: np.ndarray, cells: list[int], shift: float) -> np.ndarray:
    import cv2

    img = face.copy()
    step = SIZE // 3
    for c in cells:
        y, x = divmod(c % 9, 3)
        sl = (slice(y * step, (y + 1) * step), slice(x * step, (x + 1) * step))
        m = np.float32([[1, 0, shift], [0, 1, shift * (1 if c % 2 else -1)]])
        img[sl] = cv2.warpAffine(np.ascontiguousarray(face[sl]), m, (step, step), borderMode=cv2.BORDER_REFLECT)
    return np.clip(img, 0, 255).astype(np.uint8)


def _au_string(aus: list[int], rng: np.random.Generator) -> str:
    style = int(rng.integers(0, 3))
    parts = [f"AU{a}" if style == 2 else (f"{'LR'[int(rng.integers(0, 2))]}{a}" if style == 1 else str(a))
             for a in aus]
    return "+".join(parts) if parts else ""


def write_dataset(root: str | Path, dataset: str = "casme2", n_subjects: int = 3, clips_per_subject: int = 6,
                  seed: int = 0, missing_apex: int = 1, p_au: float = 0.4, max_shift: float = 3.0) -> Path:
    """Write a synthetic copy; returns `root`. Clip i of each subject always holds AU set[i % len]."""
    from openpyxl import Workbook
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    au_set = AU_SETS[dataset]
    wb = Workbook()
    ws = wb.active
    if dataset == "samm":
        for i in range(13):
            ws.append([f"SAMM micro-movement FACS codes, preamble line {i + 1}"] if i in (0, 2) else [None])
        ws.append(SAMM_HEADER)
    else:
        ws.append(CASME2_HEADER)
    n_missing = 0
    for s in range(1, n_subjects + 1):
        face = _face(rng)
        subject = f"sub{s:02d}" if dataset == "casme2" else f"{s:03d}"
        for c in range(clips_per_subject):
            aus = sorted({a for a in au_set if rng.random() < p_au} | {au_set[c % len(au_set)]})
            extra = [10] if rng.random() < 0.3 and 10 not in au_set else []
            clip = f"EP{c + 1:02d}_0{s}f" if dataset == "casme2" else f"{subject}_{c + 1}_{s}"
            onset = int(rng.integers(5, 40))
            apex, offset = onset + 3, onset + 6
            cells = [au_set.index(a) for a in aus]
            folder = root / ("CASME2_RAW_selected" if dataset == "casme2" else "SAMM") / subject / clip
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(onset, offset + 1):
                shift = max_shift * (1 - abs(n - apex) / 3)
                name = f"img{n}.jpg" if dataset == "casme2" else f"{subject}_{n:05d}.jpg"
                Image.fromarray(_frame(face, cells, shift)).save(folder / name, quality=95)
            apex_cell: object = apex
            if n_missing < missing_apex:
                apex_cell, n_missing = "/", n_missing + 1  # official-file style missing apex: midpoint rule
            au_text = _au_string(aus + extra, rng)
            emotion = EMOTIONS[dataset][c % 4]  # tied to the clip's forced AU, so it can be learnt
            if dataset == "samm":
                ws.append([subject, clip, "I", onset, apex_cell, offset, offset - onset + 1, "Micro - 1/2", au_text,
                           None, emotion, "7"])
            else:
                ws.append([s, clip, None, onset, apex_cell, offset, None, au_text, emotion])
    name = "CASME2-coding-20140508.xlsx" if dataset == "casme2" else "SAMM_Micro_FACS_Codes_v2.xlsx"
    root.mkdir(parents=True, exist_ok=True)
    wb.save(root / name)
    return root


if __name__ == "__main__":
    out = write_dataset(sys.argv[1] if len(sys.argv) > 1 else "micro-au-synthetic",
                        sys.argv[2] if len(sys.argv) > 2 else "casme2")
    print(f"wrote a synthetic copy to {out}")
