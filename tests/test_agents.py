"""agents/: MOTOR-MAS (behavior -> cognition -> emotion -> coordinator, bounded revisions) and the
general multi-agent vote, run as LangGraph graphs against a scripted backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from agents.llm import CallSettings
from agents.motor_mas import Evidence, MotorMAS
from agents.vote import PERSPECTIVES, VoteMAS, majority_vote
from harness.models.base import ChatRequest, ChatResponse, ModelBackend, Part

VOCAB = {
    "behavior": ["on-task talk", "silent work", "off-task"],
    "cognition": ["planning", "monitoring", "elaborating", "no evidence"],
    "emotion": ["positive", "neutral", "confused", "frustrated"],
}
EVIDENCE = Evidence(
    media=(Part("video", path="/clips/c1.mp4", num_frames=4),),
    transcript="A: Let's decide who writes. B: I'll write.",
    vocab=VOCAB,
)


def node_of(request: ChatRequest) -> str:
    if request.role:  # every agent call names its node (transcripts, accounting)
        return request.role.replace("debate_", "agent_")
    system = request.messages[0].content[0].text or ""
    for head in VOCAB:
        if f"You are the {head} agent" in system:
            return head
    if "You are the coordinator" in system:
        return "coordinator"
    for i, who in enumerate(PERSPECTIVES):
        if system.startswith(f"You are {who}"):
            return f"agent_{i}"
    raise AssertionError(f"unknown node: {system[:80]}")


def user_text(request: ChatRequest) -> str:
    return "".join(p.text or "" for p in request.messages[-1].content if p.type == "text")


class ScriptedBackend(ModelBackend):
    """Answers with `script(node, request, call_index_of_that_node)`; a dict becomes JSON text."""

    def __init__(self, script: Callable[[str, ChatRequest, int], Any]) -> None:
        self.model, self.script = "scripted", script
        self.calls: list[tuple[str, ChatRequest]] = []

    async def chat(self, request: ChatRequest) -> ChatResponse:
        node = node_of(request)
        n = sum(1 for name, _ in self.calls if name == node)
        self.calls.append((node, request))
        answer = self.script(node, request, n)
        return ChatResponse(json.dumps(answer) if isinstance(answer, dict) else str(answer))


def head_answer(label: str, confidence: float = 0.8) -> dict[str, Any]:
    return {"label": label, "evidence": f"saw {label}", "confidence": confidence}


FIRST = {"behavior": "on-task talk", "cognition": "monitoring", "emotion": "positive"}
CONSISTENT = {"consistent": True, "revise": None, "reason": "fits"}


def run_mas(script: Callable[[str, ChatRequest, int], Any], **kw: Any) -> tuple[dict[str, Any], ScriptedBackend]:
    backend = ScriptedBackend(script)
    state = asyncio.run(MotorMAS(backend, CallSettings("scripted", 7), **kw).run(EVIDENCE))
    return dict(state), backend


def nodes(state: dict[str, Any]) -> list[str]:
    return [e["node"] for e in state["trace"]]


# -- MOTOR-MAS ----------------------------------------------------------------------------------------
def test_mas_visits_behavior_cognition_emotion_coordinator() -> None:
    state, backend = run_mas(lambda node, req, n: CONSISTENT if node == "coordinator" else head_answer(FIRST[node]))
    assert nodes(state) == ["behavior", "cognition", "emotion", "coordinator"]
    assert {h: a["label"] for h, a in state["answers"].items()} == FIRST
    assert state["revisions"] == 0 and state["consistent"] is True
    calls = dict(backend.calls)
    # each head sees the evidence and the heads answered before it, and nothing after it
    assert "Answers so far" not in user_text(calls["behavior"])
    assert "behavior: on-task talk" in user_text(calls["cognition"]) and "emotion:" not in user_text(calls["cognition"])
    assert "cognition: monitoring" in user_text(calls["emotion"])
    assert [p.num_frames for p in calls["emotion"].messages[1].content if p.type == "video"] == [4]
    for _, req in backend.calls:  # structured output, temperature 0, the run's seed
        assert req.json_schema is not None and req.temperature == 0.0 and req.seed == 7
    assert calls["cognition"].json_schema["properties"]["label"]["enum"] == VOCAB["cognition"]


def test_scripted_inconsistency_revises_the_named_head_once() -> None:
    def script(node: str, req: ChatRequest, n: int) -> Any:
        if node == "coordinator":
            if n == 0:
                return {"consistent": False, "revise": "cognition", "reason": "talk about roles is planning"}
            return CONSISTENT
        if node == "cognition" and n == 1:
            return head_answer("planning", 0.9)
        return head_answer(FIRST[node])

    state, backend = run_mas(script)
    # the revised head, then the heads after it again (emotion saw the old cognition), then the coordinator
    assert nodes(state) == ["behavior", "cognition", "emotion", "coordinator", "cognition", "emotion", "coordinator"]
    assert state["revisions"] == 1 and state["answers"]["cognition"]["label"] == "planning"
    revised = state["trace"][4]
    assert revised["revision_reason"] == "talk about roles is planning"
    assert revised["output"] == head_answer("planning", 0.9)
    assert state["trace"][3]["send_back"] == "cognition"
    prompt = user_text(backend.calls[4][1])
    assert "talk about roles is planning" in prompt and "revise your cognition answer (monitoring)" in prompt
    assert "emotion: positive" in prompt  # a revising head sees every other head
    rerun = user_text(backend.calls[5][1])
    assert backend.calls[5][0] == "emotion" and "cognition: planning" in rerun  # re-run on the revised answer
    # the clip's media come first in every head call, the agent's instruction last (prefix caching)
    for _, req in backend.calls:
        if req.role != "coordinator":
            assert req.messages[1].content[0].type == "video" and "agent" in (req.messages[1].content[-1].text or "")
            assert req.messages[0].content[0].text == backend.calls[0][1].messages[0].content[0].text
    assert [n for n, _ in backend.calls].count("behavior") == 1


@pytest.mark.parametrize("bound", [0, 1, 2, 3])
def test_revision_bound_holds(bound: int) -> None:
    always = {"consistent": False, "revise": "emotion", "reason": "no"}
    state, _ = run_mas(lambda node, req, n: always if node == "coordinator" else head_answer(FIRST[node]),
                       max_revisions=bound)
    assert state["revisions"] == bound
    assert nodes(state) == ["behavior", "cognition", "emotion", "coordinator"] + ["emotion", "coordinator"] * bound
    assert state["trace"][-1]["note"] == f"revision bound ({bound}) reached"
    assert state["trace"][-1]["send_back"] is None


def test_trace_is_complete_and_serialisable() -> None:
    def script(node: str, req: ChatRequest, n: int) -> Any:
        if node == "coordinator":
            return {"consistent": n > 0, "revise": "behavior", "reason": "r"}
        return head_answer(FIRST[node])

    state, _ = run_mas(script)
    for entry in state["trace"]:
        assert {"node", "input", "output", "revision_reason"} <= set(entry)
    assert state["trace"][0]["input"].startswith("video[4 frames], text[")
    assert "given behavior=on-task talk" in state["trace"][1]["input"]
    assert state["trace"][3]["input"] == "answers: behavior=on-task talk, cognition=monitoring, emotion=positive"
    json.dumps(state["trace"])


def test_invalid_head_answer_is_none_and_later_heads_see_it() -> None:
    def script(node: str, req: ChatRequest, n: int) -> Any:
        if node == "coordinator":
            return CONSISTENT
        if node == "behavior":
            return "I cannot tell from these frames."
        if node == "cognition":
            return "Clearly they are PLANNING here."  # no JSON, but names exactly one label
        return head_answer("neutral")

    state, backend = run_mas(script)
    beh, cog = state["trace"][0], state["trace"][1]
    assert state["answers"]["behavior"]["label"] is None and beh["invalid"] is True and "cannot tell" in beh["raw"]
    assert cog["output"]["label"] == "planning" and cog["extracted_by"] == "text"
    assert "behavior: (no valid answer)" in user_text(backend.calls[1][1])


def test_a_head_json_with_a_valid_label_and_a_bad_confidence_keeps_the_label_as_mllm_does() -> None:
    def script(node: str, req: ChatRequest, n: int) -> Any:
        if node == "coordinator":
            return CONSISTENT
        if node == "behavior":
            return {"label": FIRST["behavior"], "evidence": "seen", "confidence": 1.5}  # fails the schema
        if node == "cognition":
            return {"label": "daydreaming", "evidence": "seen", "confidence": 0.5}  # not a label: invalid
        return head_answer("neutral")

    state, _ = run_mas(script)
    beh, cog = state["trace"][0], state["trace"][1]
    assert state["answers"]["behavior"]["label"] == FIRST["behavior"] and beh["extracted_by"] == "json"
    assert state["answers"]["cognition"]["label"] is None and cog["invalid"] is True


def test_coordinator_that_names_no_head_or_garbage_stops() -> None:
    for verdict in ({"consistent": False, "revise": "mood", "reason": "?"}, "blah"):
        state, _ = run_mas(lambda node, req, n, v=verdict: v if node == "coordinator" else head_answer(FIRST[node]))
        assert nodes(state) == ["behavior", "cognition", "emotion", "coordinator"] and state["revisions"] == 0
        assert "stopping" in state["trace"][-1]["note"]


def test_judge_extractor_is_used_for_unparseable_heads() -> None:
    seen: list[tuple[str, str]] = []

    async def extractor(text: str, head: str, labels: Any) -> tuple[str | None, dict[str, Any]]:
        seen.append((text, head))
        return labels[1], {"votes": [labels[1], labels[1]], "agreement": 1.0}

    state, _ = run_mas(lambda node, req, n: CONSISTENT if node == "coordinator" else (
        "hmm" if node == "emotion" else head_answer(FIRST[node])), extractor=extractor)
    assert seen == [("hmm", "emotion")]
    assert state["answers"]["emotion"]["label"] == "neutral"
    assert state["trace"][2]["extracted_by"] == "judge" and state["trace"][2]["judge"]["agreement"] == 1.0


# -- general multi-agent vote ----------------------------------------------------------------------
def all_heads(b: str, c: str, e: str, conf: float = 0.5) -> dict[str, Any]:
    return {"behavior": b, "cognition": c, "emotion": e, "confidence": conf, "rationale": "r"}


def test_majority_vote_and_deterministic_ties() -> None:
    labels = VOCAB["emotion"]
    votes = [{"emotion": "neutral"}, {"emotion": "confused"}, {"emotion": "neutral"}]
    assert majority_vote(votes, "emotion", labels) == ("neutral", {"neutral": 2, "confused": 1})
    tie = [{"emotion": "confused", "confidence": 0.9}, {"emotion": "neutral", "confidence": 0.4}]
    assert majority_vote(tie, "emotion", labels)[0] == "confused"  # higher summed confidence
    assert majority_vote(tie[::-1], "emotion", labels)[0] == "confused"  # order does not matter
    flat = [{"emotion": "confused", "confidence": 0.5}, {"emotion": "neutral", "confidence": 0.5}]
    assert majority_vote(flat, "emotion", labels)[0] == "neutral"  # then vocabulary order
    assert majority_vote([{"emotion": None}, {"emotion": "bored"}], "emotion", labels) == (None, {})


def test_vote_graph_runs_agents_independently_and_votes() -> None:
    answers = [all_heads("off-task", "planning", "neutral"), all_heads("off-task", "monitoring", "positive"),
               "no idea at all"]
    backend = ScriptedBackend(lambda node, req, n: answers[int(node.split("_")[1])])
    state = asyncio.run(VoteMAS(backend, CallSettings("scripted", 3), n_agents=3).run(EVIDENCE))
    # cognition and emotion tie 1:1 at equal confidence: the earlier vocabulary label wins
    assert state["decision"] == {"behavior": "off-task", "cognition": "planning", "emotion": "positive"}
    assert sorted(e["node"] for e in state["trace"][:3]) == ["agent_0", "agent_1", "agent_2"]
    assert state["trace"][-1]["node"] == "vote"
    assert state["trace"][-1]["output"]["counts"]["behavior"] == {"off-task": 2}
    assert sorted(r.seed for _, r in backend.calls) == [3, 4, 5]  # one seed per agent
    invalid = next(e for e in state["trace"] if e["node"] == "agent_2")
    assert invalid["invalid"] is True and invalid["raw"] == "no idea at all"


def test_vote_debate_round_sees_the_others_and_decides() -> None:
    def script(node: str, req: ChatRequest, n: int) -> Any:
        i = int(node.split("_")[1])
        if n == 0:  # first round: agents disagree on emotion
            return all_heads("silent work", "monitoring", ["confused", "neutral", "positive"][i])
        assert "The other annotators answered" in user_text(req)
        return all_heads("silent work", "monitoring", "confused")  # debate converges

    backend = ScriptedBackend(script)
    state = asyncio.run(VoteMAS(backend, CallSettings("scripted", 0), n_agents=3, debate=True).run(EVIDENCE))
    assert state["decision"]["emotion"] == "confused"
    assert state["trace"][-1]["output"]["counts"]["emotion"] == {"confused": 3}
    assert sum(e["node"].startswith("debate_") for e in state["trace"]) == 3
    debate_prompt = next(user_text(r) for node, r in backend.calls[3:] if node == "agent_0")
    assert "emotion=neutral" in debate_prompt and "emotion=positive" in debate_prompt
    assert "Your first answer: behavior=silent work, cognition=monitoring, emotion=confused" in debate_prompt
