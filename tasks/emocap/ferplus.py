"""FER+ labels from the 10-tagger vote counts (microsoft/FERPlus `fer2013new.csv`) and FER2013 pixels.

Majority labels follow FERPlus `src/ferplus.py` (`_process_data(mode="majority")` and `load_folders`):
1. a class with a single vote is an outlier: its count is set to 0;
2. the label is the class holding more than half of the remaining votes (all ten columns count,
   `unknown` and `NF` included); without such a class the image is `unknown`;
3. images whose label is `unknown` or `NF` (not a face), and rows FER+ dropped (empty image name),
   are not evaluated.
Splits: `Training` (train), `PublicTest` (FER+ "valid"), `PrivateTest` (FER+ "test", the test fold).
Pixels: FER2013's `fer2013.csv` (`emotion, pixels, Usage`; 2304 grey values per row, 48x48), row i of
both files is the same image (`fer%07d.png` % i).
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core import DataError
from tasks.emocap.labels import FERPLUS_COLUMNS

LABELS_FILE = "fer2013new.csv"
PIXELS_FILE = "fer2013.csv"
USAGE_SPLIT = {"Training": "train", "PublicTest": "valid", "PrivateTest": "test"}


def majority_label(votes: list[float] | tuple[float, ...]) -> str | None:
    """The FER+ majority label of one row of 10 vote counts, or None (unknown / not a face)."""
    if len(votes) != len(FERPLUS_COLUMNS):
        raise ValueError(f"expected {len(FERPLUS_COLUMNS)} vote counts, got {len(votes)}")
    kept = [v if v > 1 else 0.0 for v in votes]  # single votes are outliers
    total = sum(kept)
    best = max(range(len(kept)), key=lambda i: (kept[i], -i))  # first maximum, as np.argmax
    if total <= 0 or kept[best] <= 0.5 * total:
        return None
    name = FERPLUS_COLUMNS[best]
    return None if name in ("unknown", "NF") else name


@dataclass(frozen=True)
class FerPlusRow:
    row: int  # 0-based data row, the same in fer2013.csv
    image: str  # fer0000000.png
    split: str  # train | valid | test
    label: str | None
    votes: tuple[float, ...]


def read_ferplus(path: Path) -> list[FerPlusRow]:
    """Every data row of fer2013new.csv (dropped rows have image ''); DataError naming bad lines."""
    rows: list[FerPlusRow] = []
    try:
        _read_ferplus_rows(path, rows)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not utf-8 text (byte {exc.start}: {exc.reason})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from None
    return rows


def _read_ferplus_rows(path: Path, rows: list[FerPlusRow]) -> None:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[2:]] != list(FERPLUS_COLUMNS):
            raise DataError(f"{path}: header must be Usage,Image name,{','.join(FERPLUS_COLUMNS)}; got {header}")
        for i, line in enumerate(reader):
            if len(line) != 12:
                raise DataError(f"{path}: line {i + 2} has {len(line)} fields, expected 12")
            usage = line[0].strip()
            if usage not in USAGE_SPLIT:
                raise DataError(f"{path}: line {i + 2}: unknown Usage {usage!r}")
            try:
                votes = tuple(float(v) for v in line[2:])
            except ValueError as exc:
                raise DataError(f"{path}: line {i + 2}: vote counts must be numbers ({exc})") from None
            image = line[1].strip()
            rows.append(FerPlusRow(i, image, USAGE_SPLIT[usage], majority_label(votes) if image else None, votes))


@functools.lru_cache(maxsize=2)
def _pixel_rows(path: str, mtime: float) -> tuple[str, ...]:
    """The `pixels` column of fer2013.csv, read once per file (about 35k strings)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "pixels" not in reader.fieldnames:
                raise DataError(f"{path}: no 'pixels' column (expected emotion,pixels,Usage)")
            return tuple(r["pixels"] for r in reader)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not utf-8 text (byte {exc.start}: {exc.reason})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from None


def fer2013_image(pixels_csv: str | Path, row: int) -> np.ndarray:
    """The 48x48 uint8 grey image of data row `row` of fer2013.csv."""
    path = Path(pixels_csv)
    rows = _pixel_rows(str(path), path.stat().st_mtime)
    if not 0 <= row < len(rows):
        raise DataError(f"{path}: has {len(rows)} rows, no row {row}")
    try:
        values = np.array(rows[row].split(), dtype=np.int64)
    except (ValueError, AttributeError):  # AttributeError: a truncated row has no pixels cell (None)
        raise DataError(f"{path}: row {row}: pixels are not integers") from None
    if values.size != 48 * 48 or values.min() < 0 or values.max() > 255:
        raise DataError(f"{path}: row {row}: expected 2304 values in 0..255, got {values.size}")
    return values.astype(np.uint8).reshape(48, 48)
