"""gait_deid: gait de-identification by impersonation (GaitProtector, arXiv 2605.12431) on CASIA-B.

Protocol `casia-b` (OpenGait): test subjects 075-124; gallery NM 1-4 (solved as the `gallery` split, never
protected); probes NM 5-6, BG 1-2, CL 1-2 (the `test` split, protected by the solver). Rank-1 per probe /
gallery view pair, identical views excluded, averaged over views (`evaluation.py`).
The black-box recogniser is a model role: `--role recognizer=gei` (the default: GEI + PCA/LDA + 1-NN fitted
on the subjects outside 075-124 that are present, normally 001-074; with fewer than two of them it is fitted
on the gallery itself and the report says so). Each sequence's embedding is computed in `ascore` from the
files named in its target (or the protected artifact), so `harness score RUN` re-scores a run.
Metrics: `rank1_nm`, `rank1_bg`, `rank1_cl`, `rank1_mean` (of the three), `impersonation_success` (the
matrix of evaluation.py with "hit" = nearest gallery subject is the probe's target, mean over conditions),
and quality of the protected probes: `ssim` (frame-wise, paired by index, 64x64) and
`temporal_consistency` (mean IoU of consecutive protected frames). Subjects, conditions and views missing
from a partial copy are listed in the report; the rest is evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.core import JSON, DataError, Fold, Metric, Record, Sample, ScoreContext, Task
from tasks.gait_deid import protections  # noqa: F401 - registers the protections
from tasks.gait_deid.evaluation import GALLERY, PROBE_CONDITIONS, exclude_identical_views, rank1_matrix
from tasks.gait_deid.loaders import VIEWS, Seq, find_root, load_sequence, scan

TEST_SUBJECTS = tuple(f"{i:03d}" for i in range(75, 125))
PROBE_SEQS = {cs: cond for cond, seqs in PROBE_CONDITIONS.items() for cs in seqs}


def _target(s: Seq, root: Path) -> dict[str, Any]:
    return {"subject": s.subject, "condseq": s.condseq, "view": s.view, "source": s.source, "layout": s.layout,
            "root": str(root)}


def fit_recognizer(root: str) -> tuple[Any, str]:
    """(fitted GeiRecognizer, how it was fitted) for a CASIA-B copy."""
    from vision_models.gait import GeiRecognizer, cut_to_44, gei

    seqs = scan(Path(root))
    train = [s for s in seqs if s.subject not in TEST_SUBJECTS]
    how = f"subjects outside 075-124 ({len({s.subject for s in train})})"
    if len({s.subject for s in train}) < 2:
        train = [s for s in seqs if s.subject in TEST_SUBJECTS and s.condseq in GALLERY]
        how = "gallery sequences (fewer than two training subjects present)"
    geis, labels = [], []
    for s in train:
        try:
            geis.append(gei(cut_to_44(load_sequence(s.source, s.layout))))
            labels.append(s.subject)
        except DataError:
            continue  # an unreadable training sequence is skipped
    return GeiRecognizer().fit(np.stack(geis), labels), how


def _iou_consecutive(seq: np.ndarray) -> float:
    b = seq > 127
    if len(b) < 2:
        return math.nan
    inter = (b[1:] & b[:-1]).sum(axis=(1, 2))
    union = (b[1:] | b[:-1]).sum(axis=(1, 2))
    return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    n = min(len(a), len(b))
    return float(np.mean([structural_similarity(a[i], b[i], data_range=255) for i in range(n)]))


class GaitDeidTask(Task):
    name: ClassVar[str] = "gait_deid"
    description: ClassVar[str] = "Gait de-identification on CASIA-B: Rank-1 (NM/BG/CL), impersonation, quality"
    protocols: ClassVar[dict[str, str]] = {
        "casia-b": "test 075-124, gallery NM1-4, probes NM5-6/BG1-2/CL1-2, Rank-1 excluding identical views",
    }
    default_protocol: ClassVar[str] = "casia-b"
    default_solver: ClassVar[str] = "none"
    data_folder: ClassVar[str] = "CASIA-B"
    cluster_key: ClassVar[str | None] = "subject"
    roles: ClassVar[dict[str, str]] = {"recognizer": "gei"}
    version: ClassVar[str] = "1"
    scorer_version: ClassVar[str] = "1"

    def detect_protocol(self, data_dir: Path) -> str | None:
        try:
            find_root(data_dir)
            return "casia-b"
        except DataError:
            return None

    def resolve_data(self, data: Path | None) -> Path:
        path = super().resolve_data(data)
        find_root(path)
        return path

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        if protocol != "casia-b":
            raise DataError(f"unknown gait_deid protocol {protocol!r}; known: casia-b")
        root = find_root(data_dir)
        seqs = [s for s in scan(root) if s.subject in TEST_SUBJECTS]
        subjects = sorted({s.subject for s in seqs})
        if len(subjects) < 2:
            raise DataError(f"{root}: fewer than two test subjects (075-124) present: {subjects}")

        def sample(s: Seq, role: str) -> Sample:
            return Sample(s.id, {"source": s.source, "layout": s.layout, "root": str(root), "condseq": s.condseq,
                                 "test_subjects": subjects},
                          _target(s, root),
                          {"subject": s.subject, "role": role, "view": s.view,
                           "condition": "gallery" if role == "gallery" else PROBE_SEQS[s.condseq]})

        gallery = [sample(s, "gallery") for s in seqs if s.condseq in GALLERY]
        probes = [sample(s, "probe") for s in seqs if s.condseq in PROBE_SEQS]
        if not gallery or not probes:
            raise DataError(f"{root}: the test subjects have {len(gallery)} gallery (nm-01..04) and "
                            f"{len(probes)} probe sequences; both are needed")
        return [Fold("casia-b", probes, splits={"gallery": gallery})]

    def score(self, sample: Sample, prediction: JSON) -> dict[str, JSON]:
        raise DataError("gait_deid scores with its recogniser role: use ascore")

    async def ascore(self, sample: Sample, prediction: JSON, sctx: ScoreContext) -> dict[str, JSON]:
        role = sctx.roles.get("recognizer")
        model = getattr(role, "model", None) or self.roles["recognizer"]
        if model != "gei":
            raise DataError(f"recognizer {model!r} is not available here (built in: gei)")
        target = sample.target
        recognizer, how = await sctx.run_cpu(lambda: sctx.resource(f"gei:{target['root']}",
                                                                   lambda: fit_recognizer(target["root"])))
        return await sctx.run_cpu(self._embed, target, prediction, sctx, recognizer, how)

    def _embed(self, target: dict, prediction: JSON, sctx: ScoreContext, recognizer: Any, how: str) -> dict:
        from vision_models.gait import cut_to_44, gei

        original = load_sequence(target["source"], target["layout"])
        scores: dict[str, JSON] = {"recognizer_fit": how}
        seq = original
        if isinstance(prediction, dict) and prediction.get("protected"):
            if sctx.artifacts is None:
                raise DataError("protected sequence given but no artifact store to read it from")
            seq = sctx.artifacts.load_array(prediction["sequence"]).astype(np.uint8)
            scores["ssim"] = _ssim(original, seq)
            scores["temporal_consistency"] = _iou_consecutive(seq)
            scores["target_subject"] = prediction.get("target_subject")
        emb = recognizer.embed(gei(cut_to_44(seq)))[0]
        scores["embedding"] = [round(float(v), 6) for v in emb]
        return scores

    # -- metrics ------------------------------------------------------------------------------------
    def metrics(self, protocol: str) -> list[Metric]:
        both = ("gallery", "test")

        def rank1(cond: str) -> Callable[[Sequence[Record]], float]:
            return lambda records: condition_rank1(records, cond)[1]

        return [
            Metric("rank1_mean", lambda rs: _mean([condition_rank1(rs, c)[1] for c in PROBE_CONDITIONS]),
                   scale=100.0, splits=both, resample="none"),
            Metric("rank1_nm", rank1("nm"), scale=100.0, splits=both, resample="none"),
            Metric("rank1_bg", rank1("bg"), scale=100.0, splits=both, resample="none"),
            Metric("rank1_cl", rank1("cl"), scale=100.0, splits=both, resample="none"),
            Metric("impersonation_success",
                   lambda rs: _mean([condition_rank1(rs, c, impersonation=True)[1] for c in PROBE_CONDITIONS]),
                   scale=100.0, splits=both, resample="none"),
            Metric("ssim", mean_of="ssim"),
            Metric("temporal_consistency", mean_of="temporal_consistency"),
        ]

    def report(self, records: Sequence[Record], protocol: str, out_dir: Path) -> dict[str, Any]:
        ok = [r for r in records if r.ok]
        out: dict[str, Any] = {"views": list(VIEWS), "rank1_per_probe_view": {}, "impersonation_per_probe_view": {}}
        for cond in PROBE_CONDITIONS:
            per_view, _ = condition_rank1(ok, cond)
            imp, _ = condition_rank1(ok, cond, impersonation=True)
            out["rank1_per_probe_view"][cond] = [None if not np.isfinite(v) else float(v) for v in per_view]
            out["impersonation_per_probe_view"][cond] = [None if not np.isfinite(v) else float(v) for v in imp]
        present = {r.groups.get("subject") for r in records}
        out["missing_test_subjects"] = [s for s in TEST_SUBJECTS if s not in present]
        expected = {(cs, v) for cs in (*GALLERY, *PROBE_SEQS) for v in VIEWS}
        seen: dict[str, set] = {}
        for r in records:
            seen.setdefault(r.groups["subject"], set()).add((r.target["condseq"], r.target["view"]))
        out["missing_sequences"] = {s: len(expected - got) for s, got in sorted(seen.items()) if expected - got}
        out["recognizer_fit"] = next((r.scores.get("recognizer_fit") for r in ok if "recognizer_fit" in r.scores), None)
        out["n_errors"] = sum(not r.ok for r in records)
        return out


def _mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def condition_rank1(records: Sequence[Record], cond: str, impersonation: bool = False) -> tuple[np.ndarray, float]:
    """(per probe view, mean) Rank-1 (or impersonation success) of one probe condition."""
    gal = [r for r in records if r.groups.get("role") == "gallery" and "embedding" in r.scores]
    probes = [r for r in records if r.groups.get("role") == "probe" and r.groups.get("condition") == cond
              and "embedding" in r.scores]
    if not gal or not probes:
        return np.full(len(VIEWS), np.nan), math.nan
    hit = [(r.scores.get("target_subject") if impersonation else r.groups["subject"]) for r in probes]
    acc = rank1_matrix(np.array([r.scores["embedding"] for r in probes]), [r.groups["view"] for r in probes], hit,
                       np.array([r.scores["embedding"] for r in gal]), [r.groups["subject"] for r in gal],
                       [r.groups["view"] for r in gal], VIEWS)
    return exclude_identical_views(acc)
