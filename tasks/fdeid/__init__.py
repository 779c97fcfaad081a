"""fdeid: face de-identification, scored as FDeID-Toolbox's `eval_privacy_lfw.py` does.

Samples are verification pairs (`loader.py`: LFW pairs.txt, identity folders, or a pairs CSV);
solvers are protections that write protected images as artifacts (`solvers.py`); the scorer embeds
originals and protected images with the `recognizer` role (dlib by default; `recognizer2`... side by
side) and reports privacy (verification before/after, PSR, AUC, EER, TAR@FAR), quality (SSIM, PSNR,
LPIPS and FID with the `lpips`/`fid` roles, NIQE with the `niqe` role's pristine model) and landmark
NME (`scorer.py`). The `attributes` protocol scores single labelled images for attribute preservation
instead (`utility.py`); the Pareto plot of PSR vs SSIM over runs is built from the leaderboard (`report.py`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.core import JSON, DataError, Fold, HarnessError, Metric, Record, Sample, ScoreContext, Task
from tasks.fdeid import solvers as _solvers  # noqa: F401 - registers the protections
from tasks.fdeid.loader import LOADERS, detect_layout
from tasks.fdeid.scorer import (
    PairScorer,
    fid_over_images,
    niqe_report,
    per_image_mean,
    privacy_metric,
    recognizer_table,
    ten_fold_accuracy,
)
from tasks.fdeid.utility import ImageUtility, age_mae, attr_accuracy, attr_preservation

DEFAULT_RECOGNIZER = "dlib"


class FdeidTask(Task):
    name = "fdeid"
    description = "Face de-identification: privacy (verification, PSR) and quality of protections (FDeID-Toolbox)"
    protocols = {
        "lfw": "LFW View 2: pairs.txt (10 folds x 300 + 300 pairs) beside <Name>/<Name>_NNNN.jpg images",
        "folders": "identity folders ROOT/<identity>/<image>: all genuine pairs + as many seeded impostors",
        "pairs-csv": "a labelled pairs CSV (deepface master.csv: file_x,file_y,Decision) beside images/",
        "attributes": "utility: CelebA-HQ/FFHQ-style images + attribute file (CelebA format or attributes.csv)",
    }
    default_protocol = "folders"
    default_solver = "blur"
    data_folder = "fdeid"
    accepted_roles = (r"recognizer\d+",)  # recognizer2, recognizer3...: more recognisers side by side
    roles = {"recognizer": DEFAULT_RECOGNIZER, "lpips": "none", "fid": "none", "attributes": "none", "niqe": "none"}
    version = "2"  # 2: folders reads identities.csv (a cached pair of version 1 keeps its old label)
    scorer_version = "2"  # 2: landmark NME
    pareto_axes = ("ssim", "psr")  # quality vs privacy, one point per protection (the board's Pareto plot)

    def detect_protocol(self, data_dir: Path) -> str | None:
        return detect_layout(data_dir)

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        protocol = protocol or detect_layout(data_dir) or self.default_protocol
        if protocol not in LOADERS:
            raise DataError(f"unknown fdeid protocol {protocol!r}; known: {', '.join(LOADERS)}")
        samples = LOADERS[protocol](data_dir)
        # One test fold: the reference pools every pair (LFW's 10 folds are kept as a group key). The
        # same samples are the train part, so k-Same can build its reference faces from the data.
        return [Fold("test", samples, train=samples)]

    def score(self, sample: Sample, prediction: JSON) -> dict[str, JSON]:
        raise HarnessError("fdeid scores with a face recogniser and the run's artifacts: use ascore")

    async def ascore(self, sample: Sample, prediction: JSON, ctx: ScoreContext) -> dict[str, JSON]:
        role = ctx.roles.get("recognizer")
        spec = role.model if role is not None else DEFAULT_RECOGNIZER
        lpips, fid, attrs, niqe = (ctx.roles[n].model if n in ctx.roles else "none"
                                   for n in ("lpips", "fid", "attributes", "niqe"))
        if isinstance(sample.target, dict) and "attributes" in sample.target:  # the utility protocol
            util: ImageUtility = await ctx.aresource(f"fdeid-utility:{attrs}:{lpips}:{niqe}",
                                              lambda: ImageUtility.build(attrs, lpips, niqe))
            if ctx.artifacts is None:
                raise HarnessError("fdeid scoring needs the run's artifact store (protected images)")
            return await ctx.run_cpu(util.score, sample.target, prediction, ctx.artifacts.load_image)
        scorer: PairScorer = await ctx.aresource(f"fdeid-recognizer:{spec}:{lpips}:{fid}:{niqe}",
                                          lambda: PairScorer.from_spec(spec, lpips=lpips, fid=fid, niqe=niqe))
        store = ctx.artifacts
        if store is None:
            raise HarnessError("fdeid scoring needs the run's artifact store (protected images)")
        scores = await ctx.run_cpu(scorer.score_pair, sample.target, prediction, store.load_image)
        # Further recognisers (--role recognizer2=arcface:/w/r100.onnx ...) are reported side by side.
        for name in sorted((n for n in ctx.roles if re.fullmatch(r"recognizer\d+", n)), key=lambda n: int(n[10:])):
            extra_spec = ctx.roles[name].model
            other: PairScorer = await ctx.aresource(f"fdeid-recognizer-noquality:{extra_spec}",
                                             lambda s=extra_spec: PairScorer.from_spec(s, quality=False))
            more = await ctx.run_cpu(other.score_pair, sample.target, prediction, store.load_image)
            scores.update({f"{k}@{name}": more[k] for k in ("orig_sim", "prot_sim", "prot_sim_lmk")})
            scores[f"model@{name}"] = extra_spec
        return scores

    def metrics(self, protocol: str) -> list[Metric]:
        # Privacy numbers are set-level (a threshold chosen on the same pairs; pairs share images), as the
        # reference reports them: no bootstrap. SSIM/PSNR are means over images and get a CI.
        def setlevel(name: str, key: str, higher: bool = True) -> Metric:
            return Metric(name, privacy_metric(key), higher_is_better=higher, resample="none")

        if protocol == "attributes":
            return [
                Metric("attr_preservation", attr_preservation),
                Metric("attr_accuracy", attr_accuracy("attr_prot")),
                Metric("attr_accuracy_orig", attr_accuracy("attr_orig")),
                Metric("age_mae", age_mae, higher_is_better=False),
                Metric("ssim", per_image_mean("ssim")),
                Metric("psnr", per_image_mean("psnr")),
                Metric("landmark_nme", per_image_mean("nme"), higher_is_better=False),
                Metric("lpips", per_image_mean("lpips"), higher_is_better=False),
                Metric("niqe", per_image_mean("niqe"), higher_is_better=False),
                Metric("niqe_orig", per_image_mean("niqe_orig"), higher_is_better=False),
            ]

        lfw = [
            Metric("orig_verification_accuracy_10fold", ten_fold_accuracy("orig_sim"), resample="none"),
            Metric("verification_accuracy_10fold", ten_fold_accuracy("prot_sim"), higher_is_better=False,
                   resample="none"),
        ] if protocol == "lfw" else []
        return [
            setlevel("psr", "psr"),
            setlevel("orig_verification_accuracy", "orig_accuracy"),
            setlevel("verification_accuracy", "accuracy", higher=False),
            setlevel("auc", "auc", higher=False),
            setlevel("eer", "eer"),
            setlevel("tar_at_far_1", "tar_at_far_1", higher=False),
            setlevel("tar_at_far_0_01", "tar_at_far_0_01", higher=False),
            setlevel("tar_at_far_0_1", "tar_at_far_0_1", higher=False),
            setlevel("tar_at_far_10", "tar_at_far_10", higher=False),
            setlevel("orig_auc", "orig_auc"),
            setlevel("orig_eer", "orig_eer", higher=False),
            setlevel("orig_tar_at_far_1", "orig_tar_at_far_1"),
            setlevel("threshold", "orig_threshold"),
            setlevel("psr_orig_landmarks", "psr_orig_landmarks"),
            setlevel("verification_accuracy_orig_landmarks", "accuracy_orig_landmarks", higher=False),
            setlevel("auc_orig_landmarks", "auc_orig_landmarks", higher=False),
            Metric("ssim", per_image_mean("ssim")),
            Metric("psnr", per_image_mean("psnr")),
            Metric("landmark_nme", per_image_mean("nme"), higher_is_better=False),
            Metric("lpips", per_image_mean("lpips"), higher_is_better=False),
            Metric("fid", fid_over_images, higher_is_better=False, resample="none"),
            Metric("niqe", per_image_mean("niqe"), higher_is_better=False),
            Metric("niqe_orig", per_image_mean("niqe_orig"), higher_is_better=False),
            *lfw,
        ]

    def report(self, records: Sequence[Record], protocol: str, out_dir: Path) -> dict[str, JSON]:
        scored = [r for r in records if "orig_sim" in r.scores]
        errors = [r for r in records if not r.ok]
        out: dict[str, Any] = {"n_pairs_scored": len(scored), "n_genuine": sum(r.scores["same"] for r in scored),
                               "n_pairs_errored": len(errors)}
        faces: dict[str, int] = {}
        for r in scored:
            faces[str(r.target["a"])] = int(r.scores.get("prot_face_a", 1))
            faces[str(r.target["b"])] = int(r.scores.get("prot_face_b", 1))
        out["protected_images"] = len(faces)
        out["protected_images_without_detectable_face"] = len(faces) - sum(faces.values())
        out["recognizers"] = recognizer_table(scored)
        out.update(niqe_report(records))
        return out
