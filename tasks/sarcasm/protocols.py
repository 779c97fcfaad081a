"""How MUStARD is split: the official 5 folds, the speaker-independent split, and MUStARD++ 5-fold."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.core import DataError, Fold, Sample
from tasks.sarcasm.loader import OfficialFold

SPEAKER_INDEPENDENT_TEST_SHOW = "FRIENDS"  # what MUStARD's data_loader.py does (its docstring says TBBT)
PLUS_PLUS_FOLDS = 5
PLUS_PLUS_SEED = 0  # StratifiedKFold(shuffle=True, random_state=0) over the CSV's utterance order


def _check_partition(folds: Sequence[Fold], all_ids: set[str], source: Path) -> None:
    for fold in folds:
        train_ids = {s.id for s in fold.train}
        test_ids = {s.id for s in fold.test}
        overlap = train_ids & test_ids
        if overlap:
            raise DataError(f"{source}: {fold.name} has {len(overlap)} ids in both train and test "
                            f"(e.g. {sorted(overlap)[0]!r})")
        if train_ids | test_ids != all_ids or len(train_ids) + len(test_ids) != len(all_ids):
            raise DataError(f"{source}: {fold.name} train+test do not cover the {len(all_ids)} annotated "
                            "utterances exactly once")


def _check_stratified(fold: Fold, class_totals: Counter[bool], n_folds: int, source: Path) -> None:
    """A stratified k-fold test part holds each class's share to within one sample."""
    counts = Counter(bool(s.target) for s in fold.test)
    for label, total in class_totals.items():
        if abs(counts[label] - total / n_folds) >= 1:
            raise DataError(
                f"{source}: {fold.name} test part has {counts[True]} sarcastic / {counts[False]} not; "
                f"the official folds are stratified ({total / n_folds:g} per class) - is the fold file "
                "from a different release, or were its indices mapped through the wrong key order?"
            )


def speaker_dependent_folds(
    samples: Mapping[str, Sample], official: Sequence[OfficialFold], source: Path
) -> list[Fold]:
    """The official folds "fold1".."fold5" (train 552 / test 138, 69 sarcastic + 69 not per test part)."""
    folds = [
        Fold(name=f"fold{n}", train=[samples[i] for i in fold.train_ids], test=[samples[i] for i in fold.test_ids])
        for n, fold in enumerate(official, start=1)
    ]
    _check_partition(folds, set(samples), source)
    class_totals = Counter(bool(s.target) for s in samples.values())
    for fold in folds:
        _check_stratified(fold, class_totals, len(folds), source)
    return folds


def speaker_independent_split(samples: Mapping[str, Sample], source: Path) -> list[Fold]:
    """One fold: train on every show but FRIENDS (334 utterances), test on FRIENDS (356)."""
    test = [s for s in samples.values() if s.inputs["show"] == SPEAKER_INDEPENDENT_TEST_SHOW]
    train = [s for s in samples.values() if s.inputs["show"] != SPEAKER_INDEPENDENT_TEST_SHOW]
    if not test or not train:
        raise DataError(f"{source}: the speaker-independent split needs {SPEAKER_INDEPENDENT_TEST_SHOW} "
                        "utterances and utterances of other shows")
    return [Fold(name="speaker-independent", train=train, test=test)]


def plus_plus_stratified_folds(samples: Mapping[str, Sample], source: Path) -> list[Fold]:
    """MUStARD++ has no official folds: 5-fold StratifiedKFold, shuffled with a fixed seed."""
    from sklearn.model_selection import StratifiedKFold

    ordered = list(samples.values())
    labels = [bool(s.target) for s in ordered]
    if min(Counter(labels).values(), default=0) < PLUS_PLUS_FOLDS or len(set(labels)) < 2:
        raise DataError(f"{source}: {PLUS_PLUS_FOLDS}-fold stratified CV needs at least "
                        f"{PLUS_PLUS_FOLDS} utterances of each class")
    splitter = StratifiedKFold(n_splits=PLUS_PLUS_FOLDS, shuffle=True, random_state=PLUS_PLUS_SEED)
    return [
        Fold(name=f"fold{n}", train=[ordered[i] for i in train_idx], test=[ordered[i] for i in test_idx])
        for n, (train_idx, test_idx) in enumerate(splitter.split(ordered, labels), start=1)
    ]
