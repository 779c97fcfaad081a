"""How an `OpenAIBackend` sends one JSON body to an OpenAI-compatible server.

Two transports with the same contract (`post(path, body) -> dict`, `BackendError` on failure):
- `OpenAIClientTransport`: the official `openai` async client (`max_retries=0`; retries are the
  wrapper's job), on aiohttp when `openai[aiohttp]` is installed, else httpx.
- `AiohttpTransport`: one `aiohttp` session posting the same JSON. It spends ~0.3 ms of CPU per request
  against ~1 ms for the `openai` client's request/response layers, which decides whether a
  2-core client keeps 64 requests in flight at 128 requests/s (see benchmarks/endpoint_throughput.py).

Both keep one connection pool of `max_connections` per event loop, created lazily.
"""

from __future__ import annotations

import abc
import asyncio
import email.utils
import json
import time
from typing import Any

from harness.models.base import BackendError

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def is_retryable(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` / `Retry-After` (seconds or an HTTP date), if present."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, parsed.timestamp() - time.time())


def _timed_out(url: str, endpoint: str, timeout_s: float) -> BackendError:
    return BackendError(f"request to {url} timed out after {timeout_s:g} s", endpoint=endpoint, retryable=True,
                        timed_out=True)


class _PerLoop(abc.ABC):
    """Holds a client made for the running event loop (pools cannot cross loops)."""

    def __init__(self) -> None:
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = self.make()
            self._loop = loop
        return self._client

    @abc.abstractmethod
    def make(self) -> Any:
        """A new client bound to the running event loop."""


class OpenAIClientTransport(_PerLoop):
    def __init__(self, base_url: str, api_key: str, timeout_s: float, max_connections: int) -> None:
        super().__init__()
        self.base_url, self.api_key, self.timeout_s, self.max_connections = (
            base_url,
            api_key,
            timeout_s,
            max_connections,
        )

    def make(self) -> Any:
        import openai

        try:
            import httpx2 as httpx  # what openai >= 2 is built on
        except ImportError:
            import httpx
        limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections)
        try:
            http = openai.DefaultAioHttpClient(limits=limits)
        except (AttributeError, RuntimeError):  # no aiohttp extra
            http = openai.DefaultAsyncHttpxClient(limits=limits)
        return openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self.api_key, max_retries=0, timeout=self.timeout_s, http_client=http
        )

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import openai

        url = f"{self.base_url}{path}"
        try:
            # `post` with a plain body skips the client's per-call TypedDict transform and response
            # models (most of its CPU per request); auth, base URL and error types stay the client's.
            data: dict[str, Any] = await self.client().post(path, body=body, cast_to=object)
            return data
        except openai.APITimeoutError:
            raise _timed_out(url, self.base_url, self.timeout_s) from None
        except openai.APIConnectionError as exc:
            raise BackendError(f"cannot connect to {url}: {exc}", endpoint=self.base_url, retryable=True,
                               unreachable=True) from exc
        except openai.APIStatusError as exc:
            # openai keeps `{"error": X}`'s X as the body, else the whole (vLLM flat) body
            message = error_text(exc.body) or exc.message
            raise BackendError(
                f"{url} answered HTTP {exc.status_code}: {str(message)[:300]}",
                endpoint=self.base_url,
                status=exc.status_code,
                retryable=is_retryable(exc.status_code),
                retry_after_s=parse_retry_after(exc.response.headers),
            ) from exc

    async def aclose(self) -> None:
        if self._client is not None:
            try:
                await self._client.close()
            except RuntimeError:  # its event loop is gone
                pass
            self._client = None


class AiohttpTransport(_PerLoop):
    def __init__(self, base_url: str, api_key: str, timeout_s: float, max_connections: int) -> None:
        super().__init__()
        self.base_url, self.timeout_s, self.max_connections = base_url, timeout_s, max_connections
        self._headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def make(self) -> Any:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=60)
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers=self._headers,
        )

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import aiohttp

        url = f"{self.base_url}{path}"
        try:
            async with self.client().post(url, data=json.dumps(body)) as resp:
                payload = await resp.read()
                status = resp.status
                headers = resp.headers
        except TimeoutError:
            raise _timed_out(url, self.base_url, self.timeout_s) from None
        except aiohttp.ClientError as exc:
            raise BackendError(f"cannot connect to {url}: {exc}", endpoint=self.base_url, retryable=True,
                               unreachable=True) from exc
        if status != 200:
            raise BackendError(
                f"{url} answered HTTP {status}: {_error_message(payload)}",
                endpoint=self.base_url,
                status=status,
                retryable=is_retryable(status),
                retry_after_s=parse_retry_after(headers),
            )
        try:
            data: dict[str, Any] = json.loads(payload)
        except ValueError:
            raise BackendError(f"{url} answered with invalid JSON: {payload[:200]!r}", endpoint=self.base_url) from None
        return data

    async def aclose(self) -> None:
        if self._client is not None:
            try:
                await self._client.close()
            except RuntimeError:
                pass
            self._client = None


def error_text(body: Any) -> str | None:
    """The message of an error body: OpenAI's `{"error": {"message": ...}}`, vLLM's flat
    `{"object": "error", "message": ...}`, `{"error": "..."}` or `{"detail": ...}` (FastAPI); None if none."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str) and error:
        return error
    for key in ("message", "detail"):
        if body.get(key):
            return str(body[key])
    return None


def _error_message(payload: bytes) -> str:
    try:
        body = json.loads(payload)
    except ValueError:
        return payload[:300].decode(errors="replace")
    text = error_text(body)
    return (text if text is not None else payload[:300].decode(errors="replace"))[:300]


def make_transport(
    kind: str, base_url: str, api_key: str, timeout_s: float, max_connections: int
) -> OpenAIClientTransport | AiohttpTransport:
    """`kind`: "openai", "aiohttp", or "auto" (aiohttp when installed, else the openai client)."""
    if kind == "auto":  # found without importing it: a fully cached run never pays aiohttp's import
        import importlib.util

        kind = "aiohttp" if importlib.util.find_spec("aiohttp") is not None else "openai"
    if kind == "aiohttp":
        return AiohttpTransport(base_url, api_key, timeout_s, max_connections)
    if kind == "openai":
        return OpenAIClientTransport(base_url, api_key, timeout_s, max_connections)
    raise ValueError(f"unknown transport {kind!r}: use auto, openai or aiohttp")
