"""Transcripts, accounting and the failure taxonomy of model calls; per-request schema fallback; error
bodies of vLLM and OpenAI; video as frames (with timestamps) or one video part; replicas of an endpoint."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from pathlib import Path

import pytest
from servers.fake_openai import FakeOpenAIServer, ServerConfig

from harness.core import current_sample
from harness.models import BackendError, ChatRequest, Message, Part, make_backend
from harness.models.openai_backend import OpenAIBackend
from harness.transcripts import TranscriptLog, pop_usage, read_transcripts, summarise

SCHEMA = {"title": "Answer", "type": "object", "properties": {"label": {"enum": ["yes", "no"]}},
          "required": ["label"]}


def backend(url: str, log: TranscriptLog | None = None, **kw: object):
    args = dict(base_url=url, api_key=None, cache_dir=None, use_cache=False, concurrency=8, timeout_s=10,
                max_retries=0, transcripts=log)
    args.update(kw)
    return make_backend("fake-model", **args)  # type: ignore[arg-type]


def ask(text: str, role: str = "", **kw: object) -> ChatRequest:
    return ChatRequest((Message.text("system", "be brief"), Message.text("user", text)), role=role, **kw)


async def for_sample(sample: str, b, request: ChatRequest):
    token = current_sample.set(sample)
    try:
        return await b.chat(request)
    finally:
        current_sample.reset(token)


def test_log_is_safe_from_threads_and_flushes_everything_on_close(tmp_path):
    log = TranscriptLog(tmp_path / "t.jsonl")

    def writer(k: int) -> None:
        for i in range(500):
            log.write({"sample": f"s{k}", "i": i})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    log.write({"sample": "late"})  # after close: dropped, no crash
    lines = (tmp_path / "t.jsonl").read_text().splitlines()
    assert len(lines) == 2000 and all(json.loads(line)["sample"].startswith("s") for line in lines)
    assert sorted(r["i"] for r in read_transcripts(tmp_path / "t.jsonl", "s2")) == list(range(500))


def test_every_call_is_written_with_messages_params_answer_and_tokens(tmp_path):
    log = TranscriptLog(tmp_path / "t.jsonl")
    with FakeOpenAIServer(ServerConfig()) as srv:
        b = backend(srv.base_url, log)

        async def go():
            await for_sample("clip1", b, ask("hello there", role="behavior", temperature=0.7, max_tokens=77, seed=3))
            await for_sample("clip1", b, ask("and again", role="coordinator", json_schema=SCHEMA))
            await b.aclose()

        asyncio.run(go())
        body = srv.bodies()[0]
    log.close()
    assert body["temperature"] == 0.7 and body["max_tokens"] == 77 and body["seed"] == 3
    first, second = read_transcripts(tmp_path / "t.jsonl", "clip1")
    assert first["role"] == "behavior" and first["response"] == "echo: hello there"
    assert first["params"] == {"temperature": 0.7, "max_tokens": 77, "seed": 3}
    assert first["messages"][1] == {"role": "user", "content": [{"type": "text", "text": "hello there"}]}
    assert first["prompt_tokens"] == 2 and first["completion_tokens"] == 3  # the fake server counts words
    assert first["finish_reason"] == "stop" and first["latency_s"] > 0 and not first["cached"]
    assert second["params"]["json_schema"]["title"] == "Answer" and not second["unparseable"]
    usage = pop_usage("clip1")
    assert usage["behavior"] == {"calls": 1, "prompt_tokens": 2, "completion_tokens": 3}
    assert usage["coordinator"]["calls"] == 1 and pop_usage("clip1") == {}


def test_one_refused_request_keeps_structured_output_for_the_others(tmp_path):
    """A 400 that is not about the schema (too many images) fails that request only; vLLM's flat error
    body is read; the next request still carries response_format."""
    log = TranscriptLog(tmp_path / "t.jsonl")
    cfg = ServerConfig(reject_marker="TOO-MANY", error_style="vllm")
    with FakeOpenAIServer(cfg) as srv:
        b = backend(srv.base_url, log)

        async def go():
            with pytest.raises(BackendError) as info:
                await for_sample("a", b, ask("TOO-MANY images", json_schema=SCHEMA))
            ok = await for_sample("b", b, ask("fine", json_schema=SCHEMA))
            await b.aclose()
            return info.value, ok

        error, ok = asyncio.run(go())
        bodies = srv.bodies()
    log.close()
    assert error.status == 400 and "At most 1 image(s) may be provided" in str(error) and "None" not in str(error)
    assert all("response_format" in body for body in bodies)
    assert ok.parsed == {"label": "yes"} and not ok.raw.get("schema_fallback")
    summary = summarise(read_transcripts(tmp_path / "t.jsonl"))
    assert summary["request_error"] == 1 and summary["schema_fallback"] == 0 and summary["calls"] == 2


@pytest.mark.parametrize("style", ["openai", "vllm"])
@pytest.mark.parametrize("transport", ["aiohttp", "openai"])
def test_schema_refusal_falls_back_per_request_and_is_recorded(tmp_path, style, transport):
    log = TranscriptLog(tmp_path / "t.jsonl")
    cfg = ServerConfig(reject_json_schema=True, error_style=style, answer="servers.answers:json_in_prose")
    with FakeOpenAIServer(cfg) as srv:
        b = OpenAIBackend("fake-model", srv.base_url, transport=transport)
        from harness.transcripts import RecordingBackend

        rb = RecordingBackend(b, log)

        async def go():
            out = [await for_sample(f"s{i}", rb, ask("q", json_schema=SCHEMA)) for i in range(2)]
            await rb.aclose()
            return out

        responses = asyncio.run(go())
        bodies = srv.bodies()
    log.close()
    # each request tries the schema first (nothing is switched off), then falls back with the schema in the prompt
    assert ["response_format" in body for body in bodies] == [True, False, True, False]
    assert all(r.raw["schema_fallback"] and "json_schema unsupported" in r.raw["schema_fallback_reason"]
               for r in responses)
    assert summarise(read_transcripts(tmp_path / "t.jsonl"))["schema_fallback"] == 2


def test_truncated_and_unparseable_answers_are_counted(tmp_path):
    log = TranscriptLog(tmp_path / "t.jsonl")
    with FakeOpenAIServer(ServerConfig(finish_reason="length")) as srv:
        b = backend(srv.base_url, log)

        async def go():
            await for_sample("x", b, ask("cut me off", json_schema=None))
            await b.aclose()

        asyncio.run(go())
    with FakeOpenAIServer(ServerConfig(answer="servers.answers:yes_if_sarcastic")) as srv:
        b = backend(srv.base_url, log)

        async def go2():
            await for_sample("y", b, ask("plain words", json_schema=SCHEMA, role="agent_0"))
            await b.aclose()

        asyncio.run(go2())
    log.close()
    summary = summarise(read_transcripts(tmp_path / "t.jsonl"))
    assert summary["truncated"] == 1 and summary["unparseable"] == 1 and summary["calls"] == 2
    assert summary["by_role"]["agent_0"]["calls"] == 1 and summary["by_role"]["solver"]["calls"] == 1


def test_summarise_by_hand():
    records = [
        {"role": "judge/a", "error": "HTTP 404"}, {"role": "judge/a", "error": "HTTP 404"},
        {"role": "judge/b", "prompt_tokens": 10, "completion_tokens": 2},
        {"role": "behavior", "prompt_tokens": 5, "completion_tokens": 1, "cached": True, "truncated": True},
        {"role": "behavior", "error": "timeout"},
    ]
    s = summarise(records)
    assert (s["calls"], s["cached_calls"], s["prompt_tokens"], s["completion_tokens"]) == (5, 1, 15, 3)
    assert (s["judge_error"], s["request_error"], s["truncated"]) == (2, 1, 1)
    assert s["judges_failed_every_call"] == ["judge/a"]
    assert s["by_role"]["behavior"] == {"calls": 2, "prompt_tokens": 5, "completion_tokens": 1, "errors": 1}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from tasks.motor.fixture import write_video

    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    write_video(path, (200, 30, 30), n_frames=10, fps=5)
    return path


def test_video_as_frames_says_they_are_ordered_frames_with_timestamps(clip, tmp_path):
    log = TranscriptLog(tmp_path / "t.jsonl")
    with FakeOpenAIServer(ServerConfig()) as srv:
        b = backend(srv.base_url, log)
        request = ChatRequest((Message("user", (Part("video", path=str(clip), num_frames=4),
                                                 Part("text", text="what happens?"))),))

        async def go():
            await for_sample("v", b, request)
            await b.aclose()

        asyncio.run(go())
        content = srv.bodies()[-1]["messages"][0]["content"]
    log.close()
    # 10 frames at 5 fps, 4 sampled: indices 1, 3, 6, 8 -> 0.2, 0.6, 1.2, 1.6 s
    assert content[0]["type"] == "text"
    assert content[0]["text"].startswith("The next 4 images are frames of one video, in time order")
    assert "0.2 s, 0.6 s, 1.2 s, 1.6 s" in content[0]["text"]
    assert [p["type"] for p in content[1:]] == ["image_url"] * 4 + ["text"]
    (record,) = read_transcripts(tmp_path / "t.jsonl", "v")
    video = record["messages"][0]["content"][0]
    assert video["frames"] == 4 and video["timestamps_s"] == [0.2, 0.6, 1.2, 1.6] and video["as"] == "frames"
    assert video["digest"].startswith("sha256:") and "base64" not in json.dumps(record)


def test_video_as_video_sends_one_video_part_of_jpeg_frames(clip):
    with FakeOpenAIServer(ServerConfig()) as srv:
        b = backend(srv.base_url)
        request = ChatRequest((Message("user", (Part("video", path=str(clip), num_frames=4),
                                                 Part("text", text="what happens?"))),), video_input="video")

        async def go():
            await b.chat(request)
            await b.aclose()

        asyncio.run(go())
        content = srv.bodies()[-1]["messages"][0]["content"]
    assert [p["type"] for p in content] == ["video_url", "text"]
    url = content[0]["video_url"]["url"]
    assert url.startswith("data:video/jpeg;base64,")
    frames = url.removeprefix("data:video/jpeg;base64,").split(",")
    assert len(frames) == 4 and all(base64.b64decode(f).startswith(b"\xff\xd8\xff") for f in frames)


def test_replicas_share_the_load_by_least_outstanding():
    with FakeOpenAIServer(ServerConfig(latency_s=0.05)) as a, FakeOpenAIServer(ServerConfig(latency_s=0.05)) as b:
        pool = backend(f"{a.base_url},{b.base_url}", concurrency=4)

        async def go():
            await asyncio.gather(*(pool.chat(ask(f"q{i}")) for i in range(16)))
            await pool.aclose()

        asyncio.run(go())
        sa, sb = a.stats(), b.stats()
    assert sa["completed"] + sb["completed"] == 16
    assert sa["completed"] == sb["completed"] == 8  # equal servers: the least outstanding alternates
    assert sa["max_in_flight"] <= 4 and sb["max_in_flight"] <= 4  # the limit holds per endpoint


def test_calls_made_in_a_ray_actor_travel_in_the_sample_info_and_back_to_the_transcripts(tmp_path):
    """A Ray actor has no transcript file: its solver's calls come back in the output's info (counts) and,
    with the chunk, as the transcript records the driver writes to transcripts.jsonl."""
    from harness.core import RunContext, Sample
    from harness.executors import TranscriptBuffer, _SolverWorker

    vocab = {"behavior": ["talk", "quiet"], "cognition": ["plan", "check"], "emotion": ["calm", "upset"]}
    sample = Sample("clip9", {"vocab": vocab, "transcript": "A: hi", "video": None}, None)
    with FakeOpenAIServer(ServerConfig()) as srv:
        ctx = RunContext(model="fake-model", base_url=srv.base_url, cache_dir=None, use_cache=False,
                         transcripts=TranscriptBuffer())
        worker = _SolverWorker(None, "motor", "motor-mas", {"frames": 0}, ctx)

        async def go():
            out = await worker.solve_batch([sample])
            await worker.solver.aclose()
            return out

        ((output, error),), shipped = asyncio.run(go())
    assert error is None
    assert [c["role"] for c in shipped] == ["behavior", "cognition", "emotion", "coordinator"]
    assert {c["sample"] for c in shipped} == {"clip9"} and worker.log.drain() == []
    calls = output.info["model_calls"]
    assert {role: c["calls"] for role, c in calls.items()} == {"behavior": 1, "cognition": 1, "emotion": 1,
                                                               "coordinator": 1}
    assert pop_usage("clip9") == {}  # taken into the output, not left behind
