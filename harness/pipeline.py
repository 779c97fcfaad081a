"""One bounded worker pool over every fold of a run.

Samples of all folds flow through one pool of `concurrency` workers, so an endpoint stays busy
from the first request to the last: a zero-shot solver (one that does not override `fit`) is shared
by every fold and all its samples are queued at once; a trained solver gets a fresh instance per fold,
fitted in a thread, and that fold's samples are released to the pool as soon as its fit is done (the
others keep running meanwhile). Sequential (domain-incremental) protocols fit one solver state step
by step: step k+1 is fitted only after step k's samples are solved, and no fit is skipped while a
later step still needs the state.

Finished samples are scored (inline for cheap scorers; through `Task.ascore`, with cached scores,
for scorers that use models), serialised once and queued for the result cache.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from harness.cache import CacheScope, ResultCache, sample_key
from harness.core import Fold, HarnessError, Record, Sample, ScoreContext, Solver, SolverOutput, Task, current_sample
from harness.fingerprint import config_hash
from harness.progress import RunProgress
from harness.rundir import dumps, prediction_line, record_from_line, to_jsonable
from harness.transcripts import merge_usage


def error_text(exc: BaseException) -> str:
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


def with_scores(pred_line: str, scores: dict[str, Any]) -> str:
    """The samples.jsonl line: the prediction line (which ends with `}`) plus its scores, last."""
    return f'{pred_line[:-1]},"scores":{dumps(scores)}}}'


@dataclass
class FoldJob:
    """One fold's work: what to solve, what the cache already has, and the solver that solves it."""

    fold: Fold
    scope: CacheScope
    items: list[tuple[str, Sample]]  # (split, sample) in data order, test first
    hits: dict[str, tuple[Record, str]] = field(default_factory=dict)  # sample key -> cached (record, line)
    solver: Solver | None = None
    done: dict[str, tuple[Record, str]] = field(default_factory=dict)  # sample key -> (record, final line)
    outstanding: int = 0
    finished: asyncio.Event | None = None

    @property
    def todo(self) -> list[tuple[str, Sample]]:
        return [(sp, s) for sp, s in self.items if sample_key(sp, s.id) not in self.hits]


class Scorer:
    """Per-sample scores of fresh and cached predictions.

    Cheap scorers (`Task.score`) run inline. Scorers that use models (`Task.ascore` overridden) are
    keyed by (scorer identity, prediction, artifacts, target) in the cache, so re-runs reuse their scores."""

    def __init__(self, task: Task, sctx: ScoreContext, cache: ResultCache | None, scorer_identity: dict[str, Any]):
        self.task, self.sctx, self.cache = task, sctx, cache
        self.with_models = task.scores_with_models()
        self.identity = config_hash(scorer_identity, length=32)

    def key(self, record: Record) -> str:
        # the target too: the same prediction against a corrected label (or another copy of the data)
        # is another score
        blob = orjson.dumps([self.identity, record.sample_id, record.split, record.prediction, record.artifacts,
                             record.target], option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_SORT_KEYS, default=str)
        return config_hash(blob.decode(), length=32)

    async def score(self, sample: Sample, record: Record) -> None:
        """Fill `record.scores`; a failing scorer makes it this sample's error (the prediction stays cached)."""
        if self.task.sealed:  # no targets here: the board scores sealed tasks
            record.scores = {}
            return
        token = current_sample.set(sample.id)
        try:
            if not self.with_models:
                record.scores = self.task.score(sample, record.prediction)
                return
            key = self.key(record)
            cached = self.cache.lookup_scores([key]).get(key) if self.cache is not None else None
            if cached is not None:
                record.scores = orjson.loads(cached)
                return
            record.scores = await self.task.ascore(sample, record.prediction, self.sctx)
            if self.cache is not None:
                self.cache.store_scores([(key, dumps(record.scores))])
        except Exception as exc:
            record.scores = {}
            record.error = f"scoring failed: {error_text(exc)}"
        finally:
            current_sample.reset(token)
            # the scoring's own model calls (judges) join the sample's counts
            record.info = merge_usage(dict(record.info), sample.id)


    async def score_line(self, sample: Sample, record: Record, line: str) -> str:
        """Score the record; its prediction line again when scoring changed it (a scoring error, or the
        judge calls that scoring made, counted in its info)."""
        await self.score(sample, record)
        return prediction_line(record) if record.error is not None or self.with_models else line


class SampleSink:
    """Builds each finished sample's record, scores it, serialises it once and queues it for the cache."""

    def __init__(self, scorer: Scorer, cache: ResultCache | None, progress: RunProgress):
        self.scorer, self.cache, self.progress = scorer, cache, progress

    async def add(self, job: FoldJob, split: str, sample: Sample, output: Any, latency_s: float,
                  error: str | None) -> None:
        if isinstance(output, BaseException):  # a batch solver's per-sample failure (a corrupt file)
            output, error = None, error if error is not None else error_text(output)
        if isinstance(output, SolverOutput):
            prediction, info, artifacts = output.prediction, dict(output.info), dict(output.artifacts)
        else:
            prediction, info, artifacts = output, {}, {}
        if error is not None:
            prediction, info, artifacts = None, {}, {}
        merge_usage(info, sample.id)  # the sample's model calls by role (errored samples too)
        record = Record(sample.id, job.fold.name, sample.target, prediction, {}, sample.groups, info, error,
                        latency_s, split=split, artifacts=artifacts)
        try:
            line = prediction_line(record)
        except TypeError as exc:  # an output JSON cannot hold: this sample's error
            record.prediction, record.info, record.artifacts = None, {}, {}
            record.error = f"output not JSON-serialisable: {error_text(exc)}"
            line = prediction_line(record)
        # A fresh record must equal what a cached re-run reads back (tuples -> lists, numpy -> numbers):
        # parse the line back unless every field is already plain JSON (the common, fast case).
        if not (_flat_json(record.prediction) and _flat_json(record.info)):
            record = record_from_line(line)
        key = sample_key(split, sample.id)
        if record.ok and self.cache is not None:
            self.cache.store(job.scope, [(key, record, line)])
        if record.ok:
            line = await self.scorer.score_line(sample, record, line)
        job.done[key] = (record, with_scores(line, record.scores))
        self.progress.advance(error=record.error is not None)


async def rescore_hits(jobs: Sequence[FoldJob], scorer: Scorer, concurrency: int) -> None:
    """Score every cached prediction with the current scorer (never the scores of an earlier run)."""
    pending: list[tuple[FoldJob, str, Sample, Record, str]] = []
    for job in jobs:
        for split, sample in job.items:
            key = sample_key(split, sample.id)
            hit = job.hits.get(key)
            if hit is not None:
                record, line = hit
                # The loader's target and groups are the truth, not the ones stored with the prediction: a
                # loader fix that reads the same files differently must not score against stale labels.
                target, groups = to_jsonable(sample.target), to_jsonable(dict(sample.groups))
                if target != record.target or groups != record.groups:
                    record.target, record.groups = target, groups
                    line = prediction_line(record)
                pending.append((job, key, sample, record, line))
    if not scorer.with_models:
        for job, key, sample, record, line in pending:
            line = await scorer.score_line(sample, record, line)
            job.done[key] = (record, with_scores(line, record.scores))
        return
    it = iter(pending)

    async def worker() -> None:
        for job, key, sample, record, line in it:
            line = await scorer.score_line(sample, record, line)
            job.done[key] = (record, with_scores(line, record.scores))

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(pending))))))


SolveFn = Callable[[FoldJob, list[Sample]], Awaitable[list[Any]]]


async def solve_local(job: FoldJob, chunk: list[Sample]) -> list[Any]:
    solver = job.solver
    assert solver is not None
    if len(chunk) == 1 and solver.batch_size <= 1:
        return [await solver.solve(chunk[0])]
    return list(await solver.solve_batch(chunk))


def overrides_fit(solver: Solver) -> bool:
    return type(solver).fit is not Solver.fit


class Pipeline:
    """Feeds folds' samples to one pool of workers (see the module docstring for the order rules)."""

    def __init__(self, jobs: list[FoldJob], sink: SampleSink, concurrency: int, batch_size: int,
                 solve: SolveFn = solve_local, on_job_done: Callable[[FoldJob], None] | None = None) -> None:
        self.jobs, self.sink, self.solve, self.on_job_done = jobs, sink, solve, on_job_done
        self.concurrency = max(1, concurrency)
        self.batch_size = max(1, batch_size)
        self.queue: asyncio.Queue[tuple[FoldJob, str, list[Sample]] | None] = asyncio.Queue()

    def release(self, job: FoldJob) -> None:
        """Queue a ready fold's remaining samples in chunks of the solver's batch size."""
        job.finished = asyncio.Event()
        by_split: dict[str, list[Sample]] = {}
        for split, sample in job.todo:
            by_split.setdefault(split, []).append(sample)
        chunks = [(split, ss[i : i + self.batch_size]) for split, ss in by_split.items()
                  for i in range(0, len(ss), self.batch_size)]
        job.outstanding = len(chunks)
        if not chunks:
            job.finished.set()
        for split, chunk in chunks:
            self.queue.put_nowait((job, split, chunk))

    async def worker(self) -> None:
        clock = time.perf_counter
        while (item := await self.queue.get()) is not None:
            job, split, chunk = item
            start = clock()
            tokens = None
            if len(chunk) == 1:
                tokens = current_sample.set(chunk[0].id)
            try:
                outputs = await self.solve(job, chunk)
                if len(outputs) != len(chunk):
                    raise HarnessError(f"solver returned {len(outputs)} outputs for {len(chunk)} samples")
                error = None
            except Exception as exc:
                outputs, error = [None] * len(chunk), error_text(exc)
            finally:
                if tokens is not None:
                    current_sample.reset(tokens)
            latency = (clock() - start) / len(chunk)
            finish = self.finish(job, split, chunk, outputs, latency, error)
            if self.sink.scorer.with_models:  # scoring asks models: it counts against --concurrency
                await finish
            else:  # cheap scoring: send the next request first, record this chunk right after
                task = asyncio.ensure_future(finish)
                self._finishing.add(task)
                task.add_done_callback(self._finishing.discard)

    async def finish(self, job: FoldJob, split: str, chunk: list[Sample], outputs: list[Any], latency: float,
                     error: str | None) -> None:
        for sample, output in zip(chunk, outputs, strict=True):
            await self.sink.add(job, split, sample, output, latency, error)
        job.outstanding -= 1
        if job.outstanding == 0 and job.finished is not None:
            job.finished.set()
            if self.on_job_done is not None:
                self.on_job_done(job)

    async def run(self, feed: Callable[[Pipeline], Awaitable[None]]) -> None:
        n_todo = sum(len(j.todo) for j in self.jobs)
        n_workers = min(self.concurrency, max(1, -(-n_todo // self.batch_size)))
        self._finishing: set[asyncio.Future[None]] = set()
        workers = [asyncio.create_task(self.worker()) for _ in range(n_workers)]
        try:
            await feed(self)
        finally:
            for _ in workers:
                self.queue.put_nowait(None)
            results = await asyncio.gather(*workers, return_exceptions=True)
            while self._finishing:
                results += await asyncio.gather(*list(self._finishing), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r


def parallel_feed(prototype: Solver, fresh_solver: Callable[[], Solver]) -> Callable[[Pipeline], Awaitable[None]]:
    """Zero-shot: one shared solver, every fold queued at once. Trained: a fresh solver per fold,
    fitted in a thread; each fold is queued as soon as its own fit is done."""

    async def feed(p: Pipeline) -> None:
        trained = overrides_fit(prototype)
        for job in p.jobs:
            if job.todo and not (trained and job.fold.train):
                job.solver = prototype
                p.release(job)
        for job in p.jobs:
            if job.todo and trained and job.fold.train:
                solver = fresh_solver()
                await asyncio.to_thread(solver.fit, job.fold.train)
                job.solver = solver
                p.release(job)

    return feed


def sequential_feed(solver: Solver) -> Callable[[Pipeline], Awaitable[None]]:
    """Steps in order on one solver state: fit step k (if a step >= k has work), solve its samples,
    wait for them, then go on. Fits of steps after the last one with work are skipped."""

    async def feed(p: Pipeline) -> None:
        last = max((i for i, j in enumerate(p.jobs) if j.todo), default=-1)
        for _i, job in enumerate(p.jobs[: last + 1]):
            if job.fold.train:
                await asyncio.to_thread(solver.fit, job.fold.train)
            job.solver = solver
            if job.todo:
                p.release(job)
                assert job.finished is not None
                await job.finished.wait()

    return feed
