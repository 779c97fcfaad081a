"""In-process vLLM (`make_backend("vllm:NAME")`), for a GPU machine with vLLM installed.

vLLM pins its own torch and needs CUDA, so it is never part of the base install: use a separate
environment (`pip install vllm`). The usual way is `vllm serve NAME` and the OpenAI-compatible
backend; this one saves the HTTP hop for single-process runs. Concurrent requests are collected
(`harness.models.batching.MicroBatcher`) and sent as one `LLM.chat` call with a list of conversations and
a list of sampling parameters, so the engine batches them. Messages use the OpenAI format, so images and
frames go as data URLs as they do over HTTP; JSON schemas use vLLM's structured outputs.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

from harness.models.base import BackendError, ChatRequest, ChatResponse, ModelBackend
from harness.models.batching import MicroBatcher


class VLLMBackend(ModelBackend):
    def __init__(self, model: str, *, frame_cache_dir: Path | None = None, max_batch: int = 256,
                 **engine_args: Any) -> None:
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise BackendError(
                f"vllm:{model} needs vLLM installed (`pip install vllm` in its own environment, on a CUDA "
                f"machine); or run `vllm serve {model}` and pass --model {model} --base-url http://HOST:8000/v1"
            ) from None
        self.model = model
        self.endpoint = f"vllm:{model}"
        self.frame_cache_dir = frame_cache_dir
        self.engine_args = engine_args
        self._llm: Any = None
        self._lock = threading.Lock()
        self._batcher: MicroBatcher[tuple[list[dict[str, Any]], ChatRequest], ChatResponse] = MicroBatcher(
            self._generate_batch, max_batch=max_batch, max_wait_s=0.01, name=f"vllm-batch:{model}")
        # Reuse the HTTP backend's message conversion (data URLs, frames): it needs no network.
        from harness.models.openai_backend import OpenAIBackend

        self._converter = OpenAIBackend(model, "http://unused", frame_cache_dir=frame_cache_dir)

    def _sampling(self, request: ChatRequest) -> Any:
        import vllm

        kwargs: dict[str, Any] = {
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "seed": request.seed,
        }
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.json_schema is not None:
            try:
                from vllm.sampling_params import StructuredOutputsParams

                kwargs["structured_outputs"] = StructuredOutputsParams(json=request.json_schema)
            except ImportError:  # vLLM < 0.10
                from vllm.sampling_params import GuidedDecodingParams

                kwargs["guided_decoding"] = GuidedDecodingParams(json=request.json_schema)
        return vllm.SamplingParams(**kwargs)

    def _generate_batch(self, items: list[tuple[list[dict[str, Any]], ChatRequest]]
                        ) -> list[ChatResponse | BaseException]:
        """One `LLM.chat` over every queued conversation, each with its own sampling parameters (seeds
        included): vLLM schedules them together (continuous batching inside the engine)."""
        import vllm

        with self._lock:
            if self._llm is None:
                self._llm = vllm.LLM(model=self.model, **self.engine_args)
            start = time.perf_counter()
            outputs = self._llm.chat([m for m, _ in items], [self._sampling(r) for _, r in items], use_tqdm=False)
            latency = time.perf_counter() - start
        results: list[ChatResponse | BaseException] = []
        for (_, request), output in zip(items, outputs, strict=True):
            completion = output.outputs[0]
            parsed = None
            if request.json_schema is not None:
                from harness.structured import extract_json

                parsed = extract_json(completion.text)
            results.append(ChatResponse(
                text=completion.text,
                parsed=parsed,
                prompt_tokens=len(output.prompt_token_ids or ()),
                completion_tokens=len(completion.token_ids),
                latency_s=latency,
                model=self.model,
                raw={"finish_reason": completion.finish_reason, "batch_size": len(items)},
            ))
        return results

    async def chat(self, request: ChatRequest) -> ChatResponse:
        # vLLM's own video input needs the HTTP server's media loading; in-process calls get frames.
        as_frames = dataclasses.replace(request, video_input="frames")
        messages = [await self._converter._message(m, as_frames) for m in request.messages]
        return await self._batcher.submit((messages, request))

    async def aclose(self) -> None:
        self._batcher.close()
        self._llm = None
