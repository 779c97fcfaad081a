"""Caching, retries and rate limiting wrap any backend from outside (as lm-evaluation-harness does).

`make_backend` stacks them as `CachedBackend(RetryingBackend(backend))`: a cache hit takes no
concurrency slot, and a request that waits to retry gives its slot back while it sleeps.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness.models.base import BackendError, ChatRequest, ChatResponse, ModelBackend, Part


class AdaptiveLimiter:
    """A semaphore whose size follows AIMD: a 429 multiplies the allowed concurrency by `decrease`
    (at most once per `cooldown_s`, since one overload shows up in many requests at once), and
    every success adds `increase` back, up to `max_concurrency`."""

    def __init__(
        self, max_concurrency: int, *, decrease: float = 0.9, increase: float = 0.25, cooldown_s: float = 1.0
    ) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.limit = float(self.max_concurrency)
        self.decrease = decrease
        self.increase = increase
        self.cooldown_s = cooldown_s
        self.in_flight = 0
        # Fail fast on an endpoint that never answered: once a request gave up on a connection error and
        # no request to the endpoint has ever succeeded, the rest fail at once (a wrong --base-url or a
        # server that is not up would otherwise cost every sample its whole retry schedule).
        self.ever_succeeded = False
        self.unreachable: str | None = None
        # Retries are served before fresh requests: they are older, and sending them to the back of a
        # long queue would make the slowest request of a run wait for all the others.
        self._retries: deque[asyncio.Future[None]] = deque()
        self._fresh: deque[asyncio.Future[None]] = deque()
        self._last_decrease = -math.inf

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit))

    @property
    def outstanding(self) -> int:
        """Requests in flight plus those waiting for a slot."""
        return self.in_flight + len(self._retries) + len(self._fresh)

    async def acquire(self, retry: bool = False) -> None:
        if self.in_flight < self.allowed and not self._retries and not self._fresh:
            self.in_flight += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._retries if retry else self._fresh
        queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over just before the cancel
            else:
                queue.remove(fut)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while (self._retries or self._fresh) and self.in_flight < self.allowed:
            fut = (self._retries or self._fresh).popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    def on_success(self) -> None:
        if self.limit < self.max_concurrency:
            self.limit = min(float(self.max_concurrency), self.limit + self.increase)
            self._wake()

    def on_rate_limited(self) -> None:
        now = time.monotonic()
        if now - self._last_decrease >= self.cooldown_s:
            self.limit = max(1.0, self.limit * self.decrease)
            self._last_decrease = now


# One limiter per (event loop, endpoint): backends on the same server share its rate limit.
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, AdaptiveLimiter]] = (
    weakref.WeakKeyDictionary()
)


def endpoint_limiter(endpoint: str, concurrency: int) -> AdaptiveLimiter:
    per_loop = _limiters.setdefault(asyncio.get_running_loop(), {})
    limiter = per_loop.get(endpoint)
    if limiter is None:
        limiter = per_loop[endpoint] = AdaptiveLimiter(concurrency)
    elif concurrency > limiter.max_concurrency:
        limiter.max_concurrency = concurrency
    return limiter


_rotation = 0


def least_outstanding(limiters: list[AdaptiveLimiter]) -> int:
    """Index of the limiter with the fewest requests in flight or queued per allowed slot; ties rotate."""
    global _rotation
    _rotation += 1
    n = len(limiters)
    loads = [lim.outstanding / lim.allowed for lim in limiters]
    return min(range(n), key=lambda i: (loads[i], (i - _rotation) % n))


class ReplicaSet(ModelBackend):
    """One model served by several endpoints (`--base-url URL1,URL2`: vLLM replicas). `RetryingBackend`
    sends each attempt to the replica with the least outstanding requests, each replica with its own
    concurrency limit (and its own back-off on 429s); used alone, it picks the same way without limits."""

    def __init__(self, replicas: list[ModelBackend]) -> None:
        if not replicas:
            raise ValueError("a replica set needs at least one backend")
        self.replicas = replicas
        self.model = replicas[0].model
        self.endpoint = ",".join(r.endpoint for r in replicas)
        self._in_flight = [0] * len(replicas)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        i = min(range(len(self.replicas)), key=lambda k: self._in_flight[k])
        self._in_flight[i] += 1
        try:
            return await self.replicas[i].chat(request)
        finally:
            self._in_flight[i] -= 1

    async def aclose(self) -> None:
        for replica in self.replicas:
            await replica.aclose()


class RetryingBackend(ModelBackend):
    """Retries retryable `BackendError`s with exponential back-off and full jitter (attempt k waits
    uniform(0, min(max_delay_s, base_delay_s * 2**k))), or the server's `Retry-After` (+ up to 10%
    jitter) when it sends one; takes a slot of the endpoint's `AdaptiveLimiter` per attempt only.
    The small cap keeps the tail short: the slowest of many requests is the one that failed most."""

    def __init__(
        self,
        inner: ModelBackend,
        *,
        concurrency: int = 8,
        max_retries: int = 8,
        max_timeout_retries: int = 2,
        base_delay_s: float = 0.1,
        max_delay_s: float = 8.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.model = inner.model
        self.endpoint = inner.endpoint or f"{type(inner).__name__}:{inner.model}"
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.max_timeout_retries = max_timeout_retries  # a hung server costs (this + 1) x timeout per sample
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self._sleep = sleep
        self._rng = rng or random.Random()

    def delay(self, attempt: int, error: BackendError) -> float:
        if error.retry_after_s is not None:
            return error.retry_after_s + self._rng.uniform(0, 0.1 * error.retry_after_s)
        return self._rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2**attempt))

    async def chat(self, request: ChatRequest) -> ChatResponse:
        replicas: list[ModelBackend] = getattr(self.inner, "replicas", None) or [self.inner]
        if len(replicas) == 1:
            limiters = [endpoint_limiter(self.endpoint, self.concurrency)]
        else:
            limiters = [endpoint_limiter(r.endpoint, self.concurrency) for r in replicas]
        attempt = 0
        guesses = 0  # failures without Retry-After: the exponent of our own back-off
        timeouts = 0
        while True:
            # least outstanding (in flight + queued, relative to its limit) of the replicas, per attempt
            pick = 0 if len(limiters) == 1 else least_outstanding(limiters)
            limiter = limiters[pick]
            if len(limiters) == 1 and limiter.unreachable is not None and not limiter.ever_succeeded:
                raise BackendError(
                    f"{self.endpoint} is unreachable ({limiter.unreachable}); no request to it has succeeded "
                    "in this run, so the rest fail at once: start the server or fix --base-url "
                    "(`harness doctor --base-url URL` checks it)", endpoint=self.endpoint, unreachable=True)
            await limiter.acquire(retry=attempt > 0)
            try:
                response = await replicas[pick].chat(request)
            except BackendError as error:
                limiter.release()
                if error.status == 429:
                    limiter.on_rate_limited()
                if not error.retryable:
                    raise
                timeouts += error.timed_out
                if attempt >= self.max_retries or timeouts > self.max_timeout_retries:
                    if error.unreachable and not limiter.ever_succeeded:
                        limiter.unreachable = str(error)
                    status = f"HTTP {error.status}" if error.status else "no status"
                    raise BackendError(
                        f"gave up on a request to {self.endpoint} (model {self.model}) after "
                        f"{attempt + 1} attempts; last error ({status}): {error}",
                        endpoint=self.endpoint,
                        status=error.status,
                    ) from error
                await self._sleep(self.delay(guesses, error))
                attempt += 1
                guesses += error.retry_after_s is None
                continue
            except BaseException:
                limiter.release()
                raise
            limiter.release()
            limiter.on_success()
            limiter.ever_succeeded, limiter.unreachable = True, None
            return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _FileDigests:
    """sha256 of file contents, remembered by (path, size, mtime) so each file is read once."""

    def __init__(self) -> None:
        self._memo: dict[tuple[str, int, int], str] = {}

    def __call__(self, path: str) -> str:
        try:
            st = os.stat(path)
        except OSError:
            return f"missing:{path}"
        key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
        digest = self._memo.get(key)
        if digest is None:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            digest = self._memo[key] = h.hexdigest()
        return digest


file_digest = _FileDigests()


def _part_key(part: Part) -> dict[str, Any]:
    if part.type == "text":
        return {"t": part.text}
    media = hashlib.sha256(part.data).hexdigest() if part.data is not None else file_digest(part.path or "")
    return {"type": part.type, "media": media, "mime": part.mime, "frames": part.num_frames}


MEDIA_FORMAT = "2"  # bump when the rendering of video/audio parts for a model changes


def request_key(model: str, request: ChatRequest, endpoint: str | None = None) -> str:
    """Content hash of everything that determines an answer: the endpoint and model (the same model
    name on another server is another model), the messages with the bytes of their media, the sampling
    parameters and the schema."""
    payload = {
        "endpoint": endpoint,
        "model": request.model or model,
        "messages": [[m.role, [_part_key(p) for p in m.content]] for m in request.messages],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
        **({"top_p": request.top_p} if request.top_p is not None else {}),  # absent: old cache keys hold
        "schema": request.json_schema,
        "video_input": request.video_input,
        "extra": request.extra,
    }
    if any(p.type in ("video", "audio") for m in request.messages for p in m.content):
        payload["media_format"] = MEDIA_FORMAT  # how backends render media parts (frames intro, video_url)
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedBackend(ModelBackend):
    """Answers repeated requests from SQLite (`cache_dir/model_cache.sqlite`, WAL, safe across
    tasks, threads and processes). Only successful, non-empty responses are stored.

    Writes run in one thread of their own, never on the event loop: a file another process holds
    locked waits there (up to `busy_timeout_s`) while requests in flight go on. A write that still
    fails loses only the cached copy: the answer stays the sample's, and the failure is said once."""

    busy_timeout_s = 30.0

    def __init__(self, inner: ModelBackend, cache_dir: Path) -> None:
        self.inner = inner
        self.model = inner.model
        self.endpoint = inner.endpoint
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.path = cache_dir / "model_cache.sqlite"
        self._lock = threading.Lock()
        from harness.cache import connect_sqlite, retry_locked

        self._db = retry_locked(lambda: connect_sqlite(self.path, self.busy_timeout_s))
        retry_locked(lambda: self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, model TEXT, response TEXT, created REAL)"
        ))
        self.hits = 0
        self.misses = 0
        self.write_errors = 0
        from concurrent.futures import ThreadPoolExecutor

        self._writer = ThreadPoolExecutor(1, thread_name_prefix="harness-model-cache")

    def _store(self, key: str, response: ChatResponse) -> None:
        """`put`, in the writer thread; a failed write is counted and said once, never raised."""
        import sqlite3
        import warnings

        try:
            self.put(key, response)
        except sqlite3.Error as exc:
            self.write_errors += 1
            if self.write_errors == 1:
                warnings.warn(f"{self.path}: model-call cache write failed ({exc}); answers are not cached "
                              "until it is writable again (a re-run asks the endpoint again)", stacklevel=1)

    def get(self, key: str) -> ChatResponse | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        return ChatResponse(
            text=data["text"],
            parsed=data.get("parsed"),
            prompt_tokens=data.get("prompt_tokens", 0),
            completion_tokens=data.get("completion_tokens", 0),
            latency_s=data.get("latency_s", 0.0),
            cached=True,
            model=data.get("model", ""),
            raw=data.get("raw", {}),
        )

    def put(self, key: str, response: ChatResponse) -> None:
        data = {
            "text": response.text,
            "parsed": response.parsed,
            "prompt_tokens": response.prompt_tokens,
            "completion_tokens": response.completion_tokens,
            "latency_s": response.latency_s,
            "model": response.model,
            "raw": response.raw,
        }
        blob = json.dumps(data, default=str)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", (key, self.model, blob, time.time())
            )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        key = request_key(self.model, request, self.endpoint)
        hit = self.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        response = await self.inner.chat(request)
        if response.text.strip() or response.parsed is not None:  # an empty answer is never cached
            await asyncio.get_running_loop().run_in_executor(self._writer, self._store, key, response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
        await asyncio.to_thread(self._writer.shutdown, True)  # pending writes finish, off the event loop
        with self._lock:
            self._db.close()
