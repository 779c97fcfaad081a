"""Ray executor: the same per-sample work as the local loop, spread over Ray actors.

Each actor builds the solver from the registry (task and solver found by entry point, so the
cluster's workers need the same packages installed), fits it on the fold's train part, and solves
chunks of samples. Results come back to the driver, which scores and caches them exactly as the
local executor does, so the cache, samples.jsonl and metrics are identical. `ray.init()` joins the
cluster named by RAY_ADDRESS (Ray's own variable) or starts a local one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.core import Fold, HarnessError, RunContext, Sample

if TYPE_CHECKING:
    from harness.runner import RunConfig, SampleSink


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _SolverWorker:
    """Body of the Ray actor (kept a plain class so it can be tested without Ray)."""

    def __init__(self, task: str, solver: str, options: dict[str, Any], ctx: RunContext,
                 train: Sequence[Sample], concurrency: int) -> None:
        from harness.registry import get_task, make_solver

        self.solver = make_solver(get_task(task), solver, ctx, options)
        if train:
            self.solver.fit(train)
        self.concurrency = max(1, concurrency)

    async def solve(self, samples: Sequence[Sample]) -> list[tuple[Any, float, str | None]]:
        sem = asyncio.Semaphore(self.concurrency)

        async def one(sample: Sample) -> tuple[Any, float, str | None]:
            async with sem:
                start = time.perf_counter()
                try:
                    return await self.solver.solve(sample), time.perf_counter() - start, None
                except Exception as exc:
                    return None, time.perf_counter() - start, _error_text(exc)

        return list(await asyncio.gather(*(one(s) for s in samples)))


async def solve_ray(config: RunConfig, ctx: RunContext, fold: Fold, samples: Sequence[Sample],
                    sink: SampleSink, concurrency: int) -> None:
    try:
        import ray
    except ImportError as exc:
        raise HarnessError("--executor ray needs Ray: pip install 'harness-eval[ray]'") from exc
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    n_cpus = int(ray.available_resources().get("CPU", 1)) or 1
    n_actors = max(1, min(concurrency, n_cpus, len(samples)))
    actor_cls = ray.remote(num_cpus=1)(_SolverWorker)
    train_ref = ray.put(list(fold.train))
    actors = [
        actor_cls.remote(config.task, config.solver, dict(config.solver_options), ctx, train_ref,
                         max(1, concurrency // n_actors))
        for _ in range(n_actors)
    ]
    size = max(1, -(-len(samples) // (4 * n_actors)))
    chunks = [list(samples[i : i + size]) for i in range(0, len(samples), size)]
    pending = {actors[k % n_actors].solve.remote(chunk): chunk for k, chunk in enumerate(chunks)}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0)
            if not done:
                await asyncio.sleep(0.01)
                continue
            ref = done[0]
            chunk = pending.pop(ref)
            try:
                results = await ref
            except Exception as exc:  # the actor died: every sample of its chunk is errored
                results = [(None, 0.0, f"ray worker failed: {_error_text(exc)}")] * len(chunk)
            for sample, (output, latency, error) in zip(chunk, results, strict=True):
                sink.add(sample, output, latency, error)
            sink.flush()
    finally:
        for a in actors:
            ray.kill(a)
