"""End to end over HTTP: `harness run` with the MLLM and agent solvers against real OpenAI-compatible
servers on 127.0.0.1 — the scripted fake server (answers, failures, a hang) and, marked `slow`,
`transformers serve` on a tiny random VLM (random text: every answer must come out invalid,
counted, never a crash)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from tasks.motor.fixture import write_fixture
from tests.servers.fake_openai import FakeOpenAIServer, ServerConfig

HEADS = ("behavior", "cognition", "emotion")


@pytest.fixture(scope="module")
def motor_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("motor"), 12)


def _system(body: dict[str, Any]) -> str:
    first = body["messages"][0]
    return first["content"] if first["role"] == "system" and isinstance(first["content"], str) else ""


def motor_answer(prompt: str, body: dict[str, Any]) -> str:
    """MOTOR-MAS script: heads pick an enum label by transcript hash; the coordinator sends cognition
    back once when it is the first label; the revised cognition picks the second label."""
    system = _system(body)
    schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema", {})
    if "You are the coordinator" in system:
        cognition = prompt.split("- cognition: ", 1)[1].split(" ", 1)[0]
        if cognition == "planning":
            return json.dumps({"consistent": False, "revise": "cognition", "reason": "no plan is visible"})
        return json.dumps({"consistent": True, "revise": None, "reason": "ok"})
    labels = schema["properties"]["label"]["enum"]
    if "The coordinator asks you to revise" in prompt:
        return json.dumps({"label": labels[1], "evidence": "revised", "confidence": 0.6})
    h = int(hashlib.sha1(prompt.split("\n\n")[0].encode()).hexdigest(), 16)
    return json.dumps({"label": labels[h % len(labels)], "evidence": "seen", "confidence": 0.7})


def random_text(prompt: str, body: dict[str, Any]) -> str:
    """What a tiny random model says: words, no JSON, no label."""
    rng = random.Random(prompt)
    return " ".join(rng.choice(["lorem", "ipsum", "dolor", "sit", "amet", "qux", "zap"]) for _ in range(8))


def _run(args: list[str], out: Path) -> dict[str, Any]:
    assert main(["run", *args, "--out", str(out), "--no-progress", "--bootstrap", "100"]) == 0
    run_dir = next(p for p in out.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["samples"] = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    return metrics


def test_motor_mas_over_http_revises_and_keeps_traces(motor_dir: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(ServerConfig(answer=f"{__name__}:motor_answer")) as srv:
        m = _run(["--task", "motor", "--solver", "motor-mas", "--model", "fake-model", "--base-url", srv.base_url,
                  "--data", str(motor_dir), "-S", "frames=2"], tmp_path)
        bodies = srv.bodies()
    assert m["n_samples"] == 12 and m["n_errors"] == 0 and m["headline"] == "mean_macro_f1"
    assert m["metrics"]["invalid_rate_cognition"]["value"] == 0.0
    revised = 0
    for s in m["samples"]:
        nodes = [e["node"] for e in s["info"]["trace"]]
        assert nodes[:4] == ["behavior", "cognition", "emotion", "coordinator"]
        if len(nodes) > 4:
            revised += 1
            assert nodes[4:] == ["cognition", "coordinator"] and s["info"]["revisions"] == 1
            assert s["info"]["trace"][4]["revision_reason"] == "no plan is visible"
        assert s["prediction"]["cognition"] != "planning"  # every planning answer was revised away
    assert revised > 0
    head_calls = [b for b in bodies if "agent of a team" in _system(b)]
    images = [p for p in head_calls[0]["messages"][1]["content"] if p["type"] == "image_url"]
    assert len(images) == 2 and images[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert all(b["temperature"] == 0.0 and b["seed"] == 0 for b in bodies)


def assert_all_invalid_motor(m: dict[str, Any], n: int) -> None:
    assert m["n_samples"] == n and m["n_errors"] == 0
    for head in HEADS:
        assert m["metrics"][f"invalid_rate_{head}"]["value"] == 1.0
        assert m["metrics"][f"accuracy_{head}"]["value"] == 0.0
        assert m["metrics"][f"macro_f1_{head}"]["value"] == 0.0
    assert m["report"]["invalid_answers"] == dict.fromkeys(HEADS, n)
    assert all(s["info"]["invalid"] and s["prediction"] == dict.fromkeys(HEADS) for s in m["samples"])


def assert_all_invalid_sarcasm(m: dict[str, Any], n: int) -> None:
    assert m["solver"] == "mllm" and m["n_samples"] == n and m["n_errors"] == 0
    assert all(s["prediction"] is None and s["info"]["invalid"] is True and s["info"]["raw"] for s in m["samples"])
    assert m["metrics"]["accuracy"]["value"] == 0.0


def test_random_text_answers_are_invalid_and_counted(motor_dir: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(ServerConfig(answer=f"{__name__}:random_text")) as srv:
        m = _run(["--task", "motor", "--model", "fake-model", "--base-url", srv.base_url,
                  "--data", str(motor_dir), "-S", "frames=1"], tmp_path)
    assert m["solver"] == "mllm"
    assert_all_invalid_motor(m, 12)


def test_sarcasm_mllm_random_text_is_invalid(shared_data: Any, tmp_path: Path) -> None:
    mustard = shared_data("mustard")
    with FakeOpenAIServer(ServerConfig(answer=f"{__name__}:random_text")) as srv:
        m = _run(["--task", "sarcasm", "--model", "fake-model", "--base-url", srv.base_url,
                  "--data", str(mustard), "--limit", "3"], tmp_path)
        bodies = srv.bodies()
    assert_all_invalid_sarcasm(m, 15)  # 5 official folds x 3
    user = bodies[0]["messages"][1]["content"]
    assert "Context:" in user and "Utterance:" in user
    assert bodies[0]["response_format"]["json_schema"]["schema"]["properties"]["sarcastic"]["type"] == "boolean"


def test_flaky_endpoint_scores_every_sample_exactly_once(motor_dir: Path, tmp_path: Path) -> None:
    cfg = ServerConfig(answer=f"{__name__}:motor_answer", fail_fraction=0.3, retry_after_s=0.05, latency_s=0.01)
    with FakeOpenAIServer(cfg) as srv:
        m = _run(["--task", "motor", "--solver", "motor-mas", "--model", "fake-model", "--base-url", srv.base_url,
                  "--data", str(motor_dir), "-S", "frames=1", "--no-cache"], tmp_path)
        stats = srv.stats()
    assert stats["failed_429"] + stats["failed_500"] > 0
    ids = [s["sample_id"] for s in m["samples"]]
    assert m["n_errors"] == 0 and len(ids) == 12 and len(set(ids)) == 12
    assert all(s["error"] is None and set(s["scores"]) >= {f"correct_{h}" for h in HEADS} for s in m["samples"])


def test_hanging_endpoint_errors_samples_with_a_timeout(motor_dir: Path, tmp_path: Path) -> None:
    with FakeOpenAIServer(ServerConfig(hang=True)) as srv:
        m = _run(["--task", "motor", "--model", "fake-model", "--base-url", srv.base_url, "--data", str(motor_dir),
                  "--limit", "2", "--timeout", "0.5", "-S", "max_retries=1", "-S", "frames=0"], tmp_path)
    assert m["n_samples"] == 2 and m["n_errors"] == 2
    assert all("timed out after 0.5 s" in s["error"] for s in m["samples"])
    assert any("timed out" in e for e in m["errors"])


# -- a real OpenAI-compatible server: `transformers serve` on a tiny random VLM ---------------------
@pytest.fixture(scope="module")
def tiny_vlm_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.tiny_models import build_tiny_vlm, serve, serve_available

    reason = serve_available()
    if reason:
        pytest.skip(reason)
    path = build_tiny_vlm(tmp_path_factory.mktemp("tiny") / "vlm")
    with serve(path) as base_url:
        yield str(path), base_url


@pytest.mark.slow
def test_sarcasm_mllm_through_transformers_serve(tiny_vlm_server: Any, shared_data: Any, tmp_path: Path) -> None:
    model, base_url = tiny_vlm_server
    m = _run(["--task", "sarcasm", "--model", model, "--base-url", base_url, "--data", str(shared_data("mustard")),
              "--limit", "2", "-S", "max_tokens=16"], tmp_path)
    assert_all_invalid_sarcasm(m, 10)


@pytest.mark.slow
def test_motor_mas_through_transformers_serve(tiny_vlm_server: Any, motor_dir: Path, tmp_path: Path) -> None:
    model, base_url = tiny_vlm_server
    m = _run(["--task", "motor", "--solver", "motor-mas", "--model", model, "--base-url", base_url,
              "--data", str(motor_dir), "--limit", "6", "-S", "frames=2", "-S", "max_tokens=16"], tmp_path)
    assert_all_invalid_motor(m, 6)
    for s in m["samples"]:
        trace = s["info"]["trace"]
        assert [e["node"] for e in trace] == ["behavior", "cognition", "emotion", "coordinator"]
        assert trace[0]["input"].startswith("video[2 frames]") and all(e["raw"] for e in trace)
        assert "stopping" in trace[-1]["note"]
