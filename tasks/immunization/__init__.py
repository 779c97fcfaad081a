"""immunization: image immunization against diffusion editing (SIFM, arXiv 2512.14320).

Why a package: an immunizer (solver) perturbs an image within an L-inf budget; an editor
(InstructPix2Pix, SD inpainting, SDEdit, or a tiny random pipeline) edits the clean and the
protected image with the same prompt and seed; MLLM judges answer two yes/no questions per edit
and the Immunization Success Rate (ISR) is the share of edits judged a failure. Split by concern:
``loader`` (folder + prompts.csv), ``example`` (a synthetic folder), ``solvers`` (none, noise, jpeg,
blur, pgd-encoder, sifm), ``scorer`` (edits, judges, quality metrics); the task is defined here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.core import JSON, DataError, Fold, HarnessError, Metric, Record, Sample, ScoreContext, Task
from tasks.immunization import solvers as _solvers  # noqa: F401 - registers the immunizers
from tasks.immunization.loader import PROMPTS, load_samples
from tasks.immunization.scorer import DEFAULT_EDITOR, diff_of, max_of, mean_of, score_sample

TIE_RULE = ("per question, the majority of the judges' valid answers; a tie resolves to the answer that is not "
            "a failure (follows_instruction: yes, degraded: no); every judge must answer (quorum)")


class ImmunizationTask(Task):
    name = "immunization"
    description = "Image immunization against diffusion editing: ISR by MLLM judges, edit distance, CLIP score"
    protocols = {"edits": f"every row of {PROMPTS} (image, prompt, optional mask) is edited clean and protected"}
    default_protocol = "edits"
    default_solver = "pgd-encoder"
    data_folder = "immunization"
    accepted_roles = ("lpips", "clip", r"judge\d*")  # --judge: the ISR panel
    example_data = ("python -m tasks.immunization.example /tmp/imm --n 4", "/tmp/imm")
    cluster_key = "image"  # rows that share an image are not independent
    roles = {"editor": DEFAULT_EDITOR}
    version = "1"
    scorer_version = "1"

    def resolve_data(self, data: Path | None) -> Path:
        data = super().resolve_data(data)
        if data.is_dir() and not (data / PROMPTS).is_file() and (data / self.data_folder / PROMPTS).is_file():
            return data / self.data_folder
        return data

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        if protocol not in self.protocols:
            raise DataError(f"unknown immunization protocol {protocol!r}; known: {', '.join(self.protocols)}")
        return [Fold("test", load_samples(data_dir))]

    def score(self, sample: Sample, prediction: JSON) -> dict[str, JSON]:
        raise HarnessError("immunization scores with the editor role and the run's artifacts: use ascore")

    async def ascore(self, sample: Sample, prediction: JSON, ctx: ScoreContext) -> dict[str, JSON]:
        return await score_sample(sample.id, dict(sample.target), prediction, ctx)

    def metrics(self, protocol: str) -> list[Metric]:
        return [
            Metric("isr", mean_of("edit_failed")),
            Metric("isr_not_followed", mean_of("not_followed")),
            Metric("isr_degraded", mean_of("degraded")),
            Metric("isr_unprotected", mean_of("clean_edit_failed"), higher_is_better=False),
            Metric("isr_unprotected_not_followed", mean_of("clean_not_followed"), higher_is_better=False),
            Metric("isr_unprotected_degraded", mean_of("clean_degraded"), higher_is_better=False),
            Metric("isr_above_floor", diff_of("edit_failed", "clean_edit_failed")),
            Metric("edit_psnr", mean_of("edit_psnr"), higher_is_better=False),
            Metric("edit_ssim", mean_of("edit_ssim"), higher_is_better=False),
            Metric("edit_lpips", mean_of("edit_lpips")),
            Metric("clip_score", mean_of("clip_score"), higher_is_better=False),
            Metric("clip_score_unprotected", mean_of("clip_score_unprotected")),
            Metric("clip_score_drop", mean_of("clip_score_drop")),
            Metric("psnr", mean_of("psnr")),
            Metric("ssim", mean_of("ssim")),
            Metric("linf_mean", mean_of("linf"), higher_is_better=False),
            Metric("linf_max", max_of("linf"), higher_is_better=False, resample="none"),
        ]

    def report(self, records: Sequence[Record], protocol: str, out_dir: Path) -> dict[str, JSON]:
        from harness.grading import rubric_agreement

        scored = [r for r in records if r.ok and "edit_psnr" in r.scores]
        judged = [r for r in scored if "grading" in r.scores]
        out: dict[str, Any] = {"n_edited": len(scored), "n_judged": len(judged),
                               "n_judge_errors": sum(1 for r in records if r.error and "judge error" in r.error),
                               "n_errors": sum(1 for r in records if not r.ok)}
        if judged:
            prot = [r.scores["grading"] for r in judged]
            clean = [r.scores["grading_clean"] for r in judged]
            out["judges"] = {"panel": prot[0].get("judges"), "rubric": prot[0].get("rubric"), "tie_rule": TIE_RULE,
                             "agreement_protected": rubric_agreement(prot),
                             "agreement_unprotected": rubric_agreement(clean),
                             "agreement_all_edits": rubric_agreement(prot + clean)}
        notes = []
        if scored and not judged:
            notes.append("no ISR: give at least two judges (--judge M1@URL1 --judge M2@URL2)")
        if scored and not any("edit_lpips" in r.scores for r in scored):
            notes.append("no edit_lpips: give --role lpips=vgg:PATH.pt (or tiny-random for a smoke run)")
        if scored and not any("clip_score" in r.scores for r in scored):
            notes.append("no clip_score: give --role clip=ARCH:PRETRAINED (e.g. ViT-B-32:openai or a checkpoint)")
        if notes:
            out["notes"] = notes
        return out
