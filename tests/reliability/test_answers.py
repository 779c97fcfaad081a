"""An unreadable model answer is `invalid` (and `truncated` when finish_reason says so), never a class
(issue 9, item 1); an empty or null answer is that sample's error and never cached (item 7).

Before the fix, ``{"sarcastic": false`` cut at max_tokens, ``{"sarcastic": null}`` and
``{"sarcastic": "perhaps"}`` were read as free text, found the key name "sarcastic" and became `True`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agents.llm import CallSettings, ask, parse_labels
from harness.core import RunContext, Sample
from harness.models.base import BackendError, ChatRequest, ChatResponse, ModelBackend
from harness.models.wrappers import CachedBackend
from harness.structured import Invalid, Parsed, free_text_blocked, looks_like_json, parse_label


class Scripted(ModelBackend):
    """Answers every request with one fixed text and finish_reason."""

    endpoint = "scripted://test"

    def __init__(self, text: str | None, finish_reason: str = "stop") -> None:
        self.model, self.text, self.finish_reason, self.calls = "scripted", text, finish_reason, 0

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        return ChatResponse(text=self.text or "", raw={"finish_reason": self.finish_reason})


SAMPLE = Sample("1_60", {"utterance": "Oh, great.", "speaker": "CHANDLER", "context": ["It broke."],
                         "context_speakers": ["ROSS"], "show": "FRIENDS"}, True)

UNREADABLE = [
    ('{"sarcastic": false', "length", True),
    ('{"sarcastic": true, "reason": "the speaker is clearly being sarc', "length", True),
    ("The utterance is sarcastic because the speaker", "length", True),  # free text, but cut
    ('{"sarcastic": null}', "stop", False),
    ('{"sarcastic": "perhaps"}', "stop", False),
    ('```json\n{"sarcastic": maybe}\n```', "stop", False),
    ('Here it is: {"sarcastic": "not sure"}', "stop", False),
    ("{'sarcastic': True}", "stop", False),  # Python, not JSON
]


def sarcasm_solver(monkeypatch: pytest.MonkeyPatch, backend: ModelBackend) -> Any:
    from tasks.sarcasm import mllm_solver
    from tasks.sarcasm.task import SarcasmTask

    monkeypatch.setattr(mllm_solver, "backend_from_context", lambda ctx, name: backend)
    return mllm_solver.SarcasmMLLMSolver.create(RunContext(model="scripted"), SarcasmTask())


@pytest.mark.parametrize(("text", "finish", "truncated"), UNREADABLE)
def test_sarcasm_unreadable_answers_are_invalid_never_a_class(
    monkeypatch: pytest.MonkeyPatch, text: str, finish: str, truncated: bool
) -> None:
    solver = sarcasm_solver(monkeypatch, Scripted(text, finish))
    output = asyncio.run(solver.solve(SAMPLE))
    assert output.prediction is None
    assert output.info["invalid"] is True
    assert bool(output.info.get("truncated")) is truncated


@pytest.mark.parametrize(("text", "label"), [
    ('{"sarcastic": true}', True), ('{"sarcastic": false}', False), ("Not sarcastic.", False), ("Yes", True),
])
def test_sarcasm_readable_answers_still_give_their_class(
    monkeypatch: pytest.MonkeyPatch, text: str, label: bool
) -> None:
    solver = sarcasm_solver(monkeypatch, Scripted(text))
    assert asyncio.run(solver.solve(SAMPLE)).prediction is label


@pytest.mark.parametrize("text", [None, "", "   \n"])
def test_empty_or_null_answers_are_an_error_naming_the_endpoint(text: str | None) -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        sarcastic: bool

    with pytest.raises(BackendError, match="scripted://test answered with an empty message"):
        asyncio.run(ask(Scripted(text), [], Answer, CallSettings()))


def test_empty_answers_are_not_stored_in_the_model_cache(tmp_path: Path) -> None:
    inner = Scripted("")
    cached = CachedBackend(inner, tmp_path)
    request = ChatRequest(messages=())
    asyncio.run(cached.chat(request))
    asyncio.run(cached.chat(request))
    assert inner.calls == 2  # asked again: nothing was cached
    inner.text = "an answer"
    asyncio.run(cached.chat(request))
    asyncio.run(cached.chat(request))
    assert inner.calls == 3
    asyncio.run(cached.aclose())


VOCAB = {"behavior": ["on-task", "off-task"], "emotion": ["neutral", "happy"]}


@pytest.mark.parametrize(("text", "finish", "expected"), [
    ('{"behavior": "on-task", "emotion": "hap', "length", {"behavior": None, "emotion": None}),
    ('{"behavior": "on-task", "emotion": "neu', "stop", {"behavior": None, "emotion": None}),
    ('{"behavior": null, "emotion": "happy"}', "stop", {"behavior": None, "emotion": "happy"}),
    ('{"behavior": 3, "emotion": "bored"}', "stop", {"behavior": None, "emotion": None}),
    ("behavior: off-task\nemotion: happy", "stop", {"behavior": "off-task", "emotion": "happy"}),
    ("behavior: off-task\nemotion: hap", "length", {"behavior": None, "emotion": None}),
])
def test_motor_heads_from_cut_or_invalid_json_are_none(text: str, finish: str, expected: dict) -> None:
    assert parse_labels(text, None, VOCAB, finish) == expected


def test_motor_mllm_solver_marks_truncated_answers_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.motor import llm_solvers
    from tasks.motor.task import MotorTask

    backend = Scripted('{"behavior": "on-task", "cognition": "', "length")
    monkeypatch.setattr(llm_solvers, "backend_from_context", lambda ctx, name: backend)
    solver = llm_solvers.MotorMLLMSolver.create(RunContext(model="scripted"), MotorTask())
    vocab = {"behavior": ["on-task", "off-task"], "cognition": ["planning", "monitoring"], "emotion": ["neutral"]}
    sample = Sample("c1", {"vocab": vocab, "transcript": "hi"}, {"behavior": "on-task"})
    output = asyncio.run(solver.solve(sample))
    assert set(output.prediction.values()) == {None}
    assert output.info["invalid"] is True and output.info["truncated"] is True


@pytest.mark.parametrize("text", ['{"a": 1', '{"label": null}', 'ok ```json\n{"label": 2}```', '["x"]', "{}"])
def test_json_looking_text_is_never_read_as_free_text(text: str) -> None:
    assert looks_like_json(text)
    assert free_text_blocked(text) is not None
    assert isinstance(parse_label(text, ["label", "x"]), Invalid)


def test_free_text_and_valid_json_fields_still_parse() -> None:
    assert not looks_like_json("It is sarcastic [I think].")
    assert parse_label("positive", ["positive", "negative"]) == Parsed("positive", "label")
    assert parse_label('{"label": "negative"}', ["positive", "negative"]) == Parsed("negative", "json")
    assert isinstance(parse_label("positive", ["positive"], finish_reason="length"), Invalid)
