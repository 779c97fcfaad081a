"""Judges as graders: a question rubric answered by a panel of judges on their own endpoints, majority
with the tie rule, kappa per question, cached answers, and a failing judge reported as an error."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from servers.fake_openai import FakeOpenAIServer, ServerConfig
from sklearn.metrics import cohen_kappa_score

from harness.core import RunContext, current_sample
from harness.grading import GradingPanel, JudgeError, Question, QuestionRubric, rubric_agreement
from harness.roles import RoleSpec
from harness.rubrics import ISR_RUBRIC, isr_outcome
from harness.transcripts import TranscriptLog, pop_usage, read_transcripts, summarise

PROMPTS = ["make the cat blue", "add a hat", "remove the car, noisy", "turn day into night", "add a cat, noisy"]


def isr_answers(prompt: str, body: dict[str, Any]) -> str:
    """judge-a: the instruction is not followed for cats, never degraded; judge-b: always followed,
    degraded when the prompt says noisy."""
    model = body["model"]
    assert body["temperature"] == 0.0 and body["response_format"]["type"] == "json_schema"
    if model == "judge-a":
        return json.dumps({"follows_instruction": "no" if "cat" in prompt else "yes", "degraded": "no",
                           "reason": "a"})
    return json.dumps({"follows_instruction": "yes", "degraded": "yes" if "noisy" in prompt else "no"})


def expected(model: str, prompt: str) -> dict[str, str]:
    return json.loads(isr_answers(prompt, {"model": model, "temperature": 0.0,
                                           "response_format": {"type": "json_schema"}}))


def judge_server(model: str) -> FakeOpenAIServer:
    return FakeOpenAIServer(ServerConfig(answer=f"{__name__}:isr_answers", served_models=(model,),
                                         error_style="vllm", model=model))


def run_ctx(tmp_path, log: TranscriptLog | None, *, cache: bool = False) -> RunContext:
    return RunContext(cache_dir=tmp_path / "cache" if cache else None, use_cache=cache, max_retries=0,
                      request_timeout_s=10, transcripts=log)


async def grade_all(panel: GradingPanel, prompts: list[str]) -> list[Any]:
    out = []
    for i, prompt in enumerate(prompts):
        token = current_sample.set(f"edit{i}")
        try:
            out.append(await panel.grade(ISR_RUBRIC, **{"prompt": prompt}))
        except JudgeError as exc:
            out.append(exc)
        finally:
            current_sample.reset(token)
    await panel.aclose()
    return out


def test_two_judges_on_two_endpoints_both_answer_and_kappa_is_reported(tmp_path):
    log = TranscriptLog(tmp_path / "transcripts.jsonl")
    with judge_server("judge-a") as a, judge_server("judge-b") as b:
        specs = [RoleSpec("judge", "judge-a", a.base_url), RoleSpec("judge2", "judge-b", b.base_url)]
        panel = GradingPanel.from_roles(specs, run_ctx(tmp_path, log))
        gradings = asyncio.run(grade_all(panel, PROMPTS))
        assert a.stats()["completed"] == len(PROMPTS) and b.stats()["completed"] == len(PROMPTS)
    log.close()
    for prompt, g in zip(PROMPTS, gradings, strict=True):
        ea, eb = expected("judge-a", prompt), expected("judge-b", prompt)
        assert g.judges == ["judge-a", "judge-b"] and not g.errors
        for q in ("follows_instruction", "degraded"):
            assert g.answers[q] == [ea[q], eb[q]]
            # two judges: agreement decides; a split goes to the answer that is not an editing failure
            assert g.values[q] == (ea[q] if ea[q] == eb[q] else {"follows_instruction": "yes", "degraded": "no"}[q])
            assert g.ties[q] == (ea[q] != eb[q])
    report = rubric_agreement([g.to_dict() for g in gradings])
    for q in ("follows_instruction", "degraded"):
        a_col = [expected("judge-a", p)[q] for p in PROMPTS]
        b_col = [expected("judge-b", p)[q] for p in PROMPTS]
        assert report[q]["items"] == len(PROMPTS)
        assert report[q]["cohen_kappa"] == pytest.approx(cohen_kappa_score(a_col, b_col), abs=1e-12)
        same = sum(x == y for x, y in zip(a_col, b_col, strict=True))
        assert report[q]["percent_agreement"] == pytest.approx(same / 5)
    # the ties resolve to "followed, not degraded": the ISR counts no split decision as a failure
    assert [isr_outcome(g)["edit_failed"] for g in gradings] == [0.0] * 5
    summary = summarise(read_transcripts(tmp_path / "transcripts.jsonl"))
    assert summary["by_role"]["judge/judge-a"]["calls"] == 5 and summary["by_role"]["judge/judge-b"]["calls"] == 5
    assert summary["judge_error"] == 0 and summary["judges_failed_every_call"] == []
    usage = pop_usage("edit0")  # the fake server counts words: judge-a's answer has 6, judge-b's 4
    assert sorted(usage) == ["judge/judge-a", "judge/judge-b"]
    assert [usage[r]["completion_tokens"] for r in sorted(usage)] == [6, 4]
    assert all(u["calls"] == 1 and u["prompt_tokens"] > 20 for u in usage.values())


def test_a_judge_that_404s_every_call_is_a_reported_error_not_a_zero(tmp_path):
    log = TranscriptLog(tmp_path / "transcripts.jsonl")
    with judge_server("judge-a") as a:
        # the second judge points at a server that serves another model (the README bug: one vllm, one model)
        specs = [RoleSpec("judge", "judge-a", a.base_url), RoleSpec("judge2", "judge-b", a.base_url)]
        panel = GradingPanel.from_roles(specs, run_ctx(tmp_path, log))
        results = asyncio.run(grade_all(panel, PROMPTS[:3]))
    log.close()
    assert all(isinstance(r, JudgeError) for r in results)
    message = str(results[0])
    assert "judge error" in message and "HTTP 404" in message and "The model `judge-b` does not exist." in message
    summary = summarise(read_transcripts(tmp_path / "transcripts.jsonl"))
    assert summary["judge_error"] == 3 and summary["judges_failed_every_call"] == ["judge/judge-b"]


def test_a_quorum_of_one_keeps_the_answering_judge_and_records_the_other_one_s_error(tmp_path):
    with judge_server("judge-a") as a:
        specs = [RoleSpec("judge", "judge-a", a.base_url), RoleSpec("judge2", "judge-b", a.base_url)]
        panel = GradingPanel.from_roles(specs, run_ctx(tmp_path, None), quorum=1)
        (g,) = asyncio.run(grade_all(panel, ["make the cat blue"]))
    assert g.values == {"follows_instruction": "no", "degraded": "no"} and "404" in g.errors["judge-b"]
    assert g.answers["follows_instruction"] == ["no", None]
    assert rubric_agreement([g.to_dict()])["follows_instruction"]["items"] == 0


def test_judge_answers_are_cached_like_solver_calls(tmp_path):
    with judge_server("judge-a") as a, judge_server("judge-b") as b:
        specs = [RoleSpec("judge", "judge-a", a.base_url), RoleSpec("judge2", "judge-b", b.base_url)]
        first = asyncio.run(grade_all(GradingPanel.from_roles(specs, run_ctx(tmp_path, None, cache=True)), PROMPTS))
        again = asyncio.run(grade_all(GradingPanel.from_roles(specs, run_ctx(tmp_path, None, cache=True)), PROMPTS))
        assert a.stats()["completed"] == len(PROMPTS)  # the second pass came from the cache
    assert [g.to_dict() for g in first] == [g.to_dict() for g in again]


def test_tie_rules_and_answer_reading_by_hand():
    yn = Question("q", "?", on_tie="no")
    assert yn.decide(["yes", "no"]) == ("no", True)
    assert yn.decide(["yes", "yes", "no"]) == ("yes", False)
    assert yn.decide([None, "yes"]) == ("yes", False)
    assert Question("q", "?").decide(["yes", "no"]) == (None, True)  # no rule: undecided
    graded = Question("g", "?", kind="graded", scale=(1, 5), on_tie="lower")
    assert graded.decide([2, 4, 4, 2, 5]) == (2, True)
    assert Question("g", "?", kind="graded", on_tie="higher").decide([2, 4]) == (4, True)
    assert [yn.read(v) for v in ("Yes", " no.", True, "maybe", None)] == ["yes", "no", "yes", None, None]
    assert [graded.read(v) for v in (3, "4", 4.5, 0, 6, True)] == [3, 4, None, None, None, None]


def test_rubric_schema_prompt_and_hash():
    schema = ISR_RUBRIC.schema()
    assert schema["required"] == ["follows_instruction", "degraded"]
    assert schema["properties"]["degraded"] == {"type": "string", "enum": ["yes", "no"]}
    prompt = ISR_RUBRIC.prompt(prompt="add a hat")
    assert '"add a hat"' in prompt and '"follows_instruction": ...' in prompt
    changed = QuestionRubric(ISR_RUBRIC.name, "2", ISR_RUBRIC.questions, ISR_RUBRIC.context)
    assert changed.hash != ISR_RUBRIC.hash and ISR_RUBRIC.tag.startswith("isr@1#")
    with pytest.raises(ValueError):
        QuestionRubric("x", "1", (Question("a", "?"), Question("a", "?")))


def test_isr_outcome_counts_either_failure():
    assert isr_outcome({"values": {"follows_instruction": "no", "degraded": "no"}}) == {
        "edit_failed": 1.0, "not_followed": 1.0, "degraded": 0.0}
    assert isr_outcome({"values": {"follows_instruction": "yes", "degraded": "yes"}})["edit_failed"] == 1.0
    assert isr_outcome({"values": {"follows_instruction": "yes", "degraded": "no"}})["edit_failed"] == 0.0
