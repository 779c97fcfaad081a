"""MOTOR-Bench layout: a clip manifest plus a label vocabulary, validated on load.

MOTOR-Bench itself is not public, so the harness defines the layout a data holder fills in:

``<data>/manifest.csv`` (or ``manifest.jsonl``), one row per clip, columns

===========  ========  =============================================================
clip_id      required  unique id of the clip
video        required  path of the clip, relative to the data folder; the file must exist
transcript   optional  a relative path to a ``.txt``/``.vtt``/``.srt`` file, or the text itself
audio        optional  relative path of a separate audio track; the file must exist when given
session      required  recording session (the bootstrap resamples sessions, not clips)
group        required  the collaborating group the clip shows
behavior     required  one label of the ``behavior`` vocabulary
cognition    required  one label of the ``cognition`` vocabulary
emotion      required  one label of the ``emotion`` vocabulary
===========  ========  =============================================================

``<data>/labels.json``: the vocabulary of each head. A head maps to a list of labels, or to an object
``{"labels": [...] | {label: one-line definition}, "prior_counts": {label: count}}``. Definitions are
shown to MLLM solvers in the prompt; ``prior_counts`` (optional) feed the majority/stratified baselines,
which otherwise use the label distribution of the manifest itself.

Every problem raises `harness.core.DataError` naming the file, the row (1-based, header = row 1 in a
CSV, line number in JSONL) and the field.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core import DataError
from harness.datafiles import read_csv_rows, read_text

HEADS: tuple[str, ...] = ("behavior", "cognition", "emotion")
REQUIRED_COLUMNS: tuple[str, ...] = ("clip_id", "video", "session", "group", *HEADS)
OPTIONAL_COLUMNS: tuple[str, ...] = ("transcript", "audio")
MANIFEST_NAMES: tuple[str, ...] = ("manifest.csv", "manifest.jsonl")
LABELS_NAME = "labels.json"
TRANSCRIPT_SUFFIXES: tuple[str, ...] = (".txt", ".vtt", ".srt")


@dataclass(frozen=True)
class Vocabulary:
    """Labels per head, their optional definitions and optional prior counts."""

    labels: dict[str, list[str]]
    definitions: dict[str, dict[str, str]]
    prior_counts: dict[str, dict[str, int]]


@dataclass(frozen=True)
class Clip:
    clip_id: str
    video: Path
    transcript: str
    audio: Path | None
    session: str
    group: str
    labels: dict[str, str]


def find_manifest(data_dir: Path) -> Path:
    for name in MANIFEST_NAMES:
        if (data_dir / name).is_file():
            return data_dir / name
    raise DataError(f"{data_dir}: no manifest (expected one of {', '.join(MANIFEST_NAMES)})")


def load_vocabulary(path: Path) -> Vocabulary:
    if not path.is_file():
        raise DataError(f"{path}: label vocabulary file is missing")
    try:
        raw = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object mapping each head to its labels")
    labels: dict[str, list[str]] = {}
    definitions: dict[str, dict[str, str]] = {}
    priors: dict[str, dict[str, int]] = {}
    for head in HEADS:
        if head not in raw:
            raise DataError(f"{path}: head {head!r} is missing (needs {', '.join(HEADS)})")
        entry = raw[head]
        prior_raw: Any = {}
        if isinstance(entry, dict):
            prior_raw = entry.get("prior_counts", {})
            entry = entry.get("labels")
        if isinstance(entry, dict):
            names, defs = list(entry), {str(k): str(v) for k, v in entry.items()}
        elif isinstance(entry, list):
            names, defs = entry, {}
        else:
            raise DataError(f"{path}: head {head!r}: 'labels' must be a list or an object of definitions")
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise DataError(f"{path}: head {head!r}: labels must be non-empty strings")
        dupes = [n for n, c in Counter(names).items() if c > 1]
        if dupes:
            raise DataError(f"{path}: head {head!r}: duplicate label(s) {dupes}")
        if not isinstance(prior_raw, dict):
            raise DataError(f"{path}: head {head!r}: 'prior_counts' must be an object label -> count")
        for label, count in prior_raw.items():
            if label not in names:
                raise DataError(f"{path}: head {head!r}: prior_counts has unknown label {label!r}")
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise DataError(f"{path}: head {head!r}: prior count of {label!r} must be an integer >= 0")
        labels[head] = list(names)
        definitions[head] = defs
        priors[head] = {k: int(v) for k, v in prior_raw.items()}
    return Vocabulary(labels, definitions, priors)


def _read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(row number, row) pairs; CSV rows count the header as row 1, JSONL rows are line numbers."""
    if path.suffix == ".jsonl":
        rows = []
        for lineno, line in enumerate(read_text(path).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: row {lineno}: not valid JSON ({exc})") from exc
            if not isinstance(row, dict):
                raise DataError(f"{path}: row {lineno}: expected a JSON object")
            missing = [c for c in REQUIRED_COLUMNS if c not in row]
            if missing:
                raise DataError(f"{path}: row {lineno}: missing field(s) {', '.join(missing)}")
            rows.append((lineno, row))
        return rows
    return list(enumerate(read_csv_rows(path, REQUIRED_COLUMNS), start=2))  # short rows: DataError naming the row


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def load_manifest(path: Path, vocab: Vocabulary) -> list[Clip]:
    root = path.parent
    clips: list[Clip] = []
    seen: dict[str, int] = {}
    for rowno, row in _read_rows(path):
        where = f"{path}: row {rowno}"
        for col in REQUIRED_COLUMNS:
            if not _text(row.get(col)):
                raise DataError(f"{where}: field {col!r} is empty")
        clip_id = _text(row["clip_id"])
        if clip_id in seen:
            raise DataError(f"{where}: field 'clip_id': duplicate id {clip_id!r} (first at row {seen[clip_id]})")
        seen[clip_id] = rowno
        video = root / _text(row["video"])
        if not video.is_file():
            raise DataError(f"{where}: field 'video': file {video} does not exist")
        audio_rel = _text(row.get("audio"))
        audio = root / audio_rel if audio_rel else None
        if audio is not None and not audio.is_file():
            raise DataError(f"{where}: field 'audio': file {audio} does not exist")
        transcript = _text(row.get("transcript"))
        if transcript.lower().endswith(TRANSCRIPT_SUFFIXES) and "\n" not in transcript:
            tpath = root / transcript
            if not tpath.is_file():
                raise DataError(f"{where}: field 'transcript': file {tpath} does not exist")
            transcript = read_text(tpath).strip()
        labels: dict[str, str] = {}
        for head in HEADS:
            label = _text(row[head])
            if label not in vocab.labels[head]:
                raise DataError(
                    f"{where}: field {head!r}: unknown label {label!r} "
                    f"(labels.json allows {', '.join(vocab.labels[head])})"
                )
            labels[head] = label
        clips.append(
            Clip(clip_id, video, transcript, audio, _text(row["session"]), _text(row["group"]), labels)
        )
    if not clips:
        raise DataError(f"{path}: the manifest has no clips")
    return clips


def label_prior(vocab: Vocabulary, clips: list[Clip]) -> dict[str, dict[str, int]]:
    """Counts per head for the reference baselines: labels.json's prior_counts when given, else the
    manifest's own label distribution (which peeks at the test labels; see the task docs)."""
    prior: dict[str, dict[str, int]] = {}
    for head in HEADS:
        if vocab.prior_counts[head]:
            counts = vocab.prior_counts[head]
        else:
            counts = dict(Counter(c.labels[head] for c in clips))
        prior[head] = {label: int(counts.get(label, 0)) for label in vocab.labels[head]}
    return prior
