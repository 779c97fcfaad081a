"""gait_deid: gait de-identification by impersonation (GaitProtector, arXiv 2605.12431) on CASIA-B.

Protocol `casia-b` (OpenGait): test subjects 075-124; gallery NM 1-4 (solved as the `gallery` split, never
protected); probes NM 5-6, BG 1-2, CL 1-2 (the `test` split, protected by the solver). Rank-1 per probe /
gallery view pair, identical views excluded, averaged over views (`evaluation.py`).
The black-box recogniser is a model role (`scoring.py`): `--role recognizer=gei` (the default: GEI +
PCA/LDA + 1-NN fitted on the training subjects 001-074 present, else on the subjects outside 075-124
present, else -- closed set, said so -- on the gallery) or `--role recognizer=opengait:CONFIG:CKPT` (the
user's OpenGait weights, one GPU). Each sequence's embedding is computed in `ascore` from the files named in
its target (or the protected artifact), so `harness score RUN` re-scores a run.
Why the gallery is a split of the fold (`splits={"gallery": ...}`) and not kept inside the scorer: the
gallery sequences then go through the same solve/score path as the probes (embedded once per run by the
same recogniser role, cached, resumable, listed in samples.jsonl with `split="gallery"`), the core keeps
them fixed while bootstrapping, and a re-score with another recogniser re-embeds both sides alike.
Metrics: `rank1_nm`, `rank1_bg`, `rank1_cl`, `rank1_mean` (of the three), `impersonation_success` (the
matrix of evaluation.py with "hit" = nearest gallery subject is the probe's target, mean over conditions),
and quality of the protected probes: `ssim` (each protected frame vs the original frame it came from,
64x64) and `temporal_consistency` (mean IoU of consecutive protected frames); see scoring.py. Subjects,
conditions and views missing from a partial copy are listed in the report and warned about; the rest is
evaluated. Rank-1 and impersonation are set-level (a gallery/probe matrix): `resample="none"`, no CI.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.core import JSON, DataError, Fold, Metric, Record, Sample, ScoreContext, Task
from harness.metrics import Classification, Coded, encode
from tasks.gait_deid import (
    protections,  # noqa: F401 - registers the protections
    scoliosis,
)
from tasks.gait_deid.evaluation import GALLERY, PROBE_CONDITIONS, exclude_identical_views, rank1_matrix
from tasks.gait_deid.loaders import VIEWS, Seq, find_root, load_sequence, scan
from tasks.gait_deid.scoring import TEST_SUBJECTS, build_recognizer, decode_embedding, encode_embedding, quality

PROBE_SEQS = {cs: cond for cond, seqs in PROBE_CONDITIONS.items() for cs in seqs}


def _target(s: Seq, root: Path) -> dict[str, Any]:
    return {"subject": s.subject, "condseq": s.condseq, "view": s.view, "source": s.source, "layout": s.layout,
            "root": str(root)}


class GaitDeidTask(Task):
    name: ClassVar[str] = "gait_deid"
    description: ClassVar[str] = "Gait de-identification on CASIA-B: Rank-1 (NM/BG/CL), impersonation, quality"
    protocols: ClassVar[dict[str, str]] = {
        "casia-b": "test 075-124, gallery NM1-4, probes NM5-6/BG1-2/CL1-2, Rank-1 excluding identical views",
        "scoliosis1k": "utility: 3-class screening (GEI+PCA/LDA fitted on TRAIN_SET) of the protected TEST_SET",
    }
    default_protocol: ClassVar[str] = "casia-b"
    default_solver: ClassVar[str] = "none"
    data_folder: ClassVar[str] = "CASIA-B"
    accepted_roles: ClassVar[tuple[str, ...] | None] = ()  # only its `roles`
    example_data: ClassVar[tuple[str, str] | None] = ("python -m tasks.gait_deid.synthetic /tmp/casia", "/tmp/casia")
    cluster_key: ClassVar[str | None] = "subject"
    roles: ClassVar[dict[str, str]] = {"recognizer": "gei", "screener": "gei"}  # screener: scoliosis1k only
    version: ClassVar[str] = "1"
    scorer_version: ClassVar[str] = "3"  # 2: OpenGait's per-cell rounding, SSIM by source frame; 3: psnr

    def detect_protocol(self, data_dir: Path) -> str | None:
        for protocol, finder in (("casia-b", find_root), ("scoliosis1k", scoliosis.find_root)):
            try:
                finder(data_dir)
                return protocol
            except DataError:
                continue
        return None

    def resolve_data(self, data: Path | None) -> Path:
        path = super().resolve_data(data)
        if self.detect_protocol(path) is None:
            find_root(path)  # the CASIA-B error names what was expected
        return path

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        if protocol == "scoliosis1k":
            return [self._scoliosis_fold(data_dir)]
        if protocol != "casia-b":
            raise DataError(f"unknown gait_deid protocol {protocol!r}; known: {', '.join(self.protocols)}")
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
        missing = [s for s in TEST_SUBJECTS if s not in subjects]
        views = sorted({s.view for s in seqs})
        if missing or len(views) < len(VIEWS):
            listed = f" ({', '.join(missing[:8])}{', ...' if len(missing) > 8 else ''})" if missing else ""
            warnings.warn(f"{root}: partial CASIA-B copy: {len(missing)} of the 50 test subjects missing{listed}, "
                          f"views present {', '.join(views)}; evaluating what is there (see the report)", stacklevel=2)
        return [Fold("casia-b", probes, splits={"gallery": gallery})]

    def _scoliosis_fold(self, data_dir: Path) -> Fold:
        root = scoliosis.find_root(data_dir)
        path, _, test_ids = scoliosis.find_partition(root)
        seqs = [s for s in scoliosis.scan(root) if s.subject in set(test_ids)]
        subjects = sorted({s.subject for s in seqs})
        if len(subjects) < 2:
            raise DataError(f"{root}: fewer than two TEST_SET subjects of {path.name} present")
        missing = sorted(set(test_ids) - set(subjects))
        if missing:
            warnings.warn(f"{root}: {len(missing)} TEST_SET ids of {path.name} have no sequence here; evaluating "
                          "the rest", stacklevel=2)
        return Fold("scoliosis1k", [
            Sample(s.id, {"source": s.source, "layout": "pkl", "root": str(root), "condseq": s.seq, "dataset":
                          "scoliosis1k", "test_subjects": subjects},
                   {"dataset": "scoliosis1k", "label": s.label, "source": s.source, "layout": "pkl",
                    "root": str(root), "view": s.view},
                   {"subject": s.subject, "role": "probe", "view": s.view, "condition": "scoliosis", "label": s.label})
            for s in seqs])

    def score(self, sample: Sample, prediction: JSON) -> dict[str, JSON]:
        raise DataError("gait_deid scores with its recogniser role: use ascore")

    async def ascore(self, sample: Sample, prediction: JSON, sctx: ScoreContext) -> dict[str, JSON]:
        target = sample.target
        if target.get("dataset") == "scoliosis1k":
            spec = getattr(sctx.roles.get("screener"), "model", None) or self.roles["screener"]
            key = f"scoliosis-screener:{spec}" + (f":{target['root']}" if spec == "gei" else "")
            screener = await sctx.run_cpu(sctx.resource, key, lambda: scoliosis.build_screener(spec, target["root"]))
            seq, scores = await sctx.run_cpu(self._load, target, prediction, sctx)
            if isinstance(screener, scoliosis.OpenGaitScreener):
                label = screener.label_of(await screener.batcher.submit(seq))
            else:
                label = await sctx.run_cpu(screener.predict, seq)
            return {**scores, "screen": label, "screener_fit": screener.fit_on}
        role = sctx.roles.get("recognizer")
        spec = getattr(role, "model", None) or self.roles["recognizer"]
        key = f"gait-recognizer:{spec}" + (f":{target['root']}" if spec == "gei" else "")
        rec = await sctx.run_cpu(sctx.resource, key, lambda: build_recognizer(spec, target["root"]))
        seq, scores = await sctx.run_cpu(self._load, target, prediction, sctx)
        batcher = getattr(rec, "batcher", None)
        if batcher is not None:
            emb = await batcher.submit(seq)
        else:
            emb = (await sctx.run_cpu(rec.embed, [seq]))[0]
        return {**scores, **encode_embedding(emb, rec.parts), "recognizer_fit": rec.fit_on}

    @staticmethod
    def _load(target: dict, prediction: JSON, sctx: ScoreContext) -> tuple[np.ndarray, dict[str, JSON]]:
        """The sequence to embed (the protected one for a probe) and its quality scores."""
        original = load_sequence(target["source"], target["layout"])
        if not (isinstance(prediction, dict) and prediction.get("protected")):
            return original, {}
        if sctx.artifacts is None:
            raise DataError("protected sequence given but no artifact store to read it from")
        seq = np.asarray(sctx.artifacts.load_array(prediction["sequence"]))
        if seq.ndim != 3 or not len(seq):
            raise DataError(f"protected sequence {prediction['sequence']}: shape {seq.shape}, expected [n, 64, 64]")
        seq = np.clip(seq, 0, 255).astype(np.uint8)
        return seq, {**quality(original, seq, prediction), "target_subject": prediction.get("target_subject")}

    # -- metrics ------------------------------------------------------------------------------------
    def metrics(self, protocol: str) -> list[Metric]:
        quality_metrics = [Metric("ssim", mean_of="ssim"), Metric("psnr", mean_of="psnr"),
                           Metric("temporal_consistency", mean_of="temporal_consistency")]
        if protocol == "scoliosis1k":
            return [Metric("scoliosis_accuracy", classification=Classification(_screen_codes, "accuracy"), scale=100.0),
                    Metric("scoliosis_f1_macro", classification=Classification(_screen_codes, "f1"), scale=100.0),
                    Metric("scoliosis_precision_macro", classification=Classification(_screen_codes, "precision"),
                           scale=100.0),
                    Metric("scoliosis_recall_macro", classification=Classification(_screen_codes, "recall"),
                           scale=100.0),
                    *quality_metrics]
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
            *quality_metrics,
        ]

    def report(self, records: Sequence[Record], protocol: str, out_dir: Path) -> dict[str, Any]:
        ok = [r for r in records if r.ok]
        if protocol == "scoliosis1k":
            from harness.metrics import confusion

            return {"classes": list(scoliosis.CLASSES), "n_errors": sum(not r.ok for r in records),
                    "confusion": confusion([r.target["label"] for r in ok], [r.scores.get("screen") for r in ok],
                                           labels=scoliosis.CLASSES)[0].tolist(),
                    "confusion_axes": "rows: true class; columns: predicted class, then invalid",
                    "screener_fit": next((r.scores["screener_fit"] for r in ok if "screener_fit" in r.scores), None)}
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
        out["views_present"] = sorted({r.groups["view"] for r in records if "view" in r.groups})
        out["missing_views"] = [v for v in VIEWS if v not in out["views_present"]]
        out["recognizer_fit"] = next((r.scores.get("recognizer_fit") for r in ok if "recognizer_fit" in r.scores), None)
        tc = [r.scores["temporal_consistency_original"] for r in ok if "temporal_consistency_original" in r.scores]
        out["temporal_consistency_original"] = _mean([float(v) for v in tc if v is not None])
        out["n_errors"] = sum(not r.ok for r in records)
        return out


def _screen_codes(records: Sequence[Record]) -> Coded:
    """True class (the class folder) and the screener's class on the protected sequence; fixed label set."""
    labels = scoliosis.CLASSES
    return Coded(encode([r.target["label"] for r in records], labels),
                 encode([r.scores.get("screen") for r in records], labels), labels)


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
    parts = {int(r.scores.get("embedding_parts", 1)) for r in (*gal, *probes)}
    if len(parts) != 1:
        raise DataError(f"embeddings with different part counts {sorted(parts)}: re-score with one recogniser")
    acc = rank1_matrix(np.stack([decode_embedding(r.scores) for r in probes]), [r.groups["view"] for r in probes],
                       hit, np.stack([decode_embedding(r.scores) for r in gal]), [r.groups["subject"] for r in gal],
                       [r.groups["view"] for r in gal], VIEWS, parts=parts.pop())
    return exclude_identical_views(acc)
