"""Retries, rate limiting and caching wrap any backend: checked against the fake server and stubs."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest
from servers.fake_openai import FakeOpenAIServer, ServerConfig

from harness.models import BackendError, ChatRequest, ChatResponse, Message, ModelBackend, Part, make_backend
from harness.models.wrappers import AdaptiveLimiter, CachedBackend, RetryingBackend, endpoint_limiter, request_key


def ask(text: str) -> ChatRequest:
    return ChatRequest((Message.text("user", text),))


def test_30_percent_failures_all_requests_succeed_once_and_retry_after_is_honoured():
    cfg = ServerConfig(latency_s=0.05, fail_fraction=0.3, retry_after_s=0.3, seed=1)
    with FakeOpenAIServer(cfg) as srv:
        b = make_backend("m", base_url=srv.base_url, api_key=None, cache_dir=None, use_cache=False,
                         concurrency=16, timeout_s=10, max_retries=20)  # fmt: skip

        async def go():
            try:
                return await asyncio.gather(*(b.chat(ask(f"q{i}")) for i in range(120)))
            finally:
                await b.aclose()

        answers = asyncio.run(go())
        stats = srv.stats()
    assert [a.text for a in answers] == [f"echo: q{i}" for i in range(120)]
    assert stats["completed"] == 120  # each request answered exactly once
    assert stats["failed_429"] > 5 and stats["failed_500"] > 5
    assert stats["seen"] == 120 + stats["failed_429"] + stats["failed_500"]
    assert stats["min_retry_gap_s"] >= 0.3  # measured at the server: no retry came before Retry-After


class FlakyBackend(ModelBackend):
    """Fails the first call of each prompt with a 429 (Retry-After 0.2 s); tracks slots held."""

    def __init__(self, limiter_probe: list[int]) -> None:
        self.model = "flaky"
        self.endpoint = "stub://flaky"
        self.calls: Counter[str] = Counter()
        self.probe = limiter_probe

    async def chat(self, request: ChatRequest) -> ChatResponse:
        prompt = request.messages[0].content[0].text or ""
        self.calls[prompt] += 1
        if prompt == "fails-first" and self.calls[prompt] == 1:
            raise BackendError("busy", endpoint=self.endpoint, status=429, retryable=True, retry_after_s=0.2)
        await asyncio.sleep(0.01)
        return ChatResponse(text=prompt)


def test_a_request_waiting_to_retry_holds_no_concurrency_slot():
    slept_with_in_flight: list[int] = []
    inner = FlakyBackend([])

    async def sleep(seconds: float) -> None:
        slept_with_in_flight.append(endpoint_limiter("stub://flaky", 1).in_flight)
        await asyncio.sleep(seconds)

    b = RetryingBackend(inner, concurrency=1, sleep=sleep)

    async def go():
        loop = asyncio.get_running_loop()
        first = asyncio.ensure_future(b.chat(ask("fails-first")))
        await asyncio.sleep(0.02)
        t0 = loop.time()
        other = await b.chat(ask("other"))  # concurrency 1: only possible if the sleeper gave its slot back
        waited = loop.time() - t0
        return await first, other, waited

    first, other, waited = asyncio.run(go())
    assert (first.text, other.text) == ("fails-first", "other")
    assert slept_with_in_flight == [0]
    assert waited < 0.15  # did not wait for the 0.2 s Retry-After of the other request


def test_gives_up_after_max_retries_naming_endpoint_and_last_status():
    class Always500(ModelBackend):
        model, endpoint = "m", "http://x/v1"

        async def chat(self, request: ChatRequest) -> ChatResponse:
            raise BackendError("http://x/v1/chat/completions answered HTTP 500: boom", status=500, retryable=True)

    async def no_sleep(_: float) -> None:
        return None

    b = RetryingBackend(Always500(), max_retries=3, sleep=no_sleep)
    with pytest.raises(BackendError, match=r"http://x/v1 \(model m\) after 4 attempts; last error \(HTTP 500\)"):
        asyncio.run(b.chat(ask("q")))


def test_backoff_is_exponential_with_full_jitter_and_retry_after_wins():
    b = RetryingBackend(FlakyBackend([]), base_delay_s=0.5, max_delay_s=4, rng=random.Random(0))
    plain = BackendError("x", retryable=True)
    for attempt, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (5, 4.0)]:
        delays = [b.delay(attempt, plain) for _ in range(200)]
        assert 0 <= min(delays) and max(delays) <= cap and max(delays) > 0.8 * cap
    told = BackendError("x", retryable=True, retry_after_s=3.0)
    assert all(3.0 <= b.delay(0, told) <= 3.3 for _ in range(50))


def test_limiter_backs_off_on_429_and_recovers_on_success():
    lim = AdaptiveLimiter(40, decrease=0.5, increase=1.0, cooldown_s=10)
    lim.on_rate_limited()
    lim.on_rate_limited()  # same cooldown window: one overload, one cut
    assert lim.allowed == 20
    for _ in range(25):
        lim.on_success()
    assert lim.allowed == 40


def test_limiter_never_exceeds_its_allowed_concurrency():
    lim = AdaptiveLimiter(3)
    peak = 0

    async def work():
        nonlocal peak
        await lim.acquire()
        peak = max(peak, lim.in_flight)
        await asyncio.sleep(0.001)
        lim.release()

    async def go():
        await asyncio.gather(*(work() for _ in range(50)))

    asyncio.run(go())
    assert peak == 3 and lim.in_flight == 0


class CountingBackend(ModelBackend):
    model, endpoint = "counting", "stub://counting"

    def __init__(self) -> None:
        self.calls = 0

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        return ChatResponse(text=f"answer {self.calls}", parsed={"n": self.calls}, prompt_tokens=3,
                            completion_tokens=2, model="counting")  # fmt: skip


def test_cache_hit_returns_the_identical_response_marked_cached(tmp_path):
    inner = CountingBackend()
    b = CachedBackend(inner, tmp_path)
    first = asyncio.run(b.chat(ask("q")))
    again = asyncio.run(b.chat(ask("q")))
    other = asyncio.run(b.chat(ask("q2")))
    assert inner.calls == 2 and (tmp_path / "model_cache.sqlite").exists()
    assert (again.text, again.parsed, again.prompt_tokens, again.completion_tokens) == (
        first.text, first.parsed, first.prompt_tokens, first.completion_tokens)  # fmt: skip
    assert again.cached and not first.cached and other.text == "answer 2"
    # a second process-level instance reads the same file
    assert asyncio.run(CachedBackend(CountingBackend(), tmp_path).chat(ask("q"))).text == "answer 1"


def test_media_bytes_and_sampling_parameters_change_the_cache_key(tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\nAAAA")

    def req(**kw) -> ChatRequest:
        return ChatRequest((Message("user", (Part("text", text="x"), Part("image", path=str(img)))),), **kw)

    base = request_key("m", req())
    assert request_key("m", req()) == base
    assert request_key("m", req(temperature=0.7)) != base
    assert request_key("m", req(json_schema={"type": "object"})) != base
    assert request_key("other", req()) != base
    assert request_key("m", req(), "http://a:8000/v1") != request_key("m", req(), "http://b:8000/v1")
    img.write_bytes(b"\x89PNG\r\n\x1a\nBBBB")  # same path, new content
    assert request_key("m", req()) != base
    inline = ChatRequest((Message("user", (Part("image", data=b"1"),)),))
    assert request_key("m", inline) != request_key("m", ChatRequest((Message("user", (Part("image", data=b"2"),)),)))


def test_a_retry_gets_the_next_free_slot_before_fresh_requests():
    lim = AdaptiveLimiter(1)
    order: list[str] = []

    async def wait(name: str, retry: bool) -> None:
        await lim.acquire(retry=retry)
        order.append(name)
        lim.release()

    async def go():
        await lim.acquire()
        fresh = asyncio.ensure_future(wait("fresh", False))
        await asyncio.sleep(0)
        retry = asyncio.ensure_future(wait("retry", True))
        await asyncio.sleep(0)
        lim.release()
        await asyncio.gather(fresh, retry)

    asyncio.run(go())
    assert order == ["retry", "fresh"]


class DownBackend(ModelBackend):
    """Cannot connect (as a wrong --base-url), except for the calls listed in `up` (0-based)."""

    def __init__(self, up: tuple[int, ...] = ()) -> None:
        self.model, self.endpoint, self.calls, self.up = "m", "http://127.0.0.1:9/v1", 0, up

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        if self.calls - 1 in self.up:
            return ChatResponse(text="ok")
        raise BackendError("cannot connect to http://127.0.0.1:9/v1/chat/completions: refused",
                           endpoint=self.endpoint, retryable=True, unreachable=True)


async def _no_sleep(_: float) -> None:
    return None


def test_an_endpoint_that_never_answered_fails_the_rest_at_once():
    inner = DownBackend()
    b = RetryingBackend(inner, max_retries=2, sleep=_no_sleep)

    async def go() -> list[BaseException | ChatResponse]:
        first = await asyncio.gather(b.chat(ask("a")), return_exceptions=True)
        rest = await asyncio.gather(*(b.chat(ask(f"q{i}")) for i in range(20)), return_exceptions=True)
        return [*first, *rest]

    out = asyncio.run(go())
    assert all(isinstance(e, BackendError) for e in out)
    assert "gave up" in str(out[0]) and inner.calls == 3 + 0  # its 3 attempts, then nothing reaches the server
    assert all("is unreachable" in str(e) and "--base-url" in str(e) for e in out[1:])


def test_an_endpoint_that_answered_once_keeps_its_retries_through_an_outage():
    inner = DownBackend(up=(0,))
    b = RetryingBackend(inner, max_retries=2, sleep=_no_sleep)

    async def go() -> list[BaseException | ChatResponse]:
        return [await b.chat(ask("a")), *[await asyncio.gather(b.chat(ask(f"q{i}")), return_exceptions=True)
                                          for i in range(3)]]

    out = asyncio.run(go())
    assert out[0].text == "ok" and inner.calls == 1 + 3 * 3  # every later request tried 3 times
    assert all("gave up" in str(e[0]) for e in out[1:])
