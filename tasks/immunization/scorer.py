"""Scoring an immunization: edit the clean and the protected image, judge both edits, measure them.

Per sample (`score_sample`, run in `ascore`):
1. imperceptibility: PSNR/SSIM of the protected image against the clean one (full resolution) and the
   budget used, `linf` = max |protected - clean| / 255;
2. the `editor` role edits the clean and the protected image with the same prompt and the same seed
   (derived from --seed and the sample id, named in the prediction); the inputs as the editor saw them
   and both edits are stored as artifacts (`scores["images"]`);
3. PSNR/SSIM (and LPIPS with the `lpips` role's net) between the two edits: how far protection moved the edit;
4. CLIP text-image score (the `clip` role, open_clip) of each edit with its prompt, as torchmetrics'
   CLIPScore defines it: 100 * max(cos(image, text), 0);
5. ISR (harness.rubrics.ISR_RUBRIC): every judge (`--judge M@URL`, >= 2) answers the two yes/no questions
   about each edit at temperature 0, shown the editor's input then its output; per question the majority
   of the judges decides, and a tie resolves to the answer that is NOT a failure ("follows: yes",
   "degraded: no"), so a split panel never inflates the ISR. An edit failed when it does not follow the
   instruction or is degraded. The unprotected edit gets the same questions: its failure rate is the
   editor's own floor. A judge call that fails leaves too few answers for the quorum (every judge), so the
   sample is a reported judge error, never a silent zero.
Without judges, LPIPS or CLIP roles those numbers are absent (nan), and the report says which role to give.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from harness.core import HarnessError, Record, ScoreContext
from tasks.immunization.loader import load_mask, load_rgb
from vision_models import immunize
from vision_models.faces import quality

DEFAULT_EDITOR = "instruct-pix2pix:timbrooks/instruct-pix2pix"


def edit_seed(run_seed: int, sample_id: str) -> int:
    """The seed both edits of a sample use: the same in every run with this --seed."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{sample_id}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def edit_pair(editor: Any, target: dict[str, Any], protected_ref: str, store: Any, seed: int
              ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Imperceptibility, the two edits (stored) and their PSNR/SSIM. Returns (scores, edited images)."""
    clean = load_rgb(target["image"], target)
    protected = store.load_image(protected_ref)
    if protected.ndim == 2:
        protected = np.repeat(protected[:, :, None], 3, axis=2)
    if protected.shape != clean.shape:
        raise HarnessError(f"protected image {protected_ref} is {protected.shape}, its original {target['image']} "
                           f"is {clean.shape}")
    mask = load_mask(target.get("mask"), clean.shape, target)
    prompt = str(target["prompt"])
    edit_clean = editor.edit(clean, prompt, seed, mask)
    edit_prot = editor.edit(protected, prompt, seed, mask)
    images = {"input_clean": editor.prepare(clean), "input_protected": editor.prepare(protected),
              "edit_clean": edit_clean, "edit_protected": edit_prot}
    scores: dict[str, Any] = {
        "psnr": quality.psnr(clean, protected), "ssim": quality.ssim(clean, protected),
        "linf": immunize.linf(clean, protected),
        "edit_psnr": quality.psnr(edit_clean, edit_prot), "edit_ssim": quality.ssim(edit_clean, edit_prot),
        "edit_seed": seed, "images": {k: store.put_image(v) for k, v in images.items()},
    }
    return scores, images


def clip_score(model: Any, images: Sequence[np.ndarray], prompt: str) -> list[float]:
    """torchmetrics' CLIPScore per image: 100 * max(cos(image features, text features), 0)."""
    img = model.encode_images(list(images))
    txt = model.encode_texts([prompt])[0]
    return [float(100.0 * max(float(np.dot(v, txt)), 0.0)) for v in img]


def load_clip(spec: str) -> Any:
    """`ARCH[:PRETRAINED]` (open_clip architecture; a tag, a checkpoint path, or none) or tiny-random-clip."""
    from vision_models.clip import ClipModel

    arch, _, pretrained = spec.partition(":")
    return ClipModel.load(arch, pretrained or None)


async def score_sample(sample_id: str, target: dict[str, Any], prediction: Any, sctx: ScoreContext
                       ) -> dict[str, Any]:
    from harness.roles import judge_roles
    from vision_models.diffusion_editors import load_editor

    judges = judge_roles(sctx.roles)
    if len(judges) == 1:  # checked before the (costly) edits
        raise HarnessError("ISR needs at least two judges for a majority (--judge M1@URL1 --judge M2@URL2)")
    if not isinstance(prediction, dict) or not isinstance(prediction.get("protected"), str):
        raise HarnessError(f"prediction must be {{'protected': artifact ref}}, got {prediction!r}")
    store = sctx.artifacts
    if store is None:
        raise HarnessError("immunization scoring needs the run's artifact store (protected images)")
    role = sctx.roles.get("editor")
    spec = role.model if role is not None else DEFAULT_EDITOR
    editor = await sctx.run_cpu(sctx.resource, f"immunization-editor:{spec}", lambda: load_editor(spec))
    seed = int(prediction.get("edit_seed", edit_seed(sctx.seed, sample_id)))
    scores, images = await sctx.run_cpu(edit_pair, editor, target, prediction["protected"], store, seed)
    edits = [images["edit_protected"], images["edit_clean"]]

    if (lp := sctx.roles.get("lpips")) is not None:
        from vision_models.faces.quality import feature_net

        net = await sctx.run_cpu(sctx.resource, f"immunization-lpips:{lp.model}", lambda: feature_net(lp.model))
        scores["edit_lpips"] = float((await sctx.run_cpu(net.lpips, edits[:1], edits[1:]))[0])
    if (cl := sctx.roles.get("clip")) is not None:
        model = await sctx.run_cpu(sctx.resource, f"immunization-clip:{cl.model}", lambda: load_clip(cl.model))
        prot, clean = await sctx.run_cpu(clip_score, model, edits, str(target["prompt"]))
        scores.update(clip_score=prot, clip_score_unprotected=clean, clip_score_drop=clean - prot)

    if judges:
        scores.update(await judge_edits(sctx, scores["images"], str(target["prompt"])))
    return scores


async def judge_edits(sctx: ScoreContext, refs: dict[str, str], prompt: str) -> dict[str, Any]:
    """ISR answers for the protected and the unprotected edit (both asked of every judge)."""
    from harness.grading import judge_panel
    from harness.models.base import Part
    from harness.rubrics import ISR_RUBRIC, isr_outcome

    panel = judge_panel(sctx)
    store = sctx.artifacts
    assert store is not None

    def parts(kind: str) -> list[Part]:
        return [Part("image", path=str(store.path(refs[f"input_{kind}"]))),
                Part("image", path=str(store.path(refs[f"edit_{kind}"])))]

    prot, clean = await asyncio.gather(panel.grade(ISR_RUBRIC, parts("protected"), prompt=prompt),
                                       panel.grade(ISR_RUBRIC, parts("clean"), prompt=prompt))
    out: dict[str, Any] = dict(isr_outcome(prot))
    out.update({f"clean_{k}": v for k, v in isr_outcome(clean).items()})
    out.update(grading=prot.to_dict(), grading_clean=clean.to_dict())
    return out


# ----------------------------------------------------------------------------------------------- metrics
def mean_of(key: str, sign: float = 1.0) -> Callable[[Sequence[Record]], float]:
    """Mean of a per-sample score over the records that have it (nan when none has: role not given)."""

    def fn(records: Sequence[Record]) -> float:
        values = [float(r.scores[key]) for r in records if r.scores.get(key) is not None]
        return sign * float(np.mean(values)) if values else float("nan")

    return fn


def diff_of(a: str, b: str) -> Callable[[Sequence[Record]], float]:
    """mean(a) - mean(b) over records with both."""

    def fn(records: Sequence[Record]) -> float:
        rows = [(float(r.scores[a]), float(r.scores[b])) for r in records
                if r.scores.get(a) is not None and r.scores.get(b) is not None]
        return float(np.mean([x - y for x, y in rows])) if rows else float("nan")

    return fn


def max_of(key: str) -> Callable[[Sequence[Record]], float]:
    def fn(records: Sequence[Record]) -> float:
        values = [float(r.scores[key]) for r in records if r.scores.get(key) is not None]
        return float(max(values)) if values else float("nan")

    return fn
