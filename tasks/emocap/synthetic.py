"""Small synthetic datasets in the exact official layouts (RAF-DB basic, FER+/FER2013, AffectNet).

None of the FER sets may be redistributed, so tests and the README's quick start run on these. Each
class gets its own tint and stripe direction plus noise, so that a trained solver can beat the majority
floor while a random model cannot: the files exercise the loaders, protocols and metrics, not a
model's quality. `python -m tasks.emocap.synthetic OUT` writes a RAF-DB copy.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tasks.emocap.labels import AFFECTNET_CODES, FERPLUS_COLUMNS, RAFDB_CODES


def face_image(class_index: int, rng: np.random.Generator, size: int = 100, grey: bool = False) -> np.ndarray:
    """A uint8 image whose tint and stripes depend on the class, with noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = np.pi * class_index / 8
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * (np.cos(angle) * xx + np.sin(angle) * yy))
    hue = np.array([np.cos(class_index), np.sin(class_index), np.cos(2 * class_index)]) * 0.35 + 0.5
    img = stripes[:, :, None] * hue[None, None, :] * 255 + rng.normal(0, 20, (size, size, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img.mean(axis=2).astype(np.uint8) if grey else img


def _save(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=95)


def write_rafdb(root: str | Path, n_train: int = 28, n_test: int = 14, seed: int = 0,
                codes: Sequence[int] | None = None) -> Path:
    """RAF-DB basic layout under `root/basic`; labels cycle through 1..7 unless `codes` (test) are given."""
    rng = np.random.default_rng(seed)
    basic = Path(root) / "basic"
    lines = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            code = (codes[i] if codes is not None and split == "test" else i % 7 + 1)
            name = f"{split}_{i + 1:05d}"
            lines.append(f"{name}.jpg {code}")
            _save(face_image(code, rng), basic / "Image" / "aligned" / f"{name}_aligned.jpg")
    (basic / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (basic / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return basic


def write_ferplus(root: str | Path, votes: Sequence[tuple[str, Sequence[int]]], seed: int = 0) -> Path:
    """fer2013new.csv with the given (Usage, 10 vote counts) rows and a matching fer2013.csv of pixels."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with (root / "fer2013new.csv").open("w", newline="") as fh, (root / "fer2013.csv").open("w", newline="") as px:
        w, p = csv.writer(fh), csv.writer(px)
        w.writerow(["Usage", "Image name", *FERPLUS_COLUMNS])
        p.writerow(["emotion", "pixels", "Usage"])
        for i, (usage, counts) in enumerate(votes):
            w.writerow([usage, f"fer{i:07d}.png", *counts])
            top = int(np.argmax(counts[:8]))
            p.writerow([0, " ".join(map(str, face_image(top, rng, 48, grey=True).ravel())), usage])
    return root


def write_affectnet(root: str | Path, n_per_class: int = 2, seed: int = 0,
                    extra_codes: Sequence[int] = (8, 9, 10)) -> Path:
    """AffectNet file lists (training/validation) and images for codes 0..7, plus rows of `extra_codes`."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    header = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
              "expression", "valence", "arousal"]
    for name in ("training.csv", "validation.csv"):
        with (lists / name).open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            codes = [c for c in AFFECTNET_CODES for _ in range(n_per_class)] + list(extra_codes)
            for i, code in enumerate(codes):
                rel = f"{i % 3 + 1}/{name[:3]}_{i:04d}.jpg"
                img = np.zeros((120, 120, 3), np.uint8)
                img[10:110, 10:110] = face_image(code if code < 8 else 0, rng)
                _save(img, root / "Manually_Annotated_Images" / rel)
                w.writerow([rel, 10, 10, 100, 100, "", code, 0.0, 0.0])
    return root


def write_dynamic(root: str | Path, protocol: str = "dfew", n_clips: int = 7, n_frames: int = 20, seed: int = 0,
                  folds: int | None = None) -> Path:
    """Frame folders `clips/<name>/<00001>.jpg` and the annotation lists of `protocol` (relative paths);
    clip i has label i % classes; `folds` limits the 5-fold sets (default all)."""
    from tasks.emocap.dynamic import LISTS
    from tasks.emocap.labels import PROTOCOL_CLASSES

    rng = np.random.default_rng(seed)
    root = Path(root)
    n_classes = len(PROTOCOL_CLASSES[protocol])
    for train_name, test_name, fold in LISTS[protocol][:folds]:
        for list_name, split in ((train_name, "train"), (test_name, "test")):
            lines = []
            for i in range(n_clips):
                label = i % n_classes
                name = f"clips/{fold}_{split}_{i:03d}"
                for t in range(n_frames):
                    _save(face_image(label, rng, 64), root / name / f"{t + 1:05d}.jpg")
                lines.append(f"{name} {n_frames} {label}")
            (root / list_name).write_text("\n".join(lines) + "\n")
    return root


__all__ = ["RAFDB_CODES", "face_image", "write_affectnet", "write_dynamic", "write_ferplus", "write_rafdb"]

if __name__ == "__main__":
    out = write_rafdb(sys.argv[1] if len(sys.argv) > 1 else "emocap-synthetic")
    print(f"wrote a synthetic RAF-DB copy to {out.parent}")
