"""Reading MUStARD's files: the annotation JSON, the official fold file, and the MUStARD++ CSV.

Every problem with a file raises `DataError` naming the file and what is wrong with it.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core import DataError, Sample
from harness.datafiles import read_csv_rows, read_json
from tasks.sarcasm.python2_order import python2_dict_order

ANNOTATIONS_FILE = "sarcasm_data.json"
OFFICIAL_SPLIT_FILE = "split_indices.p"  # the pickle shipped with MUStARD
DERIVED_SPLIT_FILE = "split_indices_5fold.json"  # the same folds converted to JSON (already mapped to keys)
MUSTARD_PLUS_PLUS_FILE = "mustard++_text.csv"

UTTERANCE_VIDEO = "utterances_final/{id}.mp4"
CONTEXT_VIDEO = "context_final/{id}_c.mp4"
PLUS_PLUS_UTTERANCE_VIDEO = "final_utterance_videos/{id}.mp4"
PLUS_PLUS_CONTEXT_VIDEO = "final_context_videos/{id}_c.mp4"

_REQUIRED_FIELDS: dict[str, type] = {
    "utterance": str,
    "speaker": str,
    "context": list,
    "context_speakers": list,
    "show": str,
    "sarcasm": bool,
}
_PLUS_PLUS_COLUMNS = ("SCENE", "KEY", "SENTENCE", "SPEAKER", "SHOW", "Sarcasm")


@dataclass(frozen=True)
class OfficialFold:
    """One fold of the official 5-fold split as utterance ids."""

    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]


def _media_inputs(data_dir: Path, sample_id: str, utterance_pattern: str, context_pattern: str) -> dict[str, str]:
    """Absolute paths of the clips that exist for this sample (the text-only release has none)."""
    found: dict[str, str] = {}
    for field_name, pattern in (("video", utterance_pattern), ("context_video", context_pattern)):
        path = data_dir / pattern.format(id=sample_id)
        if path.is_file():
            found[field_name] = str(path.resolve())
    return found


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def read_annotations(path: Path) -> dict[str, dict[str, Any]]:
    """Parse `sarcasm_data.json` keeping file order, and check each entry's fields and types."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (expected MUStARD's {ANNOTATIONS_FILE})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    try:
        entries = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from exc
    if not isinstance(entries, dict) or not entries:
        raise DataError(f"{path}: expected a non-empty JSON object keyed by utterance id")
    for sample_id, entry in entries.items():
        if not isinstance(entry, dict):
            raise DataError(f"{path}: entry {sample_id!r} is not an object")
        for field_name, field_type in _REQUIRED_FIELDS.items():
            if field_name not in entry:
                raise DataError(f"{path}: entry {sample_id!r} is missing field {field_name!r}")
            if not isinstance(entry[field_name], field_type):
                raise DataError(
                    f"{path}: entry {sample_id!r} field {field_name!r} should be {field_type.__name__}, "
                    f"got {type(entry[field_name]).__name__}"
                )
        if len(entry["context"]) != len(entry["context_speakers"]):
            raise DataError(f"{path}: entry {sample_id!r} has {len(entry['context'])} context lines "
                            f"but {len(entry['context_speakers'])} context speakers")
    return entries


def mustard_samples(data_dir: Path) -> dict[str, Sample]:
    """All MUStARD utterances as Samples keyed by id, in file order."""
    entries = read_annotations(data_dir / ANNOTATIONS_FILE)
    samples: dict[str, Sample] = {}
    for sample_id, entry in entries.items():
        inputs: dict[str, Any] = {
            "utterance": entry["utterance"],
            "speaker": entry["speaker"],
            "context": list(entry["context"]),
            "context_speakers": list(entry["context_speakers"]),
            "show": entry["show"],
            **_media_inputs(data_dir, sample_id, UTTERANCE_VIDEO, CONTEXT_VIDEO),
        }
        samples[sample_id] = Sample(
            id=sample_id,
            inputs=inputs,
            target=entry["sarcasm"],
            groups={"show": entry["show"], "speaker": entry["speaker"]},
        )
    return samples


class _NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: the fold file may come from the network."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes an array's bytes at pickle protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _index_list(values: Any, path: Path, what: str) -> list[int]:
    try:
        indices = [int(i) for i in values]
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: {what} is not a list of integer indices") from exc
    return indices


def read_official_split_pickle(path: Path) -> list[tuple[list[int], list[int]]]:
    """The raw (train_idx, test_idx) pairs of `split_indices.p` (numpy arrays pickled by Python 2)."""
    try:
        with path.open("rb") as file:
            raw = _NumpyArrayUnpickler(file, encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:  # a truncated or foreign pickle raises many different types
        raise DataError(f"{path}: not a readable fold pickle: {exc}") from exc
    if not isinstance(raw, (list, tuple)) or not all(isinstance(f, (list, tuple)) and len(f) == 2 for f in raw):
        raise DataError(f"{path}: expected a list of (train_idx, test_idx) pairs")
    return [
        (_index_list(train, path, f"fold {n} train_idx"), _index_list(test, path, f"fold {n} test_idx"))
        for n, (train, test) in enumerate(raw, start=1)
    ]


def read_derived_split_json(path: Path) -> list[tuple[list[int], list[int]]]:
    """The raw index pairs kept in the JSON conversion of the pickle (`folds[*].train_idx/test_idx`)."""
    content = read_json(path)
    folds = content.get("folds") if isinstance(content, dict) else None
    if not isinstance(folds, list) or not all(isinstance(f, dict) for f in folds):
        raise DataError(f"{path}: expected an object with a 'folds' list")
    pairs = []
    for n, fold in enumerate(folds, start=1):
        for field_name in ("train_idx", "test_idx"):
            if field_name not in fold:
                raise DataError(f"{path}: fold {n} is missing field {field_name!r}")
        pairs.append((_index_list(fold["train_idx"], path, f"fold {n} train_idx"),
                      _index_list(fold["test_idx"], path, f"fold {n} test_idx")))
    return pairs


def map_split_indices(
    index_pairs: Sequence[tuple[Sequence[int], Sequence[int]]], file_order_ids: Sequence[str], path: Path
) -> list[OfficialFold]:
    """Turn index pairs into id folds through the Python-2 dict order of the ids (see python2_order)."""
    key_order = python2_dict_order(file_order_ids)
    folds = []
    for n, (train_idx, test_idx) in enumerate(index_pairs, start=1):
        for what, indices in (("train", train_idx), ("test", test_idx)):
            bad = [i for i in indices if not 0 <= i < len(key_order)]
            if bad:
                raise DataError(f"{path}: fold {n} {what} index {bad[0]} references an unknown utterance "
                                f"(the annotations hold {len(key_order)})")
        folds.append(OfficialFold(tuple(key_order[i] for i in train_idx), tuple(key_order[i] for i in test_idx)))
    return folds


def official_folds(data_dir: Path, file_order_ids: Sequence[str]) -> list[OfficialFold]:
    """The official speaker-dependent folds from whichever split file the folder holds."""
    pickle_path, json_path = data_dir / OFFICIAL_SPLIT_FILE, data_dir / DERIVED_SPLIT_FILE
    if pickle_path.exists():
        return map_split_indices(read_official_split_pickle(pickle_path), file_order_ids, pickle_path)
    if json_path.exists():
        return map_split_indices(read_derived_split_json(json_path), file_order_ids, json_path)
    raise DataError(f"{data_dir}: no fold file ({OFFICIAL_SPLIT_FILE} or {DERIVED_SPLIT_FILE})")


def _plus_plus_number(value: str, path: Path, key: str, column: str) -> float | None:
    if value.strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise DataError(f"{path}: row {key!r} column {column!r} is not a number: {value!r}") from None


def _context_number(key: str) -> tuple[int, str]:
    """Sort key of a `<SCENE>_c_<NN>` row: NN as a number (so 10 follows 9 however it is padded)."""
    suffix = key.rsplit("_", 1)[-1]
    return (int(suffix), key) if suffix.isdigit() else (1 << 30, key)


def mustard_plus_plus_samples(path: Path) -> dict[str, Sample]:
    """MUStARD++ utterances (`<SCENE>_u` rows) with their `<SCENE>_c_<NN>` context, keyed by scene."""
    rows = read_csv_rows(path)  # a short (truncated) row or a bad encoding is a DataError naming the row
    missing = [c for c in _PLUS_PLUS_COLUMNS if not rows or c not in rows[0]]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} (or no rows)")
    context: dict[str, list[tuple[str, str, str]]] = {}
    utterance_rows: dict[str, Mapping[str, str]] = {}
    for row in rows:
        scene, key = row["SCENE"], row["KEY"]
        if key == f"{scene}_u":
            if scene in utterance_rows:
                raise DataError(f"{path}: scene {scene!r} has two utterance rows")
            utterance_rows[scene] = row
        elif key.startswith(f"{scene}_c_"):
            context.setdefault(scene, []).append((key, row["SENTENCE"], row["SPEAKER"]))
        else:
            raise DataError(f"{path}: row KEY {key!r} is neither {scene}_u nor {scene}_c_<NN>")
    samples: dict[str, Sample] = {}
    for scene, row in utterance_rows.items():
        label = _plus_plus_number(row["Sarcasm"], path, row["KEY"], "Sarcasm")
        if label not in (0.0, 1.0):
            raise DataError(f"{path}: row {row['KEY']!r} column 'Sarcasm' should be 0 or 1, got {row['Sarcasm']!r}")
        lines = sorted(context.get(scene, []), key=lambda line: _context_number(line[0]))
        inputs: dict[str, Any] = {
            "utterance": row["SENTENCE"],
            "speaker": row["SPEAKER"],
            "context": [text for _, text, _ in lines],
            "context_speakers": [speaker for _, _, speaker in lines],
            "show": row["SHOW"],
            "sarcasm_type": row.get("Sarcasm_Type") or None,
            "implicit_emotion": row.get("Implicit_Emotion") or None,
            "explicit_emotion": row.get("Explicit_Emotion") or None,
            "valence": _plus_plus_number(row.get("Valence", ""), path, row["KEY"], "Valence"),
            "arousal": _plus_plus_number(row.get("Arousal", ""), path, row["KEY"], "Arousal"),
            **_media_inputs(path.parent, scene, PLUS_PLUS_UTTERANCE_VIDEO, PLUS_PLUS_CONTEXT_VIDEO),
        }
        samples[scene] = Sample(id=scene, inputs=inputs, target=label == 1.0,
                                groups={"show": row["SHOW"], "speaker": row["SPEAKER"]})
    orphans = sorted(set(context) - set(utterance_rows))
    if orphans:
        raise DataError(f"{path}: context rows for scene {orphans[0]!r} without a {orphans[0]}_u utterance row")
    if not samples:
        raise DataError(f"{path}: no annotated utterance rows (<SCENE>_u)")
    return samples
