"""Any OpenAI-compatible chat server (vLLM, `transformers serve`, hosted APIs) on the `openai` async client.

Images go as data URLs; videos as uniformly sampled frames, or as vLLM's native `video_url` when the
request asks for it and the server is vLLM. A JSON schema is requested with
`response_format={"type": "json_schema", ...}` (vLLM structured outputs); once a server rejects it,
the schema goes into the system prompt instead. Retries are not done here: `RetryingBackend` does
them, so a waiting request holds no concurrency slot.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from harness.models.base import BackendError, ChatRequest, ChatResponse, Message, ModelBackend, Part
from harness.models.transport import make_transport

SCHEMA_INSTRUCTION = "Answer only with a JSON object that follows this JSON schema:\n{schema}"


class OpenAIBackend(ModelBackend):
    """One model on one OpenAI-compatible endpoint, through one pooled transport (see
    `harness.models.transport`: the `openai` client, or aiohttp for the least CPU per request)."""

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_connections: int = 64,
        frame_cache_dir: Path | None = None,
        transport: str = "auto",
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
        self.transport = make_transport(transport, self.base_url, self.api_key, timeout_s, self.max_connections)

    async def chat(self, request: ChatRequest) -> ChatResponse:
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
            data = await self.transport.post("/chat/completions", body)
        except BackendError as error:
            if schema is not None and self.schema_supported and error.status in (400, 422):
                # The server has no structured outputs: say the schema in the prompt from now on.
                self.schema_supported = False
                return await self.chat(request)
            raise
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
        await self.transport.aclose()


def _with_instruction(messages: list[dict[str, Any]], schema: dict[str, Any]) -> list[dict[str, Any]]:
    instruction = SCHEMA_INSTRUCTION.format(schema=json.dumps(schema))
    if messages and messages[0]["role"] == "system" and isinstance(messages[0]["content"], str):
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + instruction}, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]
