"""The immunization data: a folder of images plus `prompts.csv` (columns image, prompt, optional mask).

Why this shape: an immunization benchmark is a set of (image, edit instruction) pairs, with a mask where
the editor inpaints. One CSV row is one sample, so an image edited with two prompts is two samples that
share the `image` group (the bootstrap resamples images, not rows). Paths are relative to the folder.

Structural problems (no prompts.csv, a missing column, an empty image or prompt cell, a repeated row, a
path leaving the folder) stop loading with a DataError naming the file and row. An image or mask that is
missing or unreadable is that sample's error when it is used (`load_rgb`/`load_mask`), naming the file
and the CSV row, so one bad file never kills a run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from harness.core import DataError, Sample
from harness.datafiles import read_csv_rows
from harness.media import read_image

PROMPTS = "prompts.csv"


def _inside(root: Path, rel: str, where: str) -> Path:
    try:
        path = (root / rel).resolve()
    except (ValueError, OSError) as exc:  # a NUL byte, an over-long name
        raise DataError(f"{where}: {rel!r} is not a usable path ({exc})") from None
    if root.resolve() not in path.parents:
        raise DataError(f"{where}: {rel!r} is outside the data folder {root}")
    return path


def load_samples(root: Path) -> list[Sample]:
    csv_path = root / PROMPTS
    if not csv_path.is_file():
        raise DataError(f"{root}: no {PROMPTS} (columns: image, prompt, optional mask)")
    rows = read_csv_rows(csv_path, required=("image", "prompt"))
    if not rows:
        raise DataError(f"{csv_path}: no rows after the header")
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=2):
        where = f"{csv_path}: row {number}"
        image, prompt, mask = (row.get("image") or "").strip(), (row.get("prompt") or "").strip(), \
            (row.get("mask") or "").strip()
        if not image:
            raise DataError(f"{where}: empty image cell")
        if not prompt:
            raise DataError(f"{where}: empty prompt for {image}")
        image_path = _inside(root, image, where)
        mask_path = _inside(root, mask, where) if mask else None
        sid = f"{image}#{hashlib.sha256(prompt.encode()).hexdigest()[:8]}"
        if sid in seen:
            raise DataError(f"{where}: repeats row {seen[sid]} (same image and prompt)")
        seen[sid] = number
        target = {"image": str(image_path), "prompt": prompt, "mask": str(mask_path) if mask_path else None,
                  "row": number, "csv": str(csv_path)}
        samples.append(Sample(sid, dict(target), target, {"image": image}))
    return samples


def _where(info: dict[str, Any]) -> str:
    return f" ({info['csv']} row {info['row']})" if info.get("row") else ""


def load_rgb(path: str, info: dict[str, Any] | None = None) -> np.ndarray:
    """HxWx3 uint8; a missing or unreadable file is a DataError naming it and its CSV row."""
    return read_image(path, where=_where(info or {}))


def load_mask(path: str | None, shape: tuple[int, ...], info: dict[str, Any] | None = None) -> np.ndarray | None:
    """HxW uint8 (white: the editor may change it) matching the image's size, or None without a mask."""
    if not path:
        return None
    mask = load_rgb(path, info).max(axis=2)
    if mask.shape != tuple(shape[:2]):
        raise DataError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, its image "
                        f"{shape[1]}x{shape[0]}{_where(info or {})}")
    return mask
