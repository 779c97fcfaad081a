"""The run loop: resolve data, split by protocol, solve every sample once, score, aggregate, record.

One `RunConfig` (frozen, hashable) says *what* is evaluated; `RunSettings` say *how* (endpoint,
concurrency, where files go) and never change a result. The runner asks the result cache which
samples are finished, hands the rest of every fold to one worker pool (harness.pipeline), re-scores
cached predictions with the current scorer, and writes runs/<run_id>/. A sample that raises becomes an
errored record; the run goes on. A run that fails or is interrupted (Ctrl-C, SIGTERM) leaves its
manifest marked `failed` / `interrupted`, never `running`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.artifacts import ArtifactStore
from harness.cache import CacheScope, CacheWriteError, ResultCache, sample_key
from harness.core import HarnessError, Record, RunContext, ScoreContext, Solver, Task
from harness.fingerprint import config_hash
from harness.pipeline import (
    FoldJob,
    Pipeline,
    SampleSink,
    Scorer,
    error_text,
    parallel_feed,
    rescore_hits,
    sequential_feed,
    solve_local,
)
from harness.progress import RunProgress
from harness.registry import get_task, make_solver
from harness.roles import build_roles
from harness.rundir import git_commit, new_run_id, now, package_versions, to_jsonable, write_json, write_samples
from harness.scoring import aggregate
from harness.stats import MetricValue
from harness.transcripts import TranscriptLog, summarise


@dataclass(frozen=True)
class RunConfig:
    """What is evaluated; its hash goes into the manifest and the leaderboard row."""

    task: str
    protocol: str = ""
    solver: str = ""
    solver_options: tuple[tuple[str, Any], ...] = ()
    protocol_options: tuple[tuple[str, Any], ...] = ()  # -P key=value
    model: str | None = None
    judges: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()  # --role NAME=MODEL[@BASE_URL]
    limit: int | None = None  # first N test samples of each fold
    seed: int = 0
    n_boot: int = 1000

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["solver_options"] = dict(self.solver_options)
        d["protocol_options"] = dict(self.protocol_options)
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
    cache_error: str | None = None  # set when finished results could not be cached

    @property
    def n_errors(self) -> int:
        return sum(not r.ok for r in self.records)


def _limited(fold_items: list[tuple[str, Any]], limit: int | None) -> list[tuple[str, Any]]:
    if limit is None:
        return fold_items
    kept, n_test = [], 0
    for split, sample in fold_items:
        if split == "test":
            n_test += 1
            if n_test > limit:
                continue
        kept.append((split, sample))
    return kept


class _Interrupted(BaseException):
    """SIGTERM during a run: unwinds like Ctrl-C so the manifest says `interrupted`."""


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Interrupted()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def solver_identity_hash(task: Task, solver: Solver, config: RunConfig, history: tuple[str, ...] = ()) -> str:
    """What a cached prediction depends on: the task's and the solver's identity (version, canonical
    options, prompt digest, endpoint and model), the seed, judges used by solvers, and for sequential
    protocols the steps fitted before."""
    ident = {"task": task.name, "task_version": task.version, "solver": solver.identity(), "seed": config.seed}
    if not task.scores_with_models():  # judges of such tasks only score; elsewhere they make labels
        ident["judges"] = list(config.judges)
    if history:
        ident["fitted_steps"] = list(history)
    return config_hash(ident)


def run(config: RunConfig, settings: RunSettings, *, console: Any = None) -> RunResult:
    """Evaluate `config` and write runs/<run_id>/ plus a leaderboard row. Raises HarnessError for
    bad configuration or data; errors of single samples are recorded, not raised."""
    started, t0 = now(), time.perf_counter()
    if config.limit is not None and config.limit < 1:
        raise HarnessError(f"--limit must be a positive number of samples, not {config.limit}")
    task = get_task(config.task)
    if config.protocol and config.protocol not in task.protocols:
        raise HarnessError(
            f"task {task.name!r} has no protocol {config.protocol!r}; choose from {', '.join(task.protocols)}")
    roles = build_roles(config.roles, config.judges, task.roles, settings.base_url)
    task.check_roles(roles)  # before the data is read: a typo in a role name fails at once
    data_dir = task.resolve_data(settings.data)
    protocol = config.protocol or task.detect_protocol(data_dir) or task.default_protocol
    solver_name = config.solver or task.default_solver
    config = RunConfig(**{**asdict(config), "protocol": protocol, "solver": solver_name,
                          "solver_options": config.solver_options, "judges": tuple(config.judges),
                          "roles": tuple(config.roles), "protocol_options": config.protocol_options})
    fingerprint, local_fingerprint = task.fingerprints(data_dir)
    folds, protocol_options = task.load_folds(data_dir, protocol, dict(config.protocol_options))
    # Options that change the folds are part of the protocol's identity in the cache and on the board.
    scope_protocol = protocol + (config_hash(protocol_options, length=8) if protocol_options else "")
    artifacts = ArtifactStore(settings.out_dir / "artifacts")
    ctx = RunContext(
        model=config.model, base_url=settings.base_url, api_key=settings.api_key, judges=config.judges,
        seed=config.seed, concurrency=settings.concurrency, cache_dir=settings.out_dir,
        use_cache=settings.use_cache, request_timeout_s=settings.request_timeout_s,
        max_retries=settings.max_retries, roles=roles, artifacts=artifacts,
    )
    options = dict(config.solver_options)
    run_id = new_run_id(task.name, solver_name)
    run_dir = settings.out_dir / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # --out names a file, or a folder this user cannot write
        raise HarnessError(f"--out {settings.out_dir}: cannot create the run folder {run_id} there "
                           f"({exc.strerror or exc})") from None
    # Backends record every model call in the run's transcript log, so it exists before the solver does.
    ctx = replace(ctx, transcripts=TranscriptLog(run_dir / "transcripts.jsonl"))
    try:
        solver = make_solver(task, solver_name, ctx, options)
    except BaseException:
        ctx.transcripts.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    sequential = task.sequential(protocol)
    solver_hash = solver_identity_hash(task, solver, config)
    scorer_identity = {"task": task.name, "scorer_version": task.scorer_version, "seed": config.seed,
                       "roles": {n: r.identity() for n, r in sorted(roles.items())}}
    manifest: dict[str, Any] = {
        "run_id": run_id, "config": config.to_dict(), "config_hash": config.hash(),
        "solver_config": solver.identity(), "solver_hash": solver_hash, "task_version": task.version,
        "scorer_version": task.scorer_version, "roles": {n: r.identity() for n, r in roles.items()},
        "protocol_options": protocol_options,
        "data": str(data_dir), "data_fingerprint": fingerprint, "executor": settings.executor,
        "concurrency": settings.concurrency, "packages": package_versions(), "git_commit": git_commit(),
        "seed": config.seed, "started": started, "finished": None, "status": "running",
    }
    write_json(run_dir / "manifest.json", manifest)

    def prepare() -> tuple[ResultCache, list[FoldJob], int, RunProgress]:
        """Open the cache and ask it which samples of each fold are finished."""
        cache = ResultCache(settings.out_dir / "cache.sqlite")
        jobs: list[FoldJob] = []
        history: list[str] = []
        for fold in folds:
            history.append(fold.name)
            fold_hash = solver_identity_hash(task, solver, config, tuple(history)) if sequential else solver_hash
            scope = CacheScope(task.name, scope_protocol, fold.name, fold_hash, local_fingerprint)
            if not settings.use_cache:  # --no-cache: recompute everything, then refresh the cache
                cache.clear(scope)
            items = _limited([(split, s) for split, ss in fold.solved() for s in ss], config.limit)
            hits = cache.lookup(scope, [sample_key(sp, s.id) for sp, s in items])
            jobs.append(FoldJob(fold, scope, items, hits))
        n_cached = sum(len(j.hits) for j in jobs)
        total = sum(len(j.items) for j in jobs)
        progress = RunProgress(f"{task.name}/{protocol} · {solver_name}", total, enabled=settings.show_progress,
                               console=console)
        progress.start_fold("", total=total, cached=n_cached)
        return cache, jobs, n_cached, progress

    async def main(cache: ResultCache, jobs: list[FoldJob], progress: RunProgress) -> None:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="harness-score") as pool:
            sctx = ScoreContext(roles=roles, artifacts=artifacts, seed=config.seed, executor=pool, run=ctx)
            scorer = Scorer(task, sctx, cache, scorer_identity)
            sink = SampleSink(scorer, cache, progress)
            solve, on_done = solve_local, None
            if settings.executor == "ray":
                from harness.executors import RayExecutor

                ray_exec = RayExecutor(config, ctx, settings.concurrency)
                solve, on_done = ray_exec.solve, ray_exec.job_done
            # --base-url URL1,URL2: --concurrency per replica, so the run keeps every replica busy
            in_flight = settings.concurrency * max(1, len(ctx.base_urls))
            pipeline = Pipeline(jobs, sink, in_flight, solver.batch_size, solve, on_done)
            extra: list[Solver] = []

            def fresh() -> Solver:
                extra.append(make_solver(task, solver_name, ctx, options))
                return extra[-1]

            try:
                with progress:  # cached predictions are re-scored while the rest are solved
                    feed = sequential_feed(solver) if sequential else parallel_feed(solver, fresh)
                    await asyncio.gather(pipeline.run(feed), rescore_hits(jobs, scorer, settings.concurrency))
            finally:
                if settings.executor == "ray":
                    ray_exec.close()
                for s in (solver, *extra):
                    await s.aclose()

    cache: ResultCache | None = None
    signals = contextlib.ExitStack()  # SIGTERM unwinds like Ctrl-C until the run's files are written
    signals.enter_context(_sigterm_interrupts())
    try:
        cache, jobs, n_cached, progress = prepare()
        asyncio.run(main(cache, jobs, progress))
        records, lines = _collect(jobs)
        metric_defs = task.metrics(protocol)
        if task.sealed:  # predictions only; `harness submit` sends them to a board that holds the targets
            metrics, report = {}, {"sealed": "test targets are server-only: submit this run with `harness submit`"}
        else:
            metrics, report = aggregate(task, protocol, records, n_boot=config.n_boot, seed=config.seed,
                                        out_dir=run_dir)
        wall = time.perf_counter() - t0
        n_errors = sum(not r.ok for r in records)
        write_samples(run_dir / "samples.jsonl", lines)
        summary = _model_calls(records)
        write_json(run_dir / "metrics.json", {
            "run_id": run_id, "task": task.name, "protocol": protocol, "solver": solver_name,
            "model": config.model, "scorer_version": task.scorer_version,
            "headline": metric_defs[0].name if metric_defs else None,
            "metrics": {k: v.to_dict() for k, v in metrics.items()},
            "ci": _ci_text(task, config.n_boot), "n_samples": len(records), "n_errors": n_errors,
            "n_cached": n_cached, "errors": sorted({r.error for r in records if r.error})[:20],
            **({"model_calls": summary} if summary else {}), "report": report,
        })
        manifest.update(status="finished", finished=now(), wall_s=round(wall, 3), n_samples=len(records),
                        n_errors=n_errors, n_cached=n_cached)
        write_json(run_dir / "manifest.json", manifest)
    except BaseException as exc:
        interrupted = isinstance(exc, (KeyboardInterrupt, _Interrupted))
        manifest.update(status="interrupted" if interrupted else "failed", finished=now(),
                        error=None if interrupted else error_text(exc))
        write_json(run_dir / "manifest.json", manifest)
        _close_quietly(cache, ctx)
        if isinstance(exc, _Interrupted):
            raise KeyboardInterrupt from None
        raise
    finally:
        signals.close()
    _close_transcripts(ctx)
    cache_error = None
    try:
        cache.close()
    except CacheWriteError as exc:  # the run's files are complete; the CLI exits non-zero after the summary
        cache_error = str(exc)
    if settings.db_url is not None and not task.sealed:
        from harness.leaderboard import Leaderboard

        Leaderboard(settings.db_url).add_run(manifest, metrics, headline=metric_defs[0].name if metric_defs else "")
    return RunResult(run_id, run_dir, config, metrics, records, n_cached, wall, report, cache_error)


def _collect(jobs: list[FoldJob]) -> tuple[list[Record], list[tuple[str, bool]]]:
    records, lines = [], []
    for job in jobs:
        for split, sample in job.items:
            record, line = job.done[sample_key(split, sample.id)]
            records.append(record)
            lines.append((line, record.cached))
    return records, lines


def _ci_text(task: Task, n_boot: int) -> str:
    unit = f"{task.cluster_key} clusters" if task.cluster_key else "samples"
    where = "within folds" if getattr(task, "bootstrap_within_folds", True) else "pooled over folds"
    return f"{n_boot}-replicate percentile bootstrap, 95%, resampling {unit} {where}"


def _model_calls(records: list[Record]) -> dict[str, Any]:
    try:
        return to_jsonable(summarise(records)) or {}
    except Exception as exc:  # accounting must not cost the run its metrics
        return {"error": f"model-call summary failed: {error_text(exc)}", "traceback": traceback.format_exc()}


def _close_transcripts(ctx: RunContext) -> None:
    if ctx.transcripts is not None:
        ctx.transcripts.close()


def _close_quietly(cache: ResultCache | None, ctx: RunContext) -> None:
    for close in (lambda: _close_transcripts(ctx), cache.close if cache is not None else lambda: None):
        try:
            close()
        except Exception:
            pass
