"""Runner overhead, measured against baselines run in the same process.

(a) Throughput with a no-op solver over N synthetic samples (default 100k), as a ratio to a bare
    asyncio loop doing the same awaits with the same bounded concurrency (a semaphore and one
    task per sample, the straightforward way). The runner does more per sample: scoring, records,
    the result cache, samples.jsonl, metrics with a bootstrap CI. Target: at most 2x slower.
(b) A first run with a 5 ms solver vs a cached re-run of the same config. Target: >= 20x faster.
    The 5 ms are blocking work (a CPU method); the same with 5 ms of awaiting (a remote call,
    overlapped 64-fold by concurrency) is printed too, for information.

Usage: python benchmarks/runner_overhead.py [--samples 100000] [--slow-samples 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

from harness.core import Fold, Metric, Sample, Solver, Task
from harness.registry import register_solver, register_task
from harness.runner import RunConfig, RunSettings, run


@functools.cache
def make_samples(n: int) -> list[Sample]:
    return [Sample(f"s{i}", {"x": i}, i % 2 == 0) for i in range(n)]


@register_task
class SyntheticTask(Task):
    name = "bench-synthetic"
    description = "n integers, target = parity"
    protocols = {"all": "one fold"}
    default_protocol = "all"
    default_solver = "noop"

    def fingerprint(self, data_dir: Path) -> str:
        return (data_dir / "n.txt").read_text()

    def folds(self, data_dir: Path, protocol: str) -> list[Fold]:
        # the same prebuilt samples the bare loop gets: data loading is not runner overhead
        return [Fold("all", make_samples(int((data_dir / "n.txt").read_text())))]

    def score(self, sample, prediction):
        return {"correct": float(prediction == sample.target)}

    def metrics(self, protocol):
        return [Metric("accuracy", mean_of="correct", scale=100)]


@register_solver("noop", tasks=("bench-synthetic",))
class NoopSolver(Solver):
    async def solve(self, sample):
        return True


@register_solver("busy5ms", tasks=("bench-synthetic",))
class BusySolver(Solver):
    """5 ms of blocking work per sample (a classical method on the CPU): concurrency cannot hide it."""

    async def solve(self, sample):
        time.sleep(0.005)
        return True


@register_solver("await5ms", tasks=("bench-synthetic",))
class AwaitSolver(Solver):
    """5 ms of waiting per sample (a remote call): overlapped by concurrency."""

    async def solve(self, sample):
        await asyncio.sleep(0.005)
        return True


async def bare_loop(samples: list[Sample], solver: Solver, concurrency: int) -> list:
    sem = asyncio.Semaphore(concurrency)

    async def one(s: Sample):
        async with sem:
            return await solver.solve(s)

    return await asyncio.gather(*(one(s) for s in samples))


def timed_run(root: Path, n: int, solver: str, concurrency: int, n_boot: int) -> tuple[float, int]:
    data = root / f"data-{n}"
    data.mkdir(exist_ok=True)
    (data / "n.txt").write_text(str(n))
    settings = RunSettings(data=data, out_dir=root / "runs", show_progress=False, concurrency=concurrency,
                           db_url=f"sqlite:///{root / 'board.sqlite'}")
    t = time.perf_counter()
    res = run(RunConfig("bench-synthetic", solver=solver, n_boot=n_boot), settings)
    return time.perf_counter() - t, res.n_cached


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--slow-samples", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--bootstrap", type=int, default=200, help="replicates for the runner's CI (default 200)")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        samples = make_samples(args.samples)
        t = time.perf_counter()
        asyncio.run(bare_loop(samples, NoopSolver(), args.concurrency))
        bare = time.perf_counter() - t
        ours, _ = timed_run(root, args.samples, "noop", args.concurrency, args.bootstrap)
        results["a"] = {"samples": args.samples, "bare_asyncio_s": bare, "runner_s": ours,
                        "slowdown": ours / bare, "target": "<= 2.0"}
        print(f"(a) {args.samples:,} no-op samples, concurrency {args.concurrency}")
        print(f"    bare asyncio (semaphore + gather): {bare:7.2f} s  ({args.samples / bare:,.0f} samples/s)")
        print(f"    harness runner (cache, scoring, outputs, {args.bootstrap}-rep bootstrap): {ours:7.2f} s  "
              f"({args.samples / ours:,.0f} samples/s)")
        print(f"    ratio runner/bare = {ours / bare:.2f}x   (target <= 2x)")

        for solver, what in (("busy5ms", "blocking"), ("await5ms", "awaited")):
            first, c1 = timed_run(root, args.slow_samples, solver, args.concurrency, args.bootstrap)
            again, c2 = timed_run(root, args.slow_samples, solver, args.concurrency, args.bootstrap)
            assert c1 == 0 and c2 == args.slow_samples, (c1, c2)
            results[f"b_{what}"] = {"samples": args.slow_samples, "first_s": first, "cached_s": again,
                                    "speedup": first / again, "target": ">= 20" if what == "blocking" else "info"}
            print(f"(b) {args.slow_samples:,} samples of a 5 ms {what} solver, concurrency {args.concurrency}")
            print(f"    first run {first:.2f} s · cached re-run {again:.3f} s · speed-up {first / again:.1f}x"
                  + ("   (target >= 20x)" if what == "blocking" else "   (information)"))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
