"""Model backends: one small chat interface; caching and retries wrap any backend from outside.

`make_backend("Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://localhost:8000/v1", ...)` talks to an
OpenAI-compatible server (vLLM); `hf:PATH` runs transformers in-process; `vllm:NAME` runs vLLM
in-process. Importing this package (and the OpenAI path) never imports torch or transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core import HarnessError
from harness.models.base import BackendError, ChatRequest, ChatResponse, Message, ModelBackend, Part
from harness.models.wrappers import CachedBackend, ReplicaSet, RetryingBackend

__all__ = [
    "BackendError",
    "CachedBackend",
    "ChatRequest",
    "ChatResponse",
    "Message",
    "ModelBackend",
    "Part",
    "RetryingBackend",
    "make_backend",
]


def make_backend(
    model: str,
    *,
    base_url: str | None,
    api_key: str | None,
    cache_dir: Path | None,
    use_cache: bool,
    concurrency: int,
    timeout_s: float,
    max_retries: int = 8,
    transcripts: Any = None,
) -> ModelBackend:
    """Build the backend named by `model` and wrap it in retries + rate limiting and a cache.

    `hf:PATH` -> in-process transformers; `vllm:NAME` -> in-process vLLM; anything else is a model
    name on the OpenAI-compatible server at `base_url` (required then); a comma-separated `base_url`
    lists replicas of that server, and requests go to the one with the least outstanding requests, each
    replica limited to `concurrency`. The outermost wrapper counts every call per sample and role and,
    given the run's `transcripts` (`harness.transcripts.TranscriptLog`), writes each call there.
    """
    backend: ModelBackend
    frames_dir = cache_dir / "frames" if cache_dir is not None else None
    if model.startswith("hf:"):
        from harness.models.hf_backend import HFBackend

        # batches of up to --concurrency requests (agent graphs add calls per sample; memory is the limit)
        backend = HFBackend(model.removeprefix("hf:"), frame_cache_dir=frames_dir, max_batch=max(1, concurrency))
    elif model.startswith("vllm:"):
        from harness.models.vllm_backend import VLLMBackend

        backend = VLLMBackend(model.removeprefix("vllm:"), frame_cache_dir=frames_dir)
    else:
        if not base_url:
            raise HarnessError(
                f"model {model!r} needs --base-url (or OPENAI_BASE_URL) pointing at an OpenAI-compatible "
                "server such as `vllm serve`; use hf:PATH for an in-process transformers model"
            )
        from harness.models.openai_backend import OpenAIBackend

        urls = [u.strip() for u in base_url.split(",") if u.strip()]
        replicas: list[ModelBackend] = [
            OpenAIBackend(model, url, api_key=api_key, timeout_s=timeout_s, max_connections=concurrency,
                          frame_cache_dir=frames_dir)
            for url in urls
        ]
        backend = replicas[0] if len(replicas) == 1 else ReplicaSet(replicas)
    wrapped: ModelBackend = RetryingBackend(backend, concurrency=concurrency, max_retries=max_retries)
    if use_cache and cache_dir is not None:
        wrapped = CachedBackend(wrapped, cache_dir)
    from harness.transcripts import RecordingBackend

    return RecordingBackend(wrapped, transcripts)
