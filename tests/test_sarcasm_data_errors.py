"""Missing or garbled MUStARD / MUStARD++ files raise DataError naming the file and the problem;
the MUStARD++ CSV loader and the default data location."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from harness.core import DataError
from tasks.sarcasm import SarcasmTask, bundled, loader
from tests.conftest import shared_data_path


@pytest.fixture
def mustard_copy(tmp_path: Path) -> Path:
    source = shared_data_path("mustard")
    for name in (loader.ANNOTATIONS_FILE, loader.DERIVED_SPLIT_FILE):
        shutil.copy(source / name, tmp_path / name)
    return tmp_path


def test_truncated_json_raises_data_error_naming_the_file_and_position(mustard_copy: Path) -> None:
    path = mustard_copy / loader.ANNOTATIONS_FILE
    path.write_text(path.read_text()[:5000])
    with pytest.raises(DataError, match=r"sarcasm_data\.json: invalid JSON at line \d+, column \d+"):
        SarcasmTask().folds(mustard_copy, "speaker-dependent")


def test_entry_missing_a_field_names_the_id_and_field(mustard_copy: Path) -> None:
    path = mustard_copy / loader.ANNOTATIONS_FILE
    entries = json.loads(path.read_text())
    del entries["1_70"]["speaker"]
    path.write_text(json.dumps(entries))
    with pytest.raises(DataError, match=r"sarcasm_data\.json: entry '1_70' is missing field 'speaker'"):
        SarcasmTask().folds(mustard_copy, "speaker-independent")


def test_label_of_the_wrong_type_is_reported(mustard_copy: Path) -> None:
    path = mustard_copy / loader.ANNOTATIONS_FILE
    entries = json.loads(path.read_text())
    entries["1_60"]["sarcasm"] = "yes"
    path.write_text(json.dumps(entries))
    with pytest.raises(DataError, match=r"entry '1_60' field 'sarcasm' should be bool, got str"):
        loader.mustard_samples(mustard_copy)


def test_split_referencing_an_unknown_utterance_is_reported(mustard_copy: Path) -> None:
    path = mustard_copy / loader.DERIVED_SPLIT_FILE
    split = json.loads(path.read_text())
    split["folds"][2]["test_idx"][0] = 690  # one past the last of 690 utterances
    path.write_text(json.dumps(split))
    with pytest.raises(DataError, match=r"split_indices_5fold\.json: fold 3 test index 690 references an unknown"):
        SarcasmTask().folds(mustard_copy, "speaker-dependent")


def test_missing_files_are_named(tmp_path: Path, mustard_copy: Path) -> None:
    with pytest.raises(DataError, match="data folder does not exist"):
        SarcasmTask().resolve_data(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="expected MUStARD's sarcasm_data.json"):
        SarcasmTask().resolve_data(tmp_path / "empty")
    (mustard_copy / loader.DERIVED_SPLIT_FILE).unlink()
    with pytest.raises(DataError, match="no fold file"):
        SarcasmTask().resolve_data(mustard_copy)


def test_resolve_data_accepts_the_data_root_holding_a_mustard_folder(tmp_path: Path, mustard_copy: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(mustard_copy, root / "mustard")
    assert SarcasmTask().resolve_data(root) == root / "mustard"
    assert SarcasmTask().detect_protocol(root / "mustard") is None  # MUStARD: the default protocol


def test_without_data_harness_data_is_used(tmp_path: Path, mustard_copy: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(mustard_copy, root / "mustard")
    assert SarcasmTask().resolve_data(None, environ={"HARNESS_DATA": str(root)}) == root / "mustard"
    with pytest.raises(DataError, match="not found"):
        SarcasmTask().resolve_data(None, environ={"HARNESS_DATA": str(tmp_path / "elsewhere")})


def test_without_data_or_harness_data_the_shipped_copy_is_used(tmp_path: Path) -> None:
    folder = SarcasmTask().resolve_data(None, environ={"HOME": str(tmp_path)})
    assert folder == bundled.BUNDLED_DIR
    annotations = folder / loader.ANNOTATIONS_FILE
    import hashlib

    assert hashlib.sha256(annotations.read_bytes()).hexdigest() == bundled.ANNOTATIONS_SHA256  # upstream, unmodified
    assert "MIT License" in (folder / "LICENSE").read_text()
    assert bundled.MUSTARD_COMMIT in (folder / "SOURCE.md").read_text()
    folds = SarcasmTask().folds(folder, "speaker-dependent")
    assert [len(f.test) for f in folds] == [138] * 5
    assert all(sum(bool(s.target) for s in f.test) == 69 for f in folds)


def test_the_shipped_copy_equals_the_shared_data(shared_data) -> None:
    source = shared_data("mustard")
    for name in (loader.ANNOTATIONS_FILE, loader.DERIVED_SPLIT_FILE):
        assert (bundled.BUNDLED_DIR / name).read_bytes() == (source / name).read_bytes()


PLUS_PLUS_HEADER = ["SCENE", "KEY", "SENTENCE", "END_TIME", "SPEAKER", "SHOW", "Sarcasm", "Sarcasm_Type",
                    "Implicit_Emotion", "Explicit_Emotion", "Valence", "Arousal"]


def write_plus_plus_csv(folder: Path, n_scenes: int = 10) -> Path:
    """A tiny MUStARD++ CSV: scene k has k+1 context lines (scene 9 has 10, so c_10 sorts after c_09)."""
    path = folder / loader.MUSTARD_PLUS_PLUS_FILE
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(PLUS_PLUS_HEADER)
        for k in range(n_scenes):
            scene = f"1_{100 + k}"
            for line in range(k + 2 if k == n_scenes - 1 else k + 1):
                writer.writerow([scene, f"{scene}_c_{line:02d}", f"context {line}, scene {k}", "0:01",
                                 "LEONARD", "BBT", "", "", "", "", "", ""])
            sarcastic = k % 2 == 0
            writer.writerow([scene, f"{scene}_u", f"Oh, great.\nScene {k}", "0:05", "SHELDON", "BBT",
                             "1" if sarcastic else "0", "PRO" if sarcastic else "NONE", "Anger", "Neutral",
                             "3", "7"])
    return path


def test_mustard_plus_plus_csv_loader_builds_samples_with_context(tmp_path: Path) -> None:
    samples = loader.mustard_plus_plus_samples(write_plus_plus_csv(tmp_path))
    assert len(samples) == 10 and Counter(s.target for s in samples.values()) == {True: 5, False: 5}
    first = samples["1_100"]
    assert first.target is True and first.inputs["utterance"] == "Oh, great.\nScene 0"
    assert first.inputs["context"] == ["context 0, scene 0"] and first.inputs["context_speakers"] == ["LEONARD"]
    assert (first.inputs["sarcasm_type"], first.inputs["implicit_emotion"], first.inputs["explicit_emotion"]) == (
        "PRO", "Anger", "Neutral")
    assert (first.inputs["valence"], first.inputs["arousal"]) == (3.0, 7.0)
    assert first.groups == {"show": "BBT", "speaker": "SHELDON"}
    last = samples["1_109"].inputs["context"]
    assert len(last) == 11 and last[-1] == "context 10, scene 9" and last[9] == "context 9, scene 9"


def test_mustard_plus_plus_5fold_split_is_stratified_and_seeded(tmp_path: Path) -> None:
    write_plus_plus_csv(tmp_path)
    task = SarcasmTask()
    assert task.resolve_data(tmp_path) == tmp_path
    folds = task.folds(tmp_path, "mustard++-5fold")
    assert len(folds) == 5
    for fold in folds:
        assert Counter(s.target for s in fold.test) == {True: 1, False: 1}
        assert not {s.id for s in fold.train} & {s.id for s in fold.test}
    assert task.detect_protocol(tmp_path) == "mustard++-5fold"
    again = task.folds(tmp_path, "mustard++-5fold")
    assert [[s.id for s in f.test] for f in folds] == [[s.id for s in f.test] for f in again]
    with pytest.raises(DataError, match="use --protocol mustard\\+\\+-5fold"):
        task.folds(tmp_path, "speaker-dependent")


def test_mustard_plus_plus_bad_label_is_reported(tmp_path: Path) -> None:
    path = write_plus_plus_csv(tmp_path)
    path.write_text(path.read_text().replace("SHELDON,BBT,1,PRO", "SHELDON,BBT,maybe,PRO", 1))
    with pytest.raises(DataError, match=r"mustard\+\+_text\.csv: row '1_100_u' column 'Sarcasm' is not a number"):
        loader.mustard_plus_plus_samples(path)
