"""In-process transformers models: image-text-to-text VLMs and causal LMs, on CPU or GPU.

`make_backend("hf:PATH_OR_NAME")` builds one. torch and transformers are imported on first use, in a
worker thread, so building the backend is free. Concurrent requests are collected into batches
(`harness.models.batching.MicroBatcher`: requests with the same length limit and sampling share one
left-padded `generate`), run in one worker thread, so the event loop keeps serving other work. Videos go
as frames after a line giving their timestamps. JSON schemas go into the system prompt (no
constrained decoding here; use vLLM for that) and the answer is parsed tolerantly.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from harness.models.base import BackendError, ChatRequest, ChatResponse, Message, ModelBackend
from harness.models.batching import MicroBatcher

SCHEMA_INSTRUCTION = "Answer only with a JSON object that follows this JSON schema:\n{schema}"


class HFBackend(ModelBackend):
    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str = "auto",
        frame_cache_dir: Path | None = None,
        max_batch: int = 8,
    ) -> None:
        self.model = model
        self.endpoint = f"hf:{model}"
        self.device = device
        self.dtype = dtype
        self.frame_cache_dir = frame_cache_dir
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, bool] | None = None  # (model, processor or tokenizer, is_vlm)
        self._batcher: MicroBatcher[ChatRequest, ChatResponse] = MicroBatcher(
            self._generate_batch, max_batch=max_batch, key=batch_key, name=f"hf-batch:{model}")

    def _load(self) -> tuple[Any, Any, bool]:
        if self._loaded is not None:
            return self._loaded
        import torch
        import transformers as tf

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        try:
            model = tf.AutoModelForImageTextToText.from_pretrained(self.model, **kwargs)
            processor = tf.AutoProcessor.from_pretrained(self.model)
            is_vlm = True
        except (ValueError, KeyError, OSError) as vlm_error:
            try:
                model = tf.AutoModelForCausalLM.from_pretrained(self.model, **kwargs)
                processor = tf.AutoTokenizer.from_pretrained(self.model)
            except (ValueError, OSError) as exc:
                raise BackendError(
                    f"cannot load {self.model!r} with transformers: {exc} (as a VLM: {vlm_error})",
                    endpoint=self.endpoint,
                ) from exc
            is_vlm = False
        model.to(device).eval()
        self._loaded = (model, processor, is_vlm)
        return self._loaded

    def _hf_messages(self, request: ChatRequest, is_vlm: bool) -> tuple[list[dict[str, Any]], list[Any]]:
        """Messages in the transformers chat format plus the PIL images they refer to, in order."""
        from PIL import Image

        from harness import media

        messages: list[dict[str, Any]] = []
        images: list[Any] = []
        for message in _with_schema(request):
            content: list[dict[str, Any]] = []
            for part in message.content:
                if part.type == "text":
                    content.append({"type": "text", "text": part.text or ""})
                    continue
                if not is_vlm:
                    raise BackendError(f"{self.model} is a text-only model; it cannot take {part.type} input")
                if part.type == "image":
                    import io

                    data = part.data if part.data is not None else Path(part.path or "").read_bytes()
                    media.image_data_url(data, part.mime)  # validates the bytes with a clear error
                    frames = [Image.open(io.BytesIO(data)).convert("RGB")]
                elif part.type == "video":
                    frames = media.sample_frames(Path(part.path or ""), part.num_frames or 8)
                    times = media.frame_times(Path(part.path or ""), part.num_frames or 8)[: len(frames)]
                    content.append({"type": "text", "text": media.frames_intro(times)})
                else:
                    raise BackendError(f"{self.model}: {part.type} input is not supported in-process")
                for frame in frames:
                    content.append({"type": "image"})
                    images.append(frame)
            if all(c["type"] == "text" for c in content) and not is_vlm:
                messages.append({"role": message.role, "content": "".join(c["text"] for c in content)})
            else:
                messages.append({"role": message.role, "content": content})
        return messages, images

    def _generate_batch(self, requests: list[ChatRequest]) -> list[ChatResponse | BaseException]:
        """One `generate` over requests that share their sampling settings (the batcher's key): prompts
        left-padded, each row's answer cut at its end-of-sequence token."""
        import torch

        with self._lock:
            model, processor, is_vlm = self._load()
            converted: list[tuple[int, list[dict[str, Any]], list[Any]]] = []
            results: list[ChatResponse | BaseException | None] = [None] * len(requests)
            for i, request in enumerate(requests):
                try:
                    converted.append((i, *self._hf_messages(request, is_vlm)))
                except Exception as exc:  # a bad input fails its own request, not the batch
                    results[i] = exc
            if not converted:
                return [r for r in results if r is not None]
            first = requests[converted[0][0]]
            tokenizer = getattr(processor, "tokenizer", processor)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            prompts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                       for _, m, _ in converted]
            start = time.perf_counter()
            if is_vlm:
                images = [img for _, _, imgs in converted for img in imgs]
                inputs = processor(text=prompts, images=images or None, return_tensors="pt", padding=True)
            else:
                inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            inputs = {k: v.to(model.device) for k, v in inputs.items()}
            sampling: dict[str, Any] = {"do_sample": first.temperature > 0}
            if first.temperature > 0:
                sampling["temperature"] = first.temperature
                if first.top_p is not None:
                    sampling["top_p"] = first.top_p
            if first.seed is not None:
                torch.manual_seed(first.seed)
            with torch.inference_mode():
                output = model.generate(**inputs, max_new_tokens=first.max_tokens, pad_token_id=tokenizer.pad_token_id,
                                        **sampling)
            latency = time.perf_counter() - start
            prompt_len = inputs["input_ids"].shape[1]
            eos = {t for t in _as_list(getattr(model.generation_config, "eos_token_id", None)) if t is not None}
            eos.add(tokenizer.eos_token_id)
            for row, (i, _, _) in enumerate(converted):
                new = output[row, prompt_len:].tolist()
                stop = next((k for k, t in enumerate(new) if t in eos), None)
                answer = new if stop is None else new[:stop]
                text = tokenizer.decode(answer, skip_special_tokens=True)
                request = requests[i]
                parsed = None
                if request.json_schema is not None:
                    from harness.structured import extract_json

                    parsed = extract_json(text)
                mask = inputs.get("attention_mask")
                results[i] = ChatResponse(
                    text=text, parsed=parsed, prompt_tokens=int(mask[row].sum()) if mask is not None else prompt_len,
                    completion_tokens=len(answer) + (stop is not None), latency_s=latency, model=self.model,
                    raw={"finish_reason": "stop" if stop is not None else "length", "batch_size": len(converted)},
                )
        return [r if r is not None else RuntimeError("no result") for r in results]

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await self._batcher.submit(request)

    async def aclose(self) -> None:
        self._batcher.close()
        self._loaded = None


def batch_key(request: ChatRequest) -> tuple[Any, ...]:
    """Requests that may share one generate call: the same length limit and sampling; a seed matters only
    when sampling (greedy answers do not depend on it)."""
    sampled = request.temperature > 0
    return (request.max_tokens, request.temperature, request.top_p if sampled else None,
            request.seed if sampled else None)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _with_schema(request: ChatRequest) -> tuple[Message, ...]:
    if request.json_schema is None:
        return request.messages
    instruction = SCHEMA_INSTRUCTION.format(schema=json.dumps(request.json_schema))
    messages = request.messages
    if messages and messages[0].role == "system":
        first = messages[0]
        return (Message(first.role, (*first.content, *Message.text("system", "\n\n" + instruction).content)),
                *messages[1:])  # fmt: skip
    return (Message.text("system", instruction), *messages)
