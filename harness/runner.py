"""The run loop: resolve data, split by protocol, solve every sample once, score, aggregate, record.

One `RunConfig` (frozen, hashable) says *what* is evaluated; `RunSettings` say *how* (endpoint,
concurrency, where files go) and never change a result. For each fold the runner asks the result
cache which samples are finished, fits the solver on the fold's train part only if something is left
to do, and solves the rest with bounded concurrency. A sample that raises becomes an errored record;
the run goes on. Finished samples reach the cache as they complete, so an interrupted run resumes.
"""

from __future__ import annotations

import asyncio
import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.cache import CacheScope, ResultCache
from harness.core import Fold, HarnessError, Record, RunContext, Sample, Solver, SolverOutput, Task
from harness.fingerprint import config_hash
from harness.progress import RunProgress
from harness.registry import get_task, make_solver
from harness.rundir import (
    git_commit,
    new_run_id,
    now,
    package_versions,
    record_from_line,
    record_line,
    to_jsonable,
    write_json,
    write_samples,
)
from harness.stats import MetricValue, bootstrap


@dataclass(frozen=True)
class RunConfig:
    """What is evaluated; its hash goes into the manifest and the leaderboard row."""

    task: str
    protocol: str = ""
    solver: str = ""
    solver_options: tuple[tuple[str, Any], ...] = ()
    model: str | None = None
    judges: tuple[str, ...] = ()
    limit: int | None = None  # first N test samples of each fold
    seed: int = 0
    n_boot: int = 1000

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["solver_options"] = dict(self.solver_options)
        return d

    def hash(self) -> str:
        return config_hash(self.to_dict())


@dataclass(frozen=True)
class RunSettings:
    """How a run is carried out; none of these change its numbers."""

    data: Path | None = None
    base_url: str | None = None
    api_key: str | None = None
    concurrency: int = 8
    executor: str = "local"
    out_dir: Path = Path("runs")
    db_url: str | None = None
    use_cache: bool = True
    show_progress: bool = True
    request_timeout_s: float = 120.0
    max_retries: int = 8


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    config: RunConfig
    metrics: dict[str, MetricValue]
    records: list[Record]
    n_cached: int
    wall_s: float
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def n_errors(self) -> int:
        return sum(not r.ok for r in self.records)


def _error_text(exc: BaseException) -> str:
    msg = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {msg}"


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _flat_json(obj: Any) -> bool:
    """A JSON scalar (finite, if a float), or a dict of str -> such scalars: JSON round-trips it exactly."""
    t = type(obj)
    if t is float:
        return math.isfinite(obj)
    if t in _SCALARS:
        return True
    return t is dict and all(type(k) is str and type(v) is not dict and _flat_json(v) for k, v in obj.items())


class SampleSink:
    """Scores finished samples, serialises each once, and persists them in batches of one event-loop turn."""

    def __init__(self, task: Task, cache: ResultCache | None, scope: CacheScope, progress: RunProgress):
        self.task, self.cache, self.scope, self.progress = task, cache, scope, progress
        self.done: dict[str, tuple[Record, str]] = {}
        self._pending: list[tuple[Record, str]] = []
        self._scheduled = False

    def add(self, sample: Sample, output: Any, latency_s: float, error: str | None) -> None:
        prediction, info = (output.prediction, output.info) if isinstance(output, SolverOutput) else (output, {})
        record = Record(sample.id, self.scope.fold, sample.target, None, {}, sample.groups, {}, error, latency_s)
        if error is None:
            try:
                record.prediction, record.info = prediction, dict(info)
                record.scores = self.task.score(sample, prediction)
            except Exception as exc:  # a bad prediction is this sample's error, not the run's
                record.error = f"scoring failed: {_error_text(exc)}"
        try:
            line = record_line(record)
        except TypeError as exc:  # an output JSON cannot hold: this sample's error
            record.prediction, record.info, record.scores = None, {}, {}
            record.error = f"output not JSON-serialisable: {_error_text(exc)}"
            line = record_line(record)
        # A fresh record must equal what a cached re-run reads back (tuples -> lists, numpy -> numbers):
        # parse the line back unless every field is already plain JSON (the common, fast case).
        if not (_flat_json(record.prediction) and _flat_json(record.scores) and _flat_json(record.info)):
            record = record_from_line(line)
        item = (record, line)
        self.done[sample.id] = item
        self.progress.advance(error=record.error is not None)
        if self.cache is not None and record.error is None:
            self._pending.append(item)
            if not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._pending and self.cache is not None:
            batch, self._pending = self._pending, []
            self.cache.store(self.scope, batch)


async def solve_local(solver: Solver, samples: Sequence[Sample], sink: SampleSink, concurrency: int) -> None:
    """Bounded concurrency with a fixed pool of workers pulling from one iterator (no task per sample)."""
    size = max(1, solver.batch_size)
    chunks = iter([samples[i : i + size] for i in range(0, len(samples), size)])
    clock = time.perf_counter

    async def worker() -> None:
        for chunk in chunks:
            start = clock()
            try:
                outputs = await solver.solve_batch(chunk) if size > 1 else [await solver.solve(chunk[0])]
                if len(outputs) != len(chunk):
                    raise HarnessError(f"solver returned {len(outputs)} outputs for {len(chunk)} samples")
                error = None
            except Exception as exc:
                outputs, error = [None] * len(chunk), _error_text(exc)
            latency = (clock() - start) / len(chunk)
            for sample, output in zip(chunk, outputs, strict=True):
                sink.add(sample, output, latency, error)

    n_workers = min(max(1, concurrency), max(1, -(-len(samples) // size)))
    try:
        await asyncio.gather(*(worker() for _ in range(n_workers)))
    finally:
        sink.flush()


def _limit(fold: Fold, limit: int | None) -> list[Sample]:
    return list(fold.test if limit is None else fold.test[:limit])


async def _run_folds(
    task: Task,
    solver: Solver,
    folds: list[Fold],
    config: RunConfig,
    settings: RunSettings,
    cache: ResultCache | None,
    scope_of: Callable[[str], CacheScope],
    progress: RunProgress,
    ctx: RunContext,
) -> tuple[list[tuple[Record, str]], int]:
    """Every test sample of every fold once, in data order, as (record, samples.jsonl line)."""
    done: list[tuple[Record, str]] = []
    n_cached = 0
    for fold in folds:
        test = _limit(fold, config.limit)
        scope = scope_of(fold.name)
        hits = cache.lookup(scope, [s.id for s in test]) if cache is not None else {}
        todo = [s for s in test if s.id not in hits]
        n_cached += len(hits)
        progress.start_fold(fold.name, total=len(test), cached=len(hits))
        sink = SampleSink(task, cache, scope, progress)
        if todo:
            if fold.train:
                await asyncio.to_thread(solver.fit, fold.train)
            if settings.executor == "ray":
                from harness.executors import solve_ray

                await solve_ray(config, ctx, fold, todo, sink, settings.concurrency)
            else:
                await solve_local(solver, todo, sink, settings.concurrency)
        done.extend(hits.get(s.id) or sink.done[s.id] for s in test)
    return done, n_cached


def run(config: RunConfig, settings: RunSettings, *, console: Any = None) -> RunResult:
    """Evaluate `config` and write runs/<run_id>/ plus a leaderboard row. Raises HarnessError for
    bad configuration or data; errors of single samples are recorded, not raised."""
    started, t0 = now(), time.perf_counter()
    task = get_task(config.task)
    if config.protocol and config.protocol not in task.protocols:
        raise HarnessError(
            f"task {task.name!r} has no protocol {config.protocol!r}; choose from {', '.join(task.protocols)}")
    data_dir = task.resolve_data(settings.data)
    protocol = config.protocol or task.detect_protocol(data_dir) or task.default_protocol
    solver_name = config.solver or task.default_solver
    config = RunConfig(**{**asdict(config), "protocol": protocol, "solver": solver_name,
                          "solver_options": config.solver_options, "judges": tuple(config.judges)})
    fingerprint = task.fingerprint(data_dir)
    folds = task.folds(data_dir, protocol)
    ctx = RunContext(
        model=config.model, base_url=settings.base_url, api_key=settings.api_key, judges=config.judges,
        seed=config.seed, concurrency=settings.concurrency, cache_dir=settings.out_dir,
        use_cache=settings.use_cache, request_timeout_s=settings.request_timeout_s,
        max_retries=settings.max_retries,
    )
    solver = make_solver(task, solver_name, ctx, dict(config.solver_options))
    solver_hash = config_hash(
        {"solver": solver.config(), "model": config.model, "judges": config.judges, "seed": config.seed}
    )
    run_id = new_run_id(task.name, solver_name)
    run_dir = settings.out_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    manifest: dict[str, Any] = {
        "run_id": run_id, "config": config.to_dict(), "config_hash": config.hash(),
        "solver_config": solver.config(), "solver_hash": solver_hash, "data": str(data_dir),
        "data_fingerprint": fingerprint, "executor": settings.executor, "concurrency": settings.concurrency,
        "packages": package_versions(), "git_commit": git_commit(), "seed": config.seed,
        "started": started, "finished": None, "status": "running",
    }
    write_json(run_dir / "manifest.json", manifest)

    cache = ResultCache(settings.out_dir / "cache.sqlite")
    if not settings.use_cache:  # --no-cache: recompute everything, then refresh the cache
        for fold in folds:
            cache.clear(CacheScope(task.name, protocol, fold.name, solver_hash, fingerprint))

    def scope_of(fold: str) -> CacheScope:
        return CacheScope(task.name, protocol, fold, solver_hash, fingerprint)

    total = sum(len(_limit(f, config.limit)) for f in folds)
    progress = RunProgress(f"{task.name}/{protocol} · {solver_name}", total, enabled=settings.show_progress,
                           console=console)

    async def main() -> tuple[list[tuple[Record, str]], int]:
        try:
            with progress:
                return await _run_folds(task, solver, folds, config, settings, cache, scope_of, progress, ctx)
        finally:
            await solver.aclose()

    try:
        done, n_cached = asyncio.run(main())
    except BaseException:
        manifest.update(status="interrupted", finished=now())
        write_json(run_dir / "manifest.json", manifest)
        cache.close()
        raise
    cache.close()
    records = [r for r, _ in done]

    metric_defs = task.metrics(protocol)
    metrics = bootstrap(metric_defs, records, cluster_key=task.cluster_key, n_boot=config.n_boot, seed=config.seed)
    try:
        report = to_jsonable(task.report(records, protocol, run_dir))
    except Exception as exc:  # extras must not cost the run its metrics
        report = {"error": f"report failed: {_error_text(exc)}", "traceback": traceback.format_exc()}
    wall = time.perf_counter() - t0
    n_errors = sum(not r.ok for r in records)
    write_samples(run_dir / "samples.jsonl", [(line, r.cached) for r, line in done])
    write_json(
        run_dir / "metrics.json",
        {
            "run_id": run_id, "task": task.name, "protocol": protocol, "solver": solver_name,
            "model": config.model, "headline": metric_defs[0].name if metric_defs else None,
            "metrics": {k: v.to_dict() for k, v in metrics.items()},
            "ci": f"{config.n_boot}-replicate percentile bootstrap, 95%, resampling "
            + (f"{task.cluster_key} clusters" if task.cluster_key else "samples") + " within folds",
            "n_samples": len(records), "n_errors": n_errors, "n_cached": n_cached,
            "errors": sorted({r.error for r in records if r.error})[:20], "report": report,
        },
    )
    manifest.update(status="finished", finished=now(), wall_s=round(wall, 3), n_samples=len(records),
                    n_errors=n_errors, n_cached=n_cached)
    write_json(run_dir / "manifest.json", manifest)
    if settings.db_url is not None:
        from harness.leaderboard import Leaderboard

        Leaderboard(settings.db_url).add_run(manifest, metrics, headline=metric_defs[0].name if metric_defs else "")
    return RunResult(run_id, run_dir, config, metrics, records, n_cached, wall, report)
