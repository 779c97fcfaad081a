"""Any OpenAI-compatible chat server (vLLM, `transformers serve`, hosted APIs) on the `openai` async client.

Images go as data URLs. Videos (`ChatRequest.video_input`) go as uniformly sampled JPEG frames after a
line that says they are the ordered frames of one video and when they were taken ("frames"), as one
`video_url` data URL of those frames ("video", vLLM), or as a `file://` video_url ("file", vLLM with
--allowed-local-media-path). Audio goes as `input_audio`. A JSON schema is requested with
`response_format={"type": "json_schema", ...}` (vLLM structured outputs); when a server refuses a request
with an error that names the schema or `response_format`, THAT request is sent again with the schema in
the system prompt and the response says so (`raw["schema_fallback"]`); nothing is switched off for later
requests. Retries are not done here: `RetryingBackend` does them, so a waiting request holds no
concurrency slot.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
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
        if request.top_p is not None:
            body["top_p"] = request.top_p
        schema = request.json_schema
        if schema is not None:
            name = str(schema.get("title") or "answer")
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": name[:64], "schema": schema}}
        if request.extra:
            body.update(request.extra)
        fallback_reason: str | None = None
        start = time.perf_counter()
        try:
            data = await self.transport.post("/chat/completions", body)
        except BackendError as error:
            if schema is None or not names_schema(error):
                raise
            # This request's schema was refused (no structured outputs, or this schema): say it in the
            # prompt instead, for this request only, and record the fallback. Other 400s (too many
            # images, an over-long prompt) are this request's error and leave structured output on.
            fallback_reason = str(error)[:300]
            body.pop("response_format", None)
            body["messages"] = _with_instruction(messages, schema)
            start = time.perf_counter()
            data = await self.transport.post("/chat/completions", body)
        latency = time.perf_counter() - start
        try:
            choice = data["choices"][0]
            content = choice["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise BackendError(
                f"{self.base_url}/chat/completions answered without a choice: {str(data)[:200]}",
                endpoint=self.endpoint,
            ) from None
        if isinstance(content, list):  # content parts: keep their text
            content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
        if content is not None and not isinstance(content, str):
            raise BackendError(
                f"{self.base_url}/chat/completions answered with a non-text message content "
                f"({type(content).__name__}: {str(content)[:100]})",
                endpoint=self.endpoint,
            )
        text = content or ""  # empty or null: `agents.llm.ask` makes it the sample's error
        usage = data.get("usage") or {}
        parsed = None
        if schema is not None:
            from harness.structured import extract_json

            parsed = extract_json(text)
        raw: dict[str, Any] = {"id": data.get("id"), "finish_reason": choice.get("finish_reason"),
                               "endpoint": self.endpoint}
        if fallback_reason is not None:
            raw.update(schema_fallback=True, schema_fallback_reason=fallback_reason)
        return ChatResponse(
            text=text,
            parsed=parsed,
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
            latency_s=latency,
            model=data.get("model") or body["model"],
            raw=raw,
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
        if part.type == "audio":
            return [await asyncio.to_thread(audio_part, part)]
        if part.path is None:
            raise BackendError("a video part needs a path", endpoint=self.endpoint)
        if request.video_input == "file":
            return [{"type": "video_url", "video_url": {"url": Path(part.path).resolve().as_uri()}}]
        n = part.num_frames or 8
        frames = await asyncio.to_thread(media.sample_frames_jpeg, Path(part.path), n, cache_dir=self.frame_cache_dir)
        encoded = [base64.b64encode(f).decode() for f in frames]
        if request.video_input == "video":
            # vLLM reads `data:video/jpeg;base64,<frame>,<frame>,...` as one video of JPEG frames.
            return [{"type": "video_url", "video_url": {"url": "data:video/jpeg;base64," + ",".join(encoded)}}]
        times = await asyncio.to_thread(media.frame_times, Path(part.path), n)
        intro = {"type": "text", "text": media.frames_intro(times[: len(encoded)])}
        return [intro, *({"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + e}} for e in encoded)]

    async def aclose(self) -> None:
        await self.transport.aclose()


SCHEMA_ERROR_WORDS = ("response_format", "json_schema", "schema", "guided", "structured", "grammar",
                      "xgrammar", "outlines")


def names_schema(error: BackendError) -> bool:
    """An HTTP 400/422 whose message is about the schema or `response_format` (not, say, too many images)."""
    return error.status in (400, 422) and any(w in str(error).lower() for w in SCHEMA_ERROR_WORDS)


def audio_part(part: Part) -> dict[str, Any]:
    """An audio file as an OpenAI `input_audio` part (wav or mp3 as given; other formats as wav)."""
    path = Path(part.path or "")
    fmt = "mp3" if path.suffix.lower() == ".mp3" else "wav"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BackendError(f"{path}: cannot read audio ({exc})") from None
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}


def _with_instruction(messages: list[dict[str, Any]], schema: dict[str, Any]) -> list[dict[str, Any]]:
    instruction = SCHEMA_INSTRUCTION.format(schema=json.dumps(schema))
    if messages and messages[0]["role"] == "system" and isinstance(messages[0]["content"], str):
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + instruction}, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]
