"""The model-backend contract: a chat request in, a chat response out.

Every backend (OpenAI-compatible HTTP, in-process transformers, in-process vLLM) implements
`ModelBackend.chat`. Caching, retries and rate limiting are wrappers around a backend
(see `harness.models.wrappers`), never code inside one.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.core import HarnessError

JSONSchema = dict[str, Any]


class BackendError(HarnessError):
    """A failed model call. `retryable` errors (429, 5xx, timeouts, lost connections) are retried by
    `RetryingBackend`; `retry_after_s` carries the server's `Retry-After`; `status` the HTTP status;
    `timed_out` marks a request that got no answer within its timeout; `unreachable` one that could not
    connect."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = None,
        retryable: bool = False,
        retry_after_s: float | None = None,
        timed_out: bool = False,
        unreachable: bool = False,
    ) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.unreachable = unreachable  # no connection at all (refused, unknown host): not a slow server
        self.endpoint = endpoint
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Part:
    """One piece of a message: text, an image (path or PNG/JPEG bytes), a video (path + frames), or an
    audio track (path; sent as `input_audio` to models that take audio)."""

    type: Literal["text", "image", "video", "audio"]
    text: str | None = None
    path: str | None = None
    data: bytes | None = None  # encoded image bytes when there is no file
    mime: str | None = None
    num_frames: int | None = None  # videos: frames to sample uniformly


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: tuple[Part, ...]

    @staticmethod
    def text(role: Literal["system", "user", "assistant"], text: str) -> Message:
        return Message(role, (Part("text", text=text),))


@dataclass(frozen=True)
class ChatRequest:
    """A model-independent chat call. `json_schema` asks for structured output when set."""

    messages: tuple[Message, ...]
    model: str = ""
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = None
    top_p: float | None = None  # None: the server's default
    json_schema: JSONSchema | None = None
    # How video parts go: "frames" = sampled frames as images, introduced by a line saying they are the
    # ordered frames of one video and their timestamps (any VLM); "video" = the same frames as ONE
    # `video_url` data URL of JPEG frames (vLLM: Qwen2.5-VL and other video models); "file" = the file
    # itself as a `file://` video_url (vLLM started with --allowed-local-media-path).
    video_input: Literal["frames", "video", "file"] = "frames"
    extra: dict[str, Any] = field(default_factory=dict)  # extra body fields for the server
    # Who asks (an agent's name, "judge/<model>"): for transcripts and accounting only, not in the cache key.
    role: str = ""


@dataclass
class ChatResponse:
    text: str
    parsed: Any = None  # the JSON object when a schema was requested and the answer parsed
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    model: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


class ModelBackend(abc.ABC):
    """One model behind one interface."""

    model: str
    endpoint: str = ""  # where requests go (base URL, or "hf:PATH"); rate limits are shared per endpoint

    @abc.abstractmethod
    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Answer one chat request; raise `BackendError` on failures (wrappers retry retryable ones)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Close clients or free devices."""
