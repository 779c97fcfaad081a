"""Immunizers as solvers: each protects a sample's image within an L-inf budget and stores it as an artifact.

Prediction: {"protected": ref, "edit_seed": the seed of both edits}; `info` holds the budget used and the
attack's own diagnostics. Why per image: the immunizer does not know the edit (prompt-agnostic by
default), so an image with several prompts is protected once (memoised by image and mask path) and
stored once (content-addressed).

`eps` is the L-inf budget as a fraction of the pixel range: `-S eps=8/255` or `-S eps=0.0314`. The stored
PNG differs from the original by at most floor(eps*255) grey levels (`project_uint8`). The gradient
immunizers (`pgd-encoder`, `sifm`) attack the run's `editor` role (`--role editor=...`), so the editor's
spec is part of their identity. Random draws are seeded by --seed and the image's path in the data folder.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
from fractions import Fraction
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BeforeValidator, Field

from harness.core import HarnessError, RunContext, Sample, SolverOptions, SolverOutput, Task
from harness.core import Solver as _Solver
from harness.registry import register_solver
from tasks.immunization.loader import load_mask, load_rgb
from tasks.immunization.scorer import edit_seed
from vision_models import immunize
from vision_models.faces.memo import Once

DEFAULT_EDITOR = "instruct-pix2pix:timbrooks/instruct-pix2pix"


def _fraction(value: Any) -> Any:
    """"8/255" -> 0.0313..., "0.03" -> 0.03; numbers pass through (the Field bounds check them)."""
    if isinstance(value, str):
        try:
            return float(Fraction(value.strip().replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{value!r} is not a number or a fraction like 8/255") from None
    return value


Fraction01 = Annotated[float, BeforeValidator(_fraction)]


class BudgetOptions(SolverOptions):
    eps: Fraction01 = Field(8 / 255, gt=0, le=1, description="L-inf budget, a fraction of the pixel range: 8/255 "
                            "or 0.0314 (the stored image moves at most floor(eps*255) grey levels)")
    seed: int = Field(0, description="random seed (filled from --seed)")


class ImmunizerSolver(_Solver):
    """Base: load the image, protect it (once per image), store the PNG, report the budget used."""

    Options: ClassVar[type[SolverOptions]] = BudgetOptions
    uses_editor: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.artifacts: Any = None
        self.editor_spec: str | None = None
        self.run_seed = 0
        self._memo = Once()

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options: Any) -> _Solver:
        solver = cls(**{"seed": ctx.seed, **options})
        solver.artifacts = ctx.artifacts
        solver.run_seed = ctx.seed
        if cls.uses_editor:
            role = ctx.roles.get("editor")
            solver.editor_spec = role.model if role is not None else DEFAULT_EDITOR
        return solver

    def model_identity(self) -> dict[str, Any]:
        return {"editor": self.editor_spec} if self.uses_editor else {}

    def rng(self, key: str) -> np.random.Generator:
        digest = hashlib.sha256(f"{self.options['seed']}:{key}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "big"))

    @abc.abstractmethod
    def protect(self, image: np.ndarray, mask: np.ndarray | None, key: str) -> tuple[np.ndarray, dict[str, Any]]:
        """(protected image within the budget, info) of one image."""

    def _protect_file(self, target: dict[str, Any], key: str) -> tuple[str, dict[str, Any]]:
        image = load_rgb(target["image"], target)
        mask = load_mask(target.get("mask"), image.shape, target)
        protected, info = self.protect(image, mask, key)
        if protected.shape != image.shape or protected.dtype != np.uint8:
            raise HarnessError(f"{self.name}: protected image is {protected.shape} {protected.dtype}, "
                               f"expected {image.shape} uint8")
        info = {**info, "linf": immunize.linf(image, protected), "eps": self.options["eps"]}
        return self.artifacts.put_image(protected), info

    async def solve(self, sample: Sample) -> SolverOutput:
        if self.artifacts is None:
            raise HarnessError(f"solver {self.name!r} writes protected images and needs the run's artifact store")
        target = dict(sample.inputs)
        key = str(sample.groups.get("image", target["image"]))
        ref, info = await asyncio.to_thread(
            self._memo.get, (target["image"], target.get("mask")), lambda: self._protect_file(target, key))
        return self.output(sample, ref, info)

    def output(self, sample: Sample, ref: str, info: dict[str, Any]) -> SolverOutput:
        """The prediction names the seed both edits will use (--seed and the sample id), so that scores
        cached for one --seed are never reused for another."""
        return SolverOutput({"protected": ref, "edit_seed": edit_seed(self.run_seed, sample.id)}, info,
                            {"protected": ref})


@register_solver("none", tasks=("immunization",), kind="transform")
class NoImmunization(ImmunizerSolver):
    """No protection: the original pixels (the reference point: ISR equals the unprotected floor)."""

    def protect(self, image: np.ndarray, mask: np.ndarray | None, key: str) -> tuple[np.ndarray, dict[str, Any]]:
        return image.copy(), {}


class NoiseOptions(BudgetOptions):
    dist: Literal["uniform", "sign"] = Field("uniform", description="uniform integers in +-budget, or +-budget signs")


@register_solver("noise", tasks=("immunization",), kind="transform")
class NoiseImmunization(ImmunizerSolver):
    """Random noise at the budget (a baseline): uniform in [-eps, eps] or random signs of eps."""

    Options = NoiseOptions

    def protect(self, image: np.ndarray, mask: np.ndarray | None, key: str) -> tuple[np.ndarray, dict[str, Any]]:
        return immunize.uniform_noise(image, self.opts.eps, self.rng(key), self.opts.dist), {}  # type: ignore[attr-defined]


class JpegOptions(BudgetOptions):
    quality: int = Field(75, ge=1, le=100, description="JPEG quality")
    project: bool = Field(True, description="clip the result to the eps budget (false: report the budget used)")


@register_solver("jpeg", tasks=("immunization",), kind="transform")
class JpegImmunization(ImmunizerSolver):
    """JPEG re-compression (a baseline), projected onto the budget."""

    Options = JpegOptions

    def protect(self, image: np.ndarray, mask: np.ndarray | None, key: str) -> tuple[np.ndarray, dict[str, Any]]:
        o: Any = self.opts
        out = immunize.jpeg(image, o.quality)
        return (immunize.project_uint8(image, out, o.eps) if o.project else out), {}


class BlurOptions(BudgetOptions):
    sigma: float = Field(1.0, gt=0, description="Gaussian blur sigma in pixels")
    project: bool = Field(True, description="clip the result to the eps budget (false: report the budget used)")


@register_solver("blur", tasks=("immunization",), kind="transform")
class BlurImmunization(ImmunizerSolver):
    """Gaussian blur (a baseline), projected onto the budget."""

    Options = BlurOptions

    def protect(self, image: np.ndarray, mask: np.ndarray | None, key: str) -> tuple[np.ndarray, dict[str, Any]]:
        o: Any = self.opts
        out = immunize.gaussian_blur(image, o.sigma)
        return (immunize.project_uint8(image, out, o.eps) if o.project else out), {}


class PgdOptions(BudgetOptions):
    steps: int = Field(100, ge=0, description="PGD iterations")
    step_size: Fraction01 = Field(2 / 255, gt=0, le=1, description="signed-gradient step (a fraction: 2/255)")
    target: Literal["gray", "away"] = Field(
        "gray", description="pull the latent toward a mid-grey image's (PhotoGuard), or push it from the clean one")
    random_start: bool = Field(True, description="start from uniform noise in the budget (seeded)")


class EditorSolver(ImmunizerSolver):
    uses_editor = True
    resources = {"num_cpus": 1, "num_gpus": 1}

    def editor(self) -> Any:
        from vision_models.diffusion_editors import load_editor

        assert self.editor_spec is not None
        return load_editor(self.editor_spec)


@register_solver("pgd-encoder", tasks=("immunization",), kind="vision")
class PgdEncoderImmunization(EditorSolver):
    """PhotoGuard's encoder attack: PGD on the editor's VAE encoder within the budget."""

    Options = PgdOptions

    def protect(self, image: np.ndarray, mask: np.ndarray | None, key: str) -> tuple[np.ndarray, dict[str, Any]]:
        o: Any = self.opts
        return immunize.pgd_encoder(self.editor(), image, o.eps, o.steps, o.step_size, o.target,
                                    self.rng(key) if o.random_start else None)


class SifmOptions(BudgetOptions):
    steps: int = Field(50, ge=0, description="PGD iterations (one timestep per iteration, cycled)")
    step_size: Fraction01 = Field(2 / 255, gt=0, le=1, description="signed-gradient step (a fraction: 2/255)")
    timesteps: int = Field(3, ge=1, le=50,
                           description="noise levels of the clean trajectory (10 %-90 % of the schedule)")
    norm_weight: float = Field(1.0, ge=0, description="weight of the feature-norm shrinking term")
    layers: Literal["all", "down", "mid", "up"] = Field("all", description="UNet blocks whose outputs are pushed")
    use_prompt: bool = Field(False, description="condition on the sample's edit prompt (default: the empty prompt; "
                             "an immunizer does not know the edit)")
    random_start: bool = Field(True, description="start from uniform noise in the budget (seeded)")


@register_solver("sifm", tasks=("immunization",), kind="vision")
class SifmImmunization(EditorSolver):
    """SIFM: push intermediate UNet features away from the clean trajectory and shrink their norm."""

    Options = SifmOptions

    async def solve(self, sample: Sample) -> SolverOutput:
        if not self.opts.use_prompt:  # type: ignore[attr-defined]
            return await super().solve(sample)
        # the prompt changes the protection: memoise per sample instead of per image
        target = dict(sample.inputs)
        ref, info = await asyncio.to_thread(
            self._memo.get, sample.id,
            lambda: self._protect_file(target, f"{sample.groups.get('image')}|{target['prompt']}"))
        return self.output(sample, ref, info)

    def protect(self, image: np.ndarray, mask: np.ndarray | None, key: str) -> tuple[np.ndarray, dict[str, Any]]:
        o: Any = self.opts
        prompt = key.split("|", 1)[1] if o.use_prompt and "|" in key else ""
        seed = int(self.rng(key).integers(2**31))
        return immunize.sifm(self.editor(), image, o.eps, o.steps, o.step_size, timesteps=o.timesteps,
                             norm_weight=o.norm_weight, layers=o.layers, prompt=prompt, mask=mask, seed=seed,
                             rng=self.rng(key) if o.random_start else None)


SOLVERS = ("none", "noise", "jpeg", "blur", "pgd-encoder", "sifm")
