"""face_anon's solvers: the generic face protections (confined to the detected face box),
`sd-inpaint-guided` (localized, attribute-guided inpainting, `vision_models.faces.anonymize`), and
`precomputed`, which reads images anonymised elsewhere from a folder, matched by file name.

Why matching by name: anonymisers write their outputs in any order and often another format
(`.png` for a `.jpg` original); pairing by listing order silently compares the wrong faces.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.core import DataError, HarnessError, RunContext, Sample, SolverOptions, SolverOutput, Task
from harness.core import Solver as _Solver
from harness.registry import register_solver
from vision_models.faces.detect import load_image
from vision_models.faces.solvers import PROTECTIONS, ProtectionSolver, register_protections

register_protections("face_anon")


class PrecomputedOptions(SolverOptions):
    dir: str = Field(description="folder of anonymised images, one per original, same file name (any extension)")


def match_by_name(folder: Path, name: str) -> Path:
    """The file in `folder` named like `name` (same stem; the exact name first)."""
    exact = folder / name
    if exact.is_file():
        return exact
    stem = Path(name).stem
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.stem == stem)
    if not found:
        raise DataError(f"{folder}: no anonymised image named {stem}.* for the original {name}")
    if len(found) > 1:
        raise DataError(f"{folder}: several files for {name}: {', '.join(p.name for p in found)}")
    return found[0]


@register_solver("precomputed", tasks=("face_anon",), kind="transform")
class PrecomputedAnonymisation(_Solver):
    """Images anonymised by another tool, read from -S dir=FOLDER and matched to originals by file name."""

    Options = PrecomputedOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.artifacts: Any = None

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options: Any) -> _Solver:
        solver = cls(**options)
        solver.artifacts = ctx.artifacts
        if not Path(solver.opts.dir).is_dir():  # type: ignore[attr-defined]
            raise HarnessError(f"precomputed: -S dir={solver.opts.dir} is not a folder")  # type: ignore[attr-defined]
        return solver

    async def solve(self, sample: Sample) -> SolverOutput:
        # The sample id is the original's path relative to the data root (`images/x.jpg`, `<identity>/1.png`):
        # the same sub-folder under -S dir first (identity trees reuse names), else the flat folder.
        rel = Path(sample.id)
        root = Path(self.opts.dir)  # type: ignore[attr-defined]
        folder = root / rel.parent if (root / rel.parent).is_dir() and rel.parent.name != "images" else root
        path = match_by_name(folder, rel.name)
        ref = self.artifacts.put_image(load_image(path))
        return SolverOutput({"image": ref}, info={"source": path.name}, artifacts={"image": ref})


class GuidedOptions(SolverOptions):
    model: str = Field("stabilityai/stable-diffusion-2-inpainting",
                       description="diffusers inpainting model: hub name (in the HF cache), folder, or tiny-random")
    prompt: str = Field("a photo of a person's face", description="prompt for the regenerated face")
    keep: str = Field("", description="face parts left unchanged, comma-separated: eyes, brows, nose, mouth")
    attr_net: str = Field("none", description="feature net of the attribute guidance (tiny-random, KIND:PATH, none)")
    attr_scale: float = Field(0.0, ge=0, description="gradient-correction step (0: no guidance)")
    target: str | None = Field(None, description="image whose attributes guide the face (default: the original)")
    steps: int = Field(30, ge=1, description="denoising steps")
    guidance: float = Field(7.5, ge=0, description="classifier-free guidance scale")
    size: int = Field(512, ge=32, description="resolution the face crop is generated at (tiny-random: 64)")
    seed: int = Field(0, description="random seed (filled from --seed)")


@register_solver("sd-inpaint-guided", tasks=("face_anon",), kind="vision")
class GuidedInpaint(ProtectionSolver):
    """SD inpainting of the face minus kept parts (-S keep=eyes,mouth), with attribute-gradient guidance."""

    Options = GuidedOptions

    def protect_file(self, path: str) -> tuple[Any, dict[str, Any]]:
        """As the base class, with 68 landmarks (the kept regions are drawn from them)."""
        from vision_models.faces.detect import detect_face

        image = load_image(path)
        face = detect_face(image, points=68)
        if face is None:
            return image, {"face": None, "note": "no face detected: image left unchanged"}
        keep = self.kept()
        return self.protect(image, face, path), {"face": list(face.box), "kept": keep,
                                                 "regenerated_pixels": int(self.mask(image, face).sum())}

    def kept(self) -> list[str]:
        return [k.strip() for k in self.opts.keep.split(",") if k.strip()]  # type: ignore[attr-defined]

    def mask(self, image: Any, face: Any) -> Any:
        from vision_models.faces.anonymize import region_mask

        return region_mask(image.shape, face.landmarks, self.kept())

    def protect(self, image: Any, face: Any, path: str) -> Any:
        from vision_models.diffusion import load_pipeline
        from vision_models.faces import quality
        from vision_models.faces.anonymize import attribute_loss, inpaint_guided

        o = self.opts
        mask = self.mask(image, face)
        loss = None
        if o.attr_net != "none" and o.attr_scale > 0:  # type: ignore[attr-defined]
            target = load_image(o.target) if o.target else image  # type: ignore[attr-defined]
            loss = attribute_loss(quality.feature_net(o.attr_net), target, o.size)  # type: ignore[attr-defined]
        pipe = load_pipeline("inpaint", o.model)  # type: ignore[attr-defined]
        seed = int(self.rng(path).integers(2**31))
        with _PIPE_LOCK:
            return inpaint_guided(pipe, image, mask, o.prompt, loss=loss, scale=o.attr_scale, seed=seed,  # type: ignore[attr-defined]
                                  steps=o.steps, guidance=o.guidance, size=o.size)  # type: ignore[attr-defined]


_PIPE_LOCK = threading.Lock()
SOLVERS = (*PROTECTIONS, "sd-inpaint-guided", "precomputed")
