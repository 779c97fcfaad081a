"""Small synthetic CASIA-B copies (raw 320x240 PNG silhouettes, or OpenGait .pkl) for tests and the README.

CASIA-B cannot be redistributed. Each subject is a stick-and-ellipse walker with its own height, build,
stride and arm swing; the view squeezes the body sideways (|sin| of the angle) and turns the stride; `bg`
adds a bag, `cl` a coat. A GEI recogniser can tell the subjects apart, and the frames exercise the OpenGait
pretreatment (cropping, resizing, centring). `python -m tasks.gait_deid.synthetic OUT` writes a copy.
"""

from __future__ import annotations

import math
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tasks.gait_deid.loaders import VIEWS

CONDSEQS = ("nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "nm-06", "bg-01", "bg-02", "cl-01", "cl-02")


def _person(sid: int) -> dict[str, float]:
    rng = np.random.default_rng(1000 + sid)
    return {"height": rng.uniform(150, 200), "build": rng.uniform(0.8, 1.3), "stride": rng.uniform(0.2, 0.45),
            "swing": rng.uniform(0.1, 0.5), "head": rng.uniform(0.9, 1.2)}


def silhouette(sid: int, condseq: str, view: str, t: int, n: int, tilt: float = 0.0) -> np.ndarray:
    """One 240x320 (h x w) uint8 frame, 0/255; `tilt` leans the torso sideways (the Scoliosis1K copies)."""
    import cv2

    p = _person(sid)
    img = np.zeros((240, 320), np.uint8)
    ang = math.radians(int(view))
    side = abs(math.sin(ang)) * 0.8 + 0.2  # how much of the stride is visible
    phase = 2 * math.pi * t / n + 0.3 * int(condseq[-1])
    h = p["height"]
    cx = 160 + int(20 * math.cos(ang))
    top = 230 - int(h)
    hip_y = top + int(0.53 * h)
    w = int(14 * p["build"] * (1.4 - 0.4 * side))
    cv2.circle(img, (cx, top + int(12 * p["head"])), int(11 * p["head"]), 255, -1)
    torso = w + (6 if condseq.startswith("cl") else 0)
    cv2.rectangle(img, (cx - torso, top + 22), (cx + torso, hip_y + (10 if condseq.startswith("cl") else 0)), 255, -1)
    if tilt:  # one shoulder raised: a wedge on one side of the torso
        sh = int(tilt * 0.25 * h)
        pts = np.array([[cx + torso, top + 22 - sh], [cx + torso + int(abs(tilt) * 22), top + 34], [cx + torso, hip_y]])
        cv2.fillPoly(img, [pts], 255)
    for sign in (-1, 1):
        dx = int(sign * side * p["stride"] * 0.5 * h * math.sin(phase))
        cv2.line(img, (cx, hip_y), (cx + dx, 230), 255, max(4, int(0.5 * w)))
        ax = int(-sign * side * p["swing"] * 0.3 * h * math.sin(phase))
        cv2.line(img, (cx + sign * torso, top + 26), (cx + sign * torso + ax, hip_y), 255, 5)
    if condseq.startswith("bg"):
        cv2.rectangle(img, (cx + torso, hip_y - 35), (cx + torso + 18, hip_y), 255, -1)
    return img


def write_casia_b(root: str | Path, subjects: Sequence[int], views: Sequence[str] = VIEWS,
                  condseqs: Sequence[str] = CONDSEQS, n_frames: int = 8, layout: str = "png") -> Path:
    """CASIA-B tree under `root` for the given subject numbers (e.g. 1-3 train, 75-78 test)."""
    from PIL import Image

    from vision_models.gait import pretreat_sequence

    root = Path(root)
    for sid in subjects:
        for cs in condseqs:
            for view in views:
                folder = root / f"{sid:03d}" / cs / view
                folder.mkdir(parents=True, exist_ok=True)
                frames = [silhouette(sid, cs, view, t, n_frames) for t in range(n_frames)]
                if layout == "pkl":
                    with open(folder / f"{view}.pkl", "wb") as fh:
                        pickle.dump(pretreat_sequence(frames), fh)
                else:
                    for t, f in enumerate(frames):
                        Image.fromarray(f).save(folder / f"{sid:03d}-{cs}-{view}-{t + 1:03d}.png")
    return root


SCOLIOSIS_TILT = {"negative": 0.0, "neutral": 0.45, "positive": 1.0}


def write_scoliosis1k(root: str | Path, n_subjects: int = 24, views: Sequence[str] = ("000", "090"),
                      n_frames: int = 6, test_share: float = 0.5) -> Path:
    """A Scoliosis1K-sil-pkl tree (subjects 00001.., classes in turn, one `000_<view>` sequence per view;
    the torso's lean grows from negative to positive) and its Scoliosis1K_1116.json partition."""
    import json

    from vision_models.gait import pretreat_sequence

    root = Path(root)
    sil = root / "Scoliosis1K-sil-pkl"
    ids = [f"{i:05d}" for i in range(1, n_subjects + 1)]
    classes = ("negative", "neutral", "positive")
    for i, sid in enumerate(ids):
        label = classes[i % 3]
        for view in views:
            folder = sil / sid / label.capitalize() / f"000_{view}"
            folder.mkdir(parents=True, exist_ok=True)
            frames = [silhouette(i + 1, "nm-01", view, t, n_frames, tilt=SCOLIOSIS_TILT[label])
                      for t in range(n_frames)]
            with open(folder / f"000_{view}.pkl", "wb") as fh:
                pickle.dump(pretreat_sequence(frames), fh)
    n_test = int(round(test_share * n_subjects))
    (root / "Scoliosis1K_1116.json").write_text(json.dumps({"TRAIN_SET": ids[:-n_test], "TEST_SET": ids[-n_test:]}))
    return root


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="write a small synthetic CASIA-B (or Scoliosis1K) copy")
    ap.add_argument("out", nargs="?", default="casia-b-synthetic")
    ap.add_argument("--layout", choices=("png", "pkl"), default="png", help="raw 320x240 PNGs or OpenGait .pkl")
    ap.add_argument("--views", default="000,054,090,126,180", help="comma-separated views")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--scoliosis", action="store_true", help="a Scoliosis1K-sil-pkl copy + partition instead")
    args = ap.parse_args(argv)
    views = tuple(args.views.split(","))
    if args.scoliosis:
        out = write_scoliosis1k(args.out, views=views, n_frames=args.frames)
    else:
        out = write_casia_b(args.out, [1, 2, 3, 4, 75, 76, 77, 78], views=views, n_frames=args.frames,
                            layout=args.layout)
    print(f"wrote a synthetic {'Scoliosis1K' if args.scoliosis else 'CASIA-B'} copy to {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
