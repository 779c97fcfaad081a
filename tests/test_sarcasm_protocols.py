"""MUStARD protocol rules (TASKS.md `sarcasm`), checked on the real annotations and fold file."""

from __future__ import annotations

import json
import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from harness.core import DataError
from tasks.sarcasm import SarcasmTask, loader
from tasks.sarcasm.protocols import speaker_dependent_folds
from tasks.sarcasm.python2_order import python2_dict_order, python2_string_hash
from tests.conftest import shared_data_path


@pytest.fixture
def mustard() -> Path:
    return shared_data_path("mustard")


@pytest.fixture
def derived_split(mustard: Path) -> dict:
    return json.loads((mustard / loader.DERIVED_SPLIT_FILE).read_text())


def test_python2_string_hash_matches_known_values() -> None:
    # By hand: x = 97 << 7 = 12416; x = 1000003 * 12416 ^ 97 = 12416037345; x ^= len 1 -> 12416037344,
    # which is Python 2.7's hash("a") on 64-bit builds.
    assert python2_string_hash("a") == 12416037344
    assert python2_string_hash("") == 0


def test_python2_key_order_equals_shared_file(mustard: Path, derived_split: dict) -> None:
    file_order = list(json.loads((mustard / loader.ANNOTATIONS_FILE).read_text()))
    assert python2_dict_order(file_order) == derived_split["python2_key_order"]
    assert python2_dict_order(file_order) != file_order


def test_official_indices_map_to_the_shared_train_and_test_keys(mustard: Path, derived_split: dict) -> None:
    file_order = list(json.loads((mustard / loader.ANNOTATIONS_FILE).read_text()))
    pairs = [(f["train_idx"], f["test_idx"]) for f in derived_split["folds"]]
    folds = loader.map_split_indices(pairs, file_order, mustard)
    assert [list(f.train_ids) for f in folds] == [f["train_keys"] for f in derived_split["folds"]]
    assert [list(f.test_ids) for f in folds] == [f["test_keys"] for f in derived_split["folds"]]


def test_each_official_test_fold_has_69_sarcastic_and_69_not(mustard: Path) -> None:
    folds = SarcasmTask().folds(mustard, "speaker-dependent")
    assert [f.name for f in folds] == ["fold1", "fold2", "fold3", "fold4", "fold5"]
    for fold in folds:
        assert Counter(bool(s.target) for s in fold.test) == {True: 69, False: 69}
        assert Counter(bool(s.target) for s in fold.train) == {True: 276, False: 276}


def test_official_train_and_test_are_disjoint_and_cover_all_690(mustard: Path) -> None:
    folds = SarcasmTask().folds(mustard, "speaker-dependent")
    test_ids = [s.id for f in folds for s in f.test]
    assert len(test_ids) == len(set(test_ids)) == 690  # each utterance is tested exactly once
    for fold in folds:
        train, test = {s.id for s in fold.train}, {s.id for s in fold.test}
        assert not train & test
        assert len(train | test) == 690 and len(train) == 552 and len(test) == 138


def test_speaker_independent_test_set_is_exactly_the_356_friends_items(mustard: Path) -> None:
    annotations = json.loads((mustard / loader.ANNOTATIONS_FILE).read_text())
    friends = {i for i, e in annotations.items() if e["show"] == "FRIENDS"}
    (fold,) = SarcasmTask().folds(mustard, "speaker-independent")
    test, train = {s.id for s in fold.test}, {s.id for s in fold.train}
    assert test == friends and len(test) == 356
    assert len(train) == 334 and not train & test and len(train | test) == 690
    assert Counter(bool(s.target) for s in fold.test) == {True: 152, False: 204}


def test_samples_carry_inputs_and_groups(mustard: Path) -> None:
    fold = SarcasmTask().folds(mustard, "speaker-dependent")[0]
    sample = next(s for f in [fold] for s in [*f.train, *f.test] if s.id == "1_60")
    assert sample.target is True
    assert sample.inputs["speaker"] == "SHELDON" and sample.inputs["show"] == "BBT"
    assert sample.inputs["context_speakers"] == ["LEONARD", "SHELDON"] and len(sample.inputs["context"]) == 2
    assert sample.groups == {"show": "BBT", "speaker": "SHELDON"}
    assert "video" not in sample.inputs  # the text-only copy has no clips


def test_video_paths_are_added_when_clips_exist(mustard: Path, tmp_path: Path) -> None:
    for name in (loader.ANNOTATIONS_FILE, loader.DERIVED_SPLIT_FILE):
        shutil.copy(mustard / name, tmp_path / name)
    (tmp_path / "utterances_final").mkdir()
    (tmp_path / "context_final").mkdir()
    (tmp_path / "utterances_final" / "1_60.mp4").write_bytes(b"")
    (tmp_path / "context_final" / "1_60_c.mp4").write_bytes(b"")
    samples = loader.mustard_samples(tmp_path)
    assert samples["1_60"].inputs["video"] == str((tmp_path / "utterances_final" / "1_60.mp4").resolve())
    assert samples["1_60"].inputs["context_video"] == str((tmp_path / "context_final" / "1_60_c.mp4").resolve())
    assert "video" not in samples["1_70"].inputs


def test_official_pickle_is_read_like_its_json_conversion(mustard: Path, derived_split: dict, tmp_path: Path) -> None:
    shutil.copy(mustard / loader.ANNOTATIONS_FILE, tmp_path / loader.ANNOTATIONS_FILE)
    arrays = [(np.array(f["train_idx"]), np.array(f["test_idx"])) for f in derived_split["folds"]]
    # Protocol 2 as MUStARD's Python-2 code wrote it, naming numpy's module as old numpy did.
    content = pickle.dumps(arrays, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / loader.OFFICIAL_SPLIT_FILE).write_bytes(content)
    folds = SarcasmTask().folds(tmp_path, "speaker-dependent")
    assert [[s.id for s in f.test] for f in folds] == [f["test_keys"] for f in derived_split["folds"]]


def test_fold_pickle_with_foreign_objects_is_refused(mustard: Path, tmp_path: Path) -> None:
    (tmp_path / loader.OFFICIAL_SPLIT_FILE).write_bytes(pickle.dumps([(Counter(), [1])], protocol=2))
    with pytest.raises(DataError, match="refusing to load collections.Counter"):
        loader.read_official_split_pickle(tmp_path / loader.OFFICIAL_SPLIT_FILE)


def test_folds_mapped_through_file_order_are_rejected_as_unstratified(mustard: Path, derived_split: dict) -> None:
    samples = loader.mustard_samples(mustard)
    python3_folds = [loader.OfficialFold(tuple(f["train_keys_py3_file_order"]), tuple(f["test_keys_py3_file_order"]))
                     for f in derived_split["folds"]]
    with pytest.raises(DataError, match="stratified"):
        speaker_dependent_folds(samples, python3_folds, mustard)
