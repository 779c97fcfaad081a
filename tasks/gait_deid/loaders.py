"""CASIA-B in its two common layouts -> one `Seq` per (subject, condition-sequence, view).

- Raw silhouettes: `ROOT/<sid 001-124>/<nm-01..06|bg-01..02|cl-01..02>/<view 000..180>/*.png` (320x240
  binary PNGs named `<sid>-<cond>-<seq>-<view>-<frame>.png`; `ROOT` may also hold `GaitDatasetB-silh/`);
  frames go through OpenGait's pretreatment (`vision_models.gait`).
- OpenGait pretreated: the same tree with one `<view>.pkl` (uint8 [n, 64, 64]) per sequence folder.
Folder names that do not match the patterns are ignored; an empty or unreadable sequence is that
sequence's error when it is loaded (solved or scored), never a silent drop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core import DataError

SID = re.compile(r"^\d{3}$")
CONDSEQ = re.compile(r"^(nm|bg|cl)-(\d{2})$")
VIEW = re.compile(r"^\d{3}$")
VIEWS = tuple(f"{v:03d}" for v in range(0, 181, 18))


@dataclass(frozen=True)
class Seq:
    subject: str
    condition: str  # nm | bg | cl
    seq: str  # 01..06
    view: str  # 000..180
    source: str  # the folder of PNGs or the .pkl file
    layout: str  # png | pkl

    @property
    def id(self) -> str:
        return f"{self.subject}/{self.condition}-{self.seq}/{self.view}"

    @property
    def condseq(self) -> str:
        return f"{self.condition}-{self.seq}"


def find_root(path: Path) -> Path:
    for cand in (path, path / "GaitDatasetB-silh", path / "CASIA-B", path / "CASIA-B-pkl"):
        if cand.is_dir() and any(SID.match(p.name) and p.is_dir() for p in cand.iterdir()):
            return cand
    raise DataError(f"{path}: no CASIA-B subject folders (001..124) here or in GaitDatasetB-silh/")


def scan(path: Path) -> list[Seq]:
    root = find_root(path)
    out = []
    for sdir in sorted(p for p in root.iterdir() if p.is_dir() and SID.match(p.name)):
        for cdir in sorted(p for p in sdir.iterdir() if p.is_dir() and CONDSEQ.match(p.name)):
            cond, seq = CONDSEQ.match(cdir.name).groups()
            for vdir in sorted(p for p in cdir.iterdir() if p.is_dir() and VIEW.match(p.name)):
                pkls = sorted(vdir.glob("*.pkl"))
                if pkls:
                    out.append(Seq(sdir.name, cond, seq, vdir.name, str(pkls[0]), "pkl"))
                else:
                    out.append(Seq(sdir.name, cond, seq, vdir.name, str(vdir), "png"))
    if not out:
        raise DataError(f"{root}: subject folders hold no <cond>-<seq>/<view>/ sequences")
    return out


def load_sequence(source: str, layout: str) -> np.ndarray:
    """Pretreated [n, 64, 64] uint8 frames of a sequence; DataError naming the source when unusable."""
    from vision_models.gait import load_pkl, load_png_dir

    try:
        seq = load_pkl(Path(source)) if layout == "pkl" else load_png_dir(Path(source))
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{source}: unreadable silhouette sequence ({exc})") from None
    except Exception as exc:  # cv2.error on a malformed frame
        if type(exc).__module__.split(".")[0] != "cv2":
            raise
        raise DataError(f"{source}: silhouette pretreatment failed ({exc})") from None
    if len(seq) == 0:
        raise DataError(f"{source}: no usable silhouette frame (all empty after pretreatment)")
    return seq
