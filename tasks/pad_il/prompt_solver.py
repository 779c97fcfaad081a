"""`clip-prompt`: a CoOp-style prompt learner on the user's CLIP weights, rehearsal-free in `il`.

Why: SVLP-IL's family of solvers adapts CLIP to PAD by learning prompts, not by fine-tuning the encoders;
this is the plain baseline of that family (`vision_models.clip.coop.PromptLearner`): learned context
vectors before the class names "spoof face" (class 0 = attack) and "live face" (class 1), trained with
cross-entropy on the frame features of each step's train videos. Both encoders stay frozen and frame
features are computed once per video (the `clip` solver's cache). In a sequential protocol the context is
fine-tuned step by step from where the previous step left it, on the new domain's frames only (no stored
samples). Frame score = logit(live) - logit(spoof); the video score is the mean over its frames.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from harness.core import HarnessError, RunContext, Sample, Solver, Task
from harness.registry import register_solver
from tasks.pad_il.solvers import TASKS, ClipBackboneOptions, ClipPadSolver

CLASSNAMES = ("spoof face", "live face")  # index = label (0 attack, 1 live)


class ClipPromptOptions(ClipBackboneOptions):
    ctx_init: str = Field("a photo of a", description="words whose embeddings start the context (CoOp); empty: "
                          "n_ctx random vectors")
    n_ctx: int = Field(4, ge=1, le=32, description="context length when ctx_init is empty")
    epochs: int = Field(10, ge=1, le=500, description="passes over each step's train frames")
    lr: float = Field(0.002, gt=0, description="SGD learning rate (momentum 0.9, cosine schedule per step)")
    batch: int = Field(32, ge=1, le=4096, description="frames per SGD step")
    balanced: bool = Field(True, description="class-balanced cross-entropy (weights n / (2 n_c) per step)")
    seed: int = Field(0, description="context init and shuffling seed (filled from --seed)")


@register_solver("clip-prompt", tasks=TASKS, kind="vision",
                 description="CoOp prompt learner (learned context + 'live face'/'spoof face') on frozen CLIP")
class ClipPromptSolver(ClipPadSolver):
    """Learned context vectors on the user's CLIP weights; fine-tuned step by step, no rehearsal."""

    Options = ClipPromptOptions
    batch_size: ClassVar[int] = 16

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options: Any) -> Solver:
        return cls(**{"seed": ctx.seed, **options})  # --seed unless -S seed= is given

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.learner: Any = None
        self.text: np.ndarray | None = None
        self.history: list[list[float]] = []
        self._fit_lock = threading.Lock()

    def prompt_digest(self) -> str | None:
        o = self.opts
        return hashlib.sha256(json.dumps([CLASSNAMES, o.ctx_init, o.n_ctx]).encode()).hexdigest()[:16]

    def _learner(self) -> Any:
        if self.learner is None:
            from vision_models.clip.coop import PromptLearner

            try:
                self.learner = PromptLearner(self.clip, CLASSNAMES, ctx_init=self.opts.ctx_init,
                                             n_ctx=self.opts.n_ctx, seed=self.opts.seed)
            except ValueError as exc:
                raise HarnessError(f"clip-prompt: {exc}") from None
        return self.learner

    def fit(self, train: Sequence[Sample]) -> None:
        x, y = self.train_matrix(train)
        counts = np.bincount(y, minlength=2).astype(float)
        if self.learner is None and not counts.all():
            raise HarnessError("clip-prompt: the first training step needs live and attack videos")
        weights = len(y) / (2 * np.maximum(counts, 1)) if self.opts.balanced and counts.all() else None
        with self._fit_lock:
            learner = self._learner()
            self.history.append(learner.train(x, y, epochs=self.opts.epochs, lr=self.opts.lr,
                                              batch_size=self.opts.batch, class_weights=weights))
            self.text = learner.text_features()

    def frame_scores(self, x: np.ndarray) -> np.ndarray:
        if self.text is None:
            raise HarnessError("clip-prompt was not fitted (no train videos)")
        logits = self.clip.logit_scale * x @ self.text.T
        return logits[:, 1] - logits[:, 0]
