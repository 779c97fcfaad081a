"""The solver side of the data model: `Solver` (typed `-S` options, identity, fit/solve/solve_batch),
`SeededSolver` (per-sample random streams from `--seed`) and `ThreadedBatchSolver` (CPU-bound batch work
off the event loop), plus the prompt digests that make a solver's prompts part of its cache identity.

Split from harness/core.py to keep each module short; `harness.core` re-exports every name here.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field

from harness.core import JSON, HarnessError, RunContext, Sample, SolverOutput
from harness.options import SolverOptions

if TYPE_CHECKING:
    from harness.core import Task


class Solver(abc.ABC):
    """Maps a sample to a prediction. Subclasses set `name` and implement `solve`.

    `Options` declares the user-settable knobs (`-S key=value`) as a pydantic model: unknown keys
    are refused, values coerced to the declared types. `self.opts` is the validated model,
    `self.options` its canonical JSON dict (defaults filled in). `identity()` (name, `version`,
    options, prompt digest, model and endpoint) keys the result cache: bump `version` when the
    solver's behaviour changes. Solvers with a `batch_size` above one are called through
    `solve_batch` (GPU models); `resources` are what one worker needs (Ray: num_cpus, num_gpus).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    batch_size: ClassVar[int] = 1
    resources: ClassVar[Mapping[str, float]] = {"num_cpus": 1}
    Options: ClassVar[type[SolverOptions]] = SolverOptions

    def __init__(self, **options: Any) -> None:
        self.opts: SolverOptions = self.validate_options(options)
        self.options: dict[str, JSON] = self.opts.model_dump(mode="json")

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> SolverOptions:
        """The typed options, or a HarnessError naming the bad key/value and the valid options."""
        from pydantic import ValidationError

        from harness.options import validation_message

        try:
            return cls.Options.model_validate(dict(options))
        except ValidationError as exc:
            raise HarnessError(validation_message(cls.name or cls.__name__, cls.Options, dict(options), exc)) from None

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options: Any) -> Solver:
        """Build the solver for a run; override to use --model/--base-url/--seed from `ctx`."""
        return cls(**options)

    def prompt_digest(self) -> str | None:
        """A hash of every prompt, template and rubric the solver sends (None: it sends none)."""
        return None

    def model_identity(self) -> dict[str, JSON]:
        """The served model and endpoint(s) of a model solver ({} otherwise): the same model name
        on another base URL is another identity. Default: read from `self.backend` when present."""
        backend = getattr(self, "backend", None)
        if backend is None or not getattr(backend, "model", None):
            return {}
        return {"model": backend.model, "endpoint": getattr(backend, "endpoint", "")}

    def identity(self) -> dict[str, JSON]:
        """What determines this solver's predictions; its hash keys the result cache."""
        return {"solver": self.name, "version": self.version, "options": self.options,
                "prompts": self.prompt_digest(), **self.model_identity()}

    def config(self) -> dict[str, JSON]:
        """Kept for callers of the first API: the same as `identity()`."""
        return self.identity()

    def fit(self, train: Sequence[Sample]) -> None:  # noqa: B027 - optional hook
        """Learn from a fold's train part. Zero-shot solvers ignore it."""

    @abc.abstractmethod
    async def solve(self, sample: Sample) -> JSON | SolverOutput:
        """Predict one sample."""

    async def solve_batch(self, samples: Sequence[Sample]) -> list[JSON | SolverOutput]:
        return [await self.solve(s) for s in samples]

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients, servers, GPU memory."""


def digest_texts(*texts: Any) -> str:
    """A short stable hash of prompt texts/templates/rubrics (strings, or JSON-able structures)."""
    import json

    blob = json.dumps(texts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def source_texts(*objects: Any) -> list[str]:
    """The source code of the functions, classes or modules that build prompts inline (agent graphs
    with f-string prompts): hashing it makes any edit of a prompt a new identity. Falls back to the
    string constants of the compiled code when the source is not shipped."""
    import inspect

    out = []
    for obj in objects:
        try:
            out.append(inspect.getsource(obj))
        except (OSError, TypeError):
            code = getattr(getattr(obj, "__func__", obj), "__code__", None)
            out.append(repr([c for c in getattr(code, "co_consts", ()) if isinstance(c, str)]) or repr(obj))
    return out


class SeededOptions(SolverOptions):
    seed: int = Field(0, description="random seed (filled from --seed)")


class SeededSolver(Solver):
    """Base of random baselines: draws depend only on --seed and the sample id, so the order and
    concurrency of a run never change a prediction. Subclasses with more options declare them in a
    subclass of `SeededOptions` (the `seed` option is filled from --seed unless -S seed= is given)."""

    Options: ClassVar[type[SolverOptions]] = SeededOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seed: int = self.options["seed"]

    @classmethod
    def create(cls, ctx: RunContext, task: Task, **options: Any) -> Solver:
        return cls(**{"seed": ctx.seed, **options})

    def sample_digest(self, sample: Sample) -> bytes:
        return hashlib.sha256(f"{self.seed}:{sample.id}".encode()).digest()

    def rng(self, sample: Sample) -> random.Random:
        return random.Random(int.from_bytes(self.sample_digest(sample)[:8], "big"))


class ThreadedBatchSolver(Solver):
    """Base of CPU/GPU solvers whose work is synchronous (numpy, torch): `solve_batch_sync` runs in a
    worker thread so the event loop keeps serving other samples, and returns one output per sample or
    the exception that sample raised (an unreadable file fails that sample only, named)."""

    @abc.abstractmethod
    def solve_batch_sync(self, samples: Sequence[Sample]) -> list[Any]:
        """Outputs of a batch, with an Exception in the slot of each sample that failed."""

    async def solve_batch(self, samples: Sequence[Sample]) -> list[Any]:
        return await asyncio.to_thread(self.solve_batch_sync, samples)

    async def solve(self, sample: Sample) -> JSON:
        out = (await self.solve_batch([sample]))[0]
        if isinstance(out, BaseException):
            raise out
        return out
