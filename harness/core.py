"""The whole data model of a run: samples flow through a solver, records flow into metrics.

A `Task` turns a data folder into `Fold`s of `Sample`s for a named protocol. A `Solver` maps one
`Sample` (or a batch) to a JSON-serialisable prediction; trained solvers are `fit` on each fold's
train part first. The runner turns each (sample, prediction) into a `Record` with the task's
per-sample scores, and the task's `Metric`s aggregate records into numbers with a bootstrap CI.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from harness.artifacts import ArtifactStore
    from harness.metrics import Classification
    from harness.roles import RoleSpec


from harness.options import SolverOptions

JSON = Any  # anything json.dumps accepts
R = TypeVar("R")

# The id of the sample being solved or scored, set by the runner around each sample's work, so that
# wrappers deep below (model backends writing transcripts) know which sample a call belongs to.
current_sample: contextvars.ContextVar[str | None] = contextvars.ContextVar("harness_current_sample", default=None)


class HarnessError(Exception):
    """An error meant for the user: printed without a traceback."""


class DataError(HarnessError):
    """Missing or malformed data; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Sample:
    """One evaluation item.

    `inputs` holds text fields, media paths (as strings) and metadata; `target` the ground truth;
    `groups` the keys samples share when they are not independent (subject, show, session, view).
    """

    id: str
    inputs: Mapping[str, Any]
    target: JSON = None
    groups: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fold:
    """A named train/test partition of one protocol (a single fold for zero-shot protocols).

    `splits` holds further named sample lists that are solved like `test` but recorded under their
    own name (`Record.split`): `dev` (threshold selection), `gallery`, `probe`. Metrics see only
    the splits they ask for (`Metric.splits`)."""

    name: str
    test: Sequence[Sample]
    train: Sequence[Sample] = ()
    splits: Mapping[str, Sequence[Sample]] = field(default_factory=dict)

    def solved(self) -> list[tuple[str, Sequence[Sample]]]:
        """(split name, samples) of everything the runner solves for this fold, test first."""
        return [("test", self.test), *((name, samples) for name, samples in self.splits.items())]


@dataclass(frozen=True)
class SolverOutput:
    """What a solver may return instead of a bare prediction: the prediction plus diagnostics
    (raw model text, token counts, agent trace) that are kept in samples.jsonl but not scored."""

    prediction: JSON
    info: Mapping[str, JSON] = field(default_factory=dict)
    artifacts: Mapping[str, str] = field(default_factory=dict)  # name -> ArtifactStore ref


@dataclass
class Record:
    """One sample's outcome in a run, as written to samples.jsonl and the result cache."""

    sample_id: str
    fold: str
    target: JSON
    prediction: JSON = None
    scores: dict[str, JSON] = field(default_factory=dict)  # floats, or lists (e.g. per-window values)
    groups: Mapping[str, str] = field(default_factory=dict)
    info: Mapping[str, JSON] = field(default_factory=dict)
    error: str | None = None
    latency_s: float = 0.0
    cached: bool = False
    split: str = "test"
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> ArtifactStore ref

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Metric:
    """An aggregate over records. It sees the successful records of its `splits`: of one fold at a
    time when `per_fold` is true (the reported value is then the mean over folds, as MUStARD's 5-fold
    CV reports), else all pooled. Give exactly one of: `fn` (any function of a record list),
    `mean_of` (the mean of a per-sample score), or `classification` (a count-based classification
    metric of harness.metrics, or a tuple of them whose values are averaged). The last two are
    evaluated vectorised over all bootstrap replicates at once (fast); `fn` once per replicate.

    `resample="samples"`: the CI resamples the test/probe records (other splits, e.g. dev or gallery,
    stay fixed in every replicate); `"none"`: a set-level metric (FID, EER over a gallery) that is not
    bootstrapped, its CI is nan."""

    name: str
    fn: Callable[[Sequence[Record]], float] | None = None
    per_fold: bool = False
    higher_is_better: bool = True
    scale: float = 1.0  # multiply for display only (e.g. 100 for percentages)
    mean_of: str | None = None
    splits: tuple[str, ...] = ("test",)
    resample: str = "samples"  # "samples" | "none"
    classification: Classification | tuple[Classification, ...] | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("fn", "mean_of", "classification") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"metric {self.name}: give exactly one of fn, mean_of, classification (got {given})")
        if self.resample not in ("samples", "none"):
            raise ValueError(f"metric {self.name}: resample must be 'samples' or 'none', not {self.resample!r}")
        if isinstance(self.splits, str):
            object.__setattr__(self, "splits", (self.splits,))

    def compute(self, records: Sequence[Record]) -> float:
        """The value on exactly these records (callers pick the records of `splits`)."""
        if self.mean_of is not None:
            return float(sum(r.scores[self.mean_of] for r in records) / len(records)) if records else float("nan")
        if self.classification is not None:
            specs = self.classification if isinstance(self.classification, tuple) else (self.classification,)
            return float(sum(spec.evaluate(records) for spec in specs) / len(specs))
        assert self.fn is not None
        return float(self.fn(records))


@dataclass(frozen=True)
class RunContext:
    """Everything a solver factory may need from the command line, passed down explicitly."""

    model: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    judges: tuple[str, ...] = ()
    seed: int = 0
    concurrency: int = 8
    cache_dir: Path | None = None
    use_cache: bool = True
    request_timeout_s: float = 120.0
    max_retries: int = 8  # retries of one model request (429/5xx/timeouts), with back-off
    roles: Mapping[str, RoleSpec] = field(default_factory=dict)  # --role / --judge, by role name
    artifacts: ArtifactStore | None = None  # where solvers write files (protected images, BVPs)
    transcripts: Any = None  # harness.transcripts.TranscriptLog of the run, when one is kept

    @property
    def base_urls(self) -> tuple[str, ...]:
        """--base-url may list several replicas, comma-separated."""
        return tuple(u.strip() for u in (self.base_url or "").split(",") if u.strip())


class ScoreContext:
    """What a task's `ascore` may use: model roles, the artifact store, a CPU pool, shared resources.

    `resource(key, factory)` builds a heavy object (a face recogniser, a feature net) once per run and
    shares it between samples; `run_cpu(fn, *args)` runs CPU-heavy scoring off the event loop so
    requests in flight keep going."""

    def __init__(self, roles: Mapping[str, RoleSpec] | None = None, artifacts: ArtifactStore | None = None,
                 seed: int = 0, executor: Any = None, run: RunContext | None = None) -> None:
        self.roles: Mapping[str, RoleSpec] = dict(roles or {})
        # the run's settings for model roles: cache, timeouts, retries, --base-url, transcripts
        # (`harness.grading.judge_panel(sctx)` builds the judges from it)
        self.run = run
        self.artifacts = artifacts
        self.seed = seed
        self._executor = executor
        self._resources: dict[str, Any] = {}
        self._lock = threading.Lock()

    def resource(self, key: str, factory: Callable[[], R]) -> R:
        with self._lock:  # factories may run in worker threads; build each resource once
            if key not in self._resources:
                self._resources[key] = factory()
            return self._resources[key]

    async def aresource(self, key: str, factory: Callable[[], R]) -> R:
        """`resource`, with the factory (loading a model) run off the event loop."""
        if key in self._resources:
            return self._resources[key]
        return await self.run_cpu(self.resource, key, factory)

    async def run_cpu(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)


class Task(abc.ABC):
    """A benchmark: data layout, protocols, scorers, metrics and reference rows.

    Subclasses set the class attributes and implement `folds`, `score` and `metrics`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    protocols: ClassVar[Mapping[str, str]] = {}  # protocol name -> one-line description
    default_protocol: ClassVar[str] = ""
    default_solver: ClassVar[str] = ""
    mllm_solver: ClassVar[str | None] = None  # chosen when --model is given without --solver
    data_folder: ClassVar[str] = ""  # folder name under HARNESS_DATA
    cluster_key: ClassVar[str | None] = None  # group key whose clusters the bootstrap resamples
    # False: resample units over the pooled records of all folds (LOSO: one subject per fold)
    bootstrap_within_folds: ClassVar[bool] = True
    version: ClassVar[str] = "1"  # bump when loading/splitting changes what a solver sees
    scorer_version: ClassVar[str] = "1"  # bump when per-sample scores or metrics change
    roles: ClassVar[Mapping[str, str]] = {}  # model roles of the scorer -> default model spec
    # Regexes of the other role names the task reads (`--role NAME=...`, `--judge` = judge, judge2...).
    # None: not declared, any name passes; declared, a name that matches none of them nor `roles` is
    # refused (a typo such as `--role recogniser=...` would otherwise score with the default silently).
    accepted_roles: ClassVar[tuple[str, ...] | None] = None
    # Test targets are server-only: `harness run` keeps predictions unscored (no metrics, no board row) and
    # only a board with the labelled data scores them (`harness submit`). Its `fingerprint` must cover
    # the inputs alone, so that the public and the labelled copy of the data agree.
    sealed: ClassVar[bool] = False
    # (x metric, y metric) of a privacy–utility trade-off that only exists across runs (one protection per
    # run): the board draws these two metrics of a group's runs with their Pareto front. Which way is
    # better comes from each metric's `higher_is_better`. None: the task has no such trade-off.
    pareto_axes: ClassVar[tuple[str, str] | None] = None
    # (command, folder): a command that writes a small synthetic copy of the data in the official layout
    # into folder; the "needs --data" error shows it, so that a first run without data has a next step.
    example_data: ClassVar[tuple[str, str] | None] = None

    def check_roles(self, names: Iterable[str]) -> None:
        """Refuse role names this task never reads (see `accepted_roles`), naming the ones it does."""
        if self.accepted_roles is None:
            return
        import difflib
        import re

        patterns = [re.escape(n) for n in self.roles] + list(self.accepted_roles)
        for name in names:
            if any(re.fullmatch(p, name) for p in patterns):
                continue
            known = [*self.roles, *(p.replace(r"\d*", "[N]").replace(r"\d+", "N") for p in self.accepted_roles)]
            if not known:
                raise HarnessError(f"task {self.name!r} uses no model roles (--role/--judge): got {name!r}")
            close = difflib.get_close_matches(name, [*self.roles, *self.accepted_roles], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise HarnessError(f"task {self.name!r} reads no role {name!r}{hint}; its roles: {', '.join(known)}")

    def resolve_data(self, data: Path | None) -> Path:
        """Locate (or fetch) the data folder and validate its layout, raising `DataError`."""
        if data is None:
            hint = ""
            if self.example_data:
                command, folder = self.example_data
                hint = (f"; to try it on a small synthetic copy: {command} && harness run --task {self.name} "
                        f"--data {folder}")
            raise DataError(f"task {self.name!r} needs --data (or HARNESS_DATA with a {self.data_folder!r} folder)"
                            + hint)
        if not data.exists():
            raise DataError(f"{data}: data folder does not exist")
        return data

    def detect_protocol(self, data_dir: Path) -> str | None:
        """The protocol a data folder's layout implies (used when --protocol is not given)."""
        return None

    def fingerprint(self, data_dir: Path) -> str:
        """A hash of the data a run depends on, equal on every faithful copy of it (names, sizes,
        annotation content; never modification times): the manifest's `data_fingerprint`, which a
        board checks a submission against."""
        from harness.fingerprint import fingerprint_tree

        return fingerprint_tree(data_dir)

    def fingerprints(self, data_dir: Path) -> tuple[str, str]:
        """(the portable `fingerprint`, a local one that also changes when a media file is replaced in
        place): the result cache keys on the local one, so it never serves predictions of replaced data."""
        from harness.fingerprint import config_hash, data_fingerprints

        found = data_fingerprints(data_dir)
        if type(self).fingerprint is Task.fingerprint:
            return found.portable, found.local
        own = self.fingerprint(data_dir)  # a task's own notion (e.g. the inputs only), made local too
        return own, config_hash([own, found.local])

    @abc.abstractmethod
    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        """Load and validate the data and split it by protocol."""

    # Protocol options (`-P key=value`), e.g. the order of a domain-incremental sequence. A task that
    # takes them sets a SolverOptions-style pydantic model here and implements `folds_with`.
    ProtocolOptions: ClassVar[type[SolverOptions] | None] = None

    def folds_with(self, data_dir: Path, protocol: str, options: Any) -> list[Fold]:
        """`folds` with validated protocol options (only called when `ProtocolOptions` is set)."""
        return self.folds(data_dir, protocol)

    def load_folds(self, data_dir: Path, protocol: str, options: Mapping[str, Any] | None = None,
                   ) -> tuple[list[Fold], dict[str, JSON]]:
        """The folds and the protocol options that differ from the task's defaults, in canonical form: {}
        for a default run (with or without -P), so that it shares its cache scope and its board protocol
        with every other default run, and e.g. `il` is never shown as `il[order=<the default>]`."""
        if self.ProtocolOptions is None:
            if options:
                raise HarnessError(f"task {self.name!r} takes no protocol options (-P): got {', '.join(options)}")
            return self.folds(data_dir, protocol), {}
        from pydantic import ValidationError

        from harness.options import validation_message

        try:
            opts = self.ProtocolOptions.model_validate(dict(options or {}))
        except ValidationError as exc:
            raise HarnessError(validation_message(f"{self.name} protocol", self.ProtocolOptions, dict(options or {}),
                                                  exc)) from None
        return self.folds_with(data_dir, protocol, opts), self.changed_protocol_options(opts.model_dump(mode="json"))

    def changed_protocol_options(self, given: Any) -> Any:
        """A run's recorded protocol options as `load_folds` keeps them: those that differ from the
        defaults. Manifests written before it kept only those list every option, defaults included: the
        same protocol. Anything that does not validate is returned as given (and so differs)."""
        if self.ProtocolOptions is None or not isinstance(given, dict) or not given:
            return given
        from pydantic import ValidationError

        try:
            opts = self.ProtocolOptions.model_validate(given).model_dump(mode="json")
        except ValidationError:
            return given
        defaults = self.ProtocolOptions().model_dump(mode="json")
        return {k: v for k, v in opts.items() if defaults.get(k) != v}

    def sequential(self, protocol: str) -> bool:
        """True for domain-incremental protocols: folds are steps fitted in order on one solver state."""
        return False

    @abc.abstractmethod
    def score(self, sample: Sample, prediction: JSON) -> dict[str, JSON]:
        """Per-sample scores (e.g. correct=1.0); may be empty when only aggregates make sense.

        Use only `sample.id`, `.target` and `.groups` (and artifacts): `harness score RUN` re-scores
        from samples.jsonl, which holds those and not the inputs."""

    async def ascore(self, sample: Sample, prediction: JSON, ctx: ScoreContext) -> dict[str, JSON]:
        """Per-sample scores that need models (`ctx.roles`) or heavy CPU work (`ctx.run_cpu`).

        Override it instead of `score` for such tasks; their scores are cached by prediction, scorer
        version and role models. The default calls `score` inline (cheap scorers)."""
        return self.score(sample, prediction)

    @classmethod
    def scores_with_models(cls) -> bool:
        """Whether this task overrides `ascore` (its scores are then cached and scored off the loop)."""
        return cls.ascore is not Task.ascore

    @abc.abstractmethod
    def metrics(self, protocol: str) -> list[Metric]:
        """The metrics reported for a protocol, headline first."""

    def report(self, records: Sequence[Record], protocol: str, out_dir: Path) -> dict[str, JSON]:
        """Extra results for metrics.json (per-class F1, confusion matrices, plot paths)."""
        return {}

    def data_status(self, data_root: Path | None) -> str:
        """One line for `harness tasks`: whether data is found."""
        try_it = f"; to try: {self.example_data[0]}" if self.example_data else ""
        if data_root is None:
            return "set --data or HARNESS_DATA" + try_it
        path = data_root / self.data_folder if self.data_folder else data_root
        return f"found at {path}" if path.exists() else f"missing ({path})" + try_it


# The solver base classes live in harness/solver.py (this module stays the data model); their names are
# part of the data model's interface, so they stay importable from here. harness/__init__ imports this
# module first, so that the cycle resolves whichever of the two a caller imports.
from harness.solver import (  # noqa: E402
    SeededOptions,
    SeededSolver,
    Solver,
    ThreadedBatchSolver,
    digest_texts,
    source_texts,
)

__all__ = [
    "JSON", "DataError", "Fold", "HarnessError", "Metric", "Record", "RunContext", "Sample", "ScoreContext",
    "SeededOptions", "SeededSolver", "Solver", "SolverOptions", "SolverOutput", "Task", "ThreadedBatchSolver",
    "current_sample", "digest_texts", "source_texts",
]
