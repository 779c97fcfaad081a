"""face_anon: localized face anonymisation (arXiv 2509.14866, `parham1998/Face-Anonymization`).

One sample per original image (`loader.py`); solvers are the face protections confined to the face box
and `precomputed` for images anonymised elsewhere (`solvers.py`); the scorer reports the re-ID rate at
the recogniser's FAR 1 % threshold, SSIM/PSNR against the original matched by file name, and FID with
the `fid` role's feature net (`scorer.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.core import JSON, DataError, Fold, HarnessError, Metric, Record, Sample, ScoreContext, Task
from tasks.face_anon import solvers as _solvers  # noqa: F401 - registers the solvers
from tasks.face_anon.loader import image_samples
from tasks.face_anon.scorer import ImageScorer, fid, reid_rate, reid_threshold


class FaceAnonTask(Task):
    name = "face_anon"
    description = "Face anonymisation: re-ID rate at FAR 1 %, FID, SSIM/PSNR by file name (arXiv 2509.14866)"
    protocols = {"images": "a folder of face images (flat, images/, or <identity>/<image>); one sample per image"}
    default_protocol = "images"
    default_solver = "blur"
    data_folder = "face_anon"
    accepted_roles = ()  # only its `roles`
    roles = {"recognizer": "dlib", "fid": "none"}
    version = "1"
    scorer_version = "1"
    pareto_axes = ("ssim", "re_id_rate")  # quality vs privacy (re-ID rate: lower is better)

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        if protocol not in ("", "images"):
            raise DataError(f"unknown face_anon protocol {protocol!r}; known: images")
        samples = image_samples(data_dir)
        return [Fold("test", samples, train=samples)]  # train: k-Same's reference faces

    def score(self, sample: Sample, prediction: JSON) -> dict[str, JSON]:
        raise HarnessError("face_anon scores with a face recogniser and the run's artifacts: use ascore")

    async def ascore(self, sample: Sample, prediction: JSON, ctx: ScoreContext) -> dict[str, JSON]:
        rec = ctx.roles.get("recognizer")
        fid_role = ctx.roles.get("fid")
        spec = rec.model if rec is not None else "dlib"
        fid_spec = fid_role.model if fid_role is not None else "none"
        scorer: ImageScorer = await ctx.aresource(f"face_anon:{spec}:{fid_spec}",
                                                  lambda: ImageScorer.build(spec, fid_spec))
        if ctx.artifacts is None:
            raise HarnessError("face_anon scoring needs the run's artifact store (protected images)")
        return await ctx.run_cpu(scorer.score, sample.target, prediction, ctx.artifacts.load_image)

    def metrics(self, protocol: str) -> list[Metric]:
        return [
            Metric("re_id_rate", reid_rate, higher_is_better=False, resample="none"),
            Metric("fid", fid, higher_is_better=False, resample="none"),
            Metric("ssim", mean_of="ssim"),
            Metric("psnr", mean_of="psnr"),
            Metric("re_id_threshold", reid_threshold, resample="none"),
            Metric("prot_face_detected", mean_of="prot_face_detected", higher_is_better=False),
        ]

    def report(self, records: Sequence[Record], protocol: str, out_dir: Path) -> dict[str, JSON]:
        ok = [r for r in records if "orig_embedding" in r.scores]
        preset = ok[0].scores.get("preset_threshold") if ok else None
        return {"threshold_source": "preset (FaceNet, FAR 1 %)" if preset is not None else
                "computed: 99th percentile of the originals' impostor similarities (FAR 1 %)",
                "n_images_scored": len(ok), "fid": "computed" if ok and "fid_orig" in ok[0].scores else
                "not computed: pass --role fid=inception:PATH (a TorchScript Inception feature extractor)"}
