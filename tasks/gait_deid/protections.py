"""Protections of probe sequences: the solvers of `gait_deid`.

A protection maps a probe's pretreated silhouettes ([n, 64, 64] uint8) to protected ones, stored in the
run's artifact store (`.npy`); the prediction holds the artifact ref and the chosen target identity.
Gallery sequences are never protected (the solver returns {"protected": false} for them).

Target rule (seeded, documented): the other test subjects in sorted order, index
sha256("<seed>:<probe id>") mod their count. Every protection records a target, so
`impersonation_success` of a protection that ignores it is the chance level.
`protect` returns the protected frames, or (frames, frame_index) when it drops or reorders frames:
frame_index[i] = the original frame protected frame i came from (the SSIM of scoring.py pairs by it).

Plug-in points (register with `@register_solver(name, tasks=("gait_deid",), kind="transform")`):
- `Protection`: implement `protect(seq, sample, target, rng)` (one probe at a time, CPU).
- `BatchedProtection`: a model-based (e.g. diffusion) protection. `load_model()` runs once in `create`
  (weights by name or path from the solver's own options; raise a clear "weights missing" error there);
  `protect_batch(seqs, samples, targets, rngs)` gets up to `batch_size` probes at once (their frames,
  samples, chosen targets and per-probe generators) and returns one protected sequence each; the target's
  own gallery-free recording is `target_sequence(sample, target)` (what a conditional generator would be
  guided by). Declare `resources = {"num_gpus": 1}` for GPU models. The artifacts, targets and seeding
  stay the base class's, so every protection is scored alike.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from harness.core import JSON, HarnessError, RunContext, Sample, SeededOptions, Solver, SolverOutput, Task
from harness.registry import register_solver
from tasks.gait_deid.evaluation import GALLERY
from tasks.gait_deid.loaders import Seq, load_sequence, scan

TASKS = ("gait_deid",)


def choose_target(subject: str, probe_id: str, test_subjects: list[str], seed: int) -> str:
    """The impersonation target of a probe (see the module docstring)."""
    others = sorted(s for s in test_subjects if s != subject)
    if not others:
        raise HarnessError("impersonation needs at least two test subjects")
    k = int.from_bytes(hashlib.sha256(f"{seed}:{probe_id}".encode()).digest()[:8], "big") % len(others)
    return others[k]


class Protection(Solver):
    """Base of the protections: loads the probe, picks the target, stores the protected sequence."""

    Options: ClassVar[type] = SeededOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.artifacts: Any = None

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options: Any) -> Solver:
        solver = cls(**{"seed": ctx.seed, **options})
        solver.artifacts = ctx.artifacts
        return solver

    @abc.abstractmethod
    def protect(self, seq: np.ndarray, sample: Sample, target: str, rng: np.random.Generator) -> np.ndarray:
        """The protected sequence (uint8 [n, 64, 44]) of one probe."""

    def _prepare(self, sample: Sample) -> tuple[np.ndarray, str, np.random.Generator]:
        if self.artifacts is None:
            raise HarnessError(f"{self.name}: needs the run's artifact store (ctx.artifacts)")
        seq = load_sequence(sample.inputs["source"], sample.inputs["layout"])
        seed = int(self.options["seed"])
        target = choose_target(sample.groups["subject"], sample.id, list(sample.inputs["test_subjects"]), seed)
        rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{seed}:{sample.id}".encode()).digest()[:8], "big"))
        return seq, target, rng

    def _output(self, sample: Sample, result: Any, target: str) -> SolverOutput:
        frames, index = result if isinstance(result, tuple) else (result, None)
        out = np.ascontiguousarray(np.clip(np.asarray(frames), 0, 255), dtype=np.uint8)
        if out.ndim != 3 or not len(out) or out.shape[1:] != (64, 64):
            raise HarnessError(f"{self.name} returned frames of shape {out.shape} for {sample.id}; "
                               "expected [n >= 1, 64, 64]")
        ref = self.artifacts.put_array(out)
        pred: dict[str, JSON] = {"sequence": ref, "target_subject": target, "n_frames": int(len(out)),
                                 "protected": True}
        if index is not None:
            pred["frame_index"] = [int(i) for i in index]
        return SolverOutput(pred, artifacts={"sequence": ref})

    async def solve(self, sample: Sample) -> JSON | SolverOutput:
        if sample.groups.get("role") == "gallery":
            return {"protected": False}
        seq, target, rng = self._prepare(sample)
        return self._output(sample, self.protect(seq, sample, target, rng), target)

    def target_sequence(self, sample: Sample, target: str) -> np.ndarray:
        """The target's own non-gallery recording at the probe's view (same condition-sequence if any)."""
        root = sample.inputs["root"]
        if sample.inputs.get("dataset") == "scoliosis1k":

            theirs = [s for s in _scoliosis_index(root) if s.subject == target]
            if not theirs:
                raise HarnessError(f"target {target} has no sequence in {root}")
            pick = next((s for s in theirs if s.view == sample.groups["view"]), theirs[0])
            return load_sequence(pick.source, "pkl")
        mine = [s for s in _index(root) if s.subject == target and s.view == sample.groups["view"]
                and s.condseq not in GALLERY]
        if not mine:
            raise HarnessError(f"target {target} has no non-gallery sequence at view {sample.groups['view']}")
        same = [s for s in mine if s.condseq == sample.inputs["condseq"]]
        pick = (same or mine)[0]
        return load_sequence(pick.source, pick.layout)


class BatchedProtection(Protection):
    """Plug-in base of model-based protections (diffusion, GANs): see the module docstring."""

    batch_size: ClassVar[int] = 8

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options: Any) -> Solver:
        solver = super().create(ctx, task, **options)
        solver.load_model()
        return solver

    def load_model(self) -> None:
        """Load the weights once (override)."""

    @abc.abstractmethod
    def protect_batch(self, seqs: list[np.ndarray], samples: list[Sample], targets: list[str],
                      rngs: list[np.random.Generator]) -> list[Any]:
        """Protected sequences of a batch of probes (one model call for all of them)."""

    def protect(self, seq, sample, target, rng):
        return self.protect_batch([seq], [sample], [target], [rng])[0]

    async def solve_batch(self, samples: Sequence[Sample]) -> list[JSON | SolverOutput]:
        out: list[JSON | SolverOutput | None] = [None] * len(samples)
        todo = []
        for i, s in enumerate(samples):
            if s.groups.get("role") == "gallery":
                out[i] = {"protected": False}
            else:
                todo.append((i, s, *self._prepare(s)))
        if todo:
            results = self.protect_batch([t[2] for t in todo], [t[1] for t in todo], [t[3] for t in todo],
                                         [t[4] for t in todo])
            if len(results) != len(todo):
                raise HarnessError(f"{self.name}.protect_batch returned {len(results)} sequences for {len(todo)}")
            for (i, s, _, target, _), res in zip(todo, results, strict=True):
                out[i] = self._output(s, res, target)
        return out  # type: ignore[return-value]


@register_solver("none", tasks=TASKS, kind="transform", description="no protection (the recogniser's baseline)")
class NoProtection(Protection):
    """The probe unchanged."""

    def protect(self, seq, sample, target, rng):
        return seq


class MorphOptions(SeededOptions):
    op: Literal["dilate", "erode", "open", "close"] = Field("dilate", description="morphological operation")
    k: int = Field(5, ge=1, le=31, description="square structuring element size")


@register_solver("morph", tasks=TASKS, kind="transform", description="morphological dilate/erode/open/close")
class MorphProtection(Protection):
    """A binary morphological operation on every frame."""

    Options = MorphOptions

    def protect(self, seq, sample, target, rng):
        import cv2

        ops = {"dilate": cv2.MORPH_DILATE, "erode": cv2.MORPH_ERODE, "open": cv2.MORPH_OPEN,
               "close": cv2.MORPH_CLOSE}
        kernel = np.ones((self.opts.k, self.opts.k), np.uint8)
        return np.stack([cv2.morphologyEx(f, ops[self.opts.op], kernel) for f in seq])


class BlurOptions(SeededOptions):
    sigma: float = Field(2.0, gt=0, le=20, description="Gaussian blur sigma (pixels)")
    threshold: int = Field(128, ge=1, le=254, description="re-binarisation threshold after the blur")


@register_solver("blur", tasks=TASKS, kind="transform", description="Gaussian blur, then re-threshold to binary")
class BlurProtection(Protection):
    """Gaussian blur of each frame, re-binarised at `threshold`."""

    Options = BlurOptions

    def protect(self, seq, sample, target, rng):
        import cv2

        return np.stack([np.where(cv2.GaussianBlur(f, (0, 0), self.opts.sigma) >= self.opts.threshold, 255, 0)
                         for f in seq])


class DropOptions(SeededOptions):
    drop: float = Field(0.5, ge=0, lt=1, description="share of frames dropped (seeded; order kept)")


@register_solver("frame-drop", tasks=TASKS, kind="transform", description="drop a seeded share of the frames")
class FrameDropProtection(Protection):
    """Drops round(drop * n) frames chosen by the seeded generator; at least one frame stays."""

    version = "2"  # 2: records frame_index
    Options = DropOptions

    def protect(self, seq, sample, target, rng):
        n_keep = max(1, len(seq) - int(round(self.opts.drop * len(seq))))
        keep = np.sort(rng.choice(len(seq), n_keep, replace=False))
        return seq[keep], keep


@register_solver("shuffle", tasks=TASKS, kind="transform", description="shuffle the frame order (seeded)")
class ShuffleProtection(Protection):
    """A seeded permutation of the frames (a GEI is order-free: the recogniser's blind spot)."""

    version = "2"  # 2: records frame_index

    def protect(self, seq, sample, target, rng):
        order = rng.permutation(len(seq))
        return seq[order], order


@register_solver("target-swap", tasks=TASKS, kind="transform",
                 description="probe replaced by the target's own sequence (impersonation upper bound)")
class TargetSwapProtection(Protection):
    """The probe becomes the target subject's recording of the same condition-sequence and view (else
    another non-gallery recording at that view): a perfect impersonator, the upper bound."""

    def protect(self, seq, sample, target, rng):
        return self.target_sequence(sample, target)


_INDEX: dict[str, list[Seq]] = {}
_SCOLIOSIS_INDEX: dict[str, list[Any]] = {}


def _scoliosis_index(root: str) -> list[Any]:
    if root not in _SCOLIOSIS_INDEX:
        from pathlib import Path

        from tasks.gait_deid import scoliosis

        _SCOLIOSIS_INDEX[root] = scoliosis.scan(Path(root))
    return _SCOLIOSIS_INDEX[root]


def _index(root: str) -> list[Seq]:
    if root not in _INDEX:
        from pathlib import Path

        _INDEX[root] = scan(Path(root))
    return _INDEX[root]
