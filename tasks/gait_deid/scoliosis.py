"""Scoliosis1K utility of protected gait: does screening still work on the protected sequences?

Why: a protection that destroys identity but also the body shape a clinician screens for has no utility.
Protocol `scoliosis1k` (when the data is given): the OpenGait silhouette release
`Scoliosis1K-sil-pkl/<id 5 digits>/<class>/<seq>_<view>/<seq>_<view>.pkl` (uint8 [n, 64, 64]; class folders
Positive / Neutral / Negative, matched case-insensitively) with OpenGait's partition file
`Scoliosis1K_<n>.json` = {"TRAIN_SET": [ids], "TEST_SET": [ids]} in the root or its parent
(`Scoliosis1K_1116.json` preferred when several are there). The TEST_SET sequences are the probes the solver
protects (targets drawn among the test ids by the same seeded rule); the screener is fitted on the
unprotected TRAIN_SET sequences: GEI + PCA + LDA predicting the three classes (`--role screener=gei`, the
CPU stand-in for ScoNet), or the user's ScoNet (`--role screener=opengait:CONFIG:CKPT`): its
`inference_feat["embeddings"]` are [n, 3, parts] logits and the class is the argmax of their mean over parts
in the order negative, neutral, positive, as OpenGait's `evaluate_scoliosis` reads them.
Metrics: three-class accuracy and macro precision / recall / F1 (`harness.metrics`, fixed label set
negative, neutral, positive; resampled by subject), plus the protection's SSIM and temporal consistency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.core import DataError
from harness.datafiles import read_json

CLASSES = ("negative", "neutral", "positive")
SID = re.compile(r"^\d{5}$")
SEQVIEW = re.compile(r"^(.+)_(\d{3})$")


@dataclass(frozen=True)
class ScolioSeq:
    subject: str
    label: str  # negative | neutral | positive
    seq: str
    view: str
    source: str  # the .pkl file

    @property
    def id(self) -> str:
        return f"{self.subject}/{self.seq}_{self.view}"


def _class_dirs(sdir: Path) -> list[Path]:
    return [p for p in sdir.iterdir() if p.is_dir() and p.name.lower() in CLASSES]


def find_root(path: Path) -> Path:
    for cand in (path, path / "Scoliosis1K-sil-pkl"):
        if cand.is_dir() and any(p.is_dir() and SID.match(p.name) and _class_dirs(p) for p in cand.iterdir()):
            return cand
    raise DataError(f"{path}: no Scoliosis1K layout (<5-digit id>/<Positive|Neutral|Negative>/<seq>_<view>/) here "
                    "or in Scoliosis1K-sil-pkl/")


def find_partition(root: Path) -> tuple[Path, list[str], list[str]]:
    files = sorted({*root.glob("Scoliosis1K_*.json"), *root.parent.glob("Scoliosis1K_*.json")})
    if not files:
        raise DataError(f"{root}: no OpenGait partition file Scoliosis1K_<n>.json here or in {root.parent} "
                        "(it names the TRAIN_SET and TEST_SET ids)")
    path = next((f for f in files if f.name == "Scoliosis1K_1116.json"), files[0])
    part = read_json(path)
    if not isinstance(part, dict) or not all(isinstance(part.get(k), list) for k in ("TRAIN_SET", "TEST_SET")):
        raise DataError(f"{path}: expected {{\"TRAIN_SET\": [...], \"TEST_SET\": [...]}}")
    return path, [str(i).zfill(5) for i in part["TRAIN_SET"]], [str(i).zfill(5) for i in part["TEST_SET"]]


def scan(root: Path) -> list[ScolioSeq]:
    out = []
    for sdir in sorted(p for p in root.iterdir() if p.is_dir() and SID.match(p.name)):
        for cdir in sorted(_class_dirs(sdir)):
            for qdir in sorted(p for p in cdir.iterdir() if p.is_dir() and SEQVIEW.match(p.name)):
                seq, view = SEQVIEW.match(qdir.name).groups()
                pkls = sorted(qdir.glob("*.pkl"))
                source = pkls[0] if pkls else qdir / f"{qdir.name}.pkl"  # a missing file is that sample's error
                out.append(ScolioSeq(sdir.name, cdir.name.lower(), seq, view, str(source)))
    if not out:
        raise DataError(f"{root}: no <id>/<class>/<seq>_<view>/ sequences")
    return out


class Screener:
    """GEI + PCA + LDA three-class screener fitted on the TRAIN_SET sequences of the copy."""

    def __init__(self, root: str) -> None:
        from tasks.gait_deid.loaders import load_sequence
        from vision_models.gait import GeiRecognizer, cut_to_44, gei

        r = find_root(Path(root))
        path, train_ids, _ = find_partition(r)
        train = [s for s in scan(r) if s.subject in set(train_ids)]
        geis, labels, self.skipped = [], [], 0
        for s in train:
            try:
                geis.append(gei(cut_to_44(load_sequence(s.source, "pkl"))))
                labels.append(s.label)
            except DataError:
                self.skipped += 1
        if len(set(labels)) < 2:
            raise DataError(f"{r}: the TRAIN_SET of {path.name} has fewer than two readable classes: "
                            f"{sorted(set(labels))}")
        # a third of the training sequences as PCA components, 2..64: with many components and few sequences
        # the LDA separates the subjects, not the classes
        dim = int(np.clip(len(geis) // 3, 2, 64))
        self.model = GeiRecognizer(pca_dim=dim).fit(np.stack(geis), labels)
        self.fit_on = (f"GEI+PCA/LDA screener on {len(labels)} TRAIN_SET sequences of {path.name}"
                       + (f" ({self.skipped} unreadable skipped)" if self.skipped else ""))

    def predict(self, seq: np.ndarray) -> str:
        from vision_models.gait import cut_to_44, gei

        return str(self.model.predict(gei(cut_to_44(seq)))[0])


class OpenGaitScreener:
    """The user's ScoNet (or any OpenGait model with 3-class logits); `batcher.submit(seq)` -> logits."""

    def __init__(self, spec: str) -> None:
        from tasks.gait_deid.scoring import OpenGaitRole

        self.role = OpenGaitRole(spec)
        self.batcher = self.role.batcher
        self.fit_on = self.role.fit_on.replace("OpenGait", "OpenGait screener", 1)

    def label_of(self, logits: np.ndarray) -> str:
        parts = self.role.parts
        flat = np.asarray(logits, np.float64).ravel()
        if flat.size != len(CLASSES) * parts:
            raise DataError(f"screener output has {flat.size} values; expected {len(CLASSES)} classes x {parts} parts")
        return CLASSES[int(np.argmax(flat.reshape(len(CLASSES), parts).mean(-1)))]


def build_screener(spec: str, root: str) -> Screener | OpenGaitScreener:
    if spec == "gei":
        return Screener(root)
    if spec.startswith("opengait:"):
        return OpenGaitScreener(spec)
    raise DataError(f"unknown scoliosis screener {spec!r}: use gei or opengait:CONFIG.yaml:CHECKPOINT.pt")
