"""Face protections as solvers: each protects every image of a sample and stores it as an artifact.

A sample lists its images as `inputs["images"]` = {name: path} (a verification pair in fdeid: `a` and
`b`; one image in face_anon); the prediction maps the same names to artifact references. The classes
are generic; a task makes them its solvers with `register_protections(task)`.

Why per image and not per sample: LFW's 6,000 pairs reuse ~7,700 images, so a protected image is
computed once per run (memoised by path) and stored once (the artifact store is content-addressed).
The face box comes from dlib's HOG detector on the original; when it finds no face the image is left
as it is (FDeID's methods return the frame unchanged without a box) and `info` says so; the scorer then
records that pair's original as faceless (an error for the pair). Random protections draw from a
generator seeded by --seed and the image's `<identity>/<file>` name, so an image gets the same
protection in every pair and on every machine.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from harness.core import HarnessError, RunContext, Sample, SolverOptions, SolverOutput, Task
from harness.core import Solver as _Solver
from harness.registry import register_solver
from vision_models.faces import protect
from vision_models.faces.detect import Face, detect_face, load_image
from vision_models.faces.memo import Once


def sample_images(sample: Sample) -> dict[str, str]:
    """The sample's images to protect: `inputs["images"]` = {name: path}."""
    images = sample.inputs.get("images")
    if not isinstance(images, dict) or not images:
        raise HarnessError(f"sample {sample.id}: inputs['images'] must map names to image paths")
    return {str(k): str(v) for k, v in images.items()}


def image_key(path: str) -> str:
    """`<parent>/<file>`: names an image independently of where the data folder is mounted."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


class ProtectionSolver(_Solver):
    """Base: detect the face on each original, protect it, store the result as a PNG artifact."""

    kind: ClassVar[str] = "transform"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.artifacts: Any = None
        self._memo = Once()  # one protection per image, even with pairs in flight that share it

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options: Any) -> _Solver:
        if "seed" in cls.Options.model_fields:
            options = {"seed": ctx.seed, **options}
        solver = cls(**options)
        solver.artifacts = ctx.artifacts
        return solver

    def rng(self, path: str) -> np.random.Generator:
        seed = int(self.options.get("seed", 0))
        digest = hashlib.sha256(f"{seed}:{image_key(path)}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "big"))

    @abc.abstractmethod
    def protect(self, image: np.ndarray, face: Face, path: str) -> np.ndarray:
        """The protected image of one original with its detected face."""

    def protect_file(self, path: str) -> tuple[np.ndarray, dict[str, Any]]:
        """(protected image, info) of one original."""
        image = load_image(path)
        face = detect_face(image)
        if face is None:
            return image, {"face": None, "note": "no face detected: image left unchanged"}
        return self.protect(image, face, path), {"face": list(face.box)}

    def _stored(self, path: str) -> tuple[str, dict[str, Any]]:
        if self.artifacts is None:
            raise HarnessError(f"solver {self.name!r} writes protected images and needs the run's artifact store")
        return self._memo.get(path, lambda: self._store(path))

    def _store(self, path: str) -> tuple[str, dict[str, Any]]:
        image, info = self.protect_file(path)
        return self.artifacts.put_image(image), info

    async def solve(self, sample: Sample) -> SolverOutput:
        refs, infos = {}, {}
        for name, path in sample_images(sample).items():
            refs[name], infos[name] = await asyncio.to_thread(self._stored, path)
        return SolverOutput(prediction=dict(refs), info={"faces": infos}, artifacts=dict(refs))


class NoOptions(SolverOptions):
    pass


class IdentityProtection(ProtectionSolver):
    """No protection: the original pixels (the reference point: PSR 0, SSIM 1)."""

    Options = NoOptions

    def protect(self, image: np.ndarray, face: Face, path: str) -> np.ndarray:
        return image

    def protect_file(self, path: str) -> tuple[np.ndarray, dict[str, Any]]:
        """The original as it is: no face detection needed."""
        return load_image(path), {"face": None}


class BlurOptions(SolverOptions):
    kernel: int = Field(60, ge=1, description="Gaussian kernel size (an even size becomes the next odd one)")
    sigma: float = Field(0.0, ge=0, description="Gaussian sigma (0: OpenCV's default for the kernel)")


class BlurProtection(ProtectionSolver):
    """Gaussian blur of the face box (FDeID: kernel 60)."""

    Options = BlurOptions

    def protect(self, image: np.ndarray, face: Face, path: str) -> np.ndarray:
        return protect.blur(image, face.box, self.opts.kernel, self.opts.sigma)  # type: ignore[attr-defined]


class PixelateOptions(SolverOptions):
    block: int = Field(8, ge=1, description="pixel block size")


class PixelateProtection(ProtectionSolver):
    """Mosaic of the face box (FDeID: block 8)."""

    Options = PixelateOptions

    def protect(self, image: np.ndarray, face: Face, path: str) -> np.ndarray:
        return protect.pixelate(image, face.box, self.opts.block)  # type: ignore[attr-defined]


class MaskProtection(ProtectionSolver):
    """A black box over the detected face."""

    Options = NoOptions

    def protect(self, image: np.ndarray, face: Face, path: str) -> np.ndarray:
        return protect.mask(image, face.box)


class NoiseOptions(SolverOptions):
    sigma: float = Field(25.0, gt=0, description="noise standard deviation in 0-255 units")
    seed: int = Field(0, description="random seed (filled from --seed)")


class NoiseProtection(ProtectionSolver):
    """Gaussian noise added inside the face box."""

    Options = NoiseOptions

    def protect(self, image: np.ndarray, face: Face, path: str) -> np.ndarray:
        return protect.gaussian_noise(image, face.box, self.opts.sigma, self.rng(path))  # type: ignore[attr-defined]


class KSameOptions(SolverOptions):
    k: int = Field(10, ge=1, description="faces averaged (or chosen from)")
    variant: Literal["average", "select"] = Field("average", description="k-Same-Average or k-Same-Select")
    reference: str | None = Field(None, description="folder of reference faces (default: the run's own images)")
    max_refs: int = Field(1000, ge=1, description="at most this many reference faces (FDeID loads 1,000)")
    seed: int = Field(0, description="random seed of k-Same-Select (filled from --seed)")


class KSameProtection(ProtectionSolver):
    """k-Same: the face replaced by the mean of (or one of) its k nearest reference faces."""

    Options = KSameOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.references: list[np.ndarray] = []

    def fit(self, train: Sequence[Sample]) -> None:
        opts = self.opts
        if opts.reference:  # type: ignore[attr-defined]
            root = Path(opts.reference)  # type: ignore[attr-defined]
            if not root.is_dir():
                raise HarnessError(f"ksame: reference folder {root} does not exist")
            paths = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        else:
            paths = sorted({p for s in train for p in sample_images(s).values()})
        self.references = []
        for path in paths:
            if len(self.references) >= opts.max_refs:  # type: ignore[attr-defined]
                break
            if not Path(path).is_file():
                continue
            image = load_image(path)
            face = detect_face(image)
            if face is not None:
                self.references.append(protect.face_crop(image, face.box))

    def protect(self, image: np.ndarray, face: Face, path: str) -> np.ndarray:
        if not self.references:
            raise HarnessError("ksame: no reference faces (pass -S reference=FOLDER or data with detectable faces)")
        o = self.opts
        return protect.ksame(image, face.box, self.references, o.k, o.variant, self.rng(path))  # type: ignore[attr-defined]




class InpaintOptions(SolverOptions):
    model: str = Field("stabilityai/stable-diffusion-2-inpainting",
                       description="diffusers inpainting model: hub name (in the HF cache), folder, or tiny-random")
    prompt: str = Field("a photo of a person's face", description="prompt for the regenerated face")
    steps: int = Field(30, ge=1, description="denoising steps")
    guidance: float = Field(7.5, ge=0, description="classifier-free guidance scale")
    size: int = Field(512, ge=32, description="resolution the face crop is generated at (tiny-random: 64)")
    seed: int = Field(0, description="random seed (filled from --seed)")


class SdInpaintProtection(ProtectionSolver):
    """Stable Diffusion inpainting of the face box (the user's weights by name or path; tiny-random for smoke runs)."""

    Options = InpaintOptions

    def protect(self, image: np.ndarray, face: Face, path: str) -> np.ndarray:
        from vision_models.diffusion import inpaint_face, load_pipeline

        o = self.opts
        pipe = load_pipeline("inpaint", o.model)  # type: ignore[attr-defined]
        seed = int(self.rng(path).integers(2**31))
        with self._pipe_lock:  # one generation at a time on the device
            return inpaint_face(pipe, image, face.box, o.prompt, seed=seed, steps=o.steps,  # type: ignore[attr-defined]
                                guidance=o.guidance, size=o.size)  # type: ignore[attr-defined]

    _pipe_lock = threading.Lock()


PROTECTIONS: dict[str, type[ProtectionSolver]] = {
    "identity": IdentityProtection, "blur": BlurProtection, "pixelate": PixelateProtection, "mask": MaskProtection,
    "noise": NoiseProtection, "ksame": KSameProtection, "sd-inpaint": SdInpaintProtection,
}


def register_protections(*tasks: str) -> None:
    """Make every protection a solver of `tasks` (called by each task package that uses them)."""
    for name, cls in PROTECTIONS.items():
        register_solver(name, tasks=tasks, kind="vision" if name == "sd-inpaint" else "transform")(cls)
