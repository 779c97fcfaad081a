"""Micro-expression recognition on the composite 3-class set (MEGC 2019 style), from the same spreadsheets.

The clips' `Estimated Emotion` is mapped to three classes: negative = repression, anger, contempt, disgust,
fear, sadness; positive = happiness; surprise = surprise. Clips labelled otherwise (`others`, `other`) are
not part of this protocol (the composite set leaves them out). Protocol `mer3`: the CASME II and/or SAMM
copies found in `--data` (the folder itself or its sub-folders), one LOSO fold per subject across all of
them (subjects are prefixed by dataset: `casme2:sub01`, `samm:006`). SMIC is not read (no layout known).
Metrics on predictions pooled over all folds: `uf1` (mean over the three classes of each class's F1) and
`uar` (mean per-class recall), as the MEGC composite evaluation defines them.
"""

from __future__ import annotations

from pathlib import Path

from harness.core import DataError, Fold, Sample
from tasks.micro_au.loaders import detect_layout, load_samples

CLASSES = ("negative", "positive", "surprise")
EMOTION_TO_CLASS = {
    "repression": "negative", "anger": "negative", "contempt": "negative", "disgust": "negative",
    "fear": "negative", "sadness": "negative", "happiness": "positive", "surprise": "surprise",
}


def find_datasets(path: Path) -> dict[str, Path]:
    """{"casme2": folder, "samm": folder} of the copies at `path` or one level below."""
    found: dict[str, Path] = {}
    for cand in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
        layout = detect_layout(cand)
        if layout:
            found.setdefault(layout.split("-")[0], cand)
    return found


def mer3_folds(path: Path, au_keys: dict[str, list[str]]) -> list[Fold]:
    found = find_datasets(path)
    if not found:
        raise DataError(f"{path}: no CASME II or SAMM coding spreadsheet here or in its sub-folders")
    samples = []
    for dataset, folder in sorted(found.items()):
        for s in load_samples(folder, dataset):
            if isinstance(s.target, dict) and "error" in s.target:
                samples.append(Sample(f"{dataset}:{s.id}", {**s.inputs, "au_keys": au_keys[dataset]}, s.target,
                                      {**s.groups, "subject": f"{dataset}:{s.groups['subject']}"}))
                continue
            label = EMOTION_TO_CLASS.get(str(s.target.get("emotion", "")).strip().lower())
            if label is None:
                continue  # others: not in the composite set
            samples.append(Sample(f"{dataset}:{s.id}", {**s.inputs, "au_keys": au_keys[dataset]},
                                  {"emotion3": label, "emotion": s.target["emotion"]},
                                  {**s.groups, "subject": f"{dataset}:{s.groups['subject']}", "dataset": dataset}))
    subjects = sorted({s.groups["subject"] for s in samples})
    if len(subjects) < 2:
        raise DataError(f"{path}: the 3-class protocol needs clips of at least two subjects, found {subjects}")
    return [Fold(sub, [s for s in samples if s.groups["subject"] == sub],
                 train=[s for s in samples if s.groups["subject"] != sub]) for sub in subjects]
