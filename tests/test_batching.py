"""In-process backends batch concurrent requests: the micro-batcher's grouping and error isolation, and
the transformers backend padding a batch on the tiny random LM (answers equal to one-at-a-time answers)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from harness.models import ChatRequest, Message
from harness.models.batching import MicroBatcher


def test_concurrent_requests_are_batched_by_key_and_errors_stay_per_request():
    seen: list[list[int]] = []
    gate = threading.Event()

    def run(items: list[int]) -> list[int | BaseException]:
        gate.wait(5)  # hold the first batch so the others queue up
        seen.append(items)
        return [ValueError(f"bad {i}") if i == 13 else i * 10 for i in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(run, max_batch=4, max_wait_s=0.05, key=lambda i: i % 2)

    async def go():
        tasks = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3, 4, 5, 13, 7, 8)]
        await asyncio.sleep(0.1)
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(go())
    batcher.close()
    assert results[:5] == [10, 20, 30, 40, 50] and results[6:] == [70, 80]
    assert isinstance(results[5], ValueError) and str(results[5]) == "bad 13"
    assert all(len({i % 2 for i in batch}) == 1 for batch in seen)  # one key per generate call
    assert max(len(batch) for batch in seen) > 1 and sum(map(len, seen)) == 8


pytest.importorskip("transformers")
from tiny_models import build_tiny_causal_lm  # noqa: E402


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


PROMPTS = ["Is this sarcastic?", "The quick brown fox jumps over the lazy dog. Students discuss.", "yes", "no or yes"]


def test_hf_backend_pads_a_batch_and_answers_as_it_does_alone(tiny_lm):
    from harness.models.hf_backend import HFBackend

    def request(text: str) -> ChatRequest:
        return ChatRequest((Message.text("user", text),), max_tokens=12)

    async def alone() -> list[str]:
        backend = HFBackend(str(tiny_lm), device="cpu", dtype="float32", max_batch=1)
        out = [(await backend.chat(request(p))).text for p in PROMPTS]
        await backend.aclose()
        return out

    async def together():
        backend = HFBackend(str(tiny_lm), device="cpu", dtype="float32", max_batch=8)
        await backend.chat(request("warm up"))  # load the model first, so the four arrive together
        responses = await asyncio.gather(*(backend.chat(request(p)) for p in PROMPTS))
        sizes = list(backend._batcher.batch_sizes)
        await backend.aclose()
        return responses, sizes

    single = asyncio.run(alone())
    responses, sizes = asyncio.run(together())
    assert max(sizes) >= 2  # the GPU (here CPU) saw a batch
    assert [r.text for r in responses] == single  # left padding and the attention mask change no answer
    assert all(r.raw["finish_reason"] in ("stop", "length") and r.completion_tokens <= 13 for r in responses)
    lengths = [r.prompt_tokens for r in responses]
    assert len(set(lengths)) > 1  # real (unpadded) prompt lengths, not the padded width


def test_vllm_backend_sends_concurrent_requests_as_one_llm_chat(monkeypatch):
    """vLLM is never installed here: a stand-in module records the lists `LLM.chat` receives."""
    import sys
    import types

    batches: list[tuple[int, list[int | None]]] = []

    class SamplingParams:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class LLM:
        def __init__(self, model, **kw):
            self.model = model

        def chat(self, conversations, params, use_tqdm=False):
            batches.append((len(conversations), [p.seed for p in params]))
            out = []
            for conv, p in zip(conversations, params, strict=True):
                text = f"{conv[-1]['content']}|{p.temperature}"
                completion = types.SimpleNamespace(text=text, token_ids=[1, 2], finish_reason="stop")
                out.append(types.SimpleNamespace(outputs=[completion], prompt_token_ids=[0] * 5))
            return out

    fake = types.ModuleType("vllm")
    fake.LLM, fake.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", fake)
    from harness.models.vllm_backend import VLLMBackend

    async def go():
        backend = VLLMBackend("m")
        requests = [ChatRequest((Message.text("user", f"q{i}"),), temperature=0.7, seed=i) for i in range(6)]
        responses = await asyncio.gather(*(backend.chat(r) for r in requests))
        await backend.aclose()
        return responses

    responses = asyncio.run(go())
    assert [r.text for r in responses] == [f"q{i}|0.7" for i in range(6)]
    assert sum(n for n, _ in batches) == 6 and max(n for n, _ in batches) > 1
    assert sorted(s for _, seeds in batches for s in seeds) == list(range(6))  # each request keeps its seed
