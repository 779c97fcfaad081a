"""Any OpenAI-compatible chat server (vLLM, `transformers serve`, hosted APIs) on the `openai` async client.

Images go as data URLs; videos as uniformly sampled frames, or as vLLM's native `video_url` when the
request asks for it and the server is vLLM. A JSON schema is requested with
`response_format={"type": "json_schema", ...}` (vLLM structured outputs); a server that rejects it gets
the schema as an instruction instead, once, and never again. Retries are not done here
(`max_retries=0`): `RetryingBackend` does them, so a waiting request holds no concurrency slot.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from harness.models.base import BackendError, ChatRequest, ChatResponse, Message, ModelBackend, Part

SCHEMA_INSTRUCTION = "Answer only with a JSON object that follows this JSON schema:\n{schema}"


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
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class OpenAIBackend(ModelBackend):
    """One model on one OpenAI-compatible endpoint. The `openai`/httpx client (a connection pool of
    `max_connections`) is created lazily per event loop and reused by every request."""

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_connections: int = 64,
        frame_cache_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.endpoint = self.base_url
        self.api_key = api_key or "EMPTY"
        self.timeout_s = timeout_s
        self.max_connections = max(1, max_connections)
        self.frame_cache_dir = frame_cache_dir
        self.schema_supported = True
        self._is_vllm: bool | None = None
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            from openai import AsyncOpenAI

            http = _http_client(self.max_connections)
            self._client = AsyncOpenAI(
                base_url=self.base_url,
                api_key=self.api_key,
                max_retries=0,
                timeout=self.timeout_s,
                http_client=http,
            )
            self._loop = loop
        return self._client

    async def chat(self, request: ChatRequest) -> ChatResponse:
        client = self._get_client()
        messages = [await self._message(m, request) for m in request.messages]
        body: dict[str, Any] = {
            "model": request.model or self.model,
            "messages": messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        schema = request.json_schema
        if schema is not None:
            if self.schema_supported:
                name = str(schema.get("title") or "answer")
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": name[:64], "schema": schema},
                }
            else:
                body["messages"] = _with_instruction(messages, schema)
        if request.extra:
            body.update(request.extra)
        start = time.perf_counter()
        try:
            # `post` with a plain body: the client's auth, base URL, timeouts and error types, without
            # its per-call TypedDict transform and response models (most of its CPU per request).
            data: dict[str, Any] = await client.post("/chat/completions", body=body, cast_to=object)
        except Exception as exc:
            error = self._translate(exc)
            if schema is not None and self.schema_supported and error.status in (400, 422):
                # The server has no structured outputs: say the schema in the prompt from now on.
                self.schema_supported = False
                return await self.chat(request)
            raise error from exc
        latency = time.perf_counter() - start
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise BackendError(
                f"{self.base_url}/chat/completions answered without a choice: {str(data)[:200]}",
                endpoint=self.endpoint,
            ) from None
        usage = data.get("usage") or {}
        parsed = None
        if schema is not None:
            from harness.structured import extract_json

            parsed = extract_json(text)
        return ChatResponse(
            text=text,
            parsed=parsed,
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
            latency_s=latency,
            model=data.get("model") or body["model"],
            raw={"id": data.get("id"), "finish_reason": choice.get("finish_reason")},
        )

    def _translate(self, exc: Exception) -> BackendError:
        import openai

        url = f"{self.base_url}/chat/completions"
        if isinstance(exc, openai.APITimeoutError):
            return BackendError(
                f"request to {url} timed out after {self.timeout_s:g} s", endpoint=self.endpoint, retryable=True
            )
        if isinstance(exc, openai.APIConnectionError):
            return BackendError(f"cannot connect to {url}: {exc}", endpoint=self.endpoint, retryable=True)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            retryable = status in (408, 409, 425, 429) or status >= 500
            return BackendError(
                f"{url} answered HTTP {status}: {exc.message}",
                endpoint=self.endpoint,
                status=status,
                retryable=retryable,
                retry_after_s=parse_retry_after(exc.response.headers),
            )
        return BackendError(f"request to {url} failed: {exc!r}", endpoint=self.endpoint)

    async def _message(self, message: Message, request: ChatRequest) -> dict[str, Any]:
        parts = message.content
        if all(p.type == "text" for p in parts):
            return {"role": message.role, "content": "".join(p.text or "" for p in parts)}
        content: list[dict[str, Any]] = []
        for part in parts:
            content.extend(await self._part(part, request))
        return {"role": message.role, "content": content}

    async def _part(self, part: Part, request: ChatRequest) -> list[dict[str, Any]]:
        from harness import media

        if part.type == "text":
            return [{"type": "text", "text": part.text or ""}]
        if part.type == "image":
            url = media.image_data_url(part.data if part.data is not None else Path(part.path or ""), part.mime)
            return [{"type": "image_url", "image_url": {"url": url}}]
        if part.path is None:
            raise BackendError("a video part needs a path", endpoint=self.endpoint)
        if request.video_input == "native" and await self._server_is_vllm():
            url = media.file_data_url(Path(part.path), part.mime or "video/mp4")
            return [{"type": "video_url", "video_url": {"url": url}}]
        frames = await asyncio.to_thread(
            media.sample_frames_jpeg, Path(part.path), part.num_frames or 8, cache_dir=self.frame_cache_dir
        )
        return [
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(f).decode()}}
            for f in frames
        ]

    async def _server_is_vllm(self) -> bool:
        """vLLM answers `GET /version`; other servers (transformers serve, hosted APIs) do not."""
        if self._is_vllm is None:
            root = self.base_url.removesuffix("/v1")

            def probe() -> bool:
                try:
                    with urllib.request.urlopen(f"{root}/version", timeout=5) as resp:
                        return "version" in json.loads(resp.read())
                except Exception:
                    return False

            self._is_vllm = await asyncio.to_thread(probe)
        return self._is_vllm

    async def aclose(self) -> None:
        if self._client is not None:
            try:
                await self._client.close()
            except RuntimeError:  # its event loop is gone already
                pass
            self._client = None


def _http_client(n: int) -> Any:
    """A connection pool as large as the concurrency. aiohttp's transport (`openai[aiohttp]`) costs far
    less CPU per request than httpx's pure-Python pool, which matters at 100+ requests/s on few cores."""
    import openai

    try:
        import httpx2 as httpx  # openai >= 2.x
    except ImportError:
        import httpx
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    try:
        return openai.DefaultAioHttpClient(limits=limits)
    except (AttributeError, RuntimeError):  # no aiohttp extra installed
        return openai.DefaultAsyncHttpxClient(limits=limits)


def _with_instruction(messages: list[dict[str, Any]], schema: dict[str, Any]) -> list[dict[str, Any]]:
    instruction = SCHEMA_INSTRUCTION.format(schema=json.dumps(schema))
    if messages and messages[0]["role"] == "system" and isinstance(messages[0]["content"], str):
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + instruction}, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]
