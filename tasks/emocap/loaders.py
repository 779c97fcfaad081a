"""Official layouts of the static FER sets -> `Sample`s, and one face loader for every layout.

- RAF-DB basic: `basic/EmoLabel/list_patition_label.txt` (`train_00001.jpg 5`) and
  `basic/Image/aligned/train_00001_aligned.jpg`; `--data` may name the dataset root or `basic/`.
  Sample ids are the image names of the label file; `train_*` rows train, `test_*` rows test.
- FER+: `fer2013new.csv` (vote counts) next to FER2013's `fer2013.csv` (pixels); see `ferplus.py`.
- AffectNet: `Manually_Annotated_file_lists/{training,validation}.csv` and
  `Manually_Annotated_Images/<subDirectory_filePath>`; the validation list is the test set (the
  official test set is not released), rows with codes 8-10 (none/uncertain/no face) are not samples,
  and AffectNet-7 also drops contempt (7). Faces are cropped to the annotated box.
A missing or unreadable image is that sample's error (raised by `load_face`, naming the file); a label
outside the code table makes the sample's target an error record, so every listed image is counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.core import DataError, Sample
from harness.datafiles import read_csv_rows, read_text
from harness.media import read_image
from tasks.emocap import ferplus
from tasks.emocap.labels import AFFECTNET_CODES, PROTOCOL_CLASSES, RAFDB_CODES

RAFDB_LABELS = Path("EmoLabel") / "list_patition_label.txt"
AFFECTNET_LISTS = "Manually_Annotated_file_lists"
AFFECTNET_IMAGES = "Manually_Annotated_Images"
DATASET_FOLDERS = {"rafdb": ("RAF-DB", "rafdb", "RAFDB"), "ferplus": ("FERPlus", "ferplus", "FER+"),
                   "affectnet7": ("AffectNet", "affectnet"), "affectnet8": ("AffectNet", "affectnet")}


def rafdb_basic(path: Path) -> Path | None:
    """The `basic/` folder of a RAF-DB copy given its root or `basic/` itself."""
    for cand in (path, path / "basic"):
        if (cand / RAFDB_LABELS).is_file():
            return cand
    return None


def detect_layout(path: Path) -> str | None:
    """The protocol whose official layout `path` holds (AffectNet defaults to the 7-class set)."""
    if rafdb_basic(path):
        return "rafdb"
    if (path / ferplus.LABELS_FILE).is_file():
        return "ferplus"
    if (path / AFFECTNET_LISTS).is_dir():
        return "affectnet7"
    return None


def locate(path: Path, protocol: str) -> Path:
    """`path` or its per-dataset subfolder (HARNESS_DATA root) holding `protocol`'s layout."""
    for cand in (path, *(path / name for name in DATASET_FOLDERS.get(protocol, ()))):
        layout = detect_layout(cand) if cand.is_dir() else None
        if layout is not None and (layout == protocol or {layout, protocol} <= {"affectnet7", "affectnet8"}):
            return cand
    raise DataError(f"{path}: no {protocol} layout here ({layout_help(protocol)})")


def layout_help(protocol: str) -> str:
    return {
        "rafdb": f"expected basic/{RAFDB_LABELS} and basic/Image/aligned/",
        "ferplus": f"expected {ferplus.LABELS_FILE} (FER+ votes) and {ferplus.PIXELS_FILE} (FER2013 pixels)",
        "affectnet7": f"expected {AFFECTNET_LISTS}/{{training,validation}}.csv and {AFFECTNET_IMAGES}/",
        "affectnet8": f"expected {AFFECTNET_LISTS}/{{training,validation}}.csv and {AFFECTNET_IMAGES}/",
    }.get(protocol, "unknown protocol")


def _target(code: str, table: dict[int, str], where: str) -> Any:
    try:
        return table[int(code)]
    except (ValueError, KeyError):
        return {"error": f"{where}: label {code!r} is not one of {sorted(table)}"}


def load_rafdb(path: Path) -> dict[str, list[Sample]]:
    basic = rafdb_basic(path)
    if basic is None:
        raise DataError(f"{path}: {layout_help('rafdb')}")
    label_file = basic / RAFDB_LABELS
    out: dict[str, list[Sample]] = {"train": [], "test": []}
    for n, line in enumerate(read_text(label_file).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].endswith(".jpg"):
            raise DataError(f"{label_file}: line {n}: expected '<name>.jpg <label 1-7>', got {line!r}")
        name, code = parts
        split = "train" if name.startswith("train_") else "test" if name.startswith("test_") else None
        if split is None:
            raise DataError(f"{label_file}: line {n}: image name {name!r} starts with neither train_ nor test_")
        image = basic / "Image" / "aligned" / f"{name[:-4]}_aligned.jpg"
        out[split].append(Sample(name, {"image": str(image)}, _target(code, RAFDB_CODES, f"{label_file}:{n}"),
                                 {"split": split}))
    return out


def load_ferplus(path: Path) -> dict[str, list[Sample]]:
    labels = path / ferplus.LABELS_FILE
    pixels = path / ferplus.PIXELS_FILE
    if not labels.is_file():
        raise DataError(f"{labels}: FER+ vote file is missing")
    if not pixels.is_file():
        raise DataError(f"{pixels}: FER2013 pixel file is missing (FER+ ships labels only)")
    out: dict[str, list[Sample]] = {"train": [], "valid": [], "test": []}
    for row in ferplus.read_ferplus(labels):
        if row.label is None:  # dropped by FER+, unknown or not a face: not a sample (FER+ rule)
            continue
        out[row.split].append(Sample(row.image[:-4] if row.image.endswith(".png") else row.image,
                                     {"pixels_csv": str(pixels), "row": row.row}, row.label, {"split": row.split}))
    return out


def load_affectnet(path: Path, protocol: str) -> dict[str, list[Sample]]:
    keep = set(PROTOCOL_CLASSES[protocol])
    out: dict[str, list[Sample]] = {}
    for split, name in (("train", "training.csv"), ("test", "validation.csv")):
        file = path / AFFECTNET_LISTS / name
        if not file.is_file():
            if split == "test":
                raise DataError(f"{file}: AffectNet validation list (the test set) is missing")
            out[split] = []
            continue
        samples = []
        need = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "expression")
        # rows with fewer fields than the header (a truncated list) are a DataError naming the row
        for n, row in enumerate(read_csv_rows(file, need), start=2):
            code = row["expression"].strip()
            if code.lstrip("-").isdigit() and int(code) in (8, 9, 10):
                continue  # none / uncertain / no face: never evaluated
            target = _target(code, AFFECTNET_CODES, f"{file}:{n}")
            if isinstance(target, str) and target not in keep:
                continue  # contempt in AffectNet-7
            try:
                box = [int(float(row[k])) for k in ("face_x", "face_y", "face_width", "face_height")]
            except ValueError:
                box = None
            rel = row["subDirectory_filePath"].strip()
            samples.append(Sample(rel, {"image": str(path / AFFECTNET_IMAGES / rel), "box": box}, target,
                                  {"split": split}))
        out[split] = samples
    return out


def load_splits(path: Path, protocol: str) -> dict[str, list[Sample]]:
    """{"train": [...], "test": [...], ...} for a located dataset folder."""
    if protocol == "rafdb":
        return load_rafdb(path)
    if protocol == "ferplus":
        return load_ferplus(path)
    if protocol in ("affectnet7", "affectnet8"):
        return load_affectnet(path, protocol)
    raise DataError(f"unknown emocap protocol {protocol!r}")


def load_face(sample: Sample) -> np.ndarray:
    """The sample's face as an HxWx3 uint8 RGB array; DataError naming the file when unreadable."""
    inputs = sample.inputs
    if "pixels_csv" in inputs:
        grey = ferplus.fer2013_image(inputs["pixels_csv"], int(inputs["row"]))
        return np.repeat(grey[:, :, None], 3, axis=2)
    rgb = read_image(inputs["image"])
    box = inputs.get("box")
    if box:
        x, y, w, h = box
        crop = rgb[max(0, y):y + h, max(0, x):x + w]
        if crop.size:
            rgb = crop
    return rgb
