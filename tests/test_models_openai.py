"""The OpenAI-compatible backend against the fake server: text, images, JSON schemas, timeouts."""

from __future__ import annotations

import asyncio
import base64
import io
import subprocess
import sys

import pytest
from servers.fake_openai import FakeOpenAIServer, ServerConfig

from harness.core import HarnessError
from harness.models import BackendError, ChatRequest, Message, Part, make_backend
from harness.models.openai_backend import OpenAIBackend


def png_bytes(color: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


def chat_once(b, request: ChatRequest):
    async def go():
        try:
            return await b.chat(request)
        finally:
            await b.aclose()

    return asyncio.run(go())


def backend(url: str, **kw: object):
    args = dict(base_url=url, api_key=None, cache_dir=None, use_cache=False, concurrency=8, timeout_s=10)
    args.update(kw)
    return make_backend("fake-model", **args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(ServerConfig()) as srv:
        yield srv


@pytest.mark.parametrize("transport", ["aiohttp", "openai"])
def test_text_chat_returns_answer_tokens_and_latency(server, transport):
    b = OpenAIBackend("fake-model", server.base_url, transport=transport)

    async def go():
        try:
            return await b.chat(ChatRequest((Message.text("user", "hello there"),)))
        finally:
            await b.aclose()

    r = asyncio.run(go())
    assert r.text == "echo: hello there"
    assert (r.prompt_tokens, r.completion_tokens) == (2, 3)
    assert r.latency_s > 0 and not r.cached and r.model == "fake-model"


def test_image_goes_as_png_data_url(server, tmp_path):
    data = png_bytes()
    path = tmp_path / "x.png"
    path.write_bytes(data)
    req = ChatRequest((Message("user", (Part("text", text="what"), Part("image", path=str(path)))),))
    chat_once(backend(server.base_url), req)
    content = server.bodies()[-1]["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "what"}
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == data


def test_json_schema_goes_as_response_format_and_is_parsed(server):
    schema = {"title": "Verdict", "type": "object", "properties": {"label": {"enum": ["yes", "no"]}}}
    r = chat_once(backend(server.base_url), ChatRequest((Message.text("user", "?"),), json_schema=schema))
    fmt = server.bodies()[-1]["response_format"]
    assert fmt == {"type": "json_schema", "json_schema": {"name": "Verdict", "schema": schema}}
    assert r.parsed == {"label": "yes"}


def test_server_without_structured_outputs_gets_the_schema_in_the_prompt():
    schema = {"type": "object", "properties": {"label": {"enum": ["yes", "no"]}}}
    with FakeOpenAIServer(ServerConfig(reject_json_schema=True, answer="servers.answers:json_in_prose")) as srv:
        b = backend(srv.base_url)
        r = chat_once(b, ChatRequest((Message.text("user", "?"),), json_schema=schema))
        last = srv.bodies()[-1]
    assert "response_format" not in last
    assert last["messages"][0]["role"] == "system" and '"enum"' in last["messages"][0]["content"]
    assert r.parsed == {"label": "no"}


def test_hanging_server_times_out_with_the_url_in_the_message():
    with FakeOpenAIServer(ServerConfig(hang=True)) as srv:
        b = backend(srv.base_url, timeout_s=0.5)  # max_retries=8, but timeouts are retried only twice
        with pytest.raises(BackendError) as info:
            chat_once(b, ChatRequest((Message.text("user", "hi"),)))
    message = str(info.value)
    assert f"request to {srv.base_url}/chat/completions timed out after 0.5 s" in message
    assert "after 3 attempts" in message


def test_client_error_is_not_retried_and_names_the_status():
    with FakeOpenAIServer(ServerConfig(reject_json_schema=True)) as srv:
        b = OpenAIBackend("m", srv.base_url)

        async def bad():
            from harness.models.transport import AiohttpTransport

            assert isinstance(b.transport, AiohttpTransport)
            try:
                body = {"model": "m", "response_format": {"type": "json_schema"}}
                return await b.transport.post("/chat/completions", body)
            finally:
                await b.aclose()

        with pytest.raises(BackendError) as info:
            asyncio.run(bad())
    assert info.value.status == 400 and not info.value.retryable


def test_openai_model_without_base_url_is_a_clear_error():
    with pytest.raises(HarnessError, match="needs --base-url"):
        make_backend("some/model", base_url=None, api_key=None, cache_dir=None, use_cache=False,
                     concurrency=1, timeout_s=1)  # fmt: skip


def test_importing_the_openai_path_imports_no_torch_or_transformers():
    code = "import harness.models, harness.models.openai_backend, harness.structured, harness.judges, harness.media"
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert not imported & {"torch", "transformers", "av", "PIL", "numpy"}, sorted(imported)
