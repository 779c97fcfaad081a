"""In-process transformers models: image-text-to-text VLMs and causal LMs, on CPU or GPU.

`make_backend("hf:PATH_OR_NAME")` builds one. torch and transformers are imported on first use, in a
worker thread, so building the backend is free. Generation runs one request at a time (a lock) in a
thread, so the event loop keeps serving other work. JSON schemas go into the system prompt (no
constrained decoding here; use vLLM for that) and the answer is parsed tolerantly.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

from harness.models.base import BackendError, ChatRequest, ChatResponse, Message, ModelBackend

SCHEMA_INSTRUCTION = "Answer only with a JSON object that follows this JSON schema:\n{schema}"


class HFBackend(ModelBackend):
    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: str = "auto",
        frame_cache_dir: Path | None = None,
    ) -> None:
        self.model = model
        self.endpoint = f"hf:{model}"
        self.device = device
        self.dtype = dtype
        self.frame_cache_dir = frame_cache_dir
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, bool] | None = None  # (model, processor or tokenizer, is_vlm)

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
                else:
                    frames = media.sample_frames(Path(part.path or ""), part.num_frames or 8)
                for frame in frames:
                    content.append({"type": "image"})
                    images.append(frame)
            if all(c["type"] == "text" for c in content) and not is_vlm:
                messages.append({"role": message.role, "content": "".join(c["text"] for c in content)})
            else:
                messages.append({"role": message.role, "content": content})
        return messages, images

    def _generate(self, request: ChatRequest) -> ChatResponse:
        import torch

        with self._lock:
            model, processor, is_vlm = self._load()
            messages, images = self._hf_messages(request, is_vlm)
            start = time.perf_counter()
            if is_vlm:
                prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                inputs = processor(text=[prompt], images=images or None, return_tensors="pt")
            else:
                inputs = processor.apply_chat_template(
                    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
                )
            inputs = {k: v.to(model.device) for k, v in inputs.items()}
            sampling: dict[str, Any] = {"do_sample": request.temperature > 0}
            if request.temperature > 0:
                sampling["temperature"] = request.temperature
                if request.top_p is not None:
                    sampling["top_p"] = request.top_p
            if request.seed is not None:
                torch.manual_seed(request.seed)
            with torch.inference_mode():
                output = model.generate(**inputs, max_new_tokens=request.max_tokens, **sampling)
            prompt_len = inputs["input_ids"].shape[1]
            new_tokens = output[0, prompt_len:]
            tokenizer = getattr(processor, "tokenizer", processor)
            text = tokenizer.decode(new_tokens, skip_special_tokens=True)
            latency = time.perf_counter() - start
        parsed = None
        if request.json_schema is not None:
            from harness.structured import extract_json

            parsed = extract_json(text)
        return ChatResponse(
            text=text,
            parsed=parsed,
            prompt_tokens=int(prompt_len),
            completion_tokens=int(new_tokens.shape[0]),
            latency_s=latency,
            model=self.model,
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        return await asyncio.to_thread(self._generate, request)

    async def aclose(self) -> None:
        self._loaded = None


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
