"""Solvers of `emocap`: a majority floor, CLIP zero-shot (Exp-CLIP's scoring) and a CLIP linear probe.

Predictions are class names of the protocol's class list (given to every sample as `inputs["classes"]`).
The CLIP solvers run `batch_size` faces per forward pass through `vision_models.clip.ClipModel` (off the
event loop); a face that cannot be read is that sample's error, the rest of its batch is still solved.
"""

from __future__ import annotations

import abc
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from harness.core import JSON, HarnessError, Sample, Solver, ThreadedBatchSolver
from harness.options import SolverOptions
from harness.registry import register_solver
from tasks.emocap.dynamic import load_clip
from tasks.emocap.loaders import load_face
from tasks.emocap.prompts import class_prompts, prompts_digest

TASKS = ("emocap",)


def _classes(sample: Sample) -> tuple[str, ...]:
    return tuple(sample.inputs["classes"])


def _labelled(train: Sequence[Sample]) -> list[Sample]:
    """Train samples with a valid label (a label error keeps the sample out of training)."""
    return [s for s in train if isinstance(s.target, str)]


class MajorityOptions(SolverOptions):
    pass


@register_solver("majority", tasks=TASKS, description="most frequent class of the train split (floor)")
class MajoritySolver(Solver):
    """Most frequent class of the train split; ties go to the earlier class of the protocol's list."""

    Options = MajorityOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.label: str | None = None

    def fit(self, train: Sequence[Sample]) -> None:
        labelled = _labelled(train)
        if not labelled:
            raise HarnessError("majority needs labelled train samples (this protocol's train split is empty)")
        counts = Counter(s.target for s in labelled)
        order = _classes(labelled[0])
        self.label = max(counts, key=lambda c: (counts[c], -order.index(c) if c in order else -len(order)))

    async def solve(self, sample: Sample) -> JSON:
        if self.label is None:
            raise HarnessError("majority was not fitted (no train split)")
        return {"label": self.label}


class ClipOptions(SolverOptions):
    model: str = Field("ViT-B-16", description="open_clip architecture (tiny-random-clip: test model)")
    pretrained: str = Field("openai", description="open_clip weights tag, checkpoint path, or none (random)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the model runs")
    precision: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="GPU precision (CPU is always fp32)")


class ZeroShotOptions(ClipOptions):
    prompts: Literal["ensemble", "ensemble10", "single", "expression", "name"] = Field(
        "ensemble", description="Exp-CLIP prompt type: ensemble (five, type 4), ensemble10 (type 5), single ('a photo "
        "of a face with an expression of <name>.', type 3), expression ('an expression of <name>.', type 2), "
        "name ('<name>.', type 1)")


class _ClipSolver(ThreadedBatchSolver):
    """Shared loading and batched face encoding of the open_clip solvers."""

    batch_size: ClassVar[int] = 64
    version: ClassVar[str] = "1"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._clip: Any = None
        self._lock = threading.Lock()

    @property
    def clip(self) -> Any:
        with self._lock:
            if self._clip is None:
                from vision_models.clip import ClipModel

                o = self.opts
                try:
                    self._clip = ClipModel.shared(o.model, o.pretrained, o.device, o.precision)
                except ValueError as exc:
                    raise HarnessError(str(exc)) from None
            return self._clip

    def model_identity(self) -> dict[str, JSON]:
        from vision_models.clip import weights_identity

        return {"model": self.opts.model, "weights": weights_identity(self.opts.pretrained)}

    def encode(self, samples: Sequence[Sample]) -> tuple[np.ndarray, list[Exception | None]]:
        """Features of the readable faces or clips (in order) and, per sample, its load error or None.
        A clip (dynamic sets) is the mean of its 16 frames' features, L2-normalised (Exp-CLIP)."""
        items: list[Any] = []
        errors: list[Exception | None] = []
        for s in samples:
            try:
                items.append(load_clip(s) if "frames" in s.inputs else load_face(s))
                errors.append(None)
            except Exception as exc:  # one bad file is that sample's error
                errors.append(exc)
        if items and isinstance(items[0], list):
            return self.clip.encode_clips(items, batch_size=self.batch_size), errors
        return self.clip.encode_images(items, batch_size=self.batch_size), errors

    @abc.abstractmethod
    def predict(self, feats: np.ndarray, samples: Sequence[Sample]) -> list[JSON]:
        """Predictions for the samples whose features were computed."""

    def solve_batch_sync(self, samples: Sequence[Sample]) -> list[Any]:
        feats, errors = self.encode(samples)
        ok = [s for s, e in zip(samples, errors, strict=True) if e is None]
        preds = iter(self.predict(feats, ok) if ok else [])
        return [next(preds) if e is None else e for e in errors]



@register_solver("clip-zeroshot", tasks=TASKS, kind="vision",
                 description="open_clip zero-shot: scale * image . text^T averaged over a prompt ensemble")
class ClipZeroShotSolver(_ClipSolver):
    """Exp-CLIP `test.py` scoring: per class, the mean over its prompts of `logit_scale * image . text^T`
    (each prompt's feature normalised on its own; logits averaged, not embeddings)."""

    Options = ZeroShotOptions
    version: ClassVar[str] = "2"  # 2: Exp-CLIP's exact prompts (sadness's own ensemble), ensemble10/expression

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._text: dict[tuple[str, ...], np.ndarray] = {}

    def prompt_digest(self) -> str | None:
        return prompts_digest(self.opts.prompts)

    def text_features(self, classes: tuple[str, ...]) -> np.ndarray:
        """[C, P, D] unit-norm features of every class's prompts."""
        if classes not in self._text:
            texts = class_prompts(classes, self.opts.prompts)
            flat = self.clip.encode_texts([t for per_class in texts for t in per_class])
            self._text[classes] = flat.reshape(len(classes), len(texts[0]), -1)
        return self._text[classes]

    def logits(self, feats: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
        text = self.text_features(classes)
        per_prompt = self.clip.logit_scale * np.einsum("nd,cpd->ncp", feats, text)
        return per_prompt.mean(axis=2)

    def predict(self, feats: np.ndarray, samples: Sequence[Sample]) -> list[JSON]:
        classes = _classes(samples[0])
        logits = self.logits(feats, classes)
        return [{"label": classes[int(i)], "logits": [round(float(v), 5) for v in row]}
                for i, row in zip(logits.argmax(axis=1), logits, strict=True)]


class ProbeOptions(ClipOptions):
    C: float = Field(0.316, gt=0, description="inverse L2 strength of the logistic regression")
    max_iter: int = Field(1000, ge=10, description="L-BFGS iterations")


@register_solver("linear-probe", tasks=TASKS, kind="vision",
                 description="open_clip image features + logistic regression fitted on the train split")
class LinearProbeSolver(_ClipSolver):
    """Logistic regression on frozen CLIP features of the train split (faces that fail to load are skipped)."""

    Options = ProbeOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.head: Any = None
        self.n_train = 0

    def fit(self, train: Sequence[Sample]) -> None:
        from sklearn.linear_model import LogisticRegression

        labelled = _labelled(train)
        feats, errors = self.encode(labelled)
        y = [s.target for s, e in zip(labelled, errors, strict=True) if e is None]
        if len(set(y)) < 2:
            raise HarnessError(f"linear-probe needs at least two classes in the train split, got {sorted(set(y))}")
        self.head = LogisticRegression(C=self.opts.C, max_iter=self.opts.max_iter).fit(feats, y)
        self.n_train = len(y)

    def predict(self, feats: np.ndarray, samples: Sequence[Sample]) -> list[JSON]:
        if self.head is None:
            raise HarnessError("linear-probe was not fitted (no train split)")
        return [{"label": str(p)} for p in self.head.predict(feats)]
