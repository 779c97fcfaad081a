"""Ray executor: the pipeline's chunks of samples solved by Ray actors instead of in this process.

The runner's one worker pool still decides what runs when (folds released as they are fitted, at most
`--concurrency` chunks in flight); this executor only replaces the local `solve` call. Actors ask Ray
for the solver's declared `resources` (e.g. {"num_gpus": 1}) and receive whole chunks through
`solve_batch`. A trained solver is fitted ONCE, by the runner, and its fitted state is shipped to the
actors (pickled through the object store); a zero-shot solver is rebuilt in each actor from the
registry (its clients and sessions cannot travel). Results come back to the driver, which scores and
caches them exactly as the local executor does. `ray.init()` joins the cluster named by RAY_ADDRESS
(Ray's own variable) or starts a local one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from harness.core import HarnessError, RunContext, Sample, Solver

if TYPE_CHECKING:
    from harness.pipeline import FoldJob
    from harness.runner import RunConfig


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class TranscriptBuffer:
    """Stands in an actor for the run's `TranscriptLog` (a file of the driver's machine): model calls are
    kept in memory and go back to the driver with each chunk's outputs, which writes them."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def write(self, record: Any) -> None:
        self.lines.append(dict(record))

    def drain(self) -> list[dict[str, Any]]:
        lines, self.lines = self.lines, []
        return lines


class _SolverWorker:
    """Body of the Ray actor (a plain class, so it can be tested without Ray)."""

    def __init__(self, solver: Solver | None, task: str, solver_name: str, options: dict[str, Any],
                 ctx: RunContext) -> None:
        if solver is None:
            from harness.registry import get_task, make_solver

            solver = make_solver(get_task(task), solver_name, ctx, options)
        self.solver = solver
        self.log = ctx.transcripts if isinstance(ctx.transcripts, TranscriptBuffer) else None

    async def solve_batch(self, samples: Sequence[Sample]) -> tuple[list[tuple[Any, str | None]], list[dict[str, Any]]]:
        """One chunk: the solver's outputs, or the chunk's error (a failing chunk fails its samples only),
        and the model calls made since the last chunk returned (for the run's transcripts.jsonl)."""
        results = await self._solve(samples)
        return results, (self.log.drain() if self.log is not None else [])

    async def _solve(self, samples: Sequence[Sample]) -> list[tuple[Any, str | None]]:
        try:
            if len(samples) == 1 and self.solver.batch_size <= 1:
                from harness.core import current_sample
                from harness.transcripts import with_usage

                token = current_sample.set(samples[0].id)  # model calls are counted for this sample
                try:
                    outputs = [with_usage(await self.solver.solve(samples[0]), samples[0].id)]
                finally:
                    current_sample.reset(token)
            else:
                outputs = list(await self.solver.solve_batch(samples))
            if len(outputs) != len(samples):
                raise HarnessError(f"solver returned {len(outputs)} outputs for {len(samples)} samples")
            return [(o, None) for o in outputs]
        except Exception as exc:
            return [(None, _error_text(exc))] * len(samples)


class _ActorPool:
    """Actors holding one solver state; each chunk goes to the actor with the fewest chunks in flight."""

    def __init__(self, actors: list[Any]) -> None:
        self.actors = actors
        self.load = [0] * len(actors)

    async def solve(self, chunk: list[Sample]) -> tuple[list[tuple[Any, str | None]], list[dict[str, Any]]]:
        k = min(range(len(self.actors)), key=self.load.__getitem__)
        self.load[k] += 1
        try:
            return await self.actors[k].solve_batch.remote(chunk)
        finally:
            self.load[k] -= 1


class RayExecutor:
    def __init__(self, config: RunConfig, ctx: RunContext, concurrency: int) -> None:
        try:
            import ray
        except ImportError as exc:
            raise HarnessError("--executor ray needs Ray: pip install 'harness-eval[ray]'") from exc
        self.ray = ray
        if not ray.is_initialized():
            ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        self.config = config
        # Actors run elsewhere: no file handle travels. Each actor buffers its model calls and ships them
        # back with every chunk; they are written here, to the run's transcripts.jsonl.
        self.log = ctx.transcripts
        self.ctx = replace(ctx, transcripts=TranscriptBuffer() if ctx.transcripts is not None else None)
        self.concurrency = max(1, concurrency)
        self.pools: dict[int, _ActorPool] = {}
        self.users: dict[int, set[str]] = {}  # solver id -> folds being solved with it

    def _pool(self, solver: Solver) -> _ActorPool:
        pool = self.pools.get(id(solver))
        if pool is not None:
            return pool
        from harness.pipeline import overrides_fit

        resources = dict(solver.resources or {"num_cpus": 1})
        per_actor_cpus = float(resources.get("num_cpus", 1)) or 1.0
        available = self.ray.available_resources()
        n = int(available.get("CPU", 1) // per_actor_cpus) or 1
        if resources.get("num_gpus"):
            if not available.get("GPU"):
                raise HarnessError(f"solver {solver.name!r} asks Ray for {resources['num_gpus']} GPU per actor, but "
                                   "the Ray cluster has no free GPU: join a GPU node or use --executor local")
            n = min(n, int(available.get("GPU", 0) // float(resources["num_gpus"])) or 1)
        n = max(1, min(n, self.concurrency))
        # A fitted solver travels as its pickled state; a zero-shot one is rebuilt in the actor.
        state = self.ray.put(solver) if overrides_fit(solver) else None
        opts: dict[str, Any] = {"num_cpus": per_actor_cpus}
        if resources.get("num_gpus"):
            opts["num_gpus"] = float(resources["num_gpus"])
        custom = {k: float(v) for k, v in resources.items() if k not in ("num_cpus", "num_gpus")}
        if custom:
            opts["resources"] = custom
        actor_cls = self.ray.remote(**opts)(_SolverWorker)
        actors = [actor_cls.remote(state, self.config.task, self.config.solver, dict(self.config.solver_options),
                                   self.ctx) for _ in range(n)]
        pool = self.pools[id(solver)] = _ActorPool(actors)
        return pool

    async def solve(self, job: FoldJob, chunk: list[Sample]) -> list[Any]:
        assert job.solver is not None
        self.users.setdefault(id(job.solver), set()).add(job.fold.name)
        results, calls = await self._pool(job.solver).solve(chunk)
        if self.log is not None:
            for call in calls:
                self.log.write(call)
        errors = [e for _, e in results if e is not None]
        if errors:
            raise HarnessError(errors[0])
        return [o for o, _ in results]

    def job_done(self, job: FoldJob) -> None:
        """A fold is finished: its solver's actors go once no running fold uses them, so the next
        folds' actors get the cluster's CPUs/GPUs (folds of a trained solver overlap in time)."""
        users = self.users.get(id(job.solver))
        if users is None:
            return
        users.discard(job.fold.name)
        if not users:
            del self.users[id(job.solver)]
            pool = self.pools.pop(id(job.solver), None)
            for a in pool.actors if pool else ():
                self.ray.kill(a)

    def close(self) -> None:
        for pool in self.pools.values():
            for a in pool.actors:
                self.ray.kill(a)
        self.pools.clear()

