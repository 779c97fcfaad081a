"""Solvers of `micro_au`: each predicts {"AU<n>": 0/1} over the dataset's AU set.

- `majority`: per AU, the more frequent value in the train fold (usually 0: F1 0, the floor); for `mer3`
  the most frequent class.
- `all-positive`: every AU present; its F1 per AU is 2p/(1+p) for prevalence p (the reference line).
- `flow-svm`: Farneback flow onset->apex, mean magnitude/dx/dy over a grid of ROIs, one linear SVM per AU.
- `lbptop-svm`: LBP-TOP of `n_frames` frames sampled uniformly from onset to apex, one linear SVM per AU.
- `clip`: open_clip features of the onset and apex frames ([apex, apex - onset]), one logistic head per AU.
An AU with a single value in the train fold is predicted as that value. For `mer3` the feature solvers fit
one multi-class head over negative / positive / surprise and predict {"emotion3": class}. Features are computed once per
clip and run (a LOSO run refits on every fold; the cache is keyed by the feature settings and the files).
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from harness.core import JSON, HarnessError, Sample, Solver, ThreadedBatchSolver
from harness.media import read_image
from harness.options import SolverOptions
from harness.registry import register_solver

TASKS = ("micro_au",)
_FEATURES: dict[tuple, np.ndarray] = {}  # (feature settings, sample id, frame paths) -> vector
_FEATURES_LOCK = threading.Lock()


def _au_keys(sample: Sample) -> list[str]:
    return list(sample.inputs["au_keys"])


def _labelled(train: Sequence[Sample]) -> list[Sample]:
    return [s for s in train if isinstance(s.target, dict) and ("aus" in s.target or "emotion3" in s.target)]


def _is_mer(samples: Sequence[Sample]) -> bool:
    """Whether the samples are 3-class emotion clips (protocol mer3) rather than AU clips."""
    return bool(samples) and "emotion3" in samples[0].target


def read_frame(path: str) -> np.ndarray:
    """An RGB uint8 frame; DataError naming the file when missing or unreadable."""
    return read_image(path, what="frame")


class NoOptions(SolverOptions):
    pass


@register_solver("majority", tasks=TASKS, description="per AU, the more frequent train value (floor)")
class MajoritySolver(Solver):
    """Per AU the more frequent value of the train fold (ties: absent)."""

    Options = NoOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.values: dict[str, int] | None = None

    def fit(self, train: Sequence[Sample]) -> None:
        labelled = _labelled(train)
        if not labelled:
            raise HarnessError("majority needs labelled train clips")
        if _is_mer(labelled):
            from collections import Counter

            counts = Counter(s.target["emotion3"] for s in labelled)
            self.values = {"emotion3": max(sorted(counts), key=lambda c: counts[c])}
            return
        keys = list(labelled[0].target["aus"])
        self.values = {k: int(2 * sum(s.target["aus"][k] for s in labelled) > len(labelled)) for k in keys}

    async def solve(self, sample: Sample) -> JSON:
        if self.values is None:
            raise HarnessError("majority was not fitted (no train fold)")
        return dict(self.values)


@register_solver("all-positive", tasks=TASKS, description="every AU present (F1 = 2p/(1+p) per AU)")
class AllPositiveSolver(Solver):
    """Predicts every AU of the set as present: the F1 reference of a detector that always fires."""

    Options = NoOptions

    async def solve(self, sample: Sample) -> JSON:
        if _is_mer([sample]):
            raise HarnessError("all-positive is the AU-detection reference; it has no meaning for mer3")
        return {k: 1 for k in _au_keys(sample)}


class _FeatureSolver(ThreadedBatchSolver):
    """Per-AU binary classifiers on a clip feature vector; subclasses define `features`."""

    batch_size: ClassVar[int] = 16

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.heads: dict[str, Any] = {}
        self.keys: list[str] = []

    def feature_key(self) -> tuple:
        return (self.name, self.version, tuple(sorted(self.options.items())))

    @abc.abstractmethod
    def compute_features(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        """One feature vector per sample (raise for a batch that cannot be read)."""

    def features(self, samples: Sequence[Sample]) -> list[np.ndarray | Exception]:
        """One vector per sample (cached per run), or the exception that sample raised."""
        base = self.feature_key()
        keys = [(base, s.id, s.inputs.get("onset"), s.inputs.get("apex")) for s in samples]
        with _FEATURES_LOCK:
            out: list[Any] = [_FEATURES.get(k) for k in keys]
        todo = [i for i, v in enumerate(out) if v is None]
        if todo:
            try:  # the whole batch at once (one forward pass for model features) ...
                for i, f in zip(todo, self.compute_features([samples[i] for i in todo]), strict=True):
                    out[i] = f
            except Exception:  # ... else clip by clip: a bad clip is that sample's error only
                for i in todo:
                    try:
                        out[i] = self.compute_features([samples[i]])[0]
                    except Exception as exc:
                        out[i] = exc
            with _FEATURES_LOCK:
                for i in todo:
                    if not isinstance(out[i], Exception):
                        _FEATURES[keys[i]] = out[i]
        return out

    def make_head(self) -> Any:
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import LinearSVC

        return make_pipeline(StandardScaler(), LinearSVC(C=self.opts.C, class_weight="balanced", max_iter=5000))

    def fit(self, train: Sequence[Sample]) -> None:
        labelled = _labelled(train)
        feats = self.features(labelled)
        ok = [(s, f) for s, f in zip(labelled, feats, strict=True) if not isinstance(f, Exception)]
        if not ok:
            raise HarnessError(f"{self.name}: no train clip could be read")
        x = np.stack([f for _, f in ok])
        self.heads = {}
        if _is_mer(labelled):  # one multi-class head over negative / positive / surprise
            y = np.array([s.target["emotion3"] for s, _ in ok])
            self.heads["emotion3"] = str(y[0]) if len(set(y.tolist())) < 2 else self.make_head().fit(x, y)
            return
        self.keys = list(ok[0][0].target["aus"])
        for key in self.keys:
            y = np.array([s.target["aus"][key] for s, _ in ok])
            self.heads[key] = int(y[0]) if len(set(y.tolist())) < 2 else self.make_head().fit(x, y)

    def solve_batch_sync(self, samples: Sequence[Sample]) -> list[Any]:
        if not self.heads:
            raise HarnessError(f"{self.name} was not fitted (no train fold)")
        feats = self.features(samples)
        out: list[Any] = []
        for f in feats:
            if isinstance(f, Exception):
                out.append(f)
                continue
            if "emotion3" in self.heads:
                h = self.heads["emotion3"]
                out.append({"emotion3": h if isinstance(h, str) else str(h.predict(f[None])[0])})
                continue
            out.append({k: (h if isinstance(h, int) else int(h.predict(f[None])[0])) for k, h in self.heads.items()})
        return out



class FlowOptions(SolverOptions):
    grid: int = Field(6, ge=1, le=16, description="ROI grid (grid x grid cells over the face)")
    size: int = Field(128, ge=32, le=512, description="frames are resized to size x size before the flow")
    C: float = Field(1.0, gt=0, description="linear SVM C")


@register_solver("flow-svm", tasks=TASKS, description="Farneback flow onset->apex, ROI magnitudes, linear SVM per AU")
class FlowSvmSolver(_FeatureSolver):
    """Onset->apex optical flow pooled over a grid of face ROIs, one balanced linear SVM per AU."""

    Options = FlowOptions

    def compute_features(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        from vision_models.flow import roi_flow_features

        return [roi_flow_features(read_frame(s.inputs["onset"]), read_frame(s.inputs["apex"]),
                                  self.opts.grid, self.opts.size) for s in samples]


class LbpTopOptions(SolverOptions):
    n_frames: int = Field(8, ge=3, le=64, description="frames sampled uniformly from onset to apex")
    grid: int = Field(4, ge=1, le=8, description="blocks per side of each plane")
    C: float = Field(1.0, gt=0, description="linear SVM C")


def clip_frames(sample: Sample, n: int) -> list[str]:
    """Paths of `n` frames uniformly spaced from onset to apex (inclusive; repeats for short clips)."""
    onset, apex = int(sample.inputs["onset_frame"]), int(sample.inputs["apex_frame"])
    numbers = np.round(np.linspace(onset, max(onset, apex), n)).astype(int)
    return [sample.inputs["frame_pattern"].format(n=int(k)) for k in numbers]


@register_solver("lbptop-svm", tasks=TASKS, description="LBP-TOP of the onset->apex clip, linear SVM per AU")
class LbpTopSvmSolver(_FeatureSolver):
    """LBP-TOP (uniform LBP on XY, XT, YT planes) of frames sampled from onset to apex, linear SVM per AU."""

    Options = LbpTopOptions

    def compute_features(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        import cv2

        from vision_models.lbp import lbp_top

        out = []
        for s in samples:
            frames = [cv2.cvtColor(read_frame(p), cv2.COLOR_RGB2GRAY) for p in clip_frames(s, self.opts.n_frames)]
            out.append(lbp_top(frames, grid=self.opts.grid))
        return out


class ClipAuOptions(SolverOptions):
    model: str = Field("ViT-B-16", description="open_clip architecture (tiny-random-clip: test model)")
    pretrained: str = Field("openai", description="open_clip weights tag, checkpoint path, or none (random)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the model runs")
    C: float = Field(1.0, gt=0, description="inverse L2 strength of each AU's logistic head")


@register_solver("clip", tasks=TASKS, kind="vision",
                 description="open_clip features of onset and apex frames, logistic head per AU")
class ClipAuSolver(_FeatureSolver):
    """[apex, apex - onset] open_clip image features, one balanced logistic regression per AU."""

    Options = ClipAuOptions
    batch_size: ClassVar[int] = 32

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._clip: Any = None
        self._lock = threading.Lock()

    def model_identity(self) -> dict[str, JSON]:
        from vision_models.clip import weights_identity

        return {"model": self.opts.model, "weights": weights_identity(self.opts.pretrained)}

    def feature_key(self) -> tuple:
        return (*super().feature_key(), str(self.model_identity()))

    def make_head(self) -> Any:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.opts.C, class_weight="balanced", max_iter=2000)

    def features(self, samples: Sequence[Sample]) -> list[np.ndarray | Exception]:
        """Batched: every readable clip's two frames go through the model together."""
        with self._lock:
            if self._clip is None:
                from vision_models.clip import ClipModel

                self._clip = ClipModel.shared(self.opts.model, self.opts.pretrained, self.opts.device)
        return super().features(samples)

    def compute_features(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        frames = [read_frame(s.inputs[k]) for s in samples for k in ("onset", "apex")]
        f = self._clip.encode_images(frames).reshape(len(samples), 2, -1)
        return list(np.concatenate([f[:, 1], f[:, 1] - f[:, 0]], axis=1))
