"""One structured model call, as every agent node makes it.

A node sends a `ChatRequest` with the JSON schema of a pydantic model and gets back either a
validated object or `None` with the raw text and the reason: an unparseable answer is never mapped
to a class here. Works with any `ModelBackend` (HTTP, in-process, or a scripted fake in tests).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, create_model

from harness.core import HarnessError, RunContext
from harness.models.base import BackendError, ChatRequest, Message, ModelBackend, Part
from harness.structured import Parsed, extract_json, free_text_blocked, match_label, parse_model

M = TypeVar("M", bound=BaseModel)

# (free text, head, labels) -> (label or None, info): reads a label out of an answer that is neither
# valid JSON nor names exactly one label (an MLLM judge panel, `agents.label_judges`).
Extractor = Callable[[str, str, Sequence[str]], Awaitable[tuple[str | None, dict[str, Any]]]]


@dataclass(frozen=True)
class CallSettings:
    """Sampling settings shared by every node of a graph: temperature 0 and a fixed seed."""

    model: str = ""
    seed: int | None = 0
    temperature: float = 0.0
    max_tokens: int = 512
    top_p: float | None = None
    video_input: Literal["frames", "video", "file"] = "frames"  # how video parts are sent (ChatRequest)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], model: str = "") -> CallSettings:
        """The settings a solver's `GenerationOptions` (temperature, top_p, max_tokens, seed) declare."""
        return cls(model, options.get("seed"), float(options.get("temperature", 0.0)),
                   int(options.get("max_tokens", 512)), options.get("top_p"))


@dataclass
class Answer(Generic[M]):
    """A node's answer: `value` when it validated, else `None` with `error` and the raw `text`."""

    value: M | None
    text: str
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None  # "length": cut at max_tokens (then never read as free text)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


async def ask(
    backend: ModelBackend,
    messages: Sequence[Message],
    schema: type[M],
    settings: CallSettings,
    *,
    role: str = "",
) -> Answer[M]:
    """Ask for one object of `schema`; validate the backend's parsed object, else the text. `role` names
    the asker (an agent) in transcripts and in the per-sample accounting."""
    request = ChatRequest(
        messages=tuple(messages),
        model=settings.model or getattr(backend, "model", ""),
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        seed=settings.seed,
        top_p=settings.top_p,
        json_schema=schema.model_json_schema(),
        video_input=settings.video_input,
        role=role,
    )
    response = await backend.chat(request)
    text = response.text or ""
    finish_reason = (response.raw or {}).get("finish_reason")
    if not text.strip() and response.parsed is None:
        # An empty or null answer is this sample's error (never a prediction, never cached): a re-run
        # asks again. Backends' caches skip empty answers too (`CachedBackend`).
        where = getattr(backend, "endpoint", "") or getattr(backend, "model", "") or type(backend).__name__
        raise BackendError(f"{where} answered with an empty message (finish_reason={finish_reason})",
                           endpoint=str(where))
    result = parse_model(text, schema, parsed=response.parsed if isinstance(response.parsed, Mapping) else None)
    if isinstance(result, Parsed):
        return Answer(result.value, text, None, response.prompt_tokens, response.completion_tokens, finish_reason)
    return Answer(None, text, result.reason, response.prompt_tokens, response.completion_tokens, finish_reason)


def label_field(labels: Sequence[str]) -> Any:
    """A `Literal[...]` type over the labels (the JSON schema's enum)."""
    return Literal[tuple(labels)]  # type: ignore[valid-type]


def labels_model(name: str, vocab: Mapping[str, Sequence[str]], **extra: Any) -> type[BaseModel]:
    """A pydantic model with one enum field per head (plus `extra` fields as (type, default))."""
    fields: dict[str, Any] = {head: (label_field(labels), ...) for head, labels in vocab.items()}
    fields.update(extra)
    return create_model(name, **fields)


def find_label(text: str, labels: Sequence[str]) -> str | None:
    """The one vocabulary label that free text names (`harness.structured.match_label`), else None:
    an ambiguous or negated answer is invalid, never guessed."""
    result = match_label(text, labels)
    return result.value if isinstance(result, Parsed) else None


def summarise_parts(parts: Sequence[Part]) -> str:
    """A short, JSON-friendly description of a message's media for traces."""
    out = []
    for part in parts:
        if part.type == "text":
            out.append(f"text[{len(part.text or '')} chars]")
        elif part.type == "video":
            out.append(f"video[{_frames_sent(part)} frames]")
        elif part.type == "audio":
            out.append("audio")
        else:
            out.append("image")
    return ", ".join(out)


def _frames_sent(part: Part) -> int | str:
    """How many frames a video part becomes (fewer than asked for when the video is shorter)."""
    from pathlib import Path

    from harness import media

    try:
        return len(media.frame_times(Path(part.path or ""), part.num_frames or 8))
    except Exception:
        return part.num_frames or "?"


def parse_labels(
    text: str, parsed: Any, vocab: Mapping[str, Sequence[str]], finish_reason: str | None = None
) -> dict[str, str | None]:
    """Tolerant multi-head parse: each head's label from the JSON object of the answer (its string
    value matched to the vocabulary), else from a ``head: label`` line; a head whose label is missing,
    ambiguous or negated stays `None`. A truncated answer gives no label, and the line reading never
    runs over JSON-looking text (`harness.structured.free_text_blocked`)."""
    if finish_reason == "length":
        return {head: None for head in vocab}
    obj = parsed if isinstance(parsed, Mapping) else extract_json(text)
    free_text_ok = free_text_blocked(text) is None
    out: dict[str, str | None] = {}
    for head, labels in vocab.items():
        label = None
        if isinstance(obj, Mapping) and isinstance(obj.get(head), str):
            label = find_label(obj[head], labels)
        if label is None and free_text_ok:
            line = re.search(rf"(?im)^\W*{re.escape(head)}\W*[:=\-]\s*(.+)$", text)
            if line:
                label = find_label(line.group(1), labels)
        out[head] = label
    return out


def backend_from_context(ctx: RunContext, solver: str) -> ModelBackend:
    """The run's model backend (`--model`, `--base-url`, `--timeout`, `--max-retries`, cache and
    concurrency from the CLI)."""
    if not ctx.model:
        raise HarnessError(f"solver {solver!r} needs --model (and --base-url for an HTTP endpoint)")
    from harness.models import make_backend

    return make_backend(
        ctx.model, base_url=ctx.base_url, api_key=ctx.api_key, cache_dir=ctx.cache_dir,
        use_cache=ctx.use_cache, concurrency=ctx.concurrency, timeout_s=ctx.request_timeout_s,
        max_retries=ctx.max_retries, transcripts=getattr(ctx, "transcripts", None),
    )
