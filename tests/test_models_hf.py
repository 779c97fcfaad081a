"""In-process transformers backends on tiny random models, and `transformers serve` end to end."""

from __future__ import annotations

import asyncio
import io

import pytest

from harness.models import BackendError, ChatRequest, Message, Part, make_backend

pytest.importorskip("transformers")
from tiny_models import build_tiny_causal_lm, build_tiny_vlm, require_serve, serve  # noqa: E402


def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 20, 20)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))


def hf_backend(path, **kw):
    args = dict(base_url=None, api_key=None, cache_dir=None, use_cache=False, concurrency=1, timeout_s=60)
    args.update(kw)
    return make_backend(f"hf:{path}", **args)


def test_causal_lm_answers_a_chat_in_process(tiny_lm):
    req = ChatRequest((Message.text("system", "be brief"), Message.text("user", "hello")), max_tokens=6)
    r = asyncio.run(hf_backend(tiny_lm).chat(req))
    assert isinstance(r.text, str) and 1 <= r.completion_tokens <= 6 and r.prompt_tokens > 3
    assert r.model == str(tiny_lm)


def test_text_only_model_refuses_images_clearly(tiny_lm):
    req = ChatRequest((Message("user", (Part("text", text="what"), Part("image", data=png()))),))
    with pytest.raises(BackendError, match="text-only model"):
        asyncio.run(hf_backend(tiny_lm).chat(req))


def test_vlm_takes_an_image_in_process(tiny_vlm, tmp_path):
    backend = hf_backend(tiny_vlm, cache_dir=tmp_path, use_cache=True)
    text_only = ChatRequest((Message.text("user", "hello"),), max_tokens=4)
    with_image = ChatRequest((Message("user", (Part("text", text="hello"), Part("image", data=png()))),), max_tokens=4)
    a = asyncio.run(backend.chat(text_only))
    b = asyncio.run(backend.chat(with_image))
    assert b.prompt_tokens > a.prompt_tokens  # the image's tokens are in the prompt
    assert asyncio.run(backend.chat(with_image)).cached


@pytest.mark.slow
def test_transformers_serve_end_to_end_through_make_backend(tiny_lm, tmp_path):
    require_serve()
    with serve(tiny_lm) as base_url:
        backend = make_backend(str(tiny_lm), base_url=base_url, api_key=None, cache_dir=tmp_path,
                               use_cache=True, concurrency=2, timeout_s=60)  # fmt: skip

        async def go():
            try:
                req = ChatRequest((Message.text("user", "Is this sarcastic?"),), max_tokens=8)
                return await backend.chat(req), await backend.chat(req)
            finally:
                await backend.aclose()

        first, again = asyncio.run(go())
    assert first.completion_tokens == 8 and first.prompt_tokens > 0 and first.text
    assert again.cached and again.text == first.text
