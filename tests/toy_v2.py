"""Toy components for the core v2 tests: in-flight counting, per-fold fitting, artifacts, dev splits,
a sequential (domain-incremental) task and a task whose scorer asks a model on its own endpoint."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import numpy as np
import toy_task
from pydantic import Field

from harness.core import Fold, Metric, RunContext, Sample, ScoreContext, Solver, SolverOptions, SolverOutput, Task
from harness.metrics import accuracy
from harness.registry import register_solver, register_task

IN_FLIGHT = {"now": 0, "max": 0}


class DelayOptions(SolverOptions):
    delay: float = Field(0.05, description="seconds per sample")


@register_solver("inflight", tasks=("toy", "toydev"))
class InFlightSolver(Solver):
    """Right parity after `delay`; counts how many samples are in flight at once (all folds)."""

    Options = DelayOptions

    async def solve(self, sample):
        IN_FLIGHT["now"] += 1
        IN_FLIGHT["max"] = max(IN_FLIGHT["max"], IN_FLIGHT["now"])
        try:
            await asyncio.sleep(self.opts.delay)
        finally:
            IN_FLIGHT["now"] -= 1
        return sample.inputs["x"] % 2 == 0


@register_solver("train-ids", tasks=("toy",))
class TrainIdsSolver(Solver):
    """Predicts whether the sample was in the train part it was fitted on (never, if folds are kept apart)."""

    def __init__(self, **options):
        super().__init__(**options)
        self.train_ids: set[str] = set()

    def fit(self, train):
        self.train_ids = {s.id for s in train}

    async def solve(self, sample):
        await asyncio.sleep(0.01)
        return sample.id in self.train_ids


@register_solver("artifact", tasks=("toy",))
class ArtifactSolver(Solver):
    """Writes an 8x8 image per sample through the run's artifact store and predicts the parity."""

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options) -> Solver:
        solver = cls(**options)
        solver.store = ctx.artifacts
        return solver

    async def solve(self, sample):
        img = np.full((8, 8, 3), sample.inputs["x"] % 256, dtype=np.uint8)
        ref = self.store.put_image(img)
        return SolverOutput(sample.inputs["x"] % 2 == 0, {}, {"image": ref})


def _acc(records):
    return accuracy([r.target for r in records], [r.prediction for r in records])


@register_task
class ToyDevTask(toy_task.ToyTask):
    """The toy items with the first 10 as a dev split solved beside the test split."""

    name = "toydev"
    protocols = {"all": "test = items 10.., dev = items 0..9"}

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        (fold,) = super().folds(data_dir, "all")
        return [Fold("all", fold.test[10:], splits={"dev": fold.test[:10]})]

    def metrics(self, protocol):
        return [Metric("accuracy", _acc), Metric("dev_accuracy", _acc, splits=("dev",))]


@register_solver("echo", tasks=("toydev",))
class DevEchoSolver(toy_task.EchoSolver):
    """Right parity."""


# ---- sequential: domains A, B, C of parity-like labels; a solver that forgets -----------------------

def write_domains(folder: Path, n: int = 12) -> Path:
    """Domain d labels x as (x + offset_d) % 2 == 0, offsets A=0, B=1, C=0: a solver that only knows the
    last domain's offset gets the others right or wrong as a hand-computable pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    items = [{"id": f"{d}{i}", "x": i, "domain": d, "split": "train" if i < n // 2 else "test"}
             for d in "ABC" for i in range(n)]
    (folder / "items.json").write_text(json.dumps(items))
    return folder


OFFSETS = {"A": 0, "B": 1, "C": 0}


@register_task
class ToySeqTask(Task):
    name = "toyseq"
    description = "domain-incremental toy: steps A -> B -> C"
    protocols = {"il": "three steps, test on every seen domain"}
    default_protocol = "il"
    default_solver = "last-offset"
    data_folder = "toyseq"

    def sequential(self, protocol: str) -> bool:
        return True

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        items = json.loads((data_dir / "items.json").read_text())
        by = {d: ([], []) for d in "ABC"}
        for it in items:
            s = Sample(it["id"], {"x": it["x"], "domain": it["domain"]}, (it["x"] + OFFSETS[it["domain"]]) % 2 == 0,
                       {"domain": it["domain"]})
            by[it["domain"]][0 if it["split"] == "train" else 1].append(s)
        folds, seen = [], []
        for d in "ABC":
            seen.extend(by[d][1])
            folds.append(Fold(f"step-{d}", list(seen), by[d][0]))
        return folds

    def score(self, sample, prediction):
        return {"correct": float(prediction == sample.target)}

    def metrics(self, protocol):
        return [Metric("accuracy", _acc)]


FIT_LOG: list[str] = []


@register_solver("last-offset", tasks=("toyseq",))
class LastOffsetSolver(Solver):
    """Learns the parity offset of the last domain it was fitted on (catastrophic forgetting)."""

    def __init__(self, **options):
        super().__init__(**options)
        self.offset = 0

    def fit(self, train):
        FIT_LOG.append(train[0].groups["domain"])
        votes = Counter((s.inputs["x"] % 2 == 0) != s.target for s in train)
        self.offset = 1 if votes[True] > votes[False] else 0

    async def solve(self, sample):
        return (sample.inputs["x"] + self.offset) % 2 == 0


# ---- a scorer with a model role ------------------------------------------------------------------

@register_task
class ToyJudgedTask(toy_task.ToyTask):
    """Toy items scored by asking the `judge` role's endpoint whether the answer is right."""

    name = "toyjudged"
    roles = {"judge": "fake-model"}

    async def ascore(self, sample: Sample, prediction, ctx: ScoreContext):
        from harness.models.base import ChatRequest, Message

        judge = ctx.roles["judge"]

        def make():
            from harness.models import make_backend

            return make_backend(judge.model, base_url=judge.base_url, api_key=None, cache_dir=None,
                                use_cache=False, concurrency=4, timeout_s=10)

        backend = ctx.resource(f"judge:{judge}", make)
        answer = await backend.chat(ChatRequest((Message.text("user", f"is {prediction} right for {sample.id}?"),)))
        return {"correct": float(prediction == sample.target), "judge_said": answer.text}


@register_solver("echo", tasks=("toyjudged",))
class JudgedEchoSolver(toy_task.EchoSolver):
    """Right parity."""


@register_solver("fit-pid", tasks=("toy",))
class FitPidSolver(Solver):
    """Reports which process fitted it and which solves: a Ray actor must get the driver's fitted state."""

    resources = {"num_cpus": 1}

    def __init__(self, **options):
        super().__init__(**options)
        self.fit_pid = None
        self.n_train = 0

    def fit(self, train):
        import os

        self.fit_pid, self.n_train = os.getpid(), len(train)

    async def solve(self, sample):
        import os

        return {"fit_pid": self.fit_pid, "n_train": self.n_train, "solve_pid": os.getpid()}


@register_solver("batch-some-fail", tasks=("toy",))
class BatchSomeFailSolver(Solver):
    """A batched solver that puts an exception in the slot of a sample it could not read (s3)."""

    batch_size = 4

    async def solve(self, sample):
        return (await self.solve_batch([sample]))[0]

    async def solve_batch(self, samples):
        from harness.core import DataError

        return [DataError(f"{s.id}.png: unreadable") if s.id == "s3" else s.inputs["x"] % 2 == 0 for s in samples]
