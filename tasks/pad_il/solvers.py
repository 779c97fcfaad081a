"""Solvers of `pad_il`: every one scores frames (higher = live) and averages them per video.

Frames: `n_frames` frames per video at the middle of `n_frames` equal segments (`harness.media.sample_frames`),
described by colour-space LBP (HSV + YCbCr uniform-LBP histograms, `vision_models.lbp.colour_lbp`).
- `majority`: the live share of the frames seen in training, as a constant score (HTER 50 %).
- `lbp-svm`: a linear SVM trained by SGD (hinge loss, class-balanced sample weights); in a sequential
  protocol each step continues from the previous weights on the new domain only (fine-tuning, no rehearsal).
- `joint`: the upper bound: refits a linear SVM on every train video seen so far (stores them all).
- `ncm`: nearest class mean; running means of live and attack features over all steps (no stored samples);
  score = distance to the attack mean - distance to the live mean.
- `clip`: open_clip frame features with the user's weights (`-S pretrained=`): live-vs-spoof text prompts
  (`head=zeroshot`) or incremental class means (`head=ncm`).
Frame features are computed once per video and settings in a process.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from harness.core import JSON, HarnessError, RunContext, Sample, Solver, Task, ThreadedBatchSolver
from harness.options import SolverOptions
from harness.registry import register_solver

TASKS = ("pad_il",)
_CACHE: dict[tuple, np.ndarray] = {}
_LOCK = threading.Lock()


class FrameOptions(SolverOptions):
    n_frames: int = Field(8, ge=1, le=64, description="frames sampled per video (middles of equal segments)")
    size: int = Field(64, ge=16, le=256, description="frames are resized to size x size")
    grid: int = Field(1, ge=1, le=4, description="LBP blocks per side")


def video_features(sample: Sample, n_frames: int, size: int, grid: int) -> np.ndarray:
    """[frames, dims] colour-LBP features of a video (cached by path, size on disk, mtime and settings)."""
    from harness.media import sample_frames
    from vision_models.lbp import colour_lbp

    path = Path(sample.inputs["video"])
    st = path.stat() if path.exists() else None
    key = (str(path), st.st_size if st else 0, st.st_mtime_ns if st else 0, n_frames, size, grid)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    frames = sample_frames(path, n_frames)
    feats = np.stack([colour_lbp(np.asarray(f.convert("RGB")), grid=grid, size=size) for f in frames])
    with _LOCK:
        _CACHE[key] = feats
    return feats


class _FrameSolver(ThreadedBatchSolver):
    """Frame features in, per-frame scores out, mean per video."""

    Options = FrameOptions
    batch_size: ClassVar[int] = 8

    def feats(self, sample: Sample) -> np.ndarray:
        return video_features(sample, self.opts.n_frames, self.opts.size, self.opts.grid)

    def train_matrix(self, train: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for s in train:
            try:
                f = self.feats(s)
            except Exception:  # an unreadable training video is skipped; test videos error per sample
                continue
            xs.append(f)
            ys.append(np.full(len(f), int(s.target["label"])))
        if not xs:
            raise HarnessError(f"{self.name}: no train video could be read")
        return np.concatenate(xs), np.concatenate(ys)

    @abc.abstractmethod
    def frame_scores(self, x: np.ndarray) -> np.ndarray:
        """Live-ness score of each frame's feature row."""

    def solve_batch_sync(self, samples: Sequence[Sample]) -> list[Any]:
        out: list[Any] = []
        for s in samples:
            try:
                scores = self.frame_scores(self.feats(s))
                out.append({"score": float(np.mean(scores)), "frame_scores": [round(float(v), 6) for v in scores]})
            except Exception as exc:
                out.append(exc)
        return out



@register_solver("majority", tasks=TASKS, description="constant score: live share of the training frames")
class MajoritySolver(_FrameSolver):
    """Every video gets the live share of the frames trained on so far (no information: HTER 50 %)."""

    Options = SolverOptions  # reads no frames: no options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.counts = np.zeros(2)

    def fit(self, train: Sequence[Sample]) -> None:
        labels = [int(s.target["label"]) for s in train]
        self.counts += np.bincount(labels, minlength=2)[:2]

    def live_share(self) -> float:
        if not self.counts.sum():
            raise HarnessError("majority was not fitted (no train videos)")
        return float(self.counts[1] / self.counts.sum())

    def frame_scores(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.live_share())

    def solve_batch_sync(self, samples: Sequence[Sample]) -> list[Any]:
        """The constant needs no frames: no video is decoded."""
        live = self.live_share()
        return [{"score": live, "frame_scores": []} for _ in samples]


class SgdOptions(FrameOptions):
    epochs: int = Field(5, ge=1, le=100, description="SGD passes over each step's frames")
    alpha: float = Field(1e-4, gt=0, description="L2 strength of the SGD linear SVM")
    seed: int = Field(0, description="shuffling seed (filled from --seed)")


def _balanced(y: np.ndarray) -> np.ndarray:
    counts = np.bincount(y, minlength=2).astype(float)
    return np.array([len(y) / (2 * counts[v]) for v in y])


@register_solver("lbp-svm", tasks=TASKS, description="colour LBP + linear SVM (SGD), fine-tuned step by step")
class LbpSvmSolver(_FrameSolver):
    """Colour-space LBP + a linear SVM trained with SGD; sequential steps fine-tune the same weights."""

    Options = SgdOptions

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options: Any) -> Solver:
        return cls(**{"seed": ctx.seed, **options})  # --seed unless -S seed= is given

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        from sklearn.linear_model import SGDClassifier

        self.clf = SGDClassifier(loss="hinge", alpha=self.opts.alpha, random_state=self.opts.seed)
        self.fitted = False
        self.steps = 0

    def fit(self, train: Sequence[Sample]) -> None:
        x, y = self.train_matrix(train)
        if len(set(y.tolist())) < 2 and not self.fitted:
            raise HarnessError("lbp-svm: the first training step needs live and attack videos")
        rng = np.random.default_rng(self.opts.seed + self.steps)
        w = _balanced(y) if len(set(y.tolist())) == 2 else np.ones(len(y))
        for _ in range(self.opts.epochs):
            order = rng.permutation(len(y))
            self.clf.partial_fit(x[order], y[order], classes=np.array([0, 1]), sample_weight=w[order])
        self.fitted, self.steps = True, self.steps + 1

    def frame_scores(self, x: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise HarnessError("lbp-svm was not fitted")
        return self.clf.decision_function(x)


class JointOptions(FrameOptions):
    C: float = Field(1.0, gt=0, description="linear SVM C")


@register_solver("joint", tasks=TASKS, description="upper bound: linear SVM refitted on all train data seen so far")
class JointSolver(_FrameSolver):
    """Keeps every train video seen and refits a balanced linear SVM on all of them (rehearsal upper bound)."""

    Options = JointOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seen: dict[str, Sample] = {}
        self.clf: Any = None

    def fit(self, train: Sequence[Sample]) -> None:
        from sklearn.svm import LinearSVC

        self.seen.update({s.id: s for s in train})
        x, y = self.train_matrix(list(self.seen.values()))
        if len(set(y.tolist())) < 2:
            raise HarnessError("joint needs live and attack videos")
        self.clf = LinearSVC(C=self.opts.C, class_weight="balanced", max_iter=5000).fit(x, y)

    def frame_scores(self, x: np.ndarray) -> np.ndarray:
        if self.clf is None:
            raise HarnessError("joint was not fitted")
        return self.clf.decision_function(x)


@register_solver("ncm", tasks=TASKS, description="nearest class mean of colour-LBP features (running means)")
class NcmSolver(_FrameSolver):
    """Running class means over all steps; score = distance to the attack mean - distance to the live mean."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.sums: dict[int, np.ndarray] = {}
        self.counts = {0: 0, 1: 0}

    def fit(self, train: Sequence[Sample]) -> None:
        x, y = self.train_matrix(train)
        for c in (0, 1):
            xc = x[y == c]
            if len(xc):
                self.sums[c] = self.sums.get(c, np.zeros(x.shape[1])) + xc.sum(axis=0)
                self.counts[c] += len(xc)

    def frame_scores(self, x: np.ndarray) -> np.ndarray:
        if not (self.counts[0] and self.counts[1]):
            raise HarnessError("ncm needs live and attack training frames")
        mu = {c: self.sums[c] / self.counts[c] for c in (0, 1)}
        return np.linalg.norm(x - mu[0], axis=1) - np.linalg.norm(x - mu[1], axis=1)


class ClipBackboneOptions(SolverOptions):
    """The frozen CLIP image side shared by the CLIP solvers (`clip`, `clip-prompt`)."""

    n_frames: int = Field(8, ge=1, le=64, description="frames sampled per video (middles of equal segments)")
    model: str = Field("ViT-B-16", description="open_clip architecture (tiny-random-clip: test model)")
    pretrained: str = Field("openai", description="open_clip weights tag, checkpoint path (e.g. a fine-tuned "
                            "PAD CLIP), or none (random)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the model runs")


class ClipPadOptions(ClipBackboneOptions):
    head: Literal["zeroshot", "ncm"] = Field("zeroshot", description="text prompts (no training) or running "
                                             "class means of image features (rehearsal-free, incremental)")


LIVE_PROMPTS = ("a photo of a real face.", "a photo of a live person's face.")
SPOOF_PROMPTS = ("a photo of a printed photo of a face.", "a photo of a face shown on a screen.",
                 "a photo of a spoof face.")


@register_solver("clip", tasks=TASKS, kind="vision",
                 description="open_clip frame features: live-vs-spoof prompts, or incremental class means")
class ClipPadSolver(_FrameSolver):
    """CLIP features of the sampled frames with the user's weights. `head=zeroshot`: frame score =
    logit_scale * (mean similarity to the live prompts - mean similarity to the spoof prompts);
    `head=ncm`: running means of live and attack features over all steps (no stored samples), frame
    score = cosine to the live mean - cosine to the attack mean."""

    Options = ClipPadOptions
    batch_size: ClassVar[int] = 16

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._clip: Any = None
        self._text: np.ndarray | None = None
        self._lock = threading.RLock()  # the prompt cache takes it around `self.clip`, which takes it too
        self.sums: dict[int, np.ndarray] = {}
        self.counts = {0: 0, 1: 0}

    def prompt_digest(self) -> str | None:
        import hashlib

        return hashlib.sha256(repr((LIVE_PROMPTS, SPOOF_PROMPTS)).encode()).hexdigest()[:16]

    def model_identity(self) -> dict[str, JSON]:
        from vision_models.clip import weights_identity

        return {"model": self.opts.model, "weights": weights_identity(self.opts.pretrained)}

    @property
    def clip(self) -> Any:
        with self._lock:
            if self._clip is None:
                from vision_models.clip import ClipModel

                self._clip = ClipModel.shared(self.opts.model, self.opts.pretrained, self.opts.device)
            return self._clip

    def _key(self, sample: Sample) -> tuple:
        path = Path(sample.inputs["video"])
        st = path.stat() if path.exists() else None
        return ("clip", str(path), st.st_size if st else 0, st.st_mtime_ns if st else 0, self.opts.n_frames,
                str(self.model_identity()))

    def prefetch(self, samples: Sequence[Sample]) -> None:
        """Decode the uncached videos and run all their frames through the model in one batched call."""
        from harness.media import sample_frames

        todo, frames = [], []
        for s in samples:
            key = self._key(s)
            with _LOCK:
                if key in _CACHE:
                    continue
            try:
                frames.append([np.asarray(f.convert("RGB")) for f in sample_frames(Path(s.inputs["video"]),
                                                                                   self.opts.n_frames)])
                todo.append(key)
            except Exception:  # left to `feats`, which raises it as that sample's error
                continue
        if not todo:
            return
        flat = self.clip.encode_images([f for fs in frames for f in fs], batch_size=64)
        bounds = np.cumsum([0, *(len(fs) for fs in frames)])
        with _LOCK:
            for key, a, b in zip(todo, bounds[:-1], bounds[1:], strict=True):
                _CACHE[key] = flat[a:b]

    def feats(self, sample: Sample) -> np.ndarray:
        key = self._key(sample)
        with _LOCK:
            if key in _CACHE:
                return _CACHE[key]
        self.prefetch([sample])
        with _LOCK:
            if key in _CACHE:
                return _CACHE[key]
        from harness.media import sample_frames

        sample_frames(Path(sample.inputs["video"]), self.opts.n_frames)  # raises the decoding error
        raise HarnessError(f"{sample.inputs['video']}: no features")

    def train_matrix(self, train: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
        self.prefetch(train)
        return super().train_matrix(train)

    def solve_batch_sync(self, samples: Sequence[Sample]) -> list[Any]:
        self.prefetch(samples)
        return super().solve_batch_sync(samples)

    def fit(self, train: Sequence[Sample]) -> None:
        if self.opts.head != "ncm":
            return  # zero-shot: nothing to learn
        x, y = self.train_matrix(train)
        for c in (0, 1):
            if (y == c).any():
                self.sums[c] = self.sums.get(c, np.zeros(x.shape[1])) + x[y == c].sum(axis=0)
                self.counts[c] += int((y == c).sum())

    def frame_scores(self, x: np.ndarray) -> np.ndarray:
        if self.opts.head == "zeroshot":
            with self._lock:
                if self._text is None:  # the prompts' features, once per solver
                    self._text = self.clip.encode_texts([*LIVE_PROMPTS, *SPOOF_PROMPTS])
            sims = x @ self._text.T
            live, spoof = sims[:, :len(LIVE_PROMPTS)].mean(axis=1), sims[:, len(LIVE_PROMPTS):].mean(axis=1)
            return self.clip.logit_scale * (live - spoof)
        if not (self.counts[0] and self.counts[1]):
            raise HarnessError("clip head=ncm needs live and attack training frames")
        mu = {c: self.sums[c] / self.counts[c] for c in (0, 1)}
        mu = {c: m / max(np.linalg.norm(m), 1e-12) for c, m in mu.items()}
        return x @ mu[1] - x @ mu[0]
