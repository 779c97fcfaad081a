"""Endpoint throughput of the model-backend stack against a fake OpenAI-compatible server.

The server (tests/servers/fake_openai.py, in its own process) answers after a fixed 500 ms and
never limits parallelism, so at concurrency 64 the ideal rate is 64 / 0.5 s = 128 requests/s. Rates
are measured AT THE SERVER (completions / time from first request to last completion).

  1. 690 requests through `make_backend` (cache off) vs a plain `openai` async loop with a semaphore;
  2. the same with 30% failing (half 429 + Retry-After, half 500): errored requests and goodput;
  3. a cached re-run (speed-up over the first run);
  4. `harness run --task sarcasm --model M --base-url URL --limit 5` as a subprocess: time from
     process start to the first request at the server;
  5. end to end, what users run: `harness run --task sarcasm --model M --base-url URL --concurrency 64`
     (all five folds, 690 samples, cache off) as a subprocess, beside a plain AsyncOpenAI + semaphore
     loop over 690 prompts on the same server in the same script; then the cached re-run of that
     command (wall time of the whole process, bootstrap included);
  and the client's CPU per request (process_time).

Usage: .venv/bin/python benchmarks/endpoint_throughput.py [--requests 690] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from servers.fake_openai import FakeOpenAIServer, ServerConfig  # noqa: E402

from harness.models import ChatRequest, Message, make_backend  # noqa: E402

LATENCY_S = 0.5
TARGETS = {"ours": 0.95, "goodput": 0.6, "cache_speedup": 50.0, "first_request_s": 1.5, "cpu_ms": 1.0,
           "cached_rerun_s": 1.0}
MUSTARD = Path(os.environ.get("HARNESS_SHARED_DATA", REPO.parent / "shared" / "data")) / "mustard"


def requests(n: int, tag: str) -> list[ChatRequest]:
    return [ChatRequest((Message.text("user", f"{tag} question {i}"),), max_tokens=16) for i in range(n)]


async def run_ours(url: str, n: int, concurrency: int, tag: str, cache_dir: Path | None) -> dict[str, Any]:
    backend = make_backend("fake-model", base_url=url, api_key=None, cache_dir=cache_dir,
                           use_cache=cache_dir is not None, concurrency=concurrency, timeout_s=60)  # fmt: skip
    reqs = requests(n, tag)
    errors = 0

    async def one(req: ChatRequest) -> None:
        nonlocal errors
        try:
            await backend.chat(req)
        except Exception:
            errors += 1

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(r) for r in reqs))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await backend.aclose()
    return {"wall_s": wall, "cpu_ms_per_req": 1000 * cpu / n, "errors": errors}


async def run_plain(url: str, n: int, concurrency: int, tag: str) -> dict[str, Any]:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await client.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": f"{tag} question {i}"}], max_tokens=16
            )

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await client.close()
    return {"wall_s": wall, "cpu_ms_per_req": 1000 * cpu / n, "errors": 0}


async def warm(url: str) -> None:
    """One request per client kind so connection set-up and imports are not timed."""
    await run_ours(url, 1, 1, "warm", None)
    await run_plain(url, 1, 1, "warm")


def measured(srv: FakeOpenAIServer, limit: float) -> dict[str, Any]:
    st = srv.stats()
    return {"server_rate": st["completed_per_s"], "ratio": st["completed_per_s"] / limit, **st}


def first_request_time(limit_samples: int = 5) -> str:
    """Seconds from `harness run` process start to the first request at the server, or why not."""
    data = Path(os.environ.get("HARNESS_SHARED_DATA", REPO.parent / "shared" / "data")) / "mustard"
    if not (REPO / "harness" / "cli.py").exists():
        return "skipped: harness/cli.py is not committed yet"
    if not data.exists():
        return f"skipped: no sarcasm data at {data}"
    with FakeOpenAIServer(ServerConfig(latency_s=0.05), process=True) as srv, tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "harness.cli", "run", "--task", "sarcasm", "--model", "fake-model",
               "--base-url", srv.base_url, "--limit", str(limit_samples), "--data", str(data), "--out", out,
               "--no-progress", "--no-cache"]  # fmt: skip
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
        first = srv.stats()["first_seen_t"]
    if proc.returncode != 0 or first is None:
        return f"failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-400:]}"
    return f"{first - t0:.2f}"


def end_to_end(concurrency: int) -> list[tuple[str, str, str]]:
    """The CLI over all five sarcasm folds vs a plain AsyncOpenAI loop, rates at the server; cached re-run."""
    if not MUSTARD.exists():
        return [("harness run end to end", f"skipped: no sarcasm data at {MUSTARD}", "")]
    limit = concurrency / LATENCY_S
    rows = []
    with FakeOpenAIServer(ServerConfig(latency_s=LATENCY_S), process=True) as srv, \
            tempfile.TemporaryDirectory() as out:  # fmt: skip
        cmd = [sys.executable, "-m", "harness.cli", "run", "--task", "sarcasm", "--model", "fake-model",
               "--base-url", srv.base_url, "--concurrency", str(concurrency), "--data", str(MUSTARD),
               "--out", out, "--no-progress"]  # fmt: skip
        asyncio.run(warm(srv.base_url))
        ratios: dict[str, list[float]] = {"cli": [], "plain": []}
        for attempt in range(2):
            srv.reset()
            proc = subprocess.run([*cmd, "--no-cache"], capture_output=True, text=True, cwd=REPO, timeout=600)
            if proc.returncode != 0:
                return [("harness run end to end", f"failed: {(proc.stderr or proc.stdout)[-300:]}", "")]
            ratios["cli"].append(measured(srv, limit)["ratio"])
            srv.reset()
            asyncio.run(run_plain(srv.base_url, 690, concurrency, f"e2e{attempt}"))
            ratios["plain"].append(measured(srv, limit)["ratio"])
        cli, plain = max(ratios["cli"]), max(ratios["plain"])
        rows.append(("harness run --task sarcasm (5 folds, 690) rate / limit", f"{cli:.3f}  (runs "
                     + ", ".join(f"{r:.3f}" for r in ratios["cli"]) + ")", f">= {TARGETS['ours']}"))
        rows.append(("plain AsyncOpenAI loop, same server, rate / limit", f"{plain:.3f}  (runs "
                     + ", ".join(f"{r:.3f}" for r in ratios["plain"]) + f"); CLI / plain = {cli / plain:.2f}",
                     "CLI ahead"))
        subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)  # fill the cache
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
            walls.append(time.perf_counter() - t0)
        hit = "from cache: 690" in proc.stdout
        rows.append(("cached re-run of that command, wall (s)", f"{min(walls):.2f}  (runs "
                     + ", ".join(f"{w:.2f}" for w in walls) + ("" if hit else "; NOT all from cache") + ")",
                     f"<= {TARGETS['cached_rerun_s']}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=690)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--only-e2e", action="store_true", help="only part 5 (the CLI end to end)")
    args = parser.parse_args()
    if args.only_e2e:
        _print(end_to_end(args.concurrency))
        return
    n, conc = args.requests, args.concurrency
    limit = conc / LATENCY_S
    rows: list[tuple[str, str, str]] = []
    load, cores = os.getloadavg()[0], os.cpu_count()
    print(f"fake server: {LATENCY_S * 1000:.0f} ms latency, unlimited parallelism; {n} requests at "
          f"concurrency {conc}; limit {limit:.0f} req/s; load average {load:.1f} on {cores} cores")  # fmt: skip

    with FakeOpenAIServer(ServerConfig(latency_s=LATENCY_S), process=True) as srv:
        asyncio.run(warm(srv.base_url))
        results: dict[str, dict[str, Any]] = {}
        for name in ("ours", "plain", "ours#2", "plain#2"):
            srv.reset()
            if name.startswith("ours"):
                client = asyncio.run(run_ours(srv.base_url, n, conc, name, None))
            else:
                client = asyncio.run(run_plain(srv.base_url, n, conc, name))
            results[name] = {**client, **measured(srv, limit)}
        best = {k: max(results[k], results[k + "#2"], key=lambda r: r["ratio"]) for k in ("ours", "plain")}
        for k in ("ours", "plain"):
            r = best[k]
            label = "make_backend (cache off)" if k == "ours" else "plain openai loop + semaphore"
            rows.append((f"rate / limit: {label}", f"{r['ratio']:.3f}  ({r['server_rate']:.1f} req/s, "
                         f"runs {results[k]['ratio']:.3f}, {results[k + '#2']['ratio']:.3f})",
                         f">= {TARGETS['ours']}" if k == "ours" else "~0.89"))  # fmt: skip
        rows.append(("client CPU per request: ours / plain",
                     f"{best['ours']['cpu_ms_per_req']:.2f} ms / {best['plain']['cpu_ms_per_req']:.2f} ms",
                     f"<= {TARGETS['cpu_ms']} ms"))  # fmt: skip

    cfg = ServerConfig(latency_s=LATENCY_S, fail_fraction=0.3, retry_after_s=1.0, seed=7)
    with FakeOpenAIServer(cfg, process=True) as srv:
        asyncio.run(run_ours(srv.base_url, 1, 1, "warm", None))
        srv.reset()
        failing = asyncio.run(run_ours(srv.base_url, n, conc, "fail", None))
        st = srv.stats()
        goodput = st["completed_per_s"] / limit
        rows.append(("30% failing: errored requests", f"{failing['errors']} of {n}", "0"))
        rows.append(("30% failing: goodput / limit",
                     f"{goodput:.3f}  ({st['failed_429']} x 429, {st['failed_500']} x 500, "
                     f"min retry gap {st['min_retry_gap_s'] or 0:.2f} s after Retry-After 1 s)",
                     f">= {TARGETS['goodput']}"))  # fmt: skip

    with FakeOpenAIServer(ServerConfig(latency_s=LATENCY_S), process=True) as srv, \
            tempfile.TemporaryDirectory() as cache:  # fmt: skip
        cold = asyncio.run(run_ours(srv.base_url, n, conc, "cache", Path(cache)))
        hot = asyncio.run(run_ours(srv.base_url, n, conc, "cache", Path(cache)))
        speedup = f"{cold['wall_s'] / hot['wall_s']:.0f}x  ({cold['wall_s']:.2f} s -> {hot['wall_s'] * 1000:.0f} ms)"
        rows.append(("cached re-run speed-up", speedup, f">= {TARGETS['cache_speedup']:.0f}x"))

    rows.append(("harness run: process start -> first request (s)", first_request_time(),
                 f"<= {TARGETS['first_request_s']}"))  # fmt: skip
    rows.extend(end_to_end(conc))
    _print(rows)


def _print(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(width)}  {'value'.ljust(60)}  target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {value.ljust(60)}  {target}")


if __name__ == "__main__":
    main()
