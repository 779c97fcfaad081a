"""face_anon's solvers: the generic face protections (confined to the detected face box), plus
`precomputed`, which reads images anonymised elsewhere from a folder, matched by file name.

Why matching by name: anonymisers write their outputs in any order and often another format
(`.png` for a `.jpg` original); pairing by listing order silently compares the wrong faces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from harness.core import DataError, HarnessError, RunContext, Sample, SolverOptions, SolverOutput, Task
from harness.core import Solver as _Solver
from harness.registry import register_solver
from vision_models.faces.detect import load_image
from vision_models.faces.solvers import PROTECTIONS, register_protections

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
        path = match_by_name(Path(self.opts.dir), Path(sample.inputs["images"]["image"]).name)  # type: ignore[attr-defined]
        ref = self.artifacts.put_image(load_image(path))
        return SolverOutput({"image": ref}, info={"source": path.name}, artifacts={"image": ref})


SOLVERS = (*PROTECTIONS, "precomputed")
