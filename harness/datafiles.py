"""Reading label files so that every problem is a `DataError` naming the file (and the row).

Why: loaders read JSON, CSV and text lists written by other people's tools. A truncated download, a
file saved in Latin-1, a CSV row with fewer fields than the header or a stray binary file must stop a
run with "FILE: what is wrong", never with a UnicodeDecodeError or a `NoneType has no attribute`
traceback (the corrupt-input fuzz in tests/reliability checks every loader).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.core import DataError


def read_text(path: Path, *, encoding: str = "utf-8") -> str:
    """The file's text; missing, unreadable or not `encoding` (UTF-8) is a DataError naming it."""
    try:
        return path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not {encoding} text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_json(path: Path) -> Any:
    """Parsed JSON; a syntax error names the line and column."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None


def read_csv_rows(
    path: Path, required: Sequence[str] = (), *, encoding: str = "utf-8", delimiter: str = ","
) -> list[dict[str, str]]:
    """Rows of a CSV with a header, as dicts. A missing required column, a row with fewer fields than
    the header (a truncated file) or a malformed quote is a DataError naming the file and row
    (the header is row 1)."""
    text = read_text(path, encoding=encoding)
    rows: list[dict[str, str]] = []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise DataError(f"{path}: row 1 (header): missing column(s) {', '.join(missing)}")
        for number, row in enumerate(reader, start=2):
            if None in row.values():
                raise DataError(f"{path}: row {number} has fewer fields than the header ({len(header)})")
            rows.append({k: v for k, v in row.items() if k is not None})
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV: {exc}") from None
    return rows
