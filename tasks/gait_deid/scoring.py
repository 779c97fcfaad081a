"""Scoring of one gait_deid sequence: the recogniser role's embedding and the protected probe's quality.

Why here and not in the solvers: the recogniser is the black box the protection is judged against, so
it belongs to scoring (`--role recognizer=...`), built once per run (`sctx.resource`) and applied to the
gallery and to the protected probes alike; `harness score RUN --role recognizer=...` re-scores a run
against another recogniser from the stored artifacts.

Recognisers (`build_recognizer(spec, root)`):
- `gei` (default, CPU): GEI + PCA/LDA (`vision_models.gait.GeiRecognizer`), fitted on the CASIA-B
  training subjects 001-074 present in the copy; without any of them, on the subjects outside 075-124
  that are present; with fewer than two such subjects, on the gallery sequences (nm-01..04) of the test
  subjects -- a closed-set fit that flatters Rank-1, named in the report (`recognizer_fit`).
- `opengait:CONFIG:CKPT`: the user's OpenGait model (`vision_models.gait.opengait`), sequences batched
  through a `MicroBatcher` (packed along time, one forward per batch) on one GPU.

Embeddings are stored in the record's scores: a list of floats for the small GEI vectors, a base64 string
of little-endian float32 for the large part-based OpenGait ones (`embedding_parts` = its part count).

Quality of a protected probe (frames of the original and the protection, both pretreated 64x64):
- `ssim`: mean over the protected frames of SSIM (scikit-image, data_range 255) to the original frame it
  was made from (`frame_index` of the prediction when the protection drops or reorders frames, else the
  frame at the same position; frames past the original's length are left out). A pure reordering keeps
  SSIM at 1: its damage is temporal.
- `psnr`: 10 log10(255^2 / MSE) with the MSE pooled over the same frame pairs (scikit-image's value on the
  stacked pairs); identical frames (MSE 0) give the cap of 100 dB so that means stay finite.
- `temporal_consistency`: mean IoU of the silhouettes of consecutive protected frames (1 = static;
  a natural walk is below 1, `temporal_consistency_original` is the same on the original sequence).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.core import JSON, DataError
from tasks.gait_deid.evaluation import GALLERY
from tasks.gait_deid.loaders import load_sequence, scan

TEST_SUBJECTS = tuple(f"{i:03d}" for i in range(75, 125))
TRAIN_SUBJECTS = tuple(f"{i:03d}" for i in range(1, 75))


class GeiRole:
    """The default CPU recogniser: fit on the training subjects of the copy, embed GEIs."""

    parts = 1

    def __init__(self, root: str) -> None:
        from vision_models.gait import GeiRecognizer

        seqs = scan(Path(root))
        present = {s.subject for s in seqs}
        train_ids = sorted(present & set(TRAIN_SUBJECTS))
        if len(train_ids) >= 2:
            self.fit_on = f"training subjects 001-074 present ({len(train_ids)})"
        else:
            train_ids = sorted(present - set(TEST_SUBJECTS))
            self.fit_on = f"subjects outside 075-124 present ({len(train_ids)}: {', '.join(train_ids)})"
        train = [s for s in seqs if s.subject in train_ids]
        if len(train_ids) < 2:
            train = [s for s in seqs if s.subject in TEST_SUBJECTS and s.condseq in GALLERY]
            self.fit_on = ("gallery sequences nm-01..04 of the test subjects (fewer than two training subjects "
                           "present: closed-set fit, Rank-1 is optimistic)")
        from vision_models.gait import cut_to_44, gei

        geis, labels, self.skipped = [], [], 0
        for s in train:
            try:
                geis.append(gei(cut_to_44(load_sequence(s.source, s.layout))))
                labels.append(s.subject)
            except DataError:
                self.skipped += 1  # an unreadable training sequence is left out (counted in the report)
        if len(set(labels)) < 2:
            raise DataError(f"{root}: fewer than two readable subjects to fit the GEI recogniser on")
        self.model = GeiRecognizer().fit(np.stack(geis), labels)

    def embed(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        from vision_models.gait import cut_to_44, gei

        return self.model.embed(np.stack([gei(cut_to_44(s)) for s in seqs]))


class OpenGaitRole:
    """The user's OpenGait network; `submit` batches concurrent sequences into one forward pass."""

    def __init__(self, spec: str, max_batch: int = 16) -> None:
        from harness.models.batching import MicroBatcher
        from vision_models.gait.opengait import OpenGaitRecognizer, parse_spec

        config, ckpt = parse_spec(spec)
        self.model = OpenGaitRecognizer(config, ckpt)
        self.fit_on = f"OpenGait {self.model.model_name} ({ckpt.name}, user weights)"
        self.batcher = MicroBatcher(self._run_batch, max_batch=max_batch, max_wait_s=0.02, name="opengait")

    @property
    def parts(self) -> int:
        return self.model.parts or 1

    def embed(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.embed(list(seqs))

    def _run_batch(self, seqs: list[np.ndarray]) -> list[Any]:
        try:
            return list(self.model.embed(seqs))
        except Exception:  # one bad sequence must not fail its batch-mates: retry one by one
            out: list[Any] = []
            for s in seqs:
                try:
                    out.append(self.model.embed([s])[0])
                except Exception as exc:  # noqa: BLE001 - recorded as that sample's error
                    out.append(exc)
            return out


def build_recognizer(spec: str, root: str) -> GeiRole | OpenGaitRole:
    if spec == "gei":
        return GeiRole(root)
    if spec.startswith("opengait:"):
        return OpenGaitRole(spec)
    raise DataError(f"unknown gait recogniser {spec!r}: use gei or opengait:CONFIG.yaml:CHECKPOINT.pt")


def encode_embedding(emb: np.ndarray, parts: int) -> dict[str, JSON]:
    emb = np.asarray(emb, np.float32).ravel()
    if parts == 1 and emb.size <= 512:
        return {"embedding": [round(float(v), 6) for v in emb]}
    return {"embedding": base64.b64encode(emb.astype("<f4").tobytes()).decode("ascii"), "embedding_parts": parts}


def decode_embedding(scores: dict[str, Any]) -> np.ndarray:
    e = scores["embedding"]
    if isinstance(e, str):
        return np.frombuffer(base64.b64decode(e), dtype="<f4").astype(np.float64)
    return np.asarray(e, np.float64)


def iou_consecutive(seq: np.ndarray) -> float:
    """Mean IoU of the silhouettes (> 127) of consecutive frames; nan for fewer than two frames."""
    b = np.asarray(seq) > 127
    if len(b) < 2:
        return math.nan
    inter = (b[1:] & b[:-1]).sum(axis=(1, 2))
    union = (b[1:] | b[:-1]).sum(axis=(1, 2))
    return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))


PSNR_CAP = 100.0


def frame_pairs(n_original: int, n_protected: int, frame_index: Sequence[int] | None) -> list[tuple[int, int]]:
    """(original frame, protected frame) pairs: by `frame_index` when given, else by position."""
    if frame_index is not None:
        if len(frame_index) != n_protected:
            raise DataError(f"frame_index has {len(frame_index)} entries for {n_protected} protected frames")
        return [(int(j), i) for i, j in enumerate(frame_index) if 0 <= int(j) < n_original]
    return [(i, i) for i in range(min(n_original, n_protected))]


def paired_psnr(original: np.ndarray, protected: np.ndarray, frame_index: Sequence[int] | None = None) -> float:
    pairs = frame_pairs(len(original), len(protected), frame_index)
    if not pairs:
        return math.nan
    a = np.stack([original[j] for j, _ in pairs]).astype(np.float64)
    b = np.stack([protected[i] for _, i in pairs]).astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0 ** 2 / mse))


def paired_ssim(original: np.ndarray, protected: np.ndarray, frame_index: Sequence[int] | None = None) -> float:
    """Mean SSIM of each protected frame to its source frame (see the module docstring)."""
    from skimage.metrics import structural_similarity

    pairs = frame_pairs(len(original), len(protected), frame_index)
    if not pairs:
        return math.nan
    return float(np.mean([structural_similarity(original[j], protected[i], data_range=255) for j, i in pairs]))


def quality(original: np.ndarray, protected: np.ndarray, prediction: dict[str, Any]) -> dict[str, JSON]:
    if protected.ndim != 3 or protected.shape[1:] != original.shape[1:]:
        raise DataError(f"protected sequence has shape {protected.shape}; expected [n, "
                        f"{original.shape[1]}, {original.shape[2]}] like the original")
    return {"ssim": paired_ssim(original, protected, prediction.get("frame_index")),
            "psnr": paired_psnr(original, protected, prediction.get("frame_index")),
            "temporal_consistency": iou_consecutive(protected),
            "temporal_consistency_original": iou_consecutive(original),
            "n_frames_original": int(len(original)), "n_frames_protected": int(len(protected))}
