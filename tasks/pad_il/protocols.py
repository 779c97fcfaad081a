"""Protocols of `pad_il`: OULU-NPU 1-4, leave-one-domain-out cross-dataset, and domain-incremental `il`.

- `oulu-p1`, `oulu-p2`: the protocol files' Train/Dev/Test lists, one fold; `oulu-p3`, `oulu-p4`: six folds
  (`split1`..`split6`, the leave-one-phone-out lists `<Split>_k.txt`), metrics averaged over them; a
  split whose test list is empty (a partial copy) is left out.
  The dev videos are solved as the fold's `dev` split: the ACER threshold is the dev EER threshold.
- `cross`: one fold per domain present under `--data`: train on the train splits of every other domain,
  test on the held-out domain's test split (O&C&I -> M style); HTER at the test EER threshold, AUC.
- `il`: domain-incremental, rehearsal-free. Steps follow the order M, C, I, O (the domains present);
  step t fits the train split of its domain on the SAME solver state, and is tested on the test splits of
  every domain seen so far (`groups["domain"]`). Steps are named `<t>:<letter>`. The test splits of the
  domains of the sequence not learned yet are solved too, as the step's `unseen` split (every step but the
  last): the unseen-domain HTER of the current model (its cross-dataset generalisation).
"""

from __future__ import annotations

from pathlib import Path

from harness.core import DataError, Fold, Sample
from tasks.pad_il.datasets import DOMAINS, Video, find_domains, load_domain, oulu_protocol

IL_ORDER = ("M", "C", "I", "O")
OULU_PROTOCOLS = {"oulu-p1": 1, "oulu-p2": 2, "oulu-p3": 3, "oulu-p4": 4}


def to_sample(v: Video) -> Sample:
    return Sample(v.id, {"video": str(v.path)}, {"label": v.label, "attack": v.attack},
                  {"subject": v.subject, "domain": v.domain, "attack": v.attack})


def _samples(videos: list[Video]) -> list[Sample]:
    return [to_sample(v) for v in videos]


def oulu_folds(root: Path, protocol: int) -> list[Fold]:
    ks: list[int | None] = [None] if protocol in (1, 2) else list(range(1, 7))
    folds = []
    for k in ks:
        parts = {split: _samples(oulu_protocol(root, protocol, split, k)) for split in ("train", "dev", "test")}
        if not parts["test"]:  # a partial copy without this split's phone: nothing to evaluate
            continue
        folds.append(Fold("all" if k is None else f"split{k}", parts["test"], train=parts["train"],
                          splits={"dev": parts["dev"]}))
    return folds


def _domain_videos(root: Path) -> dict[str, list[Video]]:
    found = find_domains(root)
    if not found:
        raise DataError(f"{root}: no OULU-NPU, CASIA-FASD, Replay-Attack or MSU-MFSD layout here or in sub-folders")
    return {letter: load_domain(letter, path) for letter, path in found.items()}


def cross_folds(root: Path) -> list[Fold]:
    videos = _domain_videos(root)
    if len(videos) < 2:
        raise DataError(f"{root}: the cross-dataset protocol needs at least two datasets, found "
                        f"{', '.join(DOMAINS[d] for d in videos)}")
    folds = []
    for target in sorted(videos, key=IL_ORDER.index):
        train = [v for d, vs in videos.items() if d != target for v in vs if v.split == "train"]
        test = [v for v in videos[target] if v.split == "test"]
        sources = "".join(d for d in IL_ORDER if d in videos and d != target)
        folds.append(Fold(f"{sources}->{target}", _samples(test), train=_samples(train)))
    return folds


def il_folds(root: Path, order: tuple[str, ...] = IL_ORDER) -> list[Fold]:
    videos = _domain_videos(root)
    steps = [d for d in order if d in videos]
    if len(steps) < 2:
        raise DataError(f"{root}: the incremental protocol needs at least two datasets, found "
                        f"{', '.join(DOMAINS[d] for d in videos)}")
    folds = []
    for t, letter in enumerate(steps, start=1):
        seen = steps[:t]
        test = [v for d in seen for v in videos[d] if v.split == "test"]
        train = [v for v in videos[letter] if v.split == "train"]
        unseen = [v for d in steps[t:] for v in videos[d] if v.split == "test"]
        folds.append(Fold(f"{t}:{letter}", _samples(test), train=_samples(train),
                          splits={"unseen": _samples(unseen)} if unseen else {}))
    return folds
