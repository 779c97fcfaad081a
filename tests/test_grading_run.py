"""Judges as graders inside a run: a toy task scored by the ISR rubric through `judge_panel(sctx)`, two judges
on two endpoints (`--judge MODEL@URL`): scores, per-question answers, kappa in the report, judge calls in
metrics.json; a judge that 404s every call makes every sample a reported judge error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import toy_task
from servers.fake_openai import FakeOpenAIServer, ServerConfig

from harness.core import Metric, Sample, ScoreContext
from harness.grading import judge_panel, rubric_agreement
from harness.registry import register_solver, register_task
from harness.rubrics import ISR_RUBRIC, isr_outcome
from harness.runner import RunConfig, RunSettings, run


@register_task
class ToyISRTask(toy_task.ToyTask):
    """Each item's 'edit' is judged with the ISR rubric (the instruction names the item)."""

    name = "toyisr"

    async def ascore(self, sample: Sample, prediction: Any, ctx: ScoreContext) -> dict[str, Any]:
        grading = await judge_panel(ctx).grade(ISR_RUBRIC, prompt=f"make item {sample.inputs.get('x', sample.id)}")
        return {**isr_outcome(grading), "grading": grading.to_dict()}

    def metrics(self, protocol: str) -> list[Metric]:
        return [Metric("isr", mean_of="edit_failed")]

    def report(self, records, protocol, out_dir):
        return {"judges": rubric_agreement([r.scores["grading"] for r in records if r.ok])}


@register_solver("echo", tasks=("toyisr",))
class ISREchoSolver(toy_task.EchoSolver):
    """Right parity (the 'edit')."""


def isr_judge(prompt: str, body: dict[str, Any]) -> str:
    """judge-a: follows unless the item number ends in 3; judge-b: always follows; never degraded."""
    number = prompt.split("make item ", 1)[1].split('"', 1)[0]
    follows = "no" if body["model"] == "judge-a" and number.endswith("3") else "yes"
    return json.dumps({"follows_instruction": follows, "degraded": "no", "reason": "r"})


def server(model: str) -> FakeOpenAIServer:
    return FakeOpenAIServer(ServerConfig(answer=f"{__name__}:isr_judge", served_models=(model,), error_style="vllm"))


def settings(tmp_path: Path, data: Path) -> RunSettings:
    return RunSettings(data=data, out_dir=tmp_path / "runs", show_progress=False, db_url=None, max_retries=0)


def test_isr_judged_run_reports_answers_kappa_and_judge_calls(tmp_path):
    data = toy_task.write_items(tmp_path / "toy", 20)
    with server("judge-a") as a, server("judge-b") as b:
        cfg = RunConfig("toyisr", solver="echo", judges=(f"judge-a@{a.base_url}", f"judge-b@{b.base_url}"),
                        n_boot=20)
        res = run(cfg, settings(tmp_path, data))
        assert a.stats()["completed"] == b.stats()["completed"] == 20
    assert res.n_errors == 0
    for r in res.records:
        answers = r.scores["grading"]["answers"]["follows_instruction"]
        assert answers == [("no" if r.sample_id.endswith("3") else "yes"), "yes"]
        assert r.scores["edit_failed"] == 0.0  # a 1:1 split resolves to "followed"
    agreement = res.report["judges"]["follows_instruction"]
    # judge-a says no on s3 and s13 (2 of 20), judge-b never: p_o = 18/20, p_e = 18/20 -> kappa 0
    assert agreement["items"] == 20 and agreement["cohen_kappa"] == 0.0 and agreement["tie_share"] == 0.1
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    calls = metrics["model_calls"]
    assert calls["by_role"]["judge/judge-a"]["calls"] == 20 and calls["by_role"]["judge/judge-b"]["calls"] == 20
    lines = (res.run_dir / "transcripts.jsonl").read_text().splitlines()
    assert len(lines) == 40 and {json.loads(x)["sample"] for x in lines} == {r.sample_id for r in res.records}


def test_a_judge_that_404s_every_call_makes_the_run_report_judge_errors(tmp_path):
    data = toy_task.write_items(tmp_path / "toy", 6)
    with server("judge-a") as a:
        cfg = RunConfig("toyisr", solver="echo", judges=(f"judge-a@{a.base_url}", f"judge-b@{a.base_url}"),
                        n_boot=20)
        res = run(cfg, settings(tmp_path, data))
    assert res.n_errors == 6
    assert all("judge error" in r.error and "HTTP 404" in r.error for r in res.records)
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert metrics["n_errors"] == 6
    assert metrics["model_calls"]["judge_error"] == 6
    assert metrics["model_calls"]["judges_failed_every_call"] == ["judge/judge-b"]
