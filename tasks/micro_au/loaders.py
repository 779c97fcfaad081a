"""CASME II and SAMM official layouts -> one `Sample` per micro-expression clip.

- CASME II: `CASME2-coding-*.xlsx` (first sheet, header in row 1: Subject, Filename, -, OnsetFrame,
  ApexFrame, OffsetFrame, -, Action Units, Estimated Emotion) and frames
  `CASME2_RAW_selected/sub%02d/<Filename>/img<N>.jpg` (or `Cropped/sub%02d/<Filename>/reg_img<N>.jpg`).
- SAMM: `SAMM_Micro_FACS_Codes_v2.xlsx` (header in row 14: Subject, Filename, Inducement Code, Onset
  Frame, Apex Frame, Offset Frame, Duration, Type, Action Units, Notes, Estimated Emotion, ...) and frames
  `SAMM/%03d/<Filename>/%03d_%05d.jpg` (subject, frame); `--data` may also hold the subject folders.
The header row is found by its `Subject` cell, columns by name, so extra columns do not matter.

Missing frame numbers (`/` or empty, as some CASME II apexes are in the official file) follow one rule:
a missing apex becomes the midpoint of onset and offset (floor), and the sample records
`apex_imputed=True` (the report counts them); a missing onset, or a missing apex with no offset, makes
that sample's target an error (it is counted, not dropped). Sample ids are `<subject>/<Filename>`
(`sub01/EP02_01f`, `006/006_1_2`); groups carry the subject (the LOSO fold and bootstrap cluster).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core import DataError, Sample
from tasks.micro_au.aus import AU_SETS, au_vector, parse_aus

CASME2_GLOB = "CASME2-coding-*.xlsx"
SAMM_GLOB = "SAMM_Micro_FACS_Codes*.xlsx"
CASME2_COLUMNS = {"subject": "Subject", "filename": "Filename", "onset": "OnsetFrame", "apex": "ApexFrame",
                  "offset": "OffsetFrame", "aus": "Action Units", "emotion": "Estimated Emotion"}
SAMM_COLUMNS = {"subject": "Subject", "filename": "Filename", "onset": "Onset Frame", "apex": "Apex Frame",
                "offset": "Offset Frame", "aus": "Action Units", "emotion": "Estimated Emotion"}


def find_coding_file(path: Path, dataset: str) -> Path | None:
    found = sorted(path.glob(CASME2_GLOB if dataset == "casme2" else SAMM_GLOB))
    return found[0] if found else None


def detect_layout(path: Path) -> str | None:
    if find_coding_file(path, "casme2"):
        return "casme2-loso"
    if find_coding_file(path, "samm"):
        return "samm-loso"
    return None


def read_sheet(path: Path, columns: dict[str, str]) -> list[tuple[int, dict[str, Any]]]:
    """(excel row number, {key: value}) of every data row of the first sheet; DataError naming the file."""
    from openpyxl import load_workbook

    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zip/xml errors of a damaged file
        raise DataError(f"{path}: unreadable spreadsheet ({exc})") from None
    try:
        rows = list(wb.worksheets[0].iter_rows(values_only=True))
    finally:
        wb.close()
    header_at = next((i for i, r in enumerate(rows[:40]) if r and str(r[0]).strip() == "Subject"), None)
    if header_at is None:
        raise DataError(f"{path}: no header row starting with 'Subject' in the first 40 rows")
    header = [str(c).strip() if c is not None else "" for c in rows[header_at]]
    missing = [name for name in columns.values() if name not in header]
    if missing:
        raise DataError(f"{path}: header row {header_at + 1} lacks columns {missing}")
    index = {key: header.index(name) for key, name in columns.items()}
    out = []
    for i, row in enumerate(rows[header_at + 1:], start=header_at + 2):
        if not row or all(c is None or str(c).strip() == "" for c in row):
            continue
        out.append((i, {key: row[j] if j < len(row) else None for key, j in index.items()}))
    return out


def _frame(value: Any) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    if text in ("", "/", "-"):
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() and number >= 0 else None


def frame_rule(onset: int | None, apex: int | None, offset: int | None) -> tuple[int, int, bool]:
    """(onset, apex, apex_imputed) by the documented missing-frame rule; ValueError when unusable."""
    if onset is None:
        raise ValueError("onset frame is missing")
    if apex is not None:
        return onset, apex, False
    if offset is None:
        raise ValueError("apex and offset frames are both missing")
    return onset, (onset + offset) // 2, True


def _frames_root(path: Path, dataset: str) -> tuple[Path, str]:
    """(folder holding subject folders, frame name pattern)."""
    if dataset == "casme2":
        for name, pattern in (("CASME2_RAW_selected", "img{n}.jpg"), ("Cropped", "reg_img{n}.jpg")):
            if (path / name).is_dir():
                return path / name, pattern
        return path / "CASME2_RAW_selected", "img{n}.jpg"
    return (path / "SAMM" if (path / "SAMM").is_dir() else path), "{s}_{n:05d}.jpg"


def load_samples(path: Path, dataset: str) -> list[Sample]:
    coding = find_coding_file(path, dataset)
    if coding is None:
        raise DataError(f"{path}: no {CASME2_GLOB if dataset == 'casme2' else SAMM_GLOB} coding file")
    columns = CASME2_COLUMNS if dataset == "casme2" else SAMM_COLUMNS
    frames_root, pattern = _frames_root(path, dataset)
    au_set = AU_SETS[dataset]
    samples = []
    for row_no, row in read_sheet(coding, columns):
        where = f"{coding.name} row {row_no}"
        try:
            subject_no = int(float(str(row["subject"]).strip()))
        except ValueError:
            raise DataError(f"{coding}: row {row_no}: subject {row['subject']!r} is not a number") from None
        subject = f"sub{subject_no:02d}" if dataset == "casme2" else f"{subject_no:03d}"
        clip = str(row["filename"]).strip()
        folder = frames_root / subject / clip
        aus = parse_aus(row["aus"])
        inputs: dict[str, Any] = {"folder": str(folder), "all_aus": aus, "dataset": dataset}
        try:
            onset, apex, imputed = frame_rule(_frame(row["onset"]), _frame(row["apex"]), _frame(row["offset"]))
            name = pattern.format(n=onset, s=subject), pattern.format(n=apex, s=subject)
            inputs.update(onset=str(folder / name[0]), apex=str(folder / name[1]), onset_frame=onset,
                          apex_frame=apex, apex_imputed=imputed,
                          frame_pattern=str(folder / pattern.replace("{s}", subject)))
            target: Any = {"aus": au_vector(aus, au_set), "emotion": str(row["emotion"] or "").strip().lower()}
        except ValueError as exc:
            target = {"error": f"{where}: {exc} (onset={row['onset']!r}, apex={row['apex']!r}, "
                               f"offset={row['offset']!r})"}
        apex_note = "imputed" if inputs.get("apex_imputed") else "coded"
        samples.append(Sample(f"{subject}/{clip}", inputs, target, {"subject": subject, "apex": apex_note}))
    if not samples:
        raise DataError(f"{coding}: no data rows")
    return samples
